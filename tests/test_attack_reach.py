"""Reaching further than a seat or grant allows: unit groups below one's jurisdiction, a bot after its
removal, an app's workbench visibility past the units its administrator was checked over.

Each test shows the "others cannot" side of an endpoint whose allowed side is tested
elsewhere (tests/conversations/test_api.py, tests/apps/test_bot.py), on both backends.
"""

from __future__ import annotations

import httpx
from sqlalchemy import func, select, update

from apps.schema import apps
from messaging.schema import conversations, messages
from org_tree.jurisdiction import SYSTEM
from tests.apps.helpers import admin_token, app_token, make_app
from tests.client import login, new_people, new_person
from tests.conftest import RunningServer
from tests.org_server import auth, position_at, seat


async def _count(rs: RunningServer, table: object) -> int:
    async with rs.services_obj.db.read() as conn:  # type: ignore[attr-defined]
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


async def test_a_seat_in_a_unit_opens_its_group_but_not_the_units_below(org_server: RunningServer) -> None:
    rs = org_server
    # 村妇联执委: jurisdiction "unit", her notices reach her village only, not its grids.
    _, _, _, fed_tok = await seat(rs, "990101001001", "women_federation")
    _, _, _, sec_tok = await seat(rs, "990101001002", "village_secretary")
    async with httpx.AsyncClient(base_url=rs.http) as h:
        before = await _count(rs, conversations)
        r = await h.post("/api/v1/units/990101001001/group", json={"depth": 1}, headers=auth(fed_tok))
        assert r.status_code == 403, r.text
        assert r.json()["error"] == {
            "code": "forbidden",
            "message": "a group reaching the units below (depth > 0) needs a position managing them",
            "data": {"field": "depth"},
        }
        assert await _count(rs, conversations) == before
        # Her own unit's group is hers to open; a village secretary (subtree) reaches the grids.
        r = await h.post("/api/v1/units/990101001001/group", json={"depth": 0}, headers=auth(fed_tok))
        assert r.status_code == 201, r.text
        r = await h.post("/api/v1/units/990101001002/group", json={"depth": 1}, headers=auth(sec_tok))
        assert r.status_code == 201, r.text
        # A seat elsewhere gives nothing here.
        r = await h.post("/api/v1/units/990101001003/group", json={"depth": 0}, headers=auth(fed_tok))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text


async def test_a_bot_removed_from_a_group_posts_there_no_more(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    app = await make_app(rs, await admin_token(rs), name="值班机器人", scopes=["chat:bot"])
    r = await app_token(rs, app["client_id"], app["client_secret"])
    tok, bot = r.json()["access_token"], app["bot_person_id"]
    (owner, _), (member, _) = await new_people(s, 2)
    group = await s.groups.create(owner, "值班群", person_ids=[member, bot])
    path = f"/api/v1/bot/conversations/{group['id']}/messages"
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        first = await h.post(path, json={"body": "今日值班：张三"}, headers={"Idempotency-Key": "k1"})
        assert first.status_code == 201, first.text
        await s.groups.remove(owner, group["id"], person_ids=[bot])
        stored = await _count(rs, messages)

        r = await h.post(path, json={"body": "还在吗"}, headers={"Idempotency-Key": "k2"})
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "not_found"
        # The first key replays the first answer; nothing new is written.
        again = await h.post(path, json={"body": "今日值班：张三"}, headers={"Idempotency-Key": "k1"})
        assert again.json()["message_id"] == first.json()["message_id"]
        assert await _count(rs, messages) == stored


async def test_a_county_app_stays_out_of_other_counties_workbenches(org_server: RunningServer) -> None:
    rs = org_server
    tok = await admin_token(rs)  # ``apps`` over 990101 only
    _, _, _, far_tok = await seat(rs, "990102001001001", "grid_worker")
    wide = {"name": "全市推送", "owning_unit": "990101", "subtree": "990101", "visibility": "专职网格员@9901/**",
            "scopes": ["org:read"]}  # fmt: skip
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        before = await _count(rs, apps)
        r = await h.post("/api/v1/apps", json=wide)
        assert r.status_code == 403, r.text
        err = r.json()["error"]
        assert err["code"] == "out_of_scope" and err["data"]["field"] == "visibility" and err["data"]["count"] > 0
        assert await _count(rs, apps) == before
        made = await make_app(rs, tok, name="本县工作台", scopes=["org:read"])
        r = await h.patch(f"/api/v1/apps/{made['id']}", json={"visibility": "专职网格员@9901/**"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "out_of_scope", r.text
        assert (await h.get(f"/api/v1/apps/{made['id']}")).json()["visibility"] == "*@990101"
    # A 可见范围 stored wider before the check (or widened by a later move) still reaches no further.
    async with rs.services_obj.db.write() as conn:  # type: ignore[attr-defined]
        await conn.execute(update(apps).where(apps.c.id == made["id"]).values(visibility="专职网格员@9901/**"))
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(far_tok)) as h:
        r = await h.get("/api/v1/me/apps")
        assert r.status_code == 200 and made["id"] not in [a["id"] for a in r.json()["apps"]], r.text


async def test_a_county_administrator_cannot_seat_then_lock_out_someone_beyond_the_county(
    org_server: RunningServer,
) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    county_admin = await admin_token(rs, "990101", frozenset({"assignments"}))
    root_id, root_login = await new_person(s, "全省管理员")
    await s.grants.grant(SYSTEM, root_id, None, frozenset({"assignments", "grants"}))
    root_tok = (await login(rs.http, root_login))["access_token"]
    far_id, _, _, far_tok = await seat(rs, "990102", "county_head")  # the other county's head
    seat_here = position_at(rs, "990101001001001", "grid_worker")
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(county_admin)) as h:
        for victim in (root_id, far_id):
            r = await h.post(
                f"/api/v1/org/positions/{seat_here}/assignments", json={"person_id": victim, "kind": "deputy"}
            )
            assert r.status_code == 201, r.text  # seating anyone in one's county is allowed
            for change in ({"disabled": True}, {"name": "冒名"}, {"phone": "13800000000"}):
                r = await h.patch(f"/api/v1/org/persons/{victim}", json=change)
                assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    for victim, tok in ((root_id, root_tok), (far_id, far_tok)):
        person = await s.persons.get(victim)
        assert not person.disabled and person.name != "冒名"
        async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
            assert (await h.get("/api/v1/me")).status_code == 200
    # A whole-tree administrator may still change them.
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(root_tok)) as h:
        r = await h.patch(f"/api/v1/org/persons/{far_id}", json={"name": "改名"})
        assert r.status_code == 200, r.text


async def test_a_grid_worker_reads_task_figures_of_their_grid_not_of_the_units_above(
    org_server: RunningServer,
) -> None:
    rs = org_server
    grid = "990101001001001"
    _, _, _, worker = await seat(rs, grid, "grid_worker")
    _, _, _, head = await seat(rs, "990101", "county_head")
    async with httpx.AsyncClient(base_url=rs.http) as h:
        assert (await h.get("/api/v1/tasks/stats", params={"unit": grid}, headers=auth(worker))).status_code == 200
        for above in ("990101001001", "990101", "99"):
            r = await h.get("/api/v1/tasks/stats", params={"unit": above}, headers=auth(worker))
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (above, r.text)
        # Who holds the seats above stays readable to them (the directory's private part).
        county_head = position_at(rs, "990101", "county_head")
        assert (await h.get(f"/api/v1/org/positions/{county_head}/history", headers=auth(worker))).status_code == 200
        assert (await h.get("/api/v1/tasks/stats", params={"unit": "990101"}, headers=auth(head))).status_code == 200
