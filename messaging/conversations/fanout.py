"""Group messages stored once, their ``message.new`` events written after the send: connected members first.

Why: a send to a 2,078-member unit group bumped 2,078 stream rows and wrote
2,078 event rows in its transaction, so every member waited for all of them
(0.2–0.4× a bare broadcast, BENCHMARKS.md issue 15). The send now commits the
message, its payload once (``message_fanouts``) and one small pending row per
member (``message_fanout_pending``: person and the mention/mute flags of the
send), plus the sender's own event; then, as notices do (messaging/notices/relay.py):

1. **Connected members first**: the send's own transaction already claims and
   writes the events of the members connected to the sending process; every
   other process, on one ``message_committed`` control message, claims those of
   the persons connected to it and appends them in one transaction
   (:meth:`GroupRelay.local`), then pushes them to its own sockets.
2. **Everyone else** (:meth:`GroupRelay.sweep`, the lease holder, which the
   send made the sending process), ``sweep_after`` seconds later so that it
   does not lock rows the other processes are about to claim for connected
   members: the remaining members in chunks, one transaction each; then
   deletes the payload row. A process killed mid-sweep loses its
   lease and any other process's :meth:`GroupRelay.run_pending` finishes.

Exactly once: deleting a pending row is the claim, in the transaction that
appends that person's event; only the rows the DELETE returned get an event.

In order: a claim for message *m* takes the person's pending rows of the
conversation up to *m* (not only *m*'s) and appends them in message-id order,
under row locks taken in (person, message) order. Every other write of a
group message event to a member (the next send, an edit or recall, a system
note) first claims that member's pending rows the same way (:func:`flush`),
so a stream never shows a later message, or a change to a message, before
the message itself.

Why pending rows rather than a per-member cursor over ``messages``: the
cursor would have to move in every path that writes a group event (system
notes to members who just left, joins, imports), while a pending row is
touched only here; and 2,078 narrow rows in one INSERT cost a fraction of
the stream bumps and event rows they replace at send time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, true

from kernel.db.dialect import chunks
from kernel.jobs import Spawn
from messaging.broker.base import Broker
from messaging.conversations.schema import message_fanouts
from messaging.conversations.storage import claim_pending, remaining_pending
from messaging.events import NewEvent, paused_gc
from messaging.leases import Leases, run_token
from messaging.ports import CONTROL_CHANNEL, LocalDelivery, Notify
from messaging.shapes import MessageNew
from messaging.unit_of_work import Txn, UnitOfWork
from messaging.wakeup import EventGroup

logger = logging.getLogger(__name__)

__all__ = [
    "BULK_AUDIENCE",
    "GROUP_KINDS",
    "MENTIONED",
    "MUTED",
    "GroupFanout",
    "GroupRelay",
    "append_per_person",
    "flush",
    "write_claimed",
]

#: Audiences at least this large are appended with ``EventLog.append_bulk`` and, with a
#: relay configured, fanned out after the commit.
BULK_AUDIENCE = 64
#: Conversation kinds whose messages go through the pending rows (their members are stored).
GROUP_KINDS = ("group", "unit")
#: ``message_fanout_pending.flags`` bits.
MENTIONED = 1
MUTED = 2


async def append_per_person(tx: Txn, kind: str, items: Sequence[tuple[int, str]]) -> list[EventGroup]:
    """One ``kind`` event to each person, with that person's payload, appended now (``Txn.append``).

    From ``BULK_AUDIENCE`` persons on: one set-based stream bump and COPY (same locks, same
    order); below it, one event per distinct payload (the members who see the same text share it).
    """
    if len(items) >= BULK_AUDIENCE:
        return await tx.append_bulk(kind, items)
    variants: dict[str, list[int]] = {}
    for person, text in items:
        variants.setdefault(text, []).append(person)
    return await tx.append([NewEvent(kind, text, people) for text, people in variants.items()])


def _variant(base: str, flags: int, cache: dict[int, str]) -> str:
    """The member's payload: the stored one with their ``mentioned``/``muted`` flags."""
    text = cache.get(flags)
    if text is None:
        update = {"mentioned": bool(flags & MENTIONED), "muted": bool(flags & MUTED)}
        text = cache[flags] = MessageNew.model_validate_json(base).model_copy(update=update).text()
    return text


