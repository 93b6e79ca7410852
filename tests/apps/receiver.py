"""A real local HTTP webhook receiver (uvicorn + Starlette) whose behaviour each test sets per path.

It verifies every request with the ``standardwebhooks`` package against the
secrets it was given, records what it got, and answers as told: a status, a
hang, a redirect, a huge body, or failing the first N requests.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import free_port

__all__ = ["Behaviour", "Got", "Receiver", "receiver"]


@dataclass
class Behaviour:
    status: int = 200
    fail_first: int = 0  # answer 500 to this many requests first
    hang: float = 0.0  # seconds before answering
    redirect: bool = False
    huge: bool = False


@dataclass
class Got:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    answered: int
    at: float = field(default_factory=time.monotonic)  # when it arrived (retry schedules are timed by it)

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    base: str
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    secrets: dict[str, list[str]] = field(default_factory=dict)
    got: list[Got] = field(default_factory=list)

    def on(self, path: str) -> list[Got]:
        return [g for g in self.got if g.path == path]

    def delivered(self, path: str) -> list[Got]:
        return [g for g in self.got if g.path == path and 200 <= g.answered < 300 and g.verified]


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    rec = Receiver(f"http://127.0.0.1:{port}")

    async def hook(request: Request) -> Response:
        path = request.url.path
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = False
        for secret in rec.secrets.get(path, []):
            try:
                Webhook(secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                pass
        b = rec.behaviours.get(path, Behaviour())
        status = b.status
        if b.fail_first > 0:
            b.fail_first -= 1
            status = 500
        got = Got(path, headers, body, verified, 0 if b.hang else (status if not b.redirect else 307))
        rec.got.append(got)
        if b.hang:
            await asyncio.sleep(b.hang)  # a receiver that hangs: the sender's timeout is under test
            if await request.is_disconnected():
                return Response(status_code=499)  # nobody is listening any more: not an answer
            got.answered = status
        if b.redirect:
            return Response(status_code=307, headers={"location": "http://169.254.169.254/"})
        if b.huge:
            return Response(b"x" * (5 * 1024 * 1024), status_code=status)
        return Response(b'{"ok": true}', status_code=status, media_type="application/json")

    app = Starlette(routes=[Route("/{path:path}", hook, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield rec
    finally:
        server.should_exit = True
        await task
