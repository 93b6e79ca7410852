"""Structural edits over HTTP (issue 17): who may make them, what they do, and what happens to work in flight."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import select

from org_tree.importer import import_divisions
from org_tree.jurisdiction import SYSTEM
from org_tree.org_schema import assignments
from org_tree.selectors import PositionSel
from tests.client import login, new_person
from tests.conftest import RunningServer
from tests.org_server import auth, seat, slot

COUNTY, OTHER_COUNTY = "990101", "990102"
TOWN, OTHER_TOWN = "990101001", "990101002"
VILLAGE = "990101001001"


async def _admin(rs: RunningServer, unit: str | None, perms: set[str]) -> str:
    s = rs.services_obj  # type: ignore[attr-defined]
    pid, lg = await new_person(s, "管理员")
    await s.grants.grant(SYSTEM, pid, unit, frozenset(perms))
    return str((await login(rs.http, lg))["access_token"])


async def test_ordinary_users_and_other_subtrees_cannot_edit_the_structure(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    idx = s.org_index.index
    head_id, _, _head_pos, ordinary = await seat(rs, COUNTY, "county_head")  # a high position, no grant
    other = await _admin(rs, OTHER_COUNTY, {"org", "assignments", "roles", "audit"})
    sec = idx.position_id(slot(idx, VILLAGE, "village_secretary"))
    before = (idx.unit_name(idx.unit(VILLAGE)), idx.position_count(), idx.version)
    calls = [
        ("PATCH", f"/api/v1/org/units/{VILLAGE}", {"name": "改名村"}, 403),
        ("POST", f"/api/v1/org/units/{VILLAGE}/move", {"parent": OTHER_TOWN}, 403),
        ("POST", f"/api/v1/org/units/{VILLAGE}/merge", {"into": "990101001002"}, 403),
        ("POST", f"/api/v1/org/units/{VILLAGE}/retire", {}, 403),
        ("POST", f"/api/v1/org/units/{VILLAGE}/preview", {"action": "move", "target": OTHER_TOWN}, 403),
        ("POST", f"/api/v1/org/positions/{sec}/retire", {}, 403),
        ("PATCH", "/api/v1/org/roles/village_secretary", {"name": "村支书"}, 403),
        ("PATCH", f"/api/v1/org/persons/{head_id}", {"name": "改名"}, 404),
    ]
    for token in (ordinary, other):
        async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
            for method, path, body, status in calls:
                r = await h.request(method, path, json=body)
                assert r.status_code == status, (method, path, r.text)
                assert r.json()["error"]["code"] in ("no_grant", "not_found")
    idx = s.org_index.index
    assert (idx.unit_name(idx.unit(VILLAGE)), idx.position_count(), idx.version) == before
    # a county grant with every permission still does not reach the tree-wide role catalog
    county = await _admin(rs, COUNTY, {"org", "assignments", "roles"})
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(county)) as h:
        r = await h.patch("/api/v1/org/roles/village_secretary", json={"name": "村支书"})
        assert r.status_code == 403
        r = await h.post(f"/api/v1/org/units/{VILLAGE}/move", json={"parent": "990102001"})
        assert r.status_code == 403  # the new parent is outside the grant
        assert (await h.post(f"/api/v1/org/units/{VILLAGE}/retire", json={"name": 1})).status_code == 400


async def test_edits_apply_and_open_work_follows(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    idx = s.org_index.index
    head = idx.position_id(slot(idx, COUNTY, "county_head"))
    boss = idx.primary_holders(slot(idx, COUNTY, "county_head"))[0]
    target_village = "990101001002"
    sec = idx.position_id(slot(idx, target_village, "village_secretary"))
    task = (
        await s.tasks.create(
            boss,
            head,
            selector=PositionSel(sec),
            shared=False,
            category="general",
            title="防汛检查",
            body="",
            client_msg_id="org-17",
        )  # fmt: skip
    )[0]
    token = await _admin(rs, COUNTY, {"org", "assignments"})
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        r = await h.post(f"/api/v1/org/units/{target_village}/preview", json={"action": "retire"})
        assert r.status_code == 200, r.text
        pv = r.json()
        assert pv["open_tasks"] == 1 and pv["units"] == 3 and pv["positions"] == len(pv["position_ids"])
        r = await h.post(f"/api/v1/org/units/{VILLAGE}/preview", json={"action": "move"})
        assert r.status_code == 400 and r.json()["error"]["data"]["field"] == "target"
        r = await h.post(f"/api/v1/org/units/{VILLAGE}/preview", json={"action": "move", "target": OTHER_TOWN})
        assert r.json()["target"]["code"] == OTHER_TOWN and r.json()["units"] == 3
        # retire the secretary's position: the task goes to the successor by rule, and says so
        r = await h.post(f"/api/v1/org/positions/{sec}/retire", json={})
        assert r.status_code == 200, r.text
        successor = r.json()["successor"]
        assert successor is not None and r.json()["holders_ended"]
        got = await s.tasks.get(boss, task.id)
        assert got["owner_position_id"] == successor
        last = got["history"][-1]
        assert last["action"] == "reassign" and last["data"]["reason"] == "position_retired"
        assert last["data"]["from_owner"] == sec and last["data"]["to_owner"] == successor
        assert s.org_index.index.find_slot(sec) < 0
        # rename, move, merge, retire a unit: each visible in the index at once
        r = await h.patch(f"/api/v1/org/units/{VILLAGE}", json={"name": "新名村"})
        assert r.status_code == 200 and r.json()["name"] == "新名村"
        r = await h.post(f"/api/v1/org/units/{VILLAGE}/move", json={"parent": OTHER_TOWN})
        assert r.status_code == 200 and r.json()["path"][-2] == s.org_index.index.unit_name(
            s.org_index.index.unit(OTHER_TOWN)
        )
        r = await h.post("/api/v1/org/units/990101001003/merge", json={"into": "990101001004"})
        assert r.status_code == 200, r.text
        assert len(r.json()["children_moved"]) == 2 and r.json()["positions_moved"]
        idx = s.org_index.index
        assert idx.find_unit(r.json()["unit_id"]) < 0
        assert len(idx.children(idx.unit("990101001004"))) == 4
        town_head = idx.position_id(idx.head_slot(idx.unit(TOWN)))
        r = await h.post("/api/v1/org/units/990101001004/retire", json={"successor": town_head})
        assert r.status_code == 200, r.text
        assert r.json()["units"] == 5 and set(r.json()["successors"].values()) == {town_head}
        r = await h.post(f"/api/v1/org/units/{VILLAGE}/retire", json={"successor": 10**9})
        assert r.status_code == 400
    idx = s.org_index.index
    assert [idx.unit_code(c) for c in idx.children(idx.unit(TOWN))] == [target_village]


async def test_retiring_a_unit_ends_its_holders_assignments(org_server: RunningServer) -> None:
    """Found by the admin audit: a unit's retirement left its holders seated on removed positions, so their
    ``GET /api/v1/me/positions`` answered 404 for a position that no longer exists."""
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    holder, _, sec, holder_token = await seat(rs, "990101001003", "village_secretary")
    admin = await _admin(rs, TOWN, {"org"})
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(admin)) as h:
        r = await h.post("/api/v1/org/units/990101001003/retire", json={})
        assert r.status_code == 200, r.text
        assert sec in r.json()["positions"]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(holder_token)) as h:
        r = await h.get("/api/v1/me/positions")
        assert r.status_code == 200, r.text
        assert sec not in [p["id"] for p in r.json()["positions"]]
    async with s.db.read() as conn:
        ends = (await conn.execute(select(assignments.c.end_at).where(assignments.c.person_id == holder))).all()
    assert ends and all(end is not None for (end,) in ends)


async def test_a_unit_the_division_import_removed_is_not_held(org_server: RunningServer, tmp_path: Path) -> None:
    """Found by the admin audit: a re-import without a village dissolves it (reversibly: its positions and
    holders come back with it), but its holders' ``GET /api/v1/me/positions`` answered 404 meanwhile."""
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    _, _, sec, token = await seat(rs, "990101001004", "village_secretary")
    folder = tmp_path / "div"  # the served tree's files (tests/org_server.py)
    villages = folder / "villages.csv"
    lines = villages.read_text(encoding="utf-8").splitlines()
    villages.write_text("\n".join(x for x in lines if not x.startswith("990101001004,")) + "\n", encoding="utf-8")
    report = await import_divisions(s.db, folder, grids_per_village=2)
    assert report.removed == 3  # the village and its two grids
    await s.org_index.refresh_if_changed()
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        r = await h.get("/api/v1/me/positions")
        assert r.status_code == 200, r.text
        assert r.json()["positions"] == []
        villages.write_text("\n".join(lines) + "\n", encoding="utf-8")  # back again, with its holder
        await import_divisions(s.db, folder, grids_per_village=2)
        await s.org_index.refresh_if_changed()
        r = await h.get("/api/v1/me/positions")
        assert r.status_code == 200 and [p["id"] for p in r.json()["positions"]] == [sec], r.text


