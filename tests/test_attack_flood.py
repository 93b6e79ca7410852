"""One account flooding others: notices, tasks and reports share the per-person send budget.

Before, only chat messages were limited (``ZZD_SEND_RATE_PER_MINUTE``): a county head could
send notices to hundreds without end, and a grid worker file reports without end — each a task
routed to an office above, with DING calls out of band when its deadline passes. The OpenAPI
document already promised 429 for them. A refused write stores nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from messaging.notices.schema import notices
from messaging.schema import conversations, messages
from messaging.tasks.schema import reports, tasks
from tests.client import Client
from tests.conftest import RunningServer
from tests.org_server import auth, org_serving, seat

BUDGET = 3


@pytest.fixture
async def tight_server(own_db_url: str, tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with org_serving(own_db_url, tmp_path, send_rate_per_minute=BUDGET) as rs:
        yield rs


async def _count(rs: RunningServer, table: Any) -> int:
    async with rs.services_obj.db.read() as conn:  # type: ignore[attr-defined]
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


def _limited(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    err = r.json()["error"]
    assert err["code"] == "rate_limited" and err["data"]["per_minute"] == BUDGET, err


async def test_notices_tasks_and_reports_are_bounded_per_person(tight_server: RunningServer) -> None:
    rs = tight_server
    _, _, head_pos, head = await seat(rs, "990101", "county_head")
    _, _, grid_pos, worker = await seat(rs, "990101001001001", "grid_worker")
    work = {"as_position": head_pos, "selector": "专职网格员@990101/**", "title": "防汛"}
    async with httpx.AsyncClient(base_url=rs.http) as h:
        for i in range(BUDGET):
            r = await h.post("/api/v1/notices", headers=auth(head), json={**work, "client_msg_id": f"n{i}"})
            assert r.status_code == 201, r.text
        stored = (await _count(rs, notices), await _count(rs, tasks), await _count(rs, reports))
        r = await h.post("/api/v1/notices", headers=auth(head), json={**work, "client_msg_id": "n-over"})
        _limited(r)
        r = await h.post("/api/v1/tasks", headers=auth(head), json={**work, "client_msg_id": "t-over"})
        _limited(r)
        r = await h.post("/api/v1/notices/1/tasks", headers=auth(head), json={"client_msg_id": "nt-over"})
        _limited(r)

        report = {"as_position": grid_pos, "category": "river_litter", "text": "河里有垃圾",
                  "location": {"lat": 28.9, "lon": 118.8}}  # fmt: skip
        for i in range(BUDGET):
            r = await h.post("/api/v1/reports", headers=auth(worker), json={**report, "client_msg_id": f"r{i}"})
            assert r.status_code == 201, r.text
        stored = (stored[0], stored[1] + BUDGET, stored[2] + BUDGET)  # each report made its task
        _limited(await h.post("/api/v1/reports", headers=auth(worker), json={**report, "client_msg_id": "r-over"}))
        assert (await _count(rs, notices), await _count(rs, tasks), await _count(rs, reports)) == stored


async def test_group_changes_edits_and_recalls_are_bounded_per_person(tight_server: RunningServer) -> None:
    """The 湖南 audit: a grid worker made 105 groups with the same colleague in a minute, then
    removed, re-added and renamed 180 times, and could edit one message without end: each a
    system note or an event in the colleague's stream, none counted. They draw on the same budget
    now (REST and the WebSocket ``edit``/``recall`` frames), and a refused one changes nothing."""
    rs = tight_server
    _, _, grid_pos, worker = await seat(rs, "990101001001001", "grid_worker")
    colleague, _, _, _ = await seat(rs, "990101001001002", "grid_worker")
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(worker)) as h:
        made = await h.post("/api/v1/groups", json={"title": "网格群", "person_ids": [colleague]})
        gid = made.json()["id"]
        said = await h.post(f"/api/v1/conversations/{gid}/messages", json={"client_msg_id": "m1", "body": "你好"})
        mid = said.json()["message_id"]
        r = await h.patch(f"/api/v1/groups/{gid}", json={"title": "改名"})
        assert (made.status_code, said.status_code, r.status_code) == (201, 201, 200), r.text
        before = (await _count(rs, conversations), await _count(rs, messages))
        over = [
            await h.post("/api/v1/groups", json={"title": "刷屏", "person_ids": [colleague]}),
            await h.patch(f"/api/v1/groups/{gid}", json={"title": "再改"}),
            await h.post(f"/api/v1/groups/{gid}/members/remove", json={"person_ids": [colleague]}),
            await h.post(f"/api/v1/groups/{gid}/members", json={"position_ids": [grid_pos]}),
            await h.post(f"/api/v1/groups/{gid}/admins", json={"person_id": colleague, "admin": True}),
            await h.post("/api/v1/units/990101001001001/group", json={}),
            await h.patch(f"/api/v1/messages/{mid}", json={"body": "改了"}),
            await h.post(f"/api/v1/messages/{mid}/recall"),
        ]
        for r in over:
            _limited(r)
        assert (await _count(rs, conversations), await _count(rs, messages)) == before
        ws = await Client.connect(rs.ws, worker)
        try:
            for frame in ({"type": "edit", "message_id": mid, "body": "改了"}, {"type": "recall", "message_id": mid}):
                reply = await ws.request(frame)
                assert (reply["type"], reply["code"], reply["data"]) == (
                    "error",
                    "rate_limited",
                    {"per_minute": BUDGET},
                )
        finally:
            await ws.close()
        view = (await h.get(f"/api/v1/conversations/{gid}/messages")).json()["messages"]
        assert [(m["body"], m["edited_at"], m["recalled_at"]) for m in view if m["id"] == mid] == [("你好", None, None)]
        group = (await h.get(f"/api/v1/groups/{gid}")).json()
        roles = {m["person_id"]: m["role"] for m in group["members"]}
        assert (group["title"], group["position_ids"], roles[colleague]) == ("改名", [], None)
