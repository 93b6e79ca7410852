"""Stream deliveries carry the webhook guarantees (issue 13 item 4): a stream app that never acknowledges
reaches the dead-letter state after the configured attempts — whether it stays connected (the lease runs
out and the event is sent again on the same socket) or keeps reconnecting — every send is in the delivery
log, a dead delivery no longer holds its aggregate's later events, and redelivery through the API sends it
again. Real WebSocket, both backends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.apps.conftest import platform
from tests.apps.helpers import admin_token, app_token, file_report, grid_worker, make_app
from tests.conftest import RunningServer
from tests.org_server import auth
from tests.waiting import scaled, wait_until

MAX_ATTEMPTS = 3


@pytest.fixture
async def short_lease_server(own_db_url: str, tmp_path: Path) -> AsyncIterator[RunningServer]:
    """Leases of one second (the shortest allowed) and three attempts, so a silent app is dead-lettered fast."""
    async with platform(own_db_url, tmp_path, delivery_lease=1.0, webhook_max_attempts=MAX_ATTEMPTS) as rs:
        yield rs


async def _app(rs: RunningServer, name: str) -> tuple[str, int]:
    made = await make_app(rs, await admin_token(rs, None), name=name, scopes=["events:report.filed"])
    tok = (await app_token(rs, made["client_id"], made["client_secret"])).json()["access_token"]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        r = await h.post("/api/v1/bot/subscriptions", json={"mode": "stream", "event_types": ["report.filed"]})
    assert r.status_code == 201, r.text
    return tok, int(r.json()["id"])


async def _open(rs: RunningServer, tok: str) -> Any:
    ws = await websockets.connect(f"ws://127.0.0.1:{rs.port}/api/v1/bot/stream")
    await ws.send(json.dumps({"type": "hello", "id": "h", "v": 1, "token": tok}))
    assert json.loads(await asyncio.wait_for(ws.recv(), scaled(10)))["type"] == "ok"
    return ws


async def _events(ws: Any, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < n:
        frame = json.loads(await asyncio.wait_for(ws.recv(), scaled(15)))
        if frame["type"] == "event":
            out.append(frame)
    return out


async def _get(rs: RunningServer, tok: str, path: str) -> Any:
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        r = await h.get(path)
    assert r.status_code == 200, r.text
    return r.json()


async def test_a_connected_app_that_never_acknowledges_is_dead_lettered_and_redelivered(
    short_lease_server: RunningServer,
) -> None:
    rs = short_lease_server
    tok, sub = await _app(rs, "沉默平台")
    ws = await _open(rs, tok)
    await file_report(rs, await grid_worker(rs), "d1")
    # the same socket is sent the event again each time the lease runs out, attempt counting up
    sends = await _events(ws, MAX_ATTEMPTS)
    assert [f["attempt"] for f in sends] == [1, 2, 3]
    assert len({(f["delivery_id"], f["event"]["id"]) for f in sends}) == 1
    delivery_id, event_id = sends[0]["delivery_id"], sends[0]["event"]["id"]

    async def state() -> str:
        got = await _get(rs, tok, f"/api/v1/bot/subscriptions/{sub}/deliveries")
        return str(got["deliveries"][0]["state"])

    await wait_until(lambda: _is(state, "dead"), timeout=scaled(15), what="the dead letter")
    log = (await _get(rs, tok, f"/api/v1/bot/subscriptions/{sub}/attempts"))["attempts"]
    assert [(a["attempt"], a["status"], a["error"], a["delivery_state"]) for a in log] == [
        (n, None, "not acknowledged within 1 s", "dead") for n in (3, 2, 1)
    ]
    # dead: never sent again on its own, not even to a new connection
    await ws.close()
    ws = await _open(rs, tok)
    await ws.send(json.dumps({"type": "ping", "id": "p"}))
    assert json.loads(await asyncio.wait_for(ws.recv(), scaled(10)))["ref"] == "p"  # no event came first
    # an acknowledgement of a dead delivery changes nothing
    await ws.send(json.dumps({"type": "ack", "id": "late", "delivery_ids": [delivery_id]}))
    assert json.loads(await asyncio.wait_for(ws.recv(), scaled(10)))["data"] == {"acked": 0}
    # redelivery through the API: sent again (attempt 1, same event id), and this time acknowledged
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        r = await h.post(f"/api/v1/bot/subscriptions/{sub}/redeliver", json={"event_id": event_id})
    assert r.json() == {"redelivering": 1}
    (again,) = await _events(ws, 1)
    assert (again["delivery_id"], again["event"]["id"], again["attempt"]) == (delivery_id, event_id, 1)
    await ws.send(json.dumps({"type": "ack", "id": "a", "delivery_ids": [delivery_id]}))
    assert json.loads(await asyncio.wait_for(ws.recv(), scaled(10)))["data"] == {"acked": 1}
    assert await state() == "delivered"
    top = (await _get(rs, tok, f"/api/v1/bot/subscriptions/{sub}/attempts?limit=1"))["attempts"][0]
    assert (top["attempt"], top["error"], top["response_excerpt"]) == (1, None, "acknowledged")
    assert top["latency_ms"] >= 0
    await ws.close()


async def _is(get: Any, want: str) -> bool:
    return bool(await get() == want)


async def test_an_app_that_reconnects_without_acknowledging_is_dead_lettered_and_stops_holding_the_line(
    platform_server: RunningServer,
) -> None:
    rs = platform_server
    s = rs.services_obj  # type: ignore[attr-defined]
    max_attempts = s.delivery.policy.max_attempts
    tok, sub = await _app(rs, "重连平台")
    worker = await grid_worker(rs)
    report = await file_report(rs, worker, "r1")
    for n in range(1, max_attempts + 1):  # each connection is sent the event and closes without acknowledging
        ws = await _open(rs, tok)
        (frame,) = await _events(ws, 1)
        assert (frame["attempt"], frame["event"]["data"]["report_id"]) == (n, report["report_id"])
        await ws.close()
    deliveries = (await _get(rs, tok, f"/api/v1/bot/subscriptions/{sub}/deliveries"))["deliveries"]
    await wait_until(
        lambda: _is(lambda: _first_state(rs, tok, sub), "dead"), timeout=scaled(10), what="the dead letter"
    )
    log = (await _get(rs, tok, f"/api/v1/bot/subscriptions/{sub}/attempts"))["attempts"]
    assert [a["error"] for a in log] == ["not acknowledged: the connection closed"] * max_attempts
    assert deliveries[0]["attempts"] == max_attempts
    # the next event is sent to the next connection, the dead one is not
    later = await file_report(rs, worker, "r2")
    ws = await _open(rs, tok)
    (frame,) = await _events(ws, 1)
    assert (frame["attempt"], frame["event"]["data"]["report_id"]) == (1, later["report_id"])
    await ws.close()


async def _first_state(rs: RunningServer, tok: str, sub: int) -> str:
    got = await _get(rs, tok, f"/api/v1/bot/subscriptions/{sub}/deliveries")
    return str(got["deliveries"][-1]["state"])
