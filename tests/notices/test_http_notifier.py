"""HttpNotifier against a real local HTTP server: retries until 200, signs the exact body."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from messaging.notices import Escalation, EscalationFailed
from zzd.notifier_http import HttpNotifier

SECRET = b"0123456789abcdef-secret"


@dataclass
class Gateway:
    """A tiny HTTP/1.1 server: answers ``statuses`` in turn (then 200) and records each request."""

    statuses: list[int]
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append((headers, body))
                status = self.statuses.pop(0) if self.statuses else 200
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = Gateway([503, 502, 429])
    server = await asyncio.start_server(gw.handle, "127.0.0.1", 0)
    gw.port = server.sockets[0].getsockname()[1]
    try:
        yield gw
    finally:
        server.close()
        await server.wait_closed()


ESC = Escalation(7, 1, "紧急通知", "urgent", True, ((11, (101, 102)), (12, (103,))), 5)


async def test_retries_until_200_and_signs(gateway: Gateway) -> None:
    n = HttpNotifier(f"http://127.0.0.1:{gateway.port}/sms", SECRET, attempts=5, backoff=0.01, max_backoff=0.05)
    try:
        await n.escalate(ESC)
    finally:
        await n.close()
    assert len(gateway.requests) == 4 and n.requests == 4
    bodies = {b for _, b in gateway.requests}
    assert len(bodies) == 1  # every retry carries the same bytes
    headers, body = gateway.requests[-1]
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-zzd-signature"], expected)
    assert headers["idempotency-key"] == "notice-7-step-1"
    data = json.loads(body)
    assert data["recipients"] == [
        {"person_id": 11, "position_ids": [101, 102]},
        {"person_id": 12, "position_ids": [103]},
    ]


async def test_gives_up_after_attempts_and_refusal_is_permanent(gateway: Gateway) -> None:
    gateway.statuses[:] = [500] * 10
    n = HttpNotifier(f"http://127.0.0.1:{gateway.port}/sms", SECRET, attempts=3, backoff=0.01, max_backoff=0.02)
    try:
        with pytest.raises(EscalationFailed):
            await n.escalate(ESC)
        assert len(gateway.requests) == 3
        gateway.statuses[:] = [403]
        with pytest.raises(EscalationFailed):
            await n.escalate(ESC)
        assert len(gateway.requests) == 4  # no retry of a refusal
    finally:
        await n.close()


async def test_connection_refused_is_retried_then_fails() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    n = HttpNotifier(f"http://127.0.0.1:{port}/sms", SECRET, attempts=2, backoff=0.01)
    try:
        with pytest.raises(EscalationFailed):
            await n.escalate(ESC)
        assert n.requests == 2
    finally:
        await n.close()
