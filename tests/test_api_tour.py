"""A tour of the REST operations the domain tests reach only through services.

Each answer is shaped by its declared model on the way out (``reply``), so a
model that does not fit what the service returns fails here as a 500; the
assertions check what a client relies on. The tour also records the examples
of docs/api/ for these operations (tests/examples_recorder.py).
"""

from __future__ import annotations

import httpx

from tests.client import login, new_person
from tests.conftest import RunningServer
from tests.org_server import auth, seat
from zzd.gateway.asyncapi import EVENTS


async def test_org_reads_selectors_notices_and_groups(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    mgr_id, _, head_pos, mgr_tok = await seat(rs, "990101", "county_head")
    w_id, _, w_pos, w_tok = await seat(rs, "990101001001001", "grid_worker")
    other_id, _ = await new_person(s)
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(mgr_tok)) as h:
        unit = (await h.get("/api/v1/org/units/990101")).json()
        assert unit["code"] == "990101" and unit["level"] == "county" and unit["children"] > 0
        kids = (await h.get("/api/v1/org/units/990101/children", params={"limit": 2})).json()
        assert len(kids["units"]) == 2 and all(k["parent_id"] == unit["id"] for k in kids["units"])
        roles = (await h.get("/api/v1/org/roles")).json()["roles"]
        assert any(r["key"] == "grid_worker" for r in roles)
        stats = (await h.get("/api/v1/org/stats")).json()
        assert stats["units"]["grid"] > 0 and stats["positions"] >= stats["units"]["grid"]
        sel = {"as_position": head_pos, "selector": "专职网格员@990101001/**"}
        res = (await h.post("/api/v1/org/resolve", json=sel, params={"limit": 3})).json()
        assert res["positions"] > 0 and len(res["receivers"]) <= 3
        pv = (await h.post("/api/v1/notices/preview", json=sel)).json()
        assert pv["positions"] == res["positions"]
        # fallbacks lists the unfilled vacancies too; the two counts split them as /openapi.json says
        reasons = [f["reason"] for f in pv["fallbacks"]]
        assert reasons and len(reasons) == min(100, pv["fallback_count"] + pv["unfilled_count"])
        if len(reasons) < 100:
            assert reasons.count("unfilled") == pv["unfilled_count"]
        preview_doc = (await h.get("/openapi.json")).json()["components"]["schemas"]["Preview"]["properties"]
        assert "reason unfilled" in preview_doc["fallbacks"]["description"]
        assert "reason other than unfilled" in preview_doc["fallback_count"]["description"]
        notice = {**sel, "client_msg_id": "tour-1", "title": "请核对网格信息", "ack_required": True}
        nid = (await h.post("/api/v1/notices", json=notice)).json()["notice_id"]
        reminded = await h.post(f"/api/v1/notices/{nid}/remind", json={"unit": "990101001", "missing": "ack"})
        assert reminded.status_code == 200 and reminded.json()["reminded"] > 0, reminded.text
        tasks = await h.post(f"/api/v1/notices/{nid}/tasks", json={"client_msg_id": "tour-t", "as_position": head_pos})
        assert tasks.status_code == 201, tasks.text
        assert {t["owner_position_id"] for t in tasks.json()["tasks"]} >= {w_pos}
        g = (await h.post("/api/v1/groups", json={"title": "核查组", "person_ids": [w_id, other_id]})).json()
        gid = g["id"]
        assert (await h.patch(f"/api/v1/groups/{gid}", json={"title": "网格核查组"})).json()["title"] == "网格核查组"
        admins = (await h.post(f"/api/v1/groups/{gid}/admins", json={"person_id": w_id, "admin": True})).json()
        assert {m["person_id"]: m["role"] for m in admins["members"]}[w_id] == "admin"
        removed = (await h.post(f"/api/v1/groups/{gid}/members/remove", json={"person_ids": [other_id]})).json()
        assert other_id not in {m["person_id"] for m in removed["members"]}
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(w_tok)) as w:
        events = (await w.get("/api/v1/sync", params={"since": 0})).json()["events"]
        reminder = next(e["data"] for e in events if e["kind"] == "notice.remind")
        assert EVENTS["notice.remind"].model_validate(reminder).manual is True
        for e in events:
            EVENTS[e["kind"]].model_validate(e["data"])
        # another epoch: 409 resync_required, as /openapi.json (and so docs/api/chat.md) lists for the operation
        stale = await w.get("/api/v1/sync", params={"since": 1, "epoch": "0badcafe"})
        err = stale.json()["error"]
        assert stale.status_code == 409 and err["code"] == "resync_required"
        assert set(err["data"]) == {"epoch", "last_seq"}
        sync_doc = (await w.get("/openapi.json")).json()["paths"]["/api/v1/sync"]["get"]
        assert "resync_required" in sync_doc["responses"]["409"]["description"]
        [epoch_param] = [p for p in sync_doc["parameters"] if p["name"] == "epoch"]
        assert "resync_required" in epoch_param["description"]
        left = await w.post(f"/api/v1/groups/{gid}/leave")
        assert left.status_code == 200 and w_id not in {m["person_id"] for m in left.json()["members"]}
        assert (await w.post("/api/v1/auth/logout")).json() == {"revoked": True}
        assert (await w.get("/api/v1/me")).status_code == 403  # the session is gone
    again = await login(rs.http, (await new_person(s))[1])
    assert again["token_type"] == "Bearer" and mgr_id != again["person_id"]
