"""``/api/v1/bot/stream``: an app's event stream over WebSocket (docs/webhooks.md, "Stream").

Why a WebSocket the app opens: inside a government intranet most apps cannot
expose an HTTP endpoint, but can open an outbound connection (DingTalk's
"Stream mode"). The frames follow ``/ws``'s conventions (docs/protocol.md):
JSON text frames, a ``hello`` with the token first, ``ok``/``error`` replies
echoing ``ref``, the same close codes. The frames are described once, in
``zzd.gateway.stream_frames``, from which ``/asyncapi.json`` (channel
``appStream``) is written.

Each connection sends at most ``WINDOW`` unacknowledged events; the app
acknowledges by ``delivery_id``; what it never acknowledges is sent again
after the lease (or at once to its next connection). Twice a second the
connection re-checks its app and secret, and an ``app_changed`` control
message re-checks at once, so a revoked secret or a disabled app closes the
stream (4503) within a second on every process — even when the change was
written by something that announced nothing (the re-check alone takes at most
half a second and a read).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from apps.delivery import GATHER
from apps.model import AppPrincipal
from kernel.errors import ZzdError
from kernel.waiting import wait_event
from zzd.gateway.closecodes import Close
from zzd.gateway.frames import echoable_id
from zzd.gateway.jsonsafe import strict_loads
from zzd.gateway.stream_frames import (
    StreamAckData,
    StreamAckOk,
    StreamHelloData,
    StreamHelloOk,
    StreamPingData,
    StreamPingOk,
)

if TYPE_CHECKING:
    from zzd.services import Services

logger = logging.getLogger(__name__)

__all__ = ["StreamHub", "app_stream_endpoint"]

#: Unacknowledged events in flight per connection.
WINDOW = 100
#: Seconds between re-checks of the app's credentials (also woken by ``app_changed``).
RECHECK = 0.5


class StreamHub:
    """This process's stream connections by app, woken by new deliveries and credential changes."""

    def __init__(self) -> None:
        self._by_app: dict[int, set[_StreamConn]] = {}

    def add(self, c: _StreamConn) -> None:
        self._by_app.setdefault(c.app_id, set()).add(c)

    def remove(self, c: _StreamConn) -> None:
        conns = self._by_app.get(c.app_id)
        if conns is not None:
            conns.discard(c)
            if not conns:
                del self._by_app[c.app_id]

    def kick(self) -> None:
        for conns in self._by_app.values():
            for c in conns:
                c.wake.set()

    def on_control(self, data: bytes) -> None:
        try:
            msg = json.loads(data)
        except ValueError:
            return
        if isinstance(msg, dict) and msg.get("t") == "app_changed":
            for c in self._by_app.get(int(msg.get("app_id", 0)), set()):
                c.recheck.set()

    def close_all(self) -> None:
        for conns in list(self._by_app.values()):
            for c in list(conns):
                c.stop(Close.GOING_AWAY, "server shutting down")


