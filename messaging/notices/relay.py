"""Deferred fan-out: the recipients' ``notice.new`` events, written after the send commits.

Why deferred: a province-wide notice has ~200,000 recipients. Writing one
event (and a stream bump) per recipient inside the send transaction made the
commit ~4× a bare COPY of its receipts. The send now commits the notice and
its receipts only (each receipt ``fanned_out = false``, the notice with
``fanout_done_at`` NULL and a lease held by the sending process), answers the
sender, and then:

1. **Connected recipients first** (:meth:`FanoutRelay.local`, in every
   process, on one ``notice_committed`` announcement per process): the
   process claims the receipts of the persons connected to it and appends
   their events in one transaction, then delivers them to its own sockets.
2. **Everyone else** (:meth:`FanoutRelay.sweep`, the lease holder): the
   remaining persons in chunks of ``chunk`` persons ordered by person_id, one
   transaction each, with wake-ups published per chunk; then
   ``fanout_done_at``. A process killed mid-sweep loses its lease and any
   other process's :meth:`FanoutRelay.run_pending` finishes the notice (S8).

Large notices (more than ``inline_receipts`` receipts) commit their receipts
packed into one row instead (``deferred.py``): a connected-first write then
inserts its persons' receipts already claimed, with their events, and the
sweep first writes everyone else's receipts, unclaimed, in runs of 10,000
rows, one COPY each (:meth:`FanoutRelay.materialize`). The two never overlap:
the connected-first writes hold the notice row shared, a run holds it
exclusively and skips the persons whose receipts are written, and a
connected-first write claims what earlier runs wrote as for a small notice.

Exactly once: a person's receipts are claimed (``fanned_out`` false → true,
on PostgreSQL row-locked in id order, the order the receipt writer locks in)
in the same transaction that appends that person's one event, and only the
persons the claim returned get an event. Whichever of the two paths claims
first wins; the other finds nothing to claim. A recall claims every
receipt still unclaimed without an event (see ``NoticeService.recall``), so
a recipient either gets ``notice.new`` and then ``notice.recalled``, or
neither.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.dialect import chunks
from messaging.events import paused_gc
from messaging.leases import Leases, run_token
from messaging.notices.deferred import PackedReceipts, unpack
from messaging.notices.fanout import RECEIPT_COLUMNS, Label, NoticeHead, notice_payloads
from messaging.notices.schema import notice_pending_receipts, notice_receipts, notices
from messaging.notices.storage import (
    claim_receipts,
    insert_claimed,
    notice_state,
    pending_receipts,
    persons_with_receipts,
    unclaimed_persons,
    written_persons,
)
from messaging.ports import Notify
from messaging.unit_of_work import Txn, UnitOfWork
from messaging.wakeup import EventGroup
from org_tree.bulk import bulk_insert
from org_tree.index import OrgIndex

logger = logging.getLogger(__name__)

#: Packed receipts written per transaction (the notice row is held exclusively meanwhile,
#: and a connected-first write of another process may be waiting for it).
MATERIALIZE_ROWS = 10_000
#: Connected-first writes of at least this many persons log their timing.
LOG_AT = 1_000

__all__ = ["FanoutRelay", "head_of_row"]


def head_of_row(row: Row[Any]) -> NoticeHead:
    """The ``NoticeHead`` of a ``notices`` row."""
    return NoticeHead(
        int(row.id),
        row.title,
        row.priority,
        bool(row.ack_required),
        row.deadline,
        row.created_at,
        int(row.sender_person_id),
        int(row.sender_position_id),
    )


class FanoutRelay:
    """Writes the ``notice.new`` events of committed notices; safe in every process at once.

    Args:
        node_id: names this process in ``fanout_claimed_by`` (a random suffix is added).
        lease: how long a claim on finishing a notice's fan-out is exclusive; renewed per chunk.
        chunk: persons per sweep transaction.
        inline_receipts: a notice with more receipts than this commits them packed (``deferred.py``).
    """

    def __init__(
        self,
        uow: UnitOfWork,
        index_provider: Callable[[], OrgIndex],
        *,
        node_id: str = "local",
        lease: timedelta = timedelta(seconds=30),
        chunk: int = 10_000,
        inline_receipts: int = 20_000,
    ) -> None:
        self._db = uow.db
        self._events = uow.events
        self._clock = uow.clock
        self._uow = uow
        self._index = index_provider
        self.token = run_token(node_id)
        self.lease = lease
        n = notices.c
        self._leases = Leases(notices, n.fanout_claimed_by, n.fanout_lease_until, n.fanout_done_at.is_(None), lease)
        self.chunk = chunk
        self.inline_receipts = inline_receipts
        self.materialize_rows = MATERIALIZE_ROWS
        #: Seconds the sweep of a notice this process sent waits before writing its packed receipts.
        self.settle = 0.2
        # Packed receipts of this process's own sends, until written (saves reading them back).
        self._packed: dict[int, PackedReceipts] = {}

    # ------------------------------------------------------------------ send
    def remember(self, notice_id: int, packed: PackedReceipts) -> None:
        """This process committed ``packed`` for ``notice_id``: use it instead of reading it back."""
        self._packed[notice_id] = packed

    # ------------------------------------------------------------ connected first
    async def local(
        self, notice_id: int, person_ids: Sequence[int], deliver: Notify | None = None, head: NoticeHead | None = None
    ) -> int:
        """Write the events of those of ``person_ids`` (this process's connected people) still owed one.

        ``deliver`` gets the wake-up groups after the commit (default: ``notify``).
        ``head``: the notice's head if the caller has read it already (saves a read).
        Returns how many persons got their event here.
        """
        persons = sorted(set(person_ids))
        if not persons:
            return 0
        t0 = time.time()
        head = head or await self.head(notice_id)
        if head is None:
            return 0
        marks: list[float] = []

        def timed(groups: list[EventGroup]) -> None:
            marks.append(time.time())
            if deliver is not None:
                deliver(groups)
            marks.append(time.time())

        written = await self._write(head, persons, timed if deliver is not None else None)
        if written >= LOG_AT and len(marks) == 2:  # where a large notice's first second goes (BENCHMARKS.md)
            logger.info(
                "notice %s: %d connected recipients written in %.0f ms, offered to their sockets in %.0f ms"
                " (started at %.3f)",
                notice_id, written, 1e3 * (marks[0] - t0), 1e3 * (marks[1] - marks[0]), t0,
            )  # fmt: skip
        return written

    async def written_elsewhere(self, notice_id: int, persons: Sequence[int]) -> list[int]:
        """Those of ``persons`` (connected here, not written by this process's connected-first write) who
        hold a receipt of the notice: another process's write claimed them first.

        Read after this process's claim committed: a claim waits for any other one holding the same
        receipts (row locks), so their events are committed by now.
        """
        if not persons:
            return []
        async with self._db.read() as conn:
            return sorted(await persons_with_receipts(conn, notice_id, sorted(set(persons))))

    # ------------------------------------------------------------------- sweep
    async def sweep(self, notice_id: int, head: NoticeHead | None = None, *, inline: bool = False) -> int:
        """Finish one notice's fan-out if this process holds (or can take) its lease.

        ``head``: the notice's head if the caller has read it already. ``inline``:
        the caller (the send of this process) knows the receipts were committed
        inline, not packed, so there is nothing to materialize and no packed row
        to look for. Both only save reads: at the bar's S1 rate a small notice
        cost ten transactions, half of them in this sweep.
        Returns how many persons got their event here (0 also when another process holds the lease).
        """
        if inline:
            # One transaction takes the lease, reads who is left and, when nobody is
            # (every recipient connected and written first), finishes the notice.
            left = await self._claim_inline(notice_id)
            if not left:
                return 0
            remaining = left
        elif not await self._claim(notice_id):
            self._packed.pop(notice_id, None)  # another process writes them
            return 0
        head = head or await self.head(notice_id)
        if head is None:
            return 0
        if not inline:
            if notice_id in self._packed and self.settle > 0:
                # Our own send: the other processes' connected-first writes started when we
                # announced it; let them take the notice row before the runs hold it.
                await asyncio.sleep(self.settle)
            await self.materialize(notice_id)
            remaining = await self._remaining(notice_id)
        written = 0
        for part in chunks(remaining, self.chunk):
            if not await self._renew(notice_id):
                logger.warning("notice %s: fan-out lease lost; another process continues", notice_id)
                return written
            await self._events.prepare_bulk(part)
            written += await self._write(head, part)
        await self._finish(notice_id)
        return written

    async def run_pending(self) -> int:
        """Finish every notice whose fan-out is unfinished and unleased (its sweeper died). Returns persons written."""
        return await self._leases.finish_abandoned(self._db, self._clock.now(), self.sweep)

    # ----------------------------------------------------------------- helpers
    async def _write(self, head: NoticeHead, persons: list[int], deliver: Notify | None = None) -> int:
        """Claim ``persons``' unclaimed receipts and append one event per claimed person, in one transaction.

        Returns how many persons got their event.
        """
        index: OrgIndex = self._index()

        async def change(tx: Txn) -> int:
            return await self.write_owed(tx, head, persons, index)

        return await self._uow.run(change, deliver=deliver)

    async def write_owed(self, tx: Txn, head: NoticeHead, persons: list[int], index: OrgIndex) -> int:
        """Inside ``tx``: claim ``persons``' unclaimed receipts and append their ``notice.new`` now.

        The fan-out's own step, and also what another writer about the notice does first for its
        recipients (a one-click reminder), so that no stream shows a ``notice.remind`` before the
        ``notice.new`` it refers to. Returns how many persons got their event.
        """
        claimed = await self._claim_persons(tx.conn, head.id, persons)
        if not claimed:
            return 0
        with paused_gc():
            labels: dict[int, list[Label]] = {}
            live = index.role_and_unit
            for _id, person, pos, via, reason in sorted(claimed):
                # A position retired while the fan-out was pending gets nothing more (S21 d): its
                # receipt is claimed (so no sweep retries it) and stays counted, but no event is written.
                if live(int(pos)) is not None:
                    labels.setdefault(int(person), []).append((int(pos), int(via), reason))
            if not labels:
                return 0
            payloads = notice_payloads(head, labels, index)
        return sum(len(g.recipients) for g in await tx.append_bulk("notice.new", payloads))

    async def _claim_persons(self, conn: AsyncConnection, notice_id: int, persons: list[int]) -> list[tuple[Any, ...]]:
        """Claim ``persons``' receipts: written and unclaimed ones, or, while packed, theirs inserted claimed."""
        state = await notice_state(conn, notice_id, exclusive=False)
        if state is None:
            return []
        recalled, packed_still = state
        if not packed_still:
            return await claim_receipts(conn, notice_id, persons)
        if recalled:  # the packed receipts are written later, all claimed without an event
            return []
        # Packed still: those already written unclaimed by a run of ``materialize`` are
        # claimed; the others' rows are inserted claimed (never both: a run writes a
        # person's rows together, and not while this transaction holds the notice row).
        claimed = await claim_receipts(conn, notice_id, persons)
        packed = await self._packed_of(conn, notice_id)
        wanted = set(persons).difference(await persons_with_receipts(conn, notice_id, persons))
        with paused_gc():
            rows = packed.rows(notice_id, wanted.__contains__, fanned_out=True)
        return claimed + await insert_claimed(conn, notice_id, rows)

    async def _packed_of(self, conn: AsyncConnection, notice_id: int) -> PackedReceipts:
        packed = self._packed.get(notice_id)
        if packed is None:
            data = await pending_receipts(conn, notice_id)
            if data is None:  # cannot happen under the notice's lock (checked just before)
                raise LookupError(f"notice {notice_id}: no packed receipts")
            with paused_gc():
                packed = unpack(data)
        return packed

    async def materialize(self, notice_id: int) -> int:
        """Write the packed receipts not written yet, unclaimed, in short transactions; returns the rows written.

        Runs before the sweep. Each transaction holds the notice row exclusively
        for one run of ``materialize_rows`` rows (ascending person_id) and skips
        the persons whose receipts a connected-first write (or a handover) has
        written: a connected-first write waits for one run at most, then claims
        what it finds written. The last run deletes the packed row. After a
        recall the rows are written claimed: those recipients never get the notice.
        """
        packed = self._packed.get(notice_id)
        if packed is None:
            async with self._db.read() as conn:
                data = await pending_receipts(conn, notice_id)
            if data is None:
                return 0
            with paused_gc():
                packed = unpack(data)
        with paused_gc():
            runs = packed.person_chunks(self.materialize_rows)
        cols = (*RECEIPT_COLUMNS, "fanned_out")
        written = 0
        for k, at in enumerate(runs):
            last = k == len(runs) - 1

            async def change(tx: Txn, at: list[int] = at, last: bool = last) -> int:
                state = await notice_state(tx.conn, notice_id, exclusive=True)
                if state is None or not state[1]:
                    return -1  # written (and the packed row deleted) by another process
                positions = sorted({packed.positions[i] for i in at})
                done = await written_persons(tx.conn, notice_id, positions)
                with paused_gc():
                    rows = [r[:7] for r in packed.rows(notice_id, lambda p: p not in done, fanned_out=state[0], at=at)]
                await bulk_insert(tx.conn, notice_receipts, cols, rows)
                if last:
                    pending = notice_pending_receipts
                    await tx.conn.execute(delete(pending).where(pending.c.notice_id == notice_id))
                return len(rows)

            n = await self._uow.run(change)
            if n < 0:
                break
            written += n
        self._packed.pop(notice_id, None)
        logger.info(
            "notice %s: %d packed receipts written in %d runs (done at %.3f)",
            notice_id,
            written,
            len(runs),
            time.time(),
        )
        return written

    async def head(self, notice_id: int) -> NoticeHead | None:
        """The notice's head (what every ``notice.new`` of it carries); None if there is no such notice."""
        async with self._db.read() as conn:
            row = (await conn.execute(select(notices).where(notices.c.id == notice_id))).first()
        return None if row is None else head_of_row(row)

    async def _remaining(self, notice_id: int) -> list[int]:
        async with self._db.read() as conn:
            return await unclaimed_persons(conn, notice_id)

    async def _claim(self, notice_id: int) -> bool:
        return await self._uow.run(lambda tx: self._leases.take(tx.conn, notice_id, self.token, tx.now))

    async def _claim_inline(self, notice_id: int) -> list[int] | None:
        """Take the lease of a notice with inline receipts and read who is still owed the notice.

        None when another process holds the lease; an empty list when nobody is
        left, and then the notice is finished in the same transaction.
        """

        async def change(tx: Txn) -> list[int] | None:
            if not await self._leases.take(tx.conn, notice_id, self.token, tx.now):
                return None
            remaining = await unclaimed_persons(tx.conn, notice_id)
            if not remaining:
                await self._leases.finish(tx.conn, self.token, [notice_id], _done(tx.now), fenced=False)
            return remaining

        return await self._uow.run(change)

    async def _renew(self, notice_id: int) -> bool:
        return await self._uow.run(lambda tx: self._leases.renew(tx.conn, notice_id, self.token, tx.now))

    async def _finish(self, notice_id: int) -> None:
        async def change(tx: Txn) -> None:
            await self._leases.finish(tx.conn, self.token, [notice_id], _done(tx.now), fenced=False)

        await self._uow.run(change)


def _done(now: datetime) -> dict[str, Any]:
    """A finished fan-out: done now, the lease released."""
    return {"fanout_done_at": now, "fanout_claimed_by": None, "fanout_lease_until": None}
