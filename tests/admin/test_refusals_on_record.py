"""Refusals the 江西 audit found answered 403 with nothing on record, though docs/admin.md and
docs/apps.md promise every refused administrative attempt in the log (``admin.denied``) before the 403.

A county administrator naming a successor in the neighbouring county (retiring a position or a unit),
previewing an edit over a unit outside their grant, or registering an app whose 可见范围 reaches past the
units they were checked over: each is refused as before, nothing changes, and now each is on record.
"""

from __future__ import annotations

from typing import Any

import httpx

from kernel.audit import AuditQuery, query
from org_tree.jurisdiction import SYSTEM
from tests.client import login, new_person
from tests.conftest import RunningServer
from tests.org_server import auth, position_at, unit_id_at

COUNTY, OTHER_COUNTY = "990101", "990102"


async def _county_admin(rs: RunningServer, perms: frozenset[str]) -> tuple[int, str]:
    s = rs.services_obj  # type: ignore[attr-defined]
    pid, lg = await new_person(s, "县管理员")
    await s.grants.grant(SYSTEM, pid, COUNTY, perms)
    return pid, str((await login(rs.http, lg))["access_token"])


async def _denied(rs: RunningServer, actor: int) -> list[dict[str, Any]]:
    s = rs.services_obj  # type: ignore[attr-defined]
    items, _ = await query(s.db, AuditQuery(actor_person_id=actor, action="admin.denied"))
    return list(reversed(items))


async def test_a_successor_outside_the_grant_is_refused_on_record(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    admin, tok = await _county_admin(rs, frozenset({"org"}))
    mine = position_at(rs, "990101001001", "river_chief")
    theirs = position_at(rs, "990102001001", "river_chief")
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        r = await h.post(f"/api/v1/org/positions/{mine}/retire", json={"successor": theirs})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "no_grant"), r.text
        r = await h.post("/api/v1/org/units/990101001002/retire", json={"successor": theirs})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "no_grant"), r.text
    assert s.org_index.index.find_slot(mine) >= 0  # nothing retired
    assert s.org_index.index.unit("990101001002") >= 0
    entries = await _denied(rs, admin)
    assert [(e["action"], e["unit_id"]) for e in entries] == [("admin.denied", unit_id_at(rs, "990102001001"))] * 2
    assert entries[0]["detail"] == {
        "attempted": "org.position_retired", "permission": "org", "position_id": mine, "successor": theirs,
        "actor_unit_ids": [unit_id_at(rs, COUNTY)],
    }  # fmt: skip
    assert entries[1]["detail"] == {
        "attempted": "org.unit_retired", "permission": "org", "unit_id": unit_id_at(rs, "990101001002"),
        "successor": theirs, "actor_unit_ids": [unit_id_at(rs, COUNTY)],
    }  # fmt: skip


async def test_a_refused_preview_is_on_record_as_the_edit_it_previews(org_server: RunningServer) -> None:
    rs = org_server
    admin, tok = await _county_admin(rs, frozenset({"org"}))
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        r = await h.post(f"/api/v1/org/units/{OTHER_COUNTY}001/preview", json={"action": "retire"})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "no_grant"), r.text
        r = await h.post("/api/v1/org/units/990101001001/preview", json={"action": "move", "target": "990102001"})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "no_grant"), r.text
        r = await h.post("/api/v1/org/units/990101001001/preview", json={"action": "move", "target": "990101002"})
        assert r.status_code == 200, r.text  # inside the grant: answered, and nothing recorded for it
    entries = await _denied(rs, admin)
    assert [(e["detail"]["attempted"], e["detail"]["preview"], e["unit_id"]) for e in entries] == [
        ("org.unit_retired", True, unit_id_at(rs, "990102001")),
        ("org.unit_moved", True, unit_id_at(rs, "990102001")),
    ]
    assert entries[1]["detail"]["unit_id"] == unit_id_at(rs, "990101001001")
    assert entries[1]["detail"]["target_id"] == unit_id_at(rs, "990102001")


async def test_an_app_visibility_reaching_past_the_grant_is_refused_on_record(org_server: RunningServer) -> None:
    rs = org_server
    admin, tok = await _county_admin(rs, frozenset({"apps"}))
    body = {
        "name": "全市推送",
        "owning_unit": COUNTY,
        "subtree": COUNTY,
        "visibility": "河长@99/**",
        "scopes": ["org:read"],
    }
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        r = await h.post("/api/v1/apps", json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "out_of_scope"), r.text
        count = r.json()["error"]["data"]["count"]
        r = await h.post("/api/v1/apps", json={**body, "visibility": f"河长@{COUNTY}/**"})
        assert r.status_code == 201, r.text
        app_id = r.json()["id"]
        r = await h.patch(f"/api/v1/apps/{app_id}", json={"visibility": "河长@99/**"})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "out_of_scope"), r.text
        assert (await h.get(f"/api/v1/apps/{app_id}")).json()["visibility"] == f"河长@{COUNTY}/**"
    entries = await _denied(rs, admin)
    assert [e["unit_id"] for e in entries] == [unit_id_at(rs, COUNTY)] * 2
    assert entries[0]["detail"] == {
        "attempted": "app.create", "permission": "apps", "name": "全市推送", "field": "visibility", "count": count,
        "actor_unit_ids": [unit_id_at(rs, COUNTY)],
    }  # fmt: skip
    assert entries[1]["detail"] == {
        "attempted": "app.updated", "permission": "apps", "app_id": app_id, "field": "visibility", "count": count,
        "actor_unit_ids": [unit_id_at(rs, COUNTY)],
    }  # fmt: skip