class _StreamConn:
    def __init__(self, ws: WebSocket, s: Services, p: AppPrincipal, expires_at: float) -> None:
        self.ws, self.s, self.p = ws, s, p
        self.app_id = p.app_id
        self.expires_at = expires_at
        self.holder = f"{s.settings.node_id}:stream:{secrets.token_hex(6)}"
        self.wake = asyncio.Event()
        self.recheck = asyncio.Event()
        #: Sent, unacknowledged deliveries and when their lease runs out (monotonic seconds).
        self.inflight: dict[int, float] = {}
        self.closing: tuple[int, str] | None = None
        #: The socket is gone: the pump and the guard stop even if their cancellation was lost.
        self.ended = False
        self._tasks: list[asyncio.Task[None]] = []
        self._send_lock = asyncio.Lock()

    def stop(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = (code, reason)
        for t in self._tasks:
            t.cancel()

    async def serve(self) -> None:
        self._tasks = [asyncio.create_task(self._pump()), asyncio.create_task(self._guard())]
        try:
            await self._read()
        finally:
            self.ended = True
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _read(self) -> None:
        while self.closing is None:
            try:
                message = await self.ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:  # a binary frame: closed 1003, as on /ws (docs/protocol.md, close codes)
                await self._close(Close.UNSUPPORTED_DATA, "binary frames are not supported")
                return
            try:
                frame = strict_loads(raw)
            except ZzdError as exc:
                await self._send({"type": "error", "ref": None, "code": str(exc.code), "message": exc.message})
                continue
            await self._on_frame(frame)

    async def _on_frame(self, frame: Any) -> None:
        ref = echoable_id(frame.get("id")) if isinstance(frame, dict) else None
        if not ref or not isinstance(frame, dict):
            msg = "every frame is an object with type and id (1-64 characters, no control characters)"
            await self._error(None, "invalid_frame", msg)
            return
        kind = frame.get("type")
        if kind == "ping" and set(frame) <= {"type", "id"}:
            await self._send(StreamPingOk(type="ok", ref=ref, data=StreamPingData(pong=True)).model_dump())
        elif kind == "ack" and set(frame) <= {"type", "id", "delivery_ids"}:
            raw = frame.get("delivery_ids")
            ids: list[int] = raw if isinstance(raw, list) else []
            if not 0 < len(ids) <= 1000 or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2**53 for i in ids
            ):
                await self._error(ref, "invalid_frame", "delivery_ids must be 1..1000 positive integers")
                return
            acked = await self.s.stream.ack(self.app_id, ids)
            for i in ids:
                self.inflight.pop(i, None)
            self.wake.set()
            await self._send(StreamAckOk(type="ok", ref=ref, data=StreamAckData(acked=acked)).model_dump())
        elif kind in ("ping", "ack"):
            await self._error(ref, "invalid_frame", f"unknown fields in {kind}")
        elif kind == "hello":  # as on /ws: one hello per connection
            await self._error(ref, "conflict", "already authenticated")
        else:
            await self._error(ref, "unknown_type", "this stream understands ping and ack")

    async def _error(self, ref: str | None, code: str, message: str) -> None:
        await self._send({"type": "error", "ref": ref, "code": code, "message": message})

    async def _send(self, frame: dict[str, Any]) -> None:
        async with self._send_lock:  # the pump and the reader both send; one frame at a time
            async with asyncio.timeout(30):  # not wait_for: it can swallow a cancellation (kernel.waiting)
                await self.ws.send_text(json.dumps(frame, ensure_ascii=False))

    async def _pump(self) -> None:
        """Send what is due, up to the window; wake on new deliveries, acks, a lapsing lease, or the poll.

        A sent event whose lease ran out unacknowledged leaves the window: it is
        due again (sent again here or to another connection of the app, one
        more attempt), so a client that never acknowledges still has every
        event attempted until it is dead-lettered.
        """
        poll = self.s.settings.delivery_poll_interval
        lease = self.s.settings.delivery_lease
        while not self.ended:
            now = time.monotonic()
            for i in [i for i, until in self.inflight.items() if until <= now]:
                del self.inflight[i]
            if len(self.inflight) < WINDOW:
                frames = await self.s.stream.claim(self.app_id, self.holder, WINDOW - len(self.inflight))
                for f in frames:
                    self.inflight[int(f["delivery_id"])] = time.monotonic() + lease
                    await self._send(f)
            wait = min([poll, *(until - time.monotonic() for until in self.inflight.values())])
            await wait_event(self.wake, max(0.01, wait))
            await asyncio.sleep(GATHER)  # acknowledgements arriving one by one make one claim, not one each
            self.wake.clear()

    async def _guard(self) -> None:
        """Close 4503 once the app's secret is revoked or rotated out or the app disabled; 4401 at expiry."""
        while not self.ended:
            await wait_event(self.recheck, RECHECK)
            self.recheck.clear()
            try:
                await self.s.apps.principal(self.app_id, self.p.secret_id)
            except ZzdError:
                await self._close(Close.FORBIDDEN, "the app's credentials were revoked or the app disabled")
                return
            # the token is good until its expiry plus the leeway, as on REST and /ws (docs/protocol.md 4401)
            if self.expires_at + self.s.settings.jwt_leeway <= self.s.clock.now().timestamp():
                await self._close(Close.UNAUTHORIZED, "token expired: get a new one and reconnect")
                return

    async def _close(self, code: int, reason: str) -> None:
        self.closing = (code, reason)
        try:
            await self.ws.close(code=code, reason=reason)
        except RuntimeError:
            pass


