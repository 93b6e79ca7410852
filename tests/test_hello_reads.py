"""A hello's database side is one statement: the session check and the stream position read together.

``zzd/gateway/hello_checks.py`` reads whether the token's session is still
good and where the person's stream stands in one statement per batch of
waiting hellos (issue 15 item 2). For that the socket listens for its
person's live events *before* the read (decision 7: subscribe, then read),
while its session is not yet known good, and takes its place under the
per-person cap only after. What must hold, checked here:

- (the batched answer is ``SessionStore.is_active``'s for every rule, and a
  first connection's stream is created, a refused session creating none:
  ``tests/test_session_checks.py``);
- an event committed after the read, before the hello is answered, reaches
  the socket live (it would be lost until the safety poll if the socket
  listened only after the read);
- a session revoked while its hello is being checked closes the socket at
  once, like any live socket of that session;
- a hello still being checked neither counts under the cap nor is pushed out
  by it;
- on PostgreSQL a batch of hellos sends the one statement (two before).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import websockets

from kernel.clock import FakeClock
from kernel.db.database import Database
from kernel.sessions import SessionStore
from messaging.chat import SendRequest
from messaging.events import EventLog, StreamState
from tests.client import Client, new_people
from tests.conftest import FAST_PASSWORDS, make_settings, serving
from tests.pg_trips import count_trips
from tests.test_handlers_unit import Peer
from zzd.gateway import hello_checks
from zzd.gateway.closecodes import Close
from zzd.gateway.handlers import handle
from zzd.gateway.hub import ConnectionHub
from zzd.gateway.protocol import GatewayProtocol
from zzd.services import Services

#: Long enough that the safety poll can repair nothing within a test: what arrives, arrived live.
NO_POLL = 600.0


async def _token(s: Services, person_id: int) -> str:
    return s.tokens.issue(person_id, (await s.sessions.open(person_id)).session_id)


async def test_an_event_committed_after_the_read_before_the_answer_arrives_live(db_url: str) -> None:
    """The socket listens before the read: a message committed between the read and the answer is offered to it.

    Were the read done before the socket listened, the message would pass it by and wait for the
    safety poll (kept out of reach here): the client would not get it.
    """
    async with serving(make_settings(db_url, safety_poll_interval=NO_POLL)) as server:
        s: Services = server.services_obj  # type: ignore[attr-defined]
        (alice, _), (bob, _) = await new_people(s, 2)
        read = s.hellos.hello
        committed: list[int] = []

        async def read_then_a_message(session_id: str, person_id: int) -> StreamState | None:
            state = await read(session_id, person_id)
            if person_id == alice:  # committed (and offered to this process's sockets) before the answer
                sent = await s.chat.send(SendRequest(bob, alice, "between", "读了以后"))
                committed.append(sent.message_id)
            return state

        s.hellos.hello = read_then_a_message  # type: ignore[method-assign]
        client = await Client.connect(server.ws, await _token(s, alice))
        try:
            assert client.hello["last_seq"] == 0 and len(committed) == 1  # read before the message
            [event] = await client.wait_events(1)
            assert (event["seq"], event["kind"]) == (1, "message.new")
            assert (event["data"]["id"], event["data"]["body"]) == (committed[0], "读了以后")
        finally:
            await client.close()


async def test_a_session_revoked_while_its_hello_is_checked_closes_the_socket_4503(db_url: str) -> None:
    """The session read good, then revoked before the answer: the announcement closes the socket at once.

    (A socket that listened only after the read would miss the announcement and stay open until
    the safety poll, kept out of reach here.)
    """
    async with serving(make_settings(db_url, safety_poll_interval=NO_POLL)) as server:
        s: Services = server.services_obj  # type: ignore[attr-defined]
        [(alice, _)] = await new_people(s, 1)
        token = await _token(s, alice)
        read = s.hellos.hello

        async def read_then_logout(session_id: str, person_id: int) -> StreamState | None:
            state = await read(session_id, person_id)
            async with httpx.AsyncClient() as http:
                r = await http.post(f"{server.http}/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200 and r.json() == {"revoked": True}
            return state

        s.hellos.hello = read_then_logout  # type: ignore[method-assign]
        # The hello may be answered before the close frame; either way the socket closes 4503 at once.
        async with websockets.connect(server.ws) as raw:
            await raw.send(json.dumps({"type": "hello", "id": "h", "v": 1, "token": token}))
            frames = []
            with pytest.raises(websockets.ConnectionClosed):
                async with asyncio.timeout(5):
                    while True:
                        frames.append(json.loads(await raw.recv()))
            assert raw.close_code == Close.FORBIDDEN, (raw.close_code, raw.close_reason, frames)
        assert s.hub.count() == 0


@dataclass(eq=False)
class _Socket:
    """What the hub needs of a connection for the cap: whose it is, its slot id, how it is closed."""

    person_id: int
    session_id: str = "s"
    socket_id: str = ""
    closed: list[int] = field(default_factory=list)

    def close(self, code: int, reason: str) -> None:
        self.closed.append(code)

    def drain(self, code: int, reason: str) -> None:
        self.close(code, reason)


async def test_a_hello_being_checked_neither_counts_under_the_cap_nor_is_pushed_out(db: Database) -> None:
    clock = FakeClock(datetime.now(UTC))
    hub = ConnectionHub("n1", EventLog(db), SessionStore(db, clock, refresh_ttl=timedelta(hours=1)), max_per_person=2)
    a, b, checking, c, d = (_Socket(7) for _ in range(5))
    for sock in (a, b):
        hub.listen(sock)  # type: ignore[arg-type]
        hub.claim(sock)  # type: ignore[arg-type]
    hub.listen(checking)  # type: ignore[arg-type]
    hub.listen(c)  # type: ignore[arg-type]
    hub.claim(c)  # type: ignore[arg-type]
    # Three claimed over a cap of two: the oldest claim goes; the one being checked is not counted.
    assert (a.closed, b.closed, checking.closed, c.closed) == ([Close.REPLACED], [], [], [])
    assert list(hub.connections()) == [b, checking, c]
    # Its session is good after all: now it counts, and the oldest claim goes.
    hub.claim(checking)  # type: ignore[arg-type]
    assert (b.closed, checking.closed, c.closed) == ([Close.REPLACED], [], [])
    # A refused hello leaves without a claim: nobody is pushed out.
    hub.listen(d)  # type: ignore[arg-type]
    hub.unregister(d)  # type: ignore[arg-type]
    assert (c.closed, checking.closed, d.closed) == ([], [], [])
    assert list(hub.connections()) == [c, checking]
    # A listening socket's session revoked: closed as any socket of that session.
    hub.listen(d)  # type: ignore[arg-type]
    d.session_id = "revoked"
    hub.close_session("revoked")
    assert d.closed == [Close.FORBIDDEN]


@pytest.mark.postgres
async def test_a_batch_of_hellos_is_one_statement_and_first_connections_one_write(pg_database: str) -> None:
    log: list[tuple[str, str]] = []
    s = Services.build(make_settings(pg_database), passwords=FAST_PASSWORDS)
    count_trips(s.db.writer, log)
    await s.start()
    try:
        people = [p for p, _ in await new_people(s, 6)]
        tokens = [await _token(s, p) for p in people]

        async def batch() -> list[tuple[str, str]]:
            peers = [Peer(GatewayProtocol(now=s.clock.monotonic(), auth_timeout=10.0)) for _ in tokens]
            log.clear()
            # Started together: every hello waits for the same check.
            await asyncio.gather(*(_hello(s, peer, token) for peer, token in zip(peers, tokens, strict=True)))
            trips = [(call, sql) for call, sql in log if call != "prepare"]
            assert all(p.calls == ["listen", "claim"] for p in peers), [p.calls for p in peers]
            return [sql for _, sql in trips if "auth_sessions" in sql or "person_streams" in sql]

        first = await batch()  # six first connections: the read, then their streams in one write
        again = await batch()
    finally:
        await s.stop()
    hello_sql = " ".join(hello_checks._PG_HELLOS.split())
    assert first[0] == hello_sql and len(first) == 4, first  # the read; which are missing, create them; read them
    assert "INSERT INTO person_streams" in first[2]
    assert again == [hello_sql], again


async def _hello(s: Services, peer: Peer, token: str) -> None:
    for req in peer.protocol.receive_text(json.dumps({"type": "hello", "id": "h", "v": 1, "token": token})):
        await handle(s, peer, req)
    [ok] = [json.loads(f) for f in peer.protocol.data_to_send()]
    assert ok["type"] == "ok", ok
