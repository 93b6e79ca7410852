"""Admin grants over HTTP: what each grant allows, that nobody hands out more than they hold, and that
ordinary accounts reach none of the administrative endpoints (docs/admin.md), on both backends."""

from __future__ import annotations

import httpx

from kernel.audit import AuditQuery, query
from org_tree.jurisdiction import SYSTEM
from tests.client import login, new_person
from tests.conftest import RunningServer
from tests.org_server import auth, position_at, seat, unit_id_at

COUNTY, OTHER_COUNTY = "990101", "990102"
VILLAGE = "990101001001"


async def test_a_county_administrator_works_inside_the_grant_only(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    admin_id, admin_login = await new_person(s, "县管理员")
    await s.grants.grant(SYSTEM, admin_id, COUNTY, frozenset({"org", "assignments", "grants"}))
    helper_id, helper_login = await new_person(s, "村管理员")
    newcomer, _ = await new_person(s)
    tok = (await login(rs.http, admin_login))["access_token"]
    sec_pos = position_at(rs, VILLAGE, "village_secretary")
    far_pos = position_at(rs, "990102001001", "village_secretary")
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        me = (await h.get("/api/v1/me/grants")).json()["grants"]
        assert [(g["unit_id"], g["perms"]) for g in me] == [(unit_id_at(rs, COUNTY), ["assignments", "grants", "org"])]
        r = await h.post(f"/api/v1/org/positions/{sec_pos}/handover", json={"person_id": newcomer})
        assert r.status_code == 200, r.text
        r = await h.post(f"/api/v1/org/positions/{far_pos}/handover", json={"person_id": newcomer})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "no_grant")
        r = await h.post("/api/v1/org/units", json={"parent": VILLAGE, "name": "新网格"})
        assert r.status_code == 201, r.text
        # The code the server gave it (330802001001x004 style) names it in a selector, both forms.
        code = r.json()["code"]
        r = await h.post("/api/v1/org/positions", json={"unit": code, "role": "grid_worker"})
        assert r.status_code == 201, r.text
        for sel in (f"*@{code}", {"unit_all": code}, f"grid_worker@{code}/**"):
            r = await h.post("/api/v1/org/preview", json={"as_position": sec_pos, "selector": sel})
            assert (r.status_code, r.json().get("positions")) == (200, 1), (sel, r.text)
        r = await h.post("/api/v1/org/units", json={"parent": VILLAGE, "name": "另一网格", "code": "网格-1"})
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_body")
        r = await h.post("/api/v1/org/units", json={"parent": "990102001001", "name": "新网格"})
        assert r.status_code == 403
        r = await h.post("/api/v1/org/roles", json={"key": "x1", "name": "X1", "levels": ["grid"]})
        assert r.status_code == 403  # roles are tree-wide: a county grant does not reach them
        # grants: inside the subtree, never more than one holds, never to oneself
        r = await h.post(
            "/api/v1/admin/grants", json={"person_id": helper_id, "unit": VILLAGE, "perms": ["assignments"]}
        )
        assert r.status_code == 201, r.text
        helper_grant = r.json()["id"]
        # The unit as "#id", as the audit query and the CLI take it, names the same unit.
        r = await h.post(
            "/api/v1/admin/grants",
            json={"person_id": newcomer, "unit": f"#{unit_id_at(rs, VILLAGE)}", "perms": ["assignments"]},
        )
        assert (r.status_code, r.json().get("unit_id")) == (201, unit_id_at(rs, VILLAGE)), r.text
        assert (await h.post(f"/api/v1/admin/grants/{r.json()['id']}/revoke")).status_code == 200
        # "#" names no unit in any form: refused as such (docs/selectors.md), a well-formed "#id" of none is a 404
        r = await h.post("/api/v1/admin/grants", json={"person_id": newcomer, "unit": "#", "perms": ["assignments"]})
        assert (r.status_code, r.json()["error"]["data"]["field"]) == (400, "unit"), r.text
        none = {"person_id": newcomer, "unit": "#999999", "perms": ["assignments"]}
        r = await h.post("/api/v1/admin/grants", json=none)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found"), r.text
        for body in (
            {"person_id": helper_id, "unit": VILLAGE, "perms": ["audit"]},
            {"person_id": helper_id, "unit": OTHER_COUNTY, "perms": ["assignments"]},
            {"person_id": helper_id, "unit": None, "perms": ["assignments"]},
            {"person_id": admin_id, "unit": VILLAGE, "perms": ["assignments"]},
        ):
            r = await h.post("/api/v1/admin/grants", json=body)
            assert r.status_code == 403, (body, r.text)
        r = await h.post("/api/v1/admin/grants", json={"person_id": helper_id, "unit": VILLAGE, "perms": ["root"]})
        assert r.status_code == 400
        listed = (await h.get("/api/v1/admin/grants")).json()["grants"]
        assert {g["person_id"] for g in listed} == {admin_id, helper_id}
    helper_tok = (await login(rs.http, helper_login))["access_token"]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(helper_tok)) as h:
        r = await h.post(f"/api/v1/org/positions/{sec_pos}/handover", json={"person_id": helper_id})
        assert r.status_code == 200  # an administrator may seat themselves inside their grant
        assert (await h.get("/api/v1/admin/grants")).status_code == 403  # no grants/audit permission
        r = await h.post(f"/api/v1/admin/grants/{helper_grant}/revoke")
        assert r.status_code == 404  # 'grants' is needed to revoke, even one's own
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        r = await h.post(f"/api/v1/admin/grants/{helper_grant}/revoke")
        assert r.status_code == 200 and r.json()["revoked"] is True
        assert (await h.post(f"/api/v1/admin/grants/{helper_grant}/revoke")).status_code == 404
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(helper_tok)) as h:
        r = await h.post(f"/api/v1/org/positions/{sec_pos}/handover", json={"person_id": newcomer})
        assert r.status_code == 403


