"""``positions.changed``: whoever's seats an org change moves is told, live and by sync.

Before, a handover left the predecessor's client showing the position it lost (a send as it then
failed with a bare ``forbidden``) and the successor's not showing the one it gained, until a reload.
Through the public surface: the admin API changes, the WebSocket and ``GET /api/v1/sync`` tell.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from org_tree import structure
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


async def _signed_in(rs: RunningServer) -> tuple[int, str]:
    """A new person holding nothing, signed in: their id and access token."""
    pid, lg = await new_person(rs.services_obj)  # type: ignore[attr-defined]
    return pid, (await login(rs.http, lg))["access_token"]


async def _mine(rs: RunningServer, token: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        r = await h.get("/api/v1/me/positions")
        assert r.status_code == 200, r.text
        return list(r.json()["positions"])


async def test_handover_tells_the_connected_predecessor_and_successor(org_server: RunningServer) -> None:
    rs = org_server
    pred_id, _, pos, pred_tok = await seat(rs, GRID, "grid_worker")
    succ_id, succ_tok = await _signed_in(rs)
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


VILLAGE = GRID[:12]  # 001村1 of 01镇1 (柯城区)
NEIGHBOUR = "990101001002"  # 001村2, the same township
OTHER_TOWNSHIP = "990101002"  # 01镇2


async def _sync_changes(rs: RunningServer, token: str, cursor: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``positions.changed`` data in ``token``'s stream since ``cursor`` (``GET /api/v1/me``'s epoch, last_seq)."""
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        r = await h.get("/api/v1/sync", params={"epoch": cursor["epoch"], "since": cursor["last_seq"]})
        assert r.status_code == 200, r.text
        return [e["data"] for e in r.json()["events"] if e["kind"] == "positions.changed"]