async def write_claimed(tx: Txn, conversation_id: int, persons: Sequence[int], upto: int) -> dict[tuple[int, int], int]:
    """Claim ``persons``' pending events of the conversation up to message ``upto`` and append them.

    Appended in message-id order (one append per message), inside ``tx``; the
    wake-ups go with ``tx``'s. Returns ``(person, message) → seq`` of every event written.
    """
    wanted = sorted(set(persons))
    if not wanted:
        return {}
    claimed = await claim_pending(tx.conn, conversation_id, wanted, upto)
    if not claimed:
        return {}
    by_message: dict[int, list[tuple[int, int]]] = {}
    for person, mid, flags in sorted(claimed):
        by_message.setdefault(mid, []).append((person, flags))
    f = message_fanouts.c
    heads = {
        int(i): str(p) for i, p in await tx.conn.execute(select(f.id, f.payload).where(f.id.in_(sorted(by_message))))
    }
    out: dict[tuple[int, int], int] = {}
    for mid in sorted(by_message):
        if mid not in heads:  # cannot happen while messages are never deleted: claimed rows dropped, not stuck
            logger.warning("message %s: pending events without a payload row dropped", mid)
            continue
        base, cache = heads[mid], {0: heads[mid]}
        with paused_gc():
            items = [(person, _variant(base, flags, cache)) for person, flags in by_message[mid]]
        groups = await append_per_person(tx, "message.new", items)
        out.update(((p, mid), s) for g in groups for p, s in g.recipients)
    return out


async def flush(tx: Txn, conversation_id: int, persons: Sequence[int], upto: int) -> int:
    """Write ``persons``' events still pending up to message ``upto`` before an event that must follow them.

    Called by every other writer of a group-message event (next send, edit, recall,
    system note). Returns how many events it wrote (0 when nothing was pending).
    """
    return len(await write_claimed(tx, conversation_id, persons, upto))


class GroupRelay:
    """Writes the ``message.new`` events of committed group messages; safe in every process at once.

    Args:
        node_id: names this process in ``claimed_by`` (a random suffix is added).
        lease: how long a claim on finishing a message's fan-out is exclusive; renewed per chunk.
        chunk: persons per sweep transaction.
    """

    def __init__(
        self, uow: UnitOfWork, *, node_id: str = "local", lease: timedelta = timedelta(seconds=30), chunk: int = 10_000
    ) -> None:
        self._uow = uow
        self._db = uow.db
        self._events = uow.events
        self._clock = uow.clock
        self.token = run_token(node_id)
        self.lease = lease
        self.chunk = chunk
        c = message_fanouts.c
        # A row exists only while its fan-out is unfinished: finishing deletes it.
        self._leases = Leases(message_fanouts, c.claimed_by, c.lease_until, true(), lease)

    async def local(
        self, conversation_id: int, message_id: int, person_ids: Sequence[int], deliver: Notify | None = None
    ) -> int:
        """Write the events of those of ``person_ids`` (this process's connected people) still owed one.

        ``deliver`` gets the wake-ups after the commit (default: ``notify``). Returns events written.
        """
        if not person_ids:
            return 0
        written = await self._uow.run(
            lambda tx: write_claimed(tx, conversation_id, person_ids, message_id), deliver=deliver
        )
        return len(written)

    async def sweep(self, message_id: int) -> int:
        """Finish one message's fan-out if this process holds (or can take) its lease. Returns events written."""
        if not await self._uow.run(lambda tx: self._leases.take(tx.conn, message_id, self.token, tx.now)):
            return 0
        async with self._db.read() as conn:
            q = select(message_fanouts.c.conversation_id).where(message_fanouts.c.id == message_id)
            cid = (await conn.execute(q)).scalar_one_or_none()
            if cid is None:  # finished meanwhile by another process, or the message was deleted
                return 0
            remaining = await remaining_pending(conn, message_id)
        written = 0
        for part in chunks(remaining, self.chunk):
            if not await self._uow.run(lambda tx: self._leases.renew(tx.conn, message_id, self.token, tx.now)):
                logger.warning("message %s: fan-out lease lost; another process continues", message_id)
                return written
            await self._events.prepare_bulk(part)
            written += len(await self._uow.run(self._writer(int(cid), part, message_id)))

        async def finish(tx: Txn) -> None:
            # No member is owed the message now (the chunks claimed every row there was): drop the payload.
            # Fenced: a process that lost the lease leaves the row to its new holder.
            f = message_fanouts.c
            await tx.conn.execute(delete(message_fanouts).where(f.id == message_id, f.claimed_by == self.token))

        await self._uow.run(finish)
        return written

    async def run_pending(self) -> int:
        """Finish every group message whose fan-out is unfinished and unleased (its sweeper died)."""
        return await self._leases.finish_abandoned(self._db, self._clock.now(), self.sweep)

    @staticmethod
    def _writer(cid: int, persons: list[int], upto: int) -> Callable[[Txn], Awaitable[dict[tuple[int, int], int]]]:
        return lambda tx: write_claimed(tx, cid, persons, upto)


