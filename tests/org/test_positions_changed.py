"""``positions.changed``: whoever's seats an org change moves is told, live and by sync.

Before, a handover left the predecessor's client showing the position it lost (a send as it then
failed with a bare ``forbidden``) and the successor's not showing the one it gained, until a reload.
Through the public surface: the admin API changes, the WebSocket and ``GET /api/v1/sync`` tell.
"""

from __future__ import annotations

from typing import Any

import httpx

from org_tree.jurisdiction import SYSTEM
from tests.client import Client, login, new_person
from tests.conftest import RunningServer
from tests.org_server import auth, seat

GRID = "990101001001001"


def _changed(e: dict[str, Any]) -> bool:
    return bool(e["kind"] == "positions.changed")


async def _admin(rs: RunningServer) -> httpx.AsyncClient:
    """A client for a person with the ``assignments`` grant over the county."""
    s = rs.services_obj  # type: ignore[attr-defined]
    admin_id, admin_login = await new_person(s)
    await s.grants.grant(SYSTEM, admin_id, "990101", frozenset({"assignments", "org"}))
    tok = (await login(rs.http, admin_login))["access_token"]
    return httpx.AsyncClient(base_url=rs.http, headers=auth(tok))


async def _mine(rs: RunningServer, token: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        r = await h.get("/api/v1/me/positions")
        assert r.status_code == 200, r.text
        return list(r.json()["positions"])


async def test_handover_tells_the_connected_predecessor_and_successor(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    pred_id, _, pos, pred_tok = await seat(rs, GRID, "grid_worker")
    succ_id, succ_login = await new_person(s)
    succ_tok = (await login(rs.http, succ_login))["access_token"]
    pred = await Client.connect(rs.ws, pred_tok)
    succ = await Client.connect(rs.ws, succ_tok)
    async with await _admin(rs) as admin:
        r = await admin.post(f"/api/v1/org/positions/{pos}/handover", json={"person_id": succ_id})
        assert r.status_code == 200, r.text

    [lost] = await pred.wait_matching(_changed)
    assert lost["data"] == {"person_id": pred_id, "positions": [], "gained": [], "lost": [pos]}
    assert await _mine(rs, pred_tok) == []

    [gained] = await succ.wait_matching(_changed)
    assert gained["data"]["person_id"] == succ_id
    assert (gained["data"]["gained"], gained["data"]["lost"]) == ([pos], [])
    # The same positions, in the same shape, as the REST answer the client loads at start.
    assert gained["data"]["positions"] == await _mine(rs, succ_tok)
    assert [p["id"] for p in gained["data"]["positions"]] == [pos]
    assert gained["data"]["positions"][0]["holders"] == [succ_id]
    for c in (pred, succ):
        await c.close()


async def test_an_offline_person_gets_it_by_sync_and_on_resume(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    holder_id, _, pos, tok = await seat(rs, GRID, "grid_worker")
    deputy_id, deputy_login = await new_person(s)
    deputy_tok = (await login(rs.http, deputy_login))["access_token"]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        me = (await h.get("/api/v1/me")).json()
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(deputy_tok)) as h:
        deputy_me = (await h.get("/api/v1/me")).json()

    async with await _admin(rs) as admin:
        r = await admin.post(
            f"/api/v1/org/positions/{pos}/assignments", json={"person_id": deputy_id, "kind": "deputy"}
        )
        assert r.status_code == 201, r.text
        history = (await admin.get(f"/api/v1/org/positions/{pos}/history")).json()["assignments"]
        [own] = [a for a in history if a["person_id"] == holder_id and a["end_at"] is None]
        r = await admin.post(f"/api/v1/org/assignments/{own['id']}/end")
        assert r.status_code == 200, r.text

    # The holder was offline throughout: two changes wait in their stream (the deputy came, they went).
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        page = (await h.get("/api/v1/sync", params={"epoch": me["epoch"], "since": me["last_seq"]})).json()
    seen = [e["data"] for e in page["events"] if e["kind"] == "positions.changed"]
    assert seen == [{"person_id": holder_id, "positions": [], "gained": [], "lost": [pos]}]

    # The deputy reconnects with its cursor and is sent the change it missed.
    deputy = await Client.connect(
        rs.ws, deputy_tok, resume={"epoch": deputy_me["epoch"], "since": deputy_me["last_seq"]}
    )
    [ev] = await deputy.wait_matching(_changed)
    assert ev["data"]["gained"] == [pos] and ev["data"]["lost"] == []
    [view] = ev["data"]["positions"]
    assert view["id"] == pos and view["holders"] == [holder_id] and view["alternates"] == [[deputy_id, "deputy"]]

    # Retiring the position takes it from the deputy too.
    async with await _admin(rs) as admin:
        r = await admin.post(f"/api/v1/org/positions/{pos}/retire", json={})
        assert r.status_code == 200, r.text
    got = await deputy.wait_matching(lambda e: _changed(e) and e["data"]["lost"] == [pos])
    assert got[-1]["data"]["positions"] == []
    await deputy.close()