async def _cursor(rs: RunningServer, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        return dict((await h.get("/api/v1/me")).json())


async def test_a_rename_tells_every_holder_below_it_the_new_name(org_server: RunningServer) -> None:
    """Until 2026-12-05 a renamed unit's holders were told nothing: their header kept the old name until a reload."""
    rs = org_server
    holder_id, _, pos, tok = await seat(rs, GRID, "grid_worker")
    deputy_id, deputy_tok = await _signed_in(rs)
    outsider_id, _, _, outsider_tok = await seat(rs, NEIGHBOUR + "001", "grid_worker")
    async with await _admin(rs) as admin:
        r = await admin.post(
            f"/api/v1/org/positions/{pos}/assignments", json={"person_id": deputy_id, "kind": "deputy"}
        )
        assert r.status_code == 201, r.text
        holder = await Client.connect(rs.ws, tok)
        deputy = await Client.connect(rs.ws, deputy_tok)
        outsider_at = await _cursor(rs, outsider_tok)
        deputy_at = await _cursor(rs, deputy_tok)
        r = await admin.patch(f"/api/v1/org/units/{VILLAGE}", json={"name": "金桂社区"})
        assert r.status_code == 200, r.text

    [ev] = await holder.wait_matching(_changed)
    assert (ev["data"]["person_id"], ev["data"]["gained"], ev["data"]["lost"]) == (holder_id, [], [])
    [view] = ev["data"]["positions"]
    assert view["id"] == pos and view["unit_path"] == ["测试省", "甲市", "柯城区", "01镇1", "金桂社区", "第1网格"]
    assert view["holders"] == [holder_id] and view["alternates"] == [[deputy_id, "deputy"]]
    # What the client loads at start now reads the same.
    assert ev["data"]["positions"] == await _mine(rs, tok)

    # A deputy is a holder too, and is told once (live, and the same event by sync).
    [dev] = await deputy.wait_matching(_changed)
    assert dev["data"]["person_id"] == deputy_id and dev["data"]["positions"] == [view]
    assert await _sync_changes(rs, deputy_tok, deputy_at) == [dev["data"]]
    # A holder outside the renamed unit is told nothing: its positions read as before.
    assert await _sync_changes(rs, outsider_tok, outsider_at) == []
    assert outsider_id != holder_id
    for c in (holder, deputy):
        await c.close()


async def test_a_move_and_a_merge_tell_the_holders_where_their_positions_are_now(org_server: RunningServer) -> None:
    rs = org_server
    _, _, pos, tok = await seat(rs, GRID, "grid_worker")
    neighbour_id, _, sec, neighbour_tok = await seat(rs, NEIGHBOUR, "village_secretary")
    grid_id, _, grid_pos, grid_tok = await seat(rs, NEIGHBOUR + "002", "grid_worker")
    holder = await Client.connect(rs.ws, tok)
    async with await _admin(rs) as admin:
        r = await admin.post(f"/api/v1/org/units/{VILLAGE}/move", json={"parent": OTHER_TOWNSHIP})
        assert r.status_code == 200, r.text
        [moved] = await holder.wait_matching(_changed)
        assert moved["data"]["positions"] == await _mine(rs, tok)
        assert [p["unit_path"] for p in moved["data"]["positions"] if p["id"] == pos] == [
            ["测试省", "甲市", "柯城区", "01镇2", "001村1", "第1网格"]
        ]

        # The neighbouring village merges into the moved one: its secretary's position is in that village now
        # (its unit_id changes), its grids under it.
        secretary_at = await _cursor(rs, neighbour_tok)
        grid_at = await _cursor(rs, grid_tok)
        r = await admin.post(f"/api/v1/org/units/{NEIGHBOUR}/merge", json={"into": VILLAGE})
        assert r.status_code == 200, r.text
        into_id = (await admin.get(f"/api/v1/org/units/{VILLAGE}")).json()["id"]
    [sec_ev] = await _sync_changes(rs, neighbour_tok, secretary_at)
    assert (sec_ev["person_id"], sec_ev["gained"], sec_ev["lost"]) == (neighbour_id, [], [])
    [view] = [p for p in sec_ev["positions"] if p["id"] == sec]
    assert view["unit_id"] == into_id and view["unit_path"] == ["测试省", "甲市", "柯城区", "01镇2", "001村1"]
    assert sec_ev["positions"] == await _mine(rs, neighbour_tok)
    [grid_ev] = await _sync_changes(rs, grid_tok, grid_at)
    [gview] = [p for p in grid_ev["positions"] if p["id"] == grid_pos]
    assert gview["unit_path"] == ["测试省", "甲市", "柯城区", "01镇2", "001村1", "第2网格"]
    assert grid_ev["person_id"] == grid_id and grid_ev["positions"] == await _mine(rs, grid_tok)
    # The first village's holders were not re-labelled by the merge: nothing more for them.
    assert len(holder.matching(_changed)) == 1
    await holder.close()


async def test_a_retired_unit_takes_the_positions_from_their_holders(org_server: RunningServer) -> None:
    """Retirement already told them (a seat lost); it still does, once, with the position in ``lost``."""
    rs = org_server
    holder_id, _, pos, tok = await seat(rs, GRID, "grid_worker")
    at = await _cursor(rs, tok)
    async with await _admin(rs) as admin:
        r = await admin.post(f"/api/v1/org/units/{VILLAGE}/retire", json={})
        assert r.status_code == 200, r.text
    assert await _sync_changes(rs, tok, at) == [{"person_id": holder_id, "positions": [], "gained": [], "lost": [pos]}]


async def test_above_the_bound_nobody_is_told_and_the_rest_api_reads_the_new_name(
    org_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename of a unit with more positions below it than ``TELL_HOLDERS_UP_TO`` sends no event (a city's
    would hold the edit's transaction for seconds); its holders' clients read the new name from the REST API."""
    rs = org_server
    idx = rs.services_obj.org_index.index  # type: ignore[attr-defined]
    below = sum(len(idx.unit_slots(v)) for v in idx.subtree(idx.unit(VILLAGE)))
    monkeypatch.setattr(structure, "TELL_HOLDERS_UP_TO", below - 1)
    _, _, pos, tok = await seat(rs, GRID, "grid_worker")
    at = await _cursor(rs, tok)
    async with await _admin(rs) as admin:
        r = await admin.patch(f"/api/v1/org/units/{VILLAGE}", json={"name": "金桂社区"})
        assert r.status_code == 200, r.text
    assert await _sync_changes(rs, tok, at) == []
    [view] = await _mine(rs, tok)
    assert view["id"] == pos and view["unit_path"][-2] == "金桂社区"
    # At the bound, they are.
    monkeypatch.setattr(structure, "TELL_HOLDERS_UP_TO", below)
    async with await _admin(rs) as admin:
        r = await admin.patch(f"/api/v1/org/units/{VILLAGE}", json={"name": "银桂社区"})
        assert r.status_code == 200, r.text
    [data] = await _sync_changes(rs, tok, at)
    assert data["positions"][0]["unit_path"][-2] == "银桂社区"


class _Refused(Exception):
    """What the test's last hook raises: the edit rolls back after the holders were told in it."""


async def test_a_rolled_back_rename_tells_nobody(org_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    _, _, _, tok = await seat(rs, GRID, "grid_worker")
    at = await _cursor(rs, tok)
    told: list[list[int]] = []

    async def refuse(_conn: Any, persons: list[int], _now: Any) -> None:
        told.append(persons)  # after positions.changed was written in the edit's transaction
        raise _Refused

    hooks = s.org.structure.hooks
    monkeypatch.setattr(s.org.structure, "hooks", dataclasses.replace(hooks, units=(*hooks.units, refuse)))
    with pytest.raises(_Refused):
        await s.org.structure.rename_unit(SYSTEM, VILLAGE, "金桂社区")
    assert told and told[0]
    assert await _sync_changes(rs, tok, at) == []
    assert (await _mine(rs, tok))[0]["unit_path"][-2] == "001村1"