async def test_ordinary_accounts_reach_no_administrative_endpoint(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    boss = await new_person(s)
    top = await s.grants.grant(SYSTEM, boss[0], None, frozenset({"grants", "audit", "settings"}))
    head_id, _, head_pos, tok = await seat(rs, COUNTY, "county_head")  # a high position, no grant
    unit_id = unit_id_at(rs, VILLAGE)
    rule = {"name": "河道垃圾", "accept_within": 60, "resolve_within": 600, "escalation": "head_above",
            "ding": False, "route_role": "village_director", "route_level": "village"}  # fmt: skip
    calls = [
        ("POST", "/api/v1/org/units", {"parent": COUNTY, "name": "新镇"}, 403),
        ("POST", f"/api/v1/org/units/{VILLAGE}/move", {"parent": "990101002"}, 403),
        ("POST", "/api/v1/org/positions", {"unit": VILLAGE, "role": "village_director"}, 403),
        ("POST", "/api/v1/org/roles", {"key": "x2", "name": "X2", "levels": ["grid"]}, 403),
        ("POST", f"/api/v1/org/positions/{head_pos + 1}/assignments", {"person_id": head_id}, 403),
        ("POST", f"/api/v1/org/positions/{head_pos + 1}/handover", {"person_id": head_id}, 403),
        ("PUT", "/api/v1/tasks/categories/river_litter", rule, 403),
        ("GET", "/api/v1/admin/grants", None, 403),
        ("POST", "/api/v1/admin/grants", {"person_id": head_id, "unit": None, "perms": ["org"]}, 403),
        ("POST", f"/api/v1/admin/grants/{top.id}/revoke", None, 404),
        ("GET", "/api/v1/audit", None, 403),
        ("GET", f"/api/v1/audit?unit=%23{unit_id}", None, 403),
    ]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        for method, path, body, status in calls:
            r = await h.request(method, path, json=body)
            assert r.status_code == status, (method, path, r.text)
            assert "error" in r.json()
        assert (await h.get("/api/v1/me/grants")).json() == {"grants": []}
    assert [g.id for g in await s.grants.visible(SYSTEM)] == [top.id]
    # Every refusal is on record (docs/admin.md), the refused grant listing too (it was not, before the
    # administration audit).
    denied, _ = await query(s.db, AuditQuery(actor_person_id=head_id, action="admin.denied"))
    assert len(denied) == len(calls), [e["detail"] for e in denied]
    assert "grants.read" in {e["detail"]["attempted"] for e in denied}


async def test_refusals_on_oneself_are_audited_too(org_server: RunningServer) -> None:
    """docs/admin.md: a refused administrative attempt is audited (``admin.denied``) before the 403. A
    self-grant and disabling one's own account were answered 403 with nothing on record (found by the
    administration audit): only a missing grant was recorded."""
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    admin_id, admin_login = await new_person(s, "县管理员")
    await s.grants.grant(SYSTEM, admin_id, COUNTY, frozenset({"assignments", "grants"}))
    tok = (await login(rs.http, admin_login))["access_token"]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        r = await h.post("/api/v1/admin/grants", json={"person_id": admin_id, "unit": VILLAGE, "perms": ["grants"]})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden"), r.text
        r = await h.patch(f"/api/v1/org/persons/{admin_id}", json={"disabled": True})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden"), r.text
    entries, _ = await query(s.db, AuditQuery(actor_person_id=admin_id, action="admin.denied"))
    got = sorted((e["detail"]["attempted"], e["detail"]["permission"], e["outcome"], e["unit_id"]) for e in entries)
    assert got == [
        ("admin.granted", "grants", "denied", unit_id_at(rs, VILLAGE)),
        ("person.disabled", "assignments", "denied", None),
    ], entries
    assert all(e["detail"]["reason"] == "self" for e in entries)
    assert [g.person_id for g in await s.grants.visible(SYSTEM, admin_id)] == [admin_id]
    assert not (await s.persons.get(admin_id)).disabled


async def test_an_identical_grant_twice_is_a_conflict_naming_the_first(org_server: RunningServer) -> None:
    """The same person, unit and perms given again made a second grant row (found by the administration
    audit): two rows to revoke for one right, and a second ``admin.granted`` entry for nothing."""
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    admin_id, admin_login = await new_person(s, "县管理员")
    await s.grants.grant(SYSTEM, admin_id, COUNTY, frozenset({"assignments", "audit", "grants"}))
    helper_id, _ = await new_person(s, "村管理员")
    tok = (await login(rs.http, admin_login))["access_token"]
    body = {"person_id": helper_id, "unit": VILLAGE, "perms": ["audit", "assignments"]}
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        first = await h.post("/api/v1/admin/grants", json=body)
        assert first.status_code == 201, first.text
        again = await h.post("/api/v1/admin/grants", json={**body, "perms": ["assignments", "audit"]})
        assert (again.status_code, again.json()) == (409, {"error": {
            "code": "conflict", "message": "the person already holds this grant",
            "data": {"grant_id": first.json()["id"]}}}), again.text  # fmt: skip
        # A different set of perms over the same unit is another grant.
        other = await h.post("/api/v1/admin/grants", json={**body, "perms": ["assignments"]})
        assert other.status_code == 201, other.text
    assert [g.id for g in await s.grants.visible(SYSTEM, helper_id)] == [first.json()["id"], other.json()["id"]]
    granted, _ = await query(s.db, AuditQuery(action="admin.granted"))
    assert sorted(e["detail"]["grant_id"] for e in granted if e["detail"]["person_id"] == helper_id) == [
        first.json()["id"], other.json()["id"]]  # fmt: skip


async def test_the_county_that_gave_a_grant_over_a_retired_unit_still_sees_and_revokes_it(
    org_server: RunningServer,
) -> None:
    """A grant over a unit retired since covers nothing, but it stays active and comes back with the unit
    (``zzd org import --revive-retired``, or a unit the import dissolved that the files list again). Only a
    whole-tree administrator could see or revoke it: the county administrator who gave it got 404 and
    never saw it in the list (found by the trust audit). Now the nearest unit above that is still in the
    tree answers for it; another county still gets 404, and nothing changes for it."""
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    admin_id, admin_login = await new_person(s, "县管理员")
    await s.grants.grant(SYSTEM, admin_id, COUNTY, frozenset({"org", "assignments", "grants", "audit"}))
    other_id, other_login = await new_person(s, "邻县管理员")
    await s.grants.grant(SYSTEM, other_id, OTHER_COUNTY, frozenset({"org", "assignments", "grants", "audit"}))
    helper_id, _ = await new_person(s, "镇管理员")
    tok = (await login(rs.http, admin_login))["access_token"]
    other_tok = (await login(rs.http, other_login))["access_token"]
    township = "990101001"
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        made = await h.post("/api/v1/admin/grants", json={"person_id": helper_id, "unit": township, "perms": ["audit"]})
        assert made.status_code == 201, made.text
        gid = made.json()["id"]
        r = await h.post(f"/api/v1/org/units/{township}/retire", json={})
        assert r.status_code == 200, r.text
        listed = (await h.get("/api/v1/admin/grants", params={"person_id": str(helper_id)})).json()["grants"]
        assert [(g["id"], g["unit_path"]) for g in listed] == [(gid, None)], listed
        async with httpx.AsyncClient(base_url=rs.http, headers=auth(other_tok)) as o:
            assert (await o.get("/api/v1/admin/grants", params={"person_id": str(helper_id)})).json()["grants"] == []
            r = await o.post(f"/api/v1/admin/grants/{gid}/revoke")
            assert (r.status_code, r.json()["error"]["message"]) == (404, "no such grant")
        assert [g.id for g in await s.grants.visible(SYSTEM, helper_id)] == [gid]  # the refusal changed nothing
        r = await h.post(f"/api/v1/admin/grants/{gid}/revoke")
        assert (r.status_code, r.json()["revoked"], r.json()["unit_path"]) == (200, True, None), r.text
    assert await s.grants.visible(SYSTEM, helper_id) == []
