"""A gateway in front of a test's ``zzd serve``, as a load balancer or API gateway stands in front
of a deployed one: the browser talks to the gateway, which passes every request and WebSocket
through to the server byte for byte, except where the test switches a fault on.

- ``plan``: what the gateway does with the next requests of the refresh grant
  (``POST /api/v1/auth/token`` with ``grant_type: refresh_token``), one entry each, in order:
  :class:`Answer` answers it itself (``429`` with ``Retry-After``, as a rate-limiting gateway
  does), :class:`Lose` resets the connection (lost on the network), :class:`Hold` keeps it until
  :meth:`Gateway.release` and then does its ``then``. With the plan empty they pass through.
- :meth:`Gateway.cut_sockets`: WebSocket connections are reset and new upgrades refused (the
  socket's path broken while HTTP still works) until :meth:`Gateway.mend_sockets`.
- ``refreshes``: each refresh request seen, when it came and was answered, and with what status.

The gateway runs its own event loop in a thread (the tests drive Playwright's sync API). Every
forwarded request goes on a connection of its own (``Connection: close``), so each token request
is seen by itself.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["Answer", "Gateway", "Hold", "Lose", "Refresh"]

T = TypeVar("T")


@dataclass(frozen=True)
class Answer:
    """The gateway answers the request itself, and closes the connection."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: object = None

    def raw(self) -> bytes:
        body = json.dumps(self.body).encode() if self.body is not None else b""
        head = [f"HTTP/1.1 {self.status} Gateway", "Content-Type: application/json", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join([*head, "Connection: close", "", ""])).encode() + body


@dataclass(frozen=True)
class Lose:
    """The connection is reset: for the browser, a request lost on the network."""


@dataclass(frozen=True)
class Hold:
    """Kept (no answer, nothing forwarded) until :meth:`Gateway.release`; then ``then`` (None: forwarded)."""

    then: Answer | Lose | None = None


Action = Answer | Lose | Hold


@dataclass
class Refresh:
    """A refresh request the gateway saw: monotonic arrival, answer (the first bytes back) and status."""

    arrived: float
    action: str
    answered: float | None = None
    status: int | None = None


class Gateway:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.port = 0
        self.plan: deque[Action] = deque()
        self.refreshes: list[Refresh] = []
        #: Set when a refresh request is being held (:class:`Hold`).
        self.held = threading.Event()
        self._mutex = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="gateway", daemon=True)
        self._server: asyncio.Server | None = None
        self._released = asyncio.Event()
        self._sockets_cut = False
        self._sockets: set[asyncio.StreamWriter] = set()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for w in list(self._sockets):
                w.transport.abort()

        self._call(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def release(self) -> None:
        """Let a held refresh go on (to its ``then``)."""
        self._loop.call_soon_threadsafe(self._released.set)

    def cut_sockets(self) -> None:
        async def cut() -> None:
            self._sockets_cut = True
            for w in list(self._sockets):
                w.transport.abort()

        self._call(cut())

    def mend_sockets(self) -> None:
        self._sockets_cut = False

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _next(self) -> Action | None:
        with self._mutex:
            return self.plan.popleft() if self.plan else None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[:-2]
            method, target, _ = lines[0].split(" ", 2)
            headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
            length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
            body = await reader.readexactly(length)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, OSError):
            writer.transport.abort()
            return
        upgrade = any(k.lower() == "upgrade" for k, _ in headers)
        seen: Refresh | None = None
        if upgrade and self._sockets_cut:
            writer.transport.abort()
            return
        if method == "POST" and target.split("?")[0] == "/api/v1/auth/token" and b'"refresh_token"' in body:
            action = self._next()
            seen = Refresh(time.monotonic(), type(action).__name__ if action else "pass")
            with self._mutex:
                self.refreshes.append(seen)
            if isinstance(action, Hold):
                self.held.set()
                await self._released.wait()
                self._released.clear()
                self.held.clear()
                action = action.then
            if isinstance(action, Lose):
                writer.transport.abort()
                return
            if isinstance(action, Answer):
                writer.write(action.raw())
                seen.answered, seen.status = time.monotonic(), action.status
                await writer.drain()
                writer.close()
                return
        if not upgrade:  # one request a connection: each is seen by itself
            headers = [(k, v) for k, v in headers if k.lower() not in ("connection", "keep-alive")]
            headers.append(("Connection", "close"))
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()  # the server is down: the browser sees the network fail
            return
        forwarded = "\r\n".join([lines[0], *(f"{k}: {v}" for k, v in headers), "", ""]).encode("latin-1")
        up_writer.write(forwarded + body)
        if upgrade:
            self._sockets.add(writer)
        await asyncio.gather(self._pipe(reader, up_writer, None), self._pipe(up_reader, writer, seen))
        self._sockets.discard(writer)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, seen: Refresh | None) -> None:
        try:
            while data := await src.read(65536):
                if seen is not None and seen.answered is None:
                    seen.answered, seen.status = time.monotonic(), int(data.split(b" ", 2)[1])
                dst.write(data)
                await dst.drain()
        except (OSError, ValueError, IndexError):
            pass
        finally:
            # Either side closing ends both; a reset (not an end of stream) is passed on as a reset.
            if src.at_eof():
                dst.close()
            else:
                dst.transport.abort()
