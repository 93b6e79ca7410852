"""The frame handlers without a socket: a protocol, a peer and the real services (both backends).

``zzd/gateway/handlers.py`` answers the frames the sans-I/O protocol parsed;
the connection only moves bytes. Here a plain object stands in for the
connection, so what a hello and a send do is checked with no WebSocket.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.client import new_people
from tests.conftest import FAST_PASSWORDS, make_settings
from zzd.gateway.closecodes import Close
from zzd.gateway.handlers import handle
from zzd.gateway.protocol import GatewayProtocol
from zzd.services import Services


@dataclass
class Peer:
    """What a ``Connection`` is to the handlers, minus the socket."""

    protocol: GatewayProtocol
    person_id: int = 0
    session_id: str = ""
    handshake_token: str | None = None
    started: list[tuple[int, int]] = field(default_factory=list)
    #: What the handler asked of the hub, in order.
    calls: list[str] = field(default_factory=list)

    def listen(self, person_id: int, session_id: str) -> None:
        self.person_id, self.session_id = person_id, session_id
        self.calls.append("listen")

    def claim(self) -> None:
        self.calls.append("claim")

    def unlisten(self) -> None:
        self.person_id, self.session_id = 0, ""
        self.calls.append("unlisten")

    def authenticated(self, ref: str, data: dict[str, Any], *, expires_at: float, start: int, last_seq: int) -> None:
        self.protocol.authenticated(ref, data, expires_at=expires_at)
        self.started.append((start, last_seq))


@pytest.fixture
async def services(db_url: str) -> AsyncIterator[Services]:
    s = Services.build(make_settings(db_url), passwords=FAST_PASSWORDS)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


async def _frames(s: Services, peer: Peer, frame: dict[str, Any]) -> list[dict[str, Any]]:
    for req in peer.protocol.receive_text(json.dumps(frame)):
        await handle(s, peer, req)
    return [json.loads(f) for f in peer.protocol.data_to_send()]


async def _token(s: Services, person_id: int) -> str:
    issued = await s.sessions.open(person_id)
    return s.tokens.issue(person_id, issued.session_id)


async def test_hello_and_a_direct_send_are_answered_without_a_socket(services: Services) -> None:
    s = services
    (alice, _), (bob, _) = await new_people(s, 2)
    peer = Peer(GatewayProtocol(now=s.clock.monotonic(), auth_timeout=10.0))
    [ok] = await _frames(s, peer, {"type": "hello", "id": "h", "v": 1, "token": await _token(s, alice)})
    assert ok["type"] == "ok" and ok["ref"] == "h" and ok["data"]["person_id"] == alice
    assert peer.person_id == alice and peer.started == [(0, 0)]

    [sent] = await _frames(s, peer, {"type": "send", "id": "s", "to": bob, "client_msg_id": "c1", "body": "你好"})
    assert sent["type"] == "ok" and sent["data"]["duplicate"] is False and sent["data"]["seq"] == 1
    page = await s.events.read(bob, epoch=None, since=0)
    assert [(k, json.loads(p)["body"]) for _, k, p in page.events] == [("message.new", "你好")]

    [bad] = await _frames(s, peer, {"type": "send", "id": "x", "to": bob, "client_msg_id": "c2", "body": ""})
    assert bad["type"] == "error" and bad["ref"] == "x" and bad["code"] == "invalid_text"
    assert peer.protocol.close_with is None  # a bad request is answered, the socket stays


async def test_a_bad_token_fails_the_hello_and_closes(services: Services) -> None:
    s = services
    peer = Peer(GatewayProtocol(now=s.clock.monotonic(), auth_timeout=10.0))
    [err] = await _frames(s, peer, {"type": "hello", "id": "h", "v": 1, "token": "not-a-token"})
    assert err["type"] == "error" and err["ref"] == "h"
    assert peer.protocol.close_with is not None and peer.protocol.close_with[0] == Close.UNAUTHORIZED
    assert peer.person_id == 0 and peer.started == []