class GroupFanout:
    """After a group message commits: tell every process, write connected members first, sweep the rest.

    A failed announcement or connected-first write is only slower: the sweep writes
    those members instead, and :meth:`run_pending` (periodic) finishes a message whose
    sweeper died.

    Args:
        relay: writes the events.
        local: this process's sockets.
        broker: carries the announcement to the other processes.
        jobs: runs the fan-out after the send has answered.
        node_id: this process, so its own announcement is not acted on twice.
    """

    def __init__(
        self,
        relay: GroupRelay,
        local: LocalDelivery,
        broker: Broker,
        jobs: Spawn,
        *,
        node_id: str,
        sweep_after: float = 0.2,
    ) -> None:
        self.relay = relay
        self._local = local
        self._broker = broker
        self._jobs = jobs
        self._node_id = node_id
        self.sweep_after = sweep_after

    def connected(self) -> list[int]:
        """The persons connected to this process: the send writes their events in its own transaction."""
        return self._local.person_ids()

    def committed(self, conversation_id: int, message_id: int) -> None:
        """A group message of this process committed (with this process's connected members' events):
        one announcement per process, then the sweep."""
        self._jobs.soon(self._fan_out(conversation_id, message_id), f"message-fanout-{message_id}")

    async def _fan_out(self, conversation_id: int, message_id: int) -> None:
        msg = {"t": "message_committed", "conversation_id": conversation_id, "message_id": message_id}
        try:
            await self._broker.publish(CONTROL_CHANNEL, json.dumps({**msg, "origin": self._node_id}).encode())
        except Exception as exc:  # the other processes' members then come with the sweep
            logger.warning("message %s not announced: %r", message_id, exc)
        # Offline members wait for nobody: leave the database to the other processes'
        # connected-first writes for a moment, rather than lock their rows first.
        await asyncio.sleep(self.sweep_after)
        await self.relay.sweep(message_id)

    def on_control(self, data: bytes) -> None:
        """A control message: another process's committed group message gets this process's connected members."""
        try:
            msg: Any = json.loads(data)
        except ValueError:
            return
        if not isinstance(msg, dict) or msg.get("t") != "message_committed" or msg.get("origin") == self._node_id:
            return
        cid, mid = int(msg.get("conversation_id", 0)), int(msg.get("message_id", 0))
        job = self.relay.local(cid, mid, self._local.person_ids(), self._local.deliver)
        self._jobs.soon(job, f"message-local-{mid}")

    async def run_pending(self) -> int:
        """Finish the group messages whose sweeper died (periodic). Returns the events written."""
        return await self.relay.run_pending()