async def _hello(ws: WebSocket, s: Services) -> tuple[AppPrincipal, float] | None:
    """Read and check the first frame; on failure send an error frame and close (4400/4401/4408)."""
    try:
        message = await asyncio.wait_for(ws.receive(), s.settings.ws_auth_timeout)
    except TimeoutError:
        await ws.close(code=Close.AUTH_TIMEOUT, reason="no hello in time")
        return None
    except (WebSocketDisconnect, RuntimeError):
        return None
    if message["type"] == "websocket.disconnect":
        return None
    raw = message.get("text")
    if raw is None:
        await ws.close(code=Close.UNSUPPORTED_DATA, reason="binary frames are not supported")
        return None
    try:
        frame = strict_loads(raw)
    except ZzdError:
        frame = None
    # The token is part of the hello's shape: this endpoint reads no ``Authorization`` header on the
    # upgrade (unlike /ws), so a hello without one is a bad hello, not a bad token (docs/webhooks.md).
    ok_shape = (
        isinstance(frame, dict)
        and frame.get("type") == "hello"
        and set(frame) == {"type", "id", "v", "token"}
        and isinstance(frame.get("token"), str)
    )
    got = echoable_id(frame.get("id")) if isinstance(frame, dict) else None
    if not ok_shape or not isinstance(frame, dict) or frame.get("v") != 1 or not got:
        msg = "the first frame must be {type: hello, id, v: 1, token}"
        ref = got or None  # null only when unreadable (control characters included)
        await ws.send_text(json.dumps({"type": "error", "ref": ref, "code": "invalid_frame", "message": msg}))
        await ws.close(code=Close.BAD_HELLO, reason="bad hello")
        return None
    try:
        claims = s.tokens.verify_app(frame.get("token"))
        principal = await s.apps.principal(claims.app_id, claims.secret_id)
    except ZzdError as exc:
        await ws.send_text(json.dumps({"type": "error", "ref": frame["id"], "code": str(exc.code),
                                       "message": exc.message}))  # fmt: skip
        await ws.close(code=Close.UNAUTHORIZED, reason=exc.message[:100])
        return None
    data = StreamHelloData(protocol=1, app_id=principal.app_id, name=principal.app.name, window=WINDOW)
    reply = StreamHelloOk(type="ok", ref=frame["id"], data=data)  # the model the AsyncAPI document is written from
    await ws.send_text(json.dumps(reply.model_dump(), ensure_ascii=False))
    return principal, claims.expires_at


async def app_stream_endpoint(ws: WebSocket) -> None:
    """Who may connect: an app with a valid app token in ``hello`` (browsers' Origins are refused)."""
    s: Services = ws.app.state.services
    if ws.headers.get("origin") is not None:
        await ws.close(code=Close.POLICY)  # apps are not browsers: HTTP 403 before the upgrade
        return
    await ws.accept()
    got = await _hello(ws, s)
    if got is None:
        return
    conn = _StreamConn(ws, s, *got)
    s.stream_hub.add(conn)
    try:
        await conn.serve()
    finally:
        s.stream_hub.remove(conn)
        try:
            await s.stream.release(conn.holder)
        except Exception:
            logger.exception("stream leases of %s not released; they lapse after the lease", conn.holder)
        if conn.closing is not None and conn.closing[0] == Close.GOING_AWAY:
            try:
                await ws.close(code=Close.GOING_AWAY, reason=conn.closing[1])
            except RuntimeError:
                pass
