"""Moves data between one Starlette WebSocket and its ``GatewayProtocol``: the socket adapter.

One reader task (frames in → protocol → ``handlers.handle``, one request at a
time so a client's sends keep their order), one writer task draining a bounded
queue with a send timeout (a slow reader is closed with 1013 instead of
growing memory, docs/style.md lesson 6), and a catch-up task when the event
stream has a gap. What each frame does is ``handlers.py``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from messaging.notices.delivery import notice_in_frame
from messaging.wakeup import event_frame
from zzd.gateway.closecodes import Close
from zzd.gateway.delivery import DeliveryCursor
from zzd.gateway.handlers import handle
from zzd.gateway.protocol import GatewayProtocol
from zzd.gateway.wsproto import SEND_MANY

if TYPE_CHECKING:
    from zzd.services import Services

logger = logging.getLogger(__name__)

__all__ = ["Connection"]

#: How long an event past a gap waits for the missing one before the database is read (s).
REORDER_WAIT = 0.1


class _Continue:
    """Awaits the rest of a coroutine that was stepped by hand and is waiting on ``waiting``.

    What a task does with a coroutine (``Task.__step``), for one that started
    outside it: hand each awaited future up to the awaiting task, resume the
    coroutine with its outcome, pass a cancellation into it.
    """

    __slots__ = ("_coro", "_waiting")

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting: Any) -> None:
        self._coro = coro
        self._waiting = waiting

    def __await__(self) -> Generator[Any, None, Any]:
        coro, waiting = self._coro, self._waiting
        while True:
            try:
                yield waiting
            except BaseException as exc:  # a cancel (or anything thrown into the awaiting task)
                try:
                    waiting = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waiting = coro.send(None)
                except StopIteration as done:
                    return done.value


class Connection:
    __slots__ = (
        "_busy",
        "_catch_up_task",
        "_close_with",
        "_counted",
        "_drain_with",
        "_gap_timer",
        "_held",
        "_many",
        "_queue",
        "_queue_max",
        "_space",
        "_task",
        "_timer",
        "_writer",
        "cursor",
        "handshake_token",
        "person_id",
        "protocol",
        "s",
        "session_id",
        "socket_id",
        "ws",
    )

    def __init__(self, ws: WebSocket, services: Services, handshake_token: str | None = None) -> None:
        self.ws = ws
        self.s = services
        #: The upgrade's ``Authorization: Bearer`` token, checked before the upgrade (``zzd.app``).
        self.handshake_token = handshake_token
        cfg = services.settings
        self.protocol = GatewayProtocol(
            now=services.clock.monotonic(), auth_timeout=cfg.ws_auth_timeout, leeway=cfg.jwt_leeway
        )
        self.person_id = 0
        self.session_id = ""
        #: Unique across processes (``node_id:n``), set by the hub on register.
        self.socket_id = ""
        self.cursor = DeliveryCursor()
        # Bounded: fan-out never waits on this socket; overflow closes it (1013).
        # Created with the first frame: an empty deque still holds a ~600-byte block.
        self._queue: deque[str] | None = None
        self._queue_max = cfg.ws_queue_max
        # Created only while a catch-up waits for room in the queue; the writer
        # sets it as it takes frames (most sockets never need one).
        self._space: asyncio.Event | None = None
        self._close_with: tuple[int, str] | None = None
        #: The task running ``run()``; ``close()`` cancels it to interrupt a pending receive.
        self._task: asyncio.Task[Any] | None = None
        #: Started on demand and exits when the queue is empty: idle sockets cost no task.
        self._writer: asyncio.Task[None] | None = None
        self._catch_up_task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._gap_timer: asyncio.TimerHandle | None = None
        #: True once counted in the connections gauge (after a good hello).
        self._counted = False
        #: True while a received message's requests run (a drain lets them finish).
        self._busy = False
        #: Set by :meth:`drain` on a busy socket: close with this once the request is answered.
        self._drain_with: tuple[int, str] | None = None
        #: The server writes several frames in one socket write (``zzd.gateway.wsproto``).
        self._many = SEND_MANY in ws.scope.get("extensions", {})
        #: Frames held while a request runs, written with its reply (see :meth:`_hold`).
        self._held: list[str] | None = None

    @property
    def hello_answered(self) -> bool:
        """The hello was accepted (the socket stopped counting as a pending hello)."""
        return self._counted

    # --- lifecycle ---------------------------------------------------------------

    async def run(self) -> None:
        """Serve the socket until it closes; reads happen here (no extra task per socket)."""
        self._task = asyncio.current_task()
        await self.ws.accept()
        self._arm_timer()
        try:
            while self._close_with is None:
                msg = await self.ws.receive()
                self._busy = True
                try:
                    if not await self._on_message(msg):
                        return
                finally:
                    self._busy = False
                self._release()
                if self._drain_with is not None:
                    self.close(*self._drain_with)
            # Closing on our own decision: let queued frames (e.g. the error) go first.
            if self._writer is not None and not self._writer.done():
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1):
                        await asyncio.shield(self._writer)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
        except asyncio.CancelledError:
            if self._close_with is None:
                raise  # cancelled by the server (shutdown), not by close()
        finally:
            await self._teardown()

    async def _on_message(self, msg: Any) -> bool:
        """Handle one received message; False when the peer has gone.

        A method of its own so the message, its frames and the hello's token
        are garbage as soon as it returns, not kept alive by ``run()``'s frame
        while an idle socket waits for its next message.
        """
        if msg["type"] == "websocket.disconnect":
            return False
        if msg.get("text") is not None:
            requests = self.protocol.receive_text(msg["text"])
        else:
            self.protocol.receive_bytes()
            requests = []
        self._flush_protocol()
        for req in requests:
            await handle(self.s, self, req)
            self._flush_protocol()
        return True

    async def _teardown(self) -> None:
        if self._close_with is not None:
            self._release()  # the answer to the last request, then the close frame
        self._held = None
        tasks = [t for t in (self._writer, self._catch_up_task) if t is not None and not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            # Bounded: a task that ignores its cancel must not keep the socket open.
            _, stuck = await asyncio.wait(tasks, timeout=2)
            if stuck:
                logger.error("connection tasks did not stop: %s", [t.get_name() for t in stuck])
        for timer in (self._timer, self._gap_timer):
            if timer is not None:
                timer.cancel()
        if self.person_id:
            self.s.hub.unregister(self)
            self.s.hub.release_slot(self)
        if self._counted:
            self.s.metrics.connections.dec()
        if self._close_with is not None:
            code, reason = self._close_with
            self.s.metrics.closes.labels(str(code)).inc()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.ws.close(code, reason)

    def close(self, code: int, reason: str) -> None:
        """Ask the connection to close (safe to call from anywhere, any number of times)."""
        if self._close_with is not None:
            return
        self._close_with = (int(code), reason)
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    def drain(self, code: int, reason: str) -> None:
        """Close for a shutdown without cutting a request short.

        An idle socket closes now; one whose request is running (a send
        waiting for its commit) closes right after the reply is queued, and
        the reply goes out before the close frame. Either way the client
        never sees an acknowledged send vanish: it has the ack, or no ack
        and retries with the same ``client_msg_id`` elsewhere.
        """
        if self._busy:
            self._drain_with = (int(code), reason)
        else:
            self.close(code, reason)

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        deadline = self.protocol.next_deadline()
        if deadline is None:
            return
        delay = max(0.0, deadline - self.s.clock.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay + 0.01, self._on_timer)

    def _on_timer(self) -> None:
        self.protocol.check_deadlines(self.s.clock.monotonic())
        self._flush_protocol()
        if self._close_with is None:
            self._arm_timer()

    # --- output --------------------------------------------------------------------

    def _enqueue(self, frame: str) -> None:
        if self._close_with is not None:
            return
        held = self._held
        if held is not None:
            held.append(frame)
            if len(held) >= self._queue_max:
                self._release()
            return
        if (self._writer is None or self._writer.done()) and not self._queue:
            if self._busy and self._many:
                self._hold(frame)
            else:
                self._write_now([frame])
            return
        if self._queue is None:
            self._queue = deque()
        elif len(self._queue) >= self._queue_max:
            self.close(Close.TRY_AGAIN_LATER, "slow consumer: reconnect and resume")
            return
        self._queue.append(frame)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="ws-writer")

    def _hold(self, frame: str) -> None:
        """Hold ``frame`` while this socket's request runs: its reply goes out in the same write.

        Why: a chat send's echo (the sender's own event, offered right after
        the commit) and its acknowledgement (one loop turn later) go to this
        socket one after the other; written together they cost one system
        call instead of two (``zzd.gateway.wsproto``). The order of frames is
        unchanged. A hold lasts until the request ends (``run`` releases it)
        or two loop turns, whichever comes first, so an event offered during
        a slow request does not wait for it.
        """
        self._held = [frame]
        asyncio.get_running_loop().call_soon(self._release_soon)

    def _release_soon(self) -> None:
        # One more turn: the request's task wakes in the turn after the commit that offered the echo.
        asyncio.get_running_loop().call_soon(self._release)

    def _release(self) -> None:
        held, self._held = self._held, None
        if not held:
            return
        if (self._writer is None or self._writer.done()) and not self._queue:
            self._write_now(held)
        else:  # pragma: no cover - a hold opens only while nothing is queued
            for frame in held:
                self._enqueue(frame)

    def _write_now(self, frames: list[str]) -> None:
        """Write ``frames`` at once; only a send that must wait for the socket gets the writer task.

        Why: nearly every send completes without waiting (the kernel takes the
        bytes), yet each burst paid a task and a timer, about a quarter of a
        chat message's server time (py-spy, issue 15). The send coroutine is
        stepped here once; if it has to wait (the peer reads slowly), the
        writer task finishes it under the send timeout and then drains
        whatever was queued meanwhile, exactly as before. Several frames go
        as one message to a server that takes them (:data:`SEND_MANY`; a hold
        is only opened on such a server).
        """
        if len(frames) == 1:
            coro = self.ws.send_text(frames[0])
        else:
            coro = self.ws.send({"type": "websocket.send", "text": frames[0], SEND_MANY: frames})
        try:
            waiting = coro.send(None)
        except StopIteration:
            for frame in frames:
                self._written(frame)
            return
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.close(Close.NORMAL, "gone")
            return
        except Exception:
            logger.exception("writing to a socket failed")
            self.close(Close.NORMAL, "gone")
            return
        self._writer = asyncio.create_task(self._write_loop(_Continue(coro, waiting), frames), name="ws-writer")

    def _written(self, frame: str) -> None:
        if (notice_id := notice_in_frame(frame)) is not None and self.person_id:
            self.s.delivered.written(self.person_id, notice_id)
            self.s.metrics.notice_frames.inc()

    def _flush_protocol(self) -> None:
        for frame in self.protocol.data_to_send():
            self._enqueue(frame)
        if self.protocol.close_with is not None:
            self.close(*self.protocol.close_with)

    async def _write_loop(self, pending: _Continue | None = None, pending_frames: list[str] | None = None) -> None:
        """Finish ``pending`` (a send that had to wait), drain the queue, then exit; one timeout per burst.

        ``asyncio.timeout`` rather than ``wait_for``: on Python 3.11 the latter
        can swallow the cancel sent when the connection closes.
        """
        timeout = self.s.settings.ws_send_timeout
        if self._queue is None:
            self._queue = deque()
        queue = self._queue
        try:
            if pending is not None:
                async with asyncio.timeout(timeout):
                    await pending
                for frame in pending_frames or ():
                    self._written(frame)
            while queue:
                async with asyncio.timeout(timeout):
                    while queue:
                        frame = queue.popleft()
                        if self._space is not None:
                            self._space.set()
                        await self.ws.send_text(frame)
                        self._written(frame)
        except TimeoutError:
            self.close(Close.TRY_AGAIN_LATER, "send timed out: reconnect and resume")
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.close(Close.NORMAL, "gone")

    # --- authentication (called by ``handlers.hello``) ---------------------------------

    def listen(self, person_id: int, session_id: str) -> None:
        """Take this person's live events from now on, before the session is checked (``ConnectionHub.listen``)."""
        self.person_id = person_id
        self.session_id = session_id
        self.s.hub.listen(self)

    def claim(self) -> None:
        """The session is good: take a place under the person's socket cap (``ConnectionHub.claim``)."""
        self.s.hub.claim(self)

    def unlisten(self) -> None:
        """The hello was refused: take no more events (the socket holds no place under the cap)."""
        self.s.hub.unregister(self)
        self.person_id = 0
        self.session_id = ""

    def authenticated(self, ref: str, data: dict[str, Any], *, expires_at: float, start: int, last_seq: int) -> None:
        """Answer the hello, then deliver from ``start``: catching up first when the stream is ahead."""
        self.protocol.authenticated(ref, data, expires_at=expires_at)
        self._flush_protocol()
        self._arm_timer()
        if self.cursor.start(start) or last_seq > start:
            self.cursor.catching_up = True
            self._start_catch_up()
        if not self._counted:
            self._counted = True
            self.s.metrics.connections.inc()
            self.s.hub.hello_answered()

    # --- event delivery ----------------------------------------------------------------

    def offer(self, seq: int, frame: str) -> None:
        """A live event for this socket's person (called by the hub; never blocks)."""
        cur = self.cursor
        for f in cur.offer(seq, frame):
            self._enqueue(f)
        if cur.catching_up:
            self._start_catch_up()
        elif cur.has_gap and self._gap_timer is None:
            self._gap_timer = asyncio.get_running_loop().call_later(REORDER_WAIT, self._on_gap_timer)

    def _on_gap_timer(self) -> None:
        self._gap_timer = None
        if self.cursor.gap_timeout():
            self._start_catch_up()

    def nudge(self, head: int) -> None:
        if self.cursor.nudge(head):
            self._start_catch_up()

    def _start_catch_up(self) -> None:
        if self._catch_up_task is None or self._catch_up_task.done():
            self.s.metrics.catch_ups.inc()
            self._catch_up_task = asyncio.create_task(self._catch_up(), name="ws-catch-up")

    async def _catch_up(self) -> None:
        cur = self.cursor
        try:
            while self._close_with is None:
                assert cur.cursor is not None
                page = await self.s.hellos.page(self.person_id, cur.cursor)
                for seq, kind, payload in page.events:
                    # Pace with the socket rather than overflowing the queue.
                    while self._queue is not None and len(self._queue) >= self._queue_max:
                        self._space = self._space or asyncio.Event()
                        self._space.clear()
                        await self._space.wait()
                    if cur.take_stored(seq):
                        self._enqueue(event_frame(seq, kind, payload))
                if not cur.finish_page(page.limited):
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("catch-up for person %s failed: %r", self.person_id, exc)
            cur.abort()
