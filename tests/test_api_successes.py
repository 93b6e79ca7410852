"""Operations whose docs/api example used to be only a refusal, each carried through to success.

A client written from docs/api/ needs the answer it will get when the call
works: these recorded as 404/403/400 only (a recording of a few tests replaced
earlier successes). The test asserts what a client relies on; with
``ZZD_RECORD_EXAMPLES`` it also records the successes (scripts/api_docs.py).
"""

from __future__ import annotations

import httpx

from org_tree.jurisdiction import SYSTEM
from tests.attachments.conftest import PNG_HEAD, image, sha
from tests.client import new_person
from tests.conftest import RunningServer
from tests.org_server import auth, position_at, seat

VILLAGE = "990101001001"
GRID = "990101001001001"


async def test_people_and_admin_calls_that_work(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    admin_id, _, _, admin_tok = await seat(rs, "990101", "county_head")
    await s.grants.grant(SYSTEM, admin_id, None, frozenset({"org", "assignments", "roles", "audit"}))
    worker, _, w_pos, w_tok = await seat(rs, GRID, "grid_worker")
    _, _, chief_pos, chief_tok = await seat(rs, VILLAGE, "river_chief")
    newcomer, _ = await new_person(s)
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(w_tok)) as w:
        photo = image(PNG_HEAD, 2_000)
        up = await w.post("/api/v1/uploads", content=photo, headers={"Content-Type": "image/png",
                                                                     "X-Content-SHA256": sha(photo)})  # fmt: skip
        assert up.status_code == 201 and up.json()["digest"] == sha(photo), up.text
        report = {"as_position": w_pos, "client_msg_id": "ok-r1", "category": "river_litter", "text": "河道漂浮垃圾",
                  "location": {"lat": 28.97, "lon": 118.86}, "photos": [sha(photo)]}  # fmt: skip
        filed = await w.post("/api/v1/reports", json=report)
        assert filed.status_code == 201, filed.text
        seen = await w.get(f"/api/v1/reports/{filed.json()['report_id']}")
        assert seen.status_code == 200 and seen.json()["photos"] == [sha(photo)]
        sent = await w.post(
            f"/api/v1/positions/{chief_pos}/messages", json={"client_msg_id": "ok-m1", "body": "河长您好"}
        )
        assert sent.status_code == 201, sent.text
        cid = sent.json()["conversation_id"]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(chief_tok)) as c:
        hist = await c.get(f"/api/v1/conversations/{cid}/messages", params={"limit": 20})
        [m] = hist.json()["messages"]
        assert m["body"] == "河长您好" and m["position_id"] == chief_pos and m["peer_person_id"] == worker
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(admin_tok)) as a:
        view = await a.get(f"/api/v1/org/positions/{w_pos}")
        assert view.status_code == 200 and view.json()["holders"] == [worker]
        deputy = await a.post(
            f"/api/v1/org/positions/{w_pos}/assignments", json={"person_id": newcomer, "kind": "deputy"}
        )
        assert deputy.status_code == 201 and deputy.json()["kind"] == "deputy", deputy.text
        history = await a.get(f"/api/v1/org/positions/{w_pos}/history")
        assert history.status_code == 200 and newcomer in {x["person_id"] for x in history.json()["assignments"]}
        ended = await a.post(f"/api/v1/org/assignments/{deputy.json()['id']}/end")
        assert ended.status_code == 200 and ended.json()["end_at"] is not None
        card = await a.get(f"/api/v1/org/persons/{worker}")
        assert card.status_code == 200 and [p["position_id"] for p in card.json()["positions"]] == [w_pos], card.text
        renamed = await a.patch(f"/api/v1/org/persons/{newcomer}", json={"name": "钱七"})
        assert renamed.status_code == 200 and renamed.json()["name"] == "钱七", renamed.text
        role = await a.post(
            "/api/v1/org/roles", json={"key": "safety_officer", "name": "安全员", "levels": ["village"]}
        )
        assert role.status_code == 201, role.text
        role = await a.patch("/api/v1/org/roles/safety_officer", json={"name": "安全管理员"})
        assert role.status_code == 200 and role.json()["name"] == "安全管理员", role.text
        created = await a.post("/api/v1/org/positions", json={"unit": VILLAGE, "role": "safety_officer",
                                                               "title": "安全副主任"})  # fmt: skip
        assert created.status_code == 201 and created.json()["role_key"] == "safety_officer", created.text
        assert created.json()["title"] == "安全副主任"  # it was stored and shown nowhere
        seen = await a.get(f"/api/v1/org/positions/{created.json()['id']}")
        assert seen.json()["title"] == "安全副主任"
        assert position_at(rs, VILLAGE, "safety_officer") == created.json()["id"]


async def test_app_calls_that_work(org_server: RunningServer) -> None:
    """The app operations docs/api had no example of: the workbench, a notice's live count, a photo
    uploaded by the app; and a subscription list that is not empty."""
    from tests.apps.helpers import admin_token, app_token, make_app

    rs = org_server
    admin = await admin_token(rs)
    made = await make_app(rs, admin, name="会议签到", scopes=["notice:send", "task:act", "events:report.filed"],
                          visibility=f"village_secretary@{VILLAGE}")  # fmt: skip
    pid, _, _, person_tok = await seat(rs, VILLAGE, "village_secretary")
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(person_tok)) as h:
        bench = await h.get("/api/v1/me/apps")
        assert bench.status_code == 200 and [a["name"] for a in bench.json()["apps"]] == ["会议签到"], bench.text
    tok = (await app_token(rs, made["client_id"], made["client_secret"])).json()["access_token"]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as a:
        notice = {"selector": f"village_secretary@{VILLAGE}", "title": "明早九点开会", "ack_required": True}
        sent = await a.post("/api/v1/bot/notices", headers={"Idempotency-Key": "meeting-1"}, json=notice)
        assert sent.status_code == 201, sent.text
        nid = sent.json()["notice_id"]
        assert (await a.post(f"/api/v1/bot/notices/{nid}/check-ins", json={"person_id": pid})).status_code == 200
        progress = await a.get(f"/api/v1/bot/notices/{nid}/progress")
        assert progress.status_code == 200, progress.text
        assert progress.json()["notice_total"] == {"receipts": 1, "delivered": 1, "read": 1, "acked": 1}
        photo = image(PNG_HEAD, 2_000)
        up = await a.post("/api/v1/bot/uploads", content=photo, headers={"Content-Type": "image/png",
                                                                         "X-Content-SHA256": sha(photo)})  # fmt: skip
        assert (up.status_code, up.json()["digest"]) == (201, sha(photo)), up.text
        sub = await a.post("/api/v1/bot/subscriptions", json={"mode": "stream", "event_types": ["report.filed"],
                                                              "filters": {"unit": VILLAGE}})  # fmt: skip
        assert sub.status_code == 201, sub.text
        listed = (await a.get("/api/v1/bot/subscriptions")).json()["subscriptions"]
        assert [x["id"] for x in listed] == [sub.json()["id"]]
