"""Which sockets of this process belong to whom, and getting events to them.

One ``ConnectionHub`` per server process, owned by ``Services`` (no module
globals, so two servers can run side by side in one test). Events reach it
three ways: directly after a local commit, as broker wake-ups from other
processes, and from the safety poll that asks the database for each local
person's last seq, which repairs any lost wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from kernel.sessions import SessionStore
from messaging.events import EventLog, paused_gc
from messaging.ports import CONTROL_CHANNEL
from messaging.wakeup import EventGroup, Wakeup, event_frame
from zzd.gateway.closecodes import Close
from zzd.gateway.slots import SocketSlots

if TYPE_CHECKING:
    from zzd.gateway.connection import Connection

logger = logging.getLogger(__name__)

__all__ = ["CONTROL_CHANNEL", "ConnectionHub"]


class ConnectionHub:
    def __init__(
        self,
        node_id: str,
        events: EventLog,
        sessions: SessionStore,
        *,
        max_per_person: int,
        slots: SocketSlots | None = None,
        publish_control: Callable[[bytes], Awaitable[None]] | None = None,
    ) -> None:
        """``slots`` (with ``publish_control``) makes the per-person cap hold across processes."""
        self.node_id = node_id
        self._events = events
        self._sessions = sessions
        self._max = max_per_person
        self._slots = slots
        self._publish_control = publish_control
        self._socket_ids = itertools.count(1)
        #: Tasks publishing evictions to other processes (kept until done).
        self._evicting: set[asyncio.Task[None]] = set()
        #: person_id → that person's sockets here, oldest first.
        self._by_person: dict[int, list[Connection]] = {}
        self._poll_task: asyncio.Task[None] | None = None
        #: person_id → stream head seen by the last backfill (see ``backfill(settled=True)``).
        self._polled: dict[int, int] = {}
        #: Set by :meth:`drain`: a hello completing during shutdown is closed at once.
        self._draining: tuple[int, str] | None = None
        #: Set once a drain has seen the last socket leave.
        self._drained = asyncio.Event()
        #: WebSockets open on this process, authenticated or not (see :meth:`admit`).
        self.open_sockets = 0
        #: Of those, the ones whose hello has not been answered yet.
        self.pending_hellos = 0

    # --- membership ------------------------------------------------------------

    def admit(self, limit: int, pending_limit: int) -> bool:
        """Count a new WebSocket in, unless ``limit`` are open, ``pending_limit`` hellos are in
        progress, or the process is draining."""
        if self._draining is not None or self.open_sockets >= limit or self.pending_hellos >= pending_limit:
            return False
        self.open_sockets += 1
        self.pending_hellos += 1
        return True

    @property
    def draining(self) -> bool:
        return self._draining is not None

    def hello_answered(self) -> None:
        """An admitted socket's hello was accepted: it no longer counts as pending."""
        self.pending_hellos -= 1

    def leave(self, hello_answered: bool) -> None:
        self.open_sockets -= 1
        if not hello_answered:
            self.pending_hellos -= 1

    def listen(self, conn: Connection) -> None:
        """Offer ``conn`` its person's live events from now on, before its session is known good.

        A hello listens first, then reads the session and the stream position
        in one statement (decision 7: nothing committed after the read can
        pass the socket by), and only a good session claims a place under
        the cap (:meth:`claim`); a refused one leaves by :meth:`unregister`.
        Until its hello is answered the socket's cursor only notes what it
        was offered. It is closed like any socket of its person or session
        meanwhile (a revocation, a disabled account, a drain).
        """
        self._by_person.setdefault(conn.person_id, []).append(conn)
        if self._draining is not None:
            conn.drain(*self._draining)

    def claim(self, conn: Connection) -> None:
        """A listening socket's session was good: it takes a place under the per-person cap.

        The cap counts claimed sockets only, oldest claim first (a hello still
        being checked neither counts nor is pushed out); the newest stays and
        the oldest over the cap close with 4509, here and, through the slots,
        on the other processes.
        """
        conn.socket_id = f"{self.node_id}:{next(self._socket_ids)}"
        conns = self._by_person.setdefault(conn.person_id, [])
        with contextlib.suppress(ValueError):
            conns.remove(conn)
        conns.append(conn)  # claimed sockets stay in the order of their claims
        claimed = [c for c in conns if c.socket_id]
        excess = len(claimed) - self._max
        for oldest in claimed[: max(0, excess)]:
            conns.remove(oldest)
            oldest.close(Close.REPLACED, "too many connections for this person")
        if self._slots is not None:
            self._slots.claim(conn.person_id, conn.socket_id).add_done_callback(self._claimed)

    def _claimed(self, claim: asyncio.Future[list[str]]) -> None:
        """Hold the cap across processes: close whichever sockets the claim pushed out.

        A callback on the claim rather than a task per socket (issue 15: a
        reconnect storm made thousands); only an eviction on another process
        needs a task, to publish it.
        """
        if claim.cancelled():
            return
        exc = claim.exception()
        if exc is not None:
            logger.warning("socket slot not claimed, cap holds per process only: %r", exc)
            return
        remote = []
        for sid in claim.result():
            if sid.rpartition(":")[0] == self.node_id:
                self.close_socket(sid)
            else:
                remote.append(sid)
        if remote and self._publish_control is not None:
            task = asyncio.create_task(self._publish_evictions(remote), name="socket-evictions")
            self._evicting.add(task)
            task.add_done_callback(self._evicting.discard)

    async def _publish_evictions(self, socket_ids: list[str]) -> None:
        assert self._publish_control is not None
        for sid in socket_ids:
            try:
                await self._publish_control(json.dumps({"t": "close_socket", "sid": sid}).encode())
            except Exception as exc:
                logger.warning("socket eviction not published: %r", exc)

    def release_slot(self, conn: Connection) -> None:
        """Give the slot back; the slots apply it after the claim, so it cannot overtake it."""
        if self._slots is not None and conn.socket_id:
            self._slots.release(conn.person_id, conn.socket_id).add_done_callback(_released)

    def close_socket(self, socket_id: str) -> None:
        node, _, _ = socket_id.rpartition(":")
        if node != self.node_id:
            return
        for c in list(self.connections()):
            if c.socket_id == socket_id:
                c.close(Close.REPLACED, "too many connections for this person")

    def unregister(self, conn: Connection) -> None:
        conns = self._by_person.get(conn.person_id)
        if conns is None:
            return
        with contextlib.suppress(ValueError):
            conns.remove(conn)
        if not conns:
            del self._by_person[conn.person_id]
            if self._draining is not None and not self._by_person:
                self._drained.set()

    def connections(self) -> Iterable[Connection]:
        for conns in self._by_person.values():
            yield from conns

    def count(self) -> int:
        return sum(len(c) for c in self._by_person.values())

    def person_ids(self) -> list[int]:
        """The persons with at least one socket on this process."""
        return list(self._by_person)

    # --- delivery --------------------------------------------------------------

    def deliver(self, groups: list[EventGroup]) -> None:
        """Offer freshly committed events to local sockets (never blocks).

        Runs with the cyclic GC paused: a province-wide notice offers to
        thousands of sockets here (a frame, a queue entry and a writer task
        each), and collections triggered midway walked the whole heap.
        """
        by_person = self._by_person
        with paused_gc():
            for g in groups:
                for pid, seq in g.recipients:
                    conns = by_person.get(pid)
                    if conns:
                        frame = event_frame(seq, g.kind, g.payload)
                        for c in list(conns):
                            c.offer(seq, frame)

    def on_wakeup(self, data: bytes) -> None:
        try:
            # Only this process's people: their payloads are the only ones decoded.
            wake = Wakeup.decode(data, only=self._by_person, skip_origin=self.node_id)
        except (ValueError, KeyError, TypeError, IndexError):
            logger.warning("undecodable wake-up ignored")
            return
        if wake.origin != self.node_id:
            self.deliver(wake.groups)

    def on_control(self, data: bytes) -> None:
        """Session revocations and account changes announced by any process.

        (Committed notices on the same channel are ``messaging.notices.coordinator``'s.)
        """
        try:
            msg = json.loads(data)
        except ValueError:
            return
        if msg.get("t") == "revoke_session":
            self.close_session(str(msg.get("sid")))
        elif msg.get("t") == "disable_person":
            self.close_person(int(msg.get("pid", 0)))
        elif msg.get("t") == "close_socket":
            self.close_socket(str(msg.get("sid")))

    def close_session(self, session_id: str) -> None:
        for c in list(self.connections()):
            if c.session_id == session_id:
                c.close(Close.FORBIDDEN, "session revoked")

    def close_person(self, person_id: int) -> None:
        for c in list(self._by_person.get(person_id, ())):
            c.close(Close.FORBIDDEN, "account disabled")

    def close_all(self, code: int, reason: str) -> None:
        for c in list(self.connections()):
            c.close(code, reason)

    async def drain(self, code: int, reason: str, timeout: float) -> int:
        """Close every socket once its running request is answered; wait up to ``timeout`` s.

        Returns how many sockets were still open at the deadline (they are
        then closed by the server's own shutdown). Sockets leave the hub from
        their own tasks' teardown; the last one to leave sets ``_drained``.
        """
        self._draining = (int(code), reason)
        for c in list(self.connections()):
            c.drain(code, reason)
        if not self._by_person:
            self._drained.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._drained.wait()
        return self.count()

    # --- repair ------------------------------------------------------------------

    async def backfill(self, *, settled: bool = False) -> None:
        """Compare each local person's committed head with what their sockets have.

        With ``settled`` (the periodic safety poll) a head only counts once the
        previous poll saw it too: an event committed a moment ago is normally
        still on its way live (a province-wide notice's wake-ups take a second
        or two), and nudging then would start one database catch-up per socket,
        10,000 of them, for events that were about to arrive anyway. A lost
        wake-up is still repaired, one poll interval later. Without it (after a
        broker reconnect, when wake-ups are known to be lost) heads count at once.
        """
        persons = list(self._by_person)
        if not persons:
            self._polled = {}
            return
        heads = await self._events.heads(persons)
        previous, self._polled = self._polled, heads
        by_person = self._by_person
        for pid, head in heads.items():
            if settled:
                head = min(head, previous.get(pid, 0))
            conns = by_person.get(pid)
            if conns:
                for c in list(conns):
                    c.nudge(head)

    async def catch_up(self, person_ids: Sequence[int]) -> None:
        """Nudge these persons' sockets here with their committed heads, at once (not settled).

        Another process wrote their events and handed them to its own sockets only (a notice's
        connected-first write for a person connected to both): without this, the sockets here
        waited for the safety poll, one to two intervals.
        """
        persons = [p for p in person_ids if p in self._by_person]
        if not persons:
            return
        heads = await self._events.heads(persons)
        for pid, head in heads.items():
            for c in list(self._by_person.get(pid, ())):
                c.nudge(head)

    async def enforce_sessions(self) -> None:
        """Close sockets whose session was revoked, even if the announcement was lost."""
        sids = {c.session_id for conns in self._by_person.values() for c in conns if c.session_id}
        for sid in await self._sessions.inactive(sids):
            self.close_session(sid)

    def start_safety_poll(self, interval: float) -> None:
        self._poll_task = asyncio.create_task(self._poll(interval), name="safety-poll")

    async def _poll(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.backfill(settled=True)
                await self.enforce_sessions()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("safety poll failed: %r", exc)

    async def stop(self) -> None:
        if self._slots is not None:
            with contextlib.suppress(Exception):
                await self._slots.close()
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task


def _released(release: asyncio.Future[list[str]]) -> None:
    if not release.cancelled() and (exc := release.exception()) is not None:
        # The stale member is the oldest: the next claim pops it.
        logger.warning("socket slot not released: %r", exc)
