"""Reaching further than a seat allows: unit groups below one's jurisdiction, a bot after its removal.

Each test shows the "others cannot" side of an endpoint whose allowed side is tested
elsewhere (tests/conversations/test_api.py, tests/apps/test_bot.py), on both backends.
"""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from messaging.schema import conversations, messages
from tests.apps.helpers import admin_token, app_token, make_app
from tests.client import new_people
from tests.conftest import RunningServer
from tests.org_server import auth, seat


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
