"""One-click reminders from the dashboard: who is reminded, who may remind, and how often."""

from __future__ import annotations

import httpx

from tests.client import Client
from tests.conftest import RunningServer
from tests.org_server import auth, seat


async def test_remind_reaches_only_those_still_owing_in_the_unit_and_only_the_sender_may(
    org_server: RunningServer,
) -> None:
    rs = org_server
    _, _, head_pos, mgr_tok = await seat(rs, "990101", "county_head")
    done_id, _, _, done_tok = await seat(rs, "990101001001001", "grid_worker")
    _, _, owe_pos, owe_tok = await seat(rs, "990101001001002", "grid_worker")
    _, _, _, other_tok = await seat(rs, "990101002001001", "grid_worker")  # another township
    done, owe, other = [await Client.connect(rs.ws, t) for t in (done_tok, owe_tok, other_tok)]
    async with httpx.AsyncClient(base_url=rs.http) as h:
        r = await h.post(
            "/api/v1/notices",
            headers=auth(mgr_tok),
            json={"as_position": head_pos, "selector": "专职网格员@990101/**", "client_msg_id": "r-1",
                  "title": "防汛", "ack_required": True},
        )  # fmt: skip
        nid = r.json()["notice_id"]
        for c in (done, owe, other):
            assert (await c.wait_events(1))[0]["kind"] == "notice.new"
        assert (await h.post(f"/api/v1/notices/{nid}/ack", headers=auth(done_tok), json={})).status_code == 200
        # Not the sender side: the same answer as a missing notice.
        r = await h.post(f"/api/v1/notices/{nid}/remind", headers=auth(owe_tok), json={"unit": "990101001"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        bad = await h.post(f"/api/v1/notices/{nid}/remind", headers=auth(mgr_tok), json={"unit": "990101001", "x": 1})
        assert bad.status_code == 400
        r = await h.post(f"/api/v1/notices/{nid}/remind", headers=auth(mgr_tok), json={"unit": "990101001"})
        assert r.status_code == 200, r.text
        owed_in_township = r.json()["reminded"]
        assert owed_in_township >= 1
        ev = (await owe.wait_events(2))[1]
        assert ev["kind"] == "notice.remind" and ev["data"]["manual"] is True
        assert owe_pos in [p["position_id"] for p in ev["data"]["positions"]]
        # Acknowledged already, or outside the unit: no reminder (a later event proves the order).
        again = await h.post(f"/api/v1/notices/{nid}/remind", headers=auth(mgr_tok), json={"unit": "990101001"})
        assert again.status_code == 429
        # Within that minute anyone else still gets 404, not 429, which would say the notice exists.
        r = await h.post(f"/api/v1/notices/{nid}/remind", headers=auth(owe_tok), json={"unit": "990101001"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = await h.post(f"/api/v1/notices/{nid}/remind", headers=auth(mgr_tok), json={"unit": "990101002"})
        assert r.status_code == 200
        township2 = (await h.get("/api/v1/org/units/990101002", headers=auth(mgr_tok))).json()["id"]
        ev = (await other.wait_events(2))[1]
        assert ev["kind"] == "notice.remind" and ev["data"]["unit_id"] == township2
        # The one who acknowledged got no reminder: a direct message after both reminders comes next.
        dm = {"to": done_id, "client_msg_id": "m", "body": "好"}
        r = await h.post("/api/v1/messages", headers=auth(mgr_tok), json=dm)
        assert r.status_code == 201
        assert [e["kind"] for e in await done.wait_events(2)] == ["notice.new", "message.new"]
        # A recalled notice: reminding or making tasks of it answers the 409 a receipt call answers.
        assert (await h.post(f"/api/v1/notices/{nid}/recall", headers=auth(mgr_tok), json={})).status_code == 200
        r = await h.post(f"/api/v1/notices/{nid}/remind", headers=auth(mgr_tok), json={"unit": "990101"})
        # The unit reminded a moment ago too: the recall (final) is said, not "wait a minute" (it was 429).
        same = await h.post(f"/api/v1/notices/{nid}/remind", headers=auth(mgr_tok), json={"unit": "990101001"})
        assert same.status_code == 409 and same.json()["error"]["data"] == {"notice_id": nid, "recalled": True}
        read = await h.post(f"/api/v1/notices/{nid}/read", headers=auth(owe_tok), json={})
        tasks = await h.post(f"/api/v1/notices/{nid}/tasks", headers=auth(mgr_tok), json={"client_msg_id": "t-1"})
        assert r.status_code == read.status_code == tasks.status_code == 409
        recalled = {"notice_id": nid, "recalled": True}
        assert r.json()["error"]["data"] == read.json()["error"]["data"] == tasks.json()["error"]["data"] == recalled
    for c in (done, owe, other):
        await c.close()
