"""A real WebSocket test client speaking docs/protocol.md, and login helpers."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import secrets
from collections.abc import Callable
from typing import Any, Protocol

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from tests.conftest import FAST_PASSWORDS
from tests.waiting import scaled

#: Seconds a client waits on an idle machine; every wait is widened by ZZD_TEST_TIMEOUT_SCALE.
TIMEOUT = 10.0
PASSWORD = "pw-for-tests-1"


async def new_person(services: Any, name: str | None = None) -> tuple[int, str]:
    """Create a person with a password; returns (person_id, login)."""
    login = f"u{secrets.token_hex(5)}"
    p = await services.persons.create(name or login, login=login, password_hash=FAST_PASSWORDS.hash_sync(PASSWORD))
    return p.id, login


async def new_people(services: Any, n: int) -> list[tuple[int, str]]:
    """``n`` new people (``new_person`` each): most tests need a sender and a recipient."""
    return [await new_person(services) for _ in range(n)]


async def login(http_base: str, login_name: str, password: str = PASSWORD) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=scaled(TIMEOUT)) as c:  # httpx's own 5 s ran out on a loaded machine
        r = await c.post(
            f"{http_base}/api/v1/auth/token",
            json={"grant_type": "password", "login": login_name, "password": password},
        )
    r.raise_for_status()
    return r.json()  # type: ignore[no-any-return]


class Served(Protocol):
    """A running server as the tests reach it (an in-process ``RunningServer`` or a server process)."""

    http: str
    ws: str


async def connect_as(server: Served, login_name: str, **kw: Any) -> Client:
    """A client signed in as ``login_name`` (password ``PASSWORD``) and connected to ``server``."""
    return await Client.connect(server.ws, (await login(server.http, login_name))["access_token"], **kw)


class HelloRefused(AssertionError):
    """The server answered a hello with an error frame; ``retryable`` ones are retried by clients."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__(reply)
        self.reply = reply
        self.retryable = bool(reply.get("retryable"))


class Client:
    """Keeps replies by ``ref`` and events in arrival order; waits with timeouts, never sleeps."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.replies: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())
        self.closed: tuple[int, str] | None = None
        self.hello: dict[str, Any] = {}

    @classmethod
    async def connect(cls, url: str, token: str, *, resume: dict[str, Any] | None = None, **kw: Any) -> Client:
        kw.setdefault("open_timeout", scaled(TIMEOUT))
        ws = await websockets.connect(url, max_size=2**20, **kw)
        c = cls(ws)
        frame: dict[str, Any] = {"type": "hello", "v": 1, "token": token}
        if resume is not None:
            frame["resume"] = resume
        try:
            reply = await c.request(frame)
        except TimeoutError:
            await c.ws.close()  # a client that gives up on a hello drops that socket
            raise
        if reply["type"] != "ok":
            await c.ws.close()
            raise HelloRefused(reply)
        c.hello = reply["data"]
        return c

    @classmethod
    async def connect_retrying(
        cls, url: str, token: str, *, resume: dict[str, Any] | None = None, deadline: float = 60.0
    ) -> Client:
        """Connect as docs/protocol.md tells a client to: a refusal that says "retry" is retried.

        A retryable error frame (``unavailable`` while the server's pool is busy), a 503 at the
        handshake, a 1013 close and a hello without an answer in time are retried with jittered
        exponential back-off (base 0.1 s, cap 2 s) until ``deadline`` (scaled) seconds have passed;
        anything else fails at once.
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + scaled(deadline)
        attempt = 0
        while True:
            try:
                return await cls.connect(url, token, resume=resume)
            except HelloRefused as exc:
                if not exc.retryable or loop.time() > give_up:
                    raise
            except websockets.InvalidStatus as exc:
                if exc.response.status_code != 503 or loop.time() > give_up:
                    raise
            except websockets.ConnectionClosed as exc:
                if exc.rcvd is None or exc.rcvd.code != 1013 or loop.time() > give_up:
                    raise
            except TimeoutError:
                if loop.time() > give_up:
                    raise
            attempt += 1
            await asyncio.sleep(random.uniform(0, min(2.0, 0.1 * 2**attempt)))  # the client's back-off

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                async with self._changed:
                    if frame["type"] == "event":
                        self.events.append(frame)
                    else:
                        self.replies[str(frame.get("ref"))] = frame
                    self._changed.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            code = self.ws.close_code
            self.closed = (code, self.ws.close_reason or "") if code is not None else (1006, "")
            async with self._changed:
                self._changed.notify_all()

    async def request(self, frame: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
        ref = str(frame.get("id") or f"r{next(self._ids)}")
        frame = {**frame, "id": ref}
        await self.ws.send(json.dumps(frame, ensure_ascii=False))
        return await self.reply(ref, timeout)

    async def reply(self, ref: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: ref in self.replies or self.closed), scaled(timeout))
            if ref not in self.replies:
                raise ConnectionError(f"closed {self.closed} before reply to {ref}")
            return self.replies.pop(ref)

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def wait_events(self, n: int, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        async with self._changed:
            ready = self._changed.wait_for(lambda: len(self.events) >= n or self.closed)
            await asyncio.wait_for(ready, scaled(timeout))
        assert len(self.events) >= n, f"{len(self.events)} events < {n}; closed={self.closed}"
        return self.events

    def matching(self, match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """The events received so far that ``match`` accepts, in arrival order."""
        return [e for e in self.events if match(e)]

    async def wait_matching(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT
    ) -> list[dict[str, Any]]:
        """Wait until at least one event ``match`` accepts has arrived (others are kept, not counted)."""
        async with self._changed:
            ready = self._changed.wait_for(lambda: bool(self.matching(match)) or self.closed)
            await asyncio.wait_for(ready, scaled(timeout))
        got = self.matching(match)
        assert got, f"no matching event among {[e.get('kind') for e in self.events]}; closed={self.closed}"
        return got

    async def wait_closed(self, timeout: float = TIMEOUT) -> tuple[int, str]:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.closed is not None), scaled(timeout))
        assert self.closed is not None
        return self.closed

    async def send_message(self, to: int, body: str, client_msg_id: str | None = None) -> dict[str, Any]:
        return await self.request(
            {"type": "send", "to": to, "client_msg_id": client_msg_id or secrets.token_hex(8), "body": body}
        )

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        try:
            await self._reader
        except (asyncio.CancelledError, Exception):
            pass