async def test_an_edit_that_changes_nothing_writes_nothing(org_server: RunningServer) -> None:
    """A unit renamed to its own name, a role given its own name and rule, or an empty role change:
    answered as they stand, with no new org version and nothing on the audit record. Until
    2026-12-05 (广西 audit) each bumped the org version, which every process applied, and filed an
    ``org.unit_renamed`` or ``org.role_changed`` from a value to itself, as ``PATCH
    /api/v1/org/persons/{id}`` with nothing new no longer did."""
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    idx = s.org_index.index
    name, version = idx.unit_name(idx.unit(VILLAGE)), idx.version
    role = idx.roles[idx.role_id("village_secretary")]
    token = await _admin(rs, None, {"org", "roles", "audit"})
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        r = await h.patch(f"/api/v1/org/units/{VILLAGE}", json={"name": f" {name} "})
        assert r.status_code == 200 and r.json()["name"] == name, r.text
        for body in ({"name": role.name, "jurisdiction": role.jurisdiction}, {}):
            r = await h.patch("/api/v1/org/roles/village_secretary", json=body)
            assert r.status_code == 200, r.text
            assert (r.json()["name"], r.json()["jurisdiction"]) == (role.name, role.jurisdiction)
        for action in ("org.unit_renamed", "org.role_changed"):
            r = await h.get("/api/v1/audit", params={"action": action})
            assert r.status_code == 200 and r.json()["entries"] == [], r.text
    assert s.org_index.index.version == version


async def test_a_village_merged_into_another_townships_is_on_its_own_townships_record(
    org_server: RunningServer,
) -> None:
    """The township losing a village sees the merge in its audit log, as it sees a move out. Until
    2026-12-05 (广西 audit) ``org.units_merged`` was filed under the unit merged into alone: 民生街道's
    auditor never saw 人民中社区 merged into 朝阳街道's 朝阳社区, with its grids and positions."""
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    idx = s.org_index.index
    village_id, into = idx.unit_id(idx.unit(VILLAGE)), "990101002001"
    admin = await _admin(rs, COUNTY, {"org"})
    auditor = await _admin(rs, TOWN, {"audit"})
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(admin)) as h:
        r = await h.post(f"/api/v1/org/units/{VILLAGE}/merge", json={"into": into})
        assert r.status_code == 200, r.text
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(auditor)) as h:
        r = await h.get("/api/v1/audit", params={"action": "org.units_merged"})
        assert r.status_code == 200, r.text
        [entry] = r.json()["entries"]
    assert entry["unit_id"] == village_id and entry["unit_path"].endswith(f"/{village_id}/")
    assert entry["detail"]["unit_id"] == village_id
    assert entry["detail"]["into_id"] == idx.unit_id(idx.unit(into))
