"""Limits that protect the server: slow consumers, connections per person, send rate, shutdown."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from datetime import timedelta

import pytest

from kernel.clock import FakeClock
from kernel.errors import Unauthorized
from tests.client import Client, connect_as, login, new_people, new_person
from tests.conftest import make_settings, serving, start_server
from tests.waiting import wait_until
from zzd.auth.tokens import TokenService


async def _stuck_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client that completes the handshake and then never reads again.

    The stream's tiny buffer limit makes asyncio stop reading the socket after
    a couple of KiB, so the kernel window closes: a zero-window consumer.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    status = await reader.readline()
    assert b" 101 " in status
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    return reader, writer


def _masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_zero_window_reader_is_dropped_and_recovers_everything_on_resume(db_url: str) -> None:
    settings = make_settings(db_url, ws_queue_max=16, ws_send_timeout=1.0, send_rate_per_minute=100_000)
    async with serving(settings) as rs:
        s = rs.services_obj  # type: ignore[attr-defined]
        (a_id, a_login), (b_id, b_login) = await new_people(s, 2)
        tok_b = (await login(rs.http, b_login))["access_token"]
        _, stuck = await _stuck_client(rs.port)
        stuck.write(_masked_text(f'{{"type":"hello","id":"h","v":1,"token":"{tok_b}"}}'.encode()))
        await wait_until(lambda: s.hub.count() == 1, what="stuck client registered")
        epoch = (await s.events.state(b_id)).epoch
        a = await connect_as(rs, a_login)
        body = "满" * 4000
        sent = []
        for i in range(400):
            sent.append((await a.send_message(b_id, body, client_msg_id=f"z{i}"))["data"]["message_id"])
            if s.hub.count() == 1:  # only A left: the stuck socket was dropped
                break
        await wait_until(lambda: s.hub.count() == 1, timeout=15, what="slow consumer dropped")
        assert s.metrics.closes.labels("1013")._value.get() >= 1
        stuck.transport.abort()
        # Nothing acknowledged is lost: resuming from 0 returns every message in order.
        b = await Client.connect(rs.ws, tok_b, resume={"epoch": epoch, "since": 0})
        evs = await b.wait_events(len(sent), timeout=20)
        assert [e["data"]["id"] for e in evs] == sent
        await a.close()
        await b.close()


async def test_sixth_connection_replaces_the_oldest(db_url: str) -> None:
    async with serving(make_settings(db_url, max_connections_per_person=5)) as rs:
        s = rs.services_obj  # type: ignore[attr-defined]
        _, lg = await new_person(s)
        tok = (await login(rs.http, lg))["access_token"]
        clients = [await Client.connect(rs.ws, tok) for _ in range(6)]
        code, _ = await clients[0].wait_closed()
        assert code == 4509
        assert all(c.closed is None for c in clients[1:])
        for c in clients[1:]:
            await c.close()


async def test_send_rate_limit_refuses_without_storing(db_url: str) -> None:
    async with serving(make_settings(db_url, send_rate_per_minute=5)) as rs:
        s = rs.services_obj  # type: ignore[attr-defined]
        (a_id, lg), (b_id, _) = await new_people(s, 2)
        a = await connect_as(rs, lg)
        replies = [await a.send_message(b_id, f"r{i}", client_msg_id=f"r{i}") for i in range(7)]
        assert [r["type"] for r in replies] == ["ok"] * 5 + ["error"] * 2
        assert replies[5]["code"] == "rate_limited" and replies[5]["retryable"] is True
        hist = await a.request({"type": "history", "with_person": b_id})
        assert len(hist["data"]["messages"]) == 5
        await a.close()


async def test_shutdown_closes_sockets_with_a_reconnect_code(db_url: str) -> None:
    rs, task = await start_server(make_settings(db_url))
    s = rs.services_obj  # type: ignore[attr-defined]
    _, lg = await new_person(s)
    c = await connect_as(rs, lg)
    rs.server.should_exit = True
    code, _ = await c.wait_closed(timeout=15)
    await task
    assert code in (1001, 1012)


def test_key_rotation_old_key_verifies_until_retired() -> None:
    clock = FakeClock()
    old = {"k1": b"o" * 40}
    rotated = {"k2": b"n" * 40, "k1": b"o" * 40}
    retired = {"k2": b"n" * 40}

    def svc(keys: dict[str, bytes]) -> TokenService:
        return TokenService(keys, issuer="zzd", audience="zzd-clients", ttl=timedelta(minutes=5), leeway=0, clock=clock)

    token = svc(old).issue(7, "sid")
    assert svc(rotated).verify(token).person_id == 7
    assert svc(rotated).verify(svc(rotated).issue(8, "sid")).person_id == 8  # new key signs
    with pytest.raises(Unauthorized):
        svc(retired).verify(token)


async def test_expired_token_closes_open_socket_with_4401(db_url: str) -> None:
    async with serving(make_settings(db_url, access_token_ttl=30, jwt_leeway=0)) as rs:
        s = rs.services_obj  # type: ignore[attr-defined]
        _, lg = await new_person(s)
        c = await connect_as(rs, lg)
        # Move the connection's deadline instead of waiting 30 s: the timer fires on the real loop.
        conn = next(iter(s.hub.connections()))
        conn.protocol._expires_at = s.clock.monotonic() - 1
        conn._arm_timer()
        code, _ = await c.wait_closed(timeout=5)
        assert code == 4401


async def test_hello_deadline_closes_with_4408(db_url: str) -> None:
    import websockets

    async with serving(make_settings(db_url, ws_auth_timeout=0.3)) as rs:
        async with websockets.connect(rs.ws) as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 4408
