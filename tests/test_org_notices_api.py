"""Issues 3 and 4 through the public surface: REST and WebSocket against a served app
with a real (small) division tree and synthetic holders, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx

from org_tree.jurisdiction import SYSTEM
from tests.client import Client, login, new_person
from tests.conftest import RunningServer
from tests.org_server import auth as _auth
from tests.org_server import seat as _seat
from tests.org_server import slot as _slot

ADMIN = SYSTEM


async def test_directory_search_preview_and_jurisdiction(org_server: RunningServer) -> None:
    rs = org_server
    _, _, head_pos, tok = await _seat(rs, "990101", "county_head")
    async with httpx.AsyncClient(base_url=rs.http, headers=_auth(tok)) as h:
        mine = (await h.get("/api/v1/me/positions")).json()
        assert [p["id"] for p in mine["positions"]] == [head_pos]
        hits = (await h.get("/api/v1/org/search", params={"q": "kcq"})).json()
        assert hits["total"] > 0 and all("柯城区" in "/".join(x["unit_path"]) for x in hits["hits"])
        pv = await h.post("/api/v1/org/preview", json={"as_position": head_pos, "selector": "专职网格员@990101/**"})
        assert pv.status_code == 200, pv.text
        body = pv.json()
        assert body["positions"] == 2 * 4 * 2  # townships × villages × grids, one worker position each
        assert sum(c["positions"] for c in body["by_child"]) == body["positions"]
        out = await h.post("/api/v1/org/preview", json={"as_position": head_pos, "selector": "专职网格员@990102/**"})
        assert out.status_code == 403 and out.json()["error"]["code"] == "out_of_scope"
        bad = await h.post("/api/v1/org/preview", json={"as_position": head_pos, "selector": "@@"})
        assert bad.status_code == 400
        not_mine = await h.post(
            "/api/v1/org/preview", json={"as_position": head_pos + 1, "selector": "专职网格员@990101/**"}
        )
        assert not_mine.status_code == 403


async def test_notice_to_grid_workers_with_receipts_progress_and_handover(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    mgr_id, _, head_pos, mgr_tok = await _seat(rs, "990101", "county_head")
    grid = "990101001001001"
    w_id, _, w_pos, w_tok = await _seat(rs, grid, "grid_worker")
    manager = await Client.connect(rs.ws, mgr_tok)
    worker = await Client.connect(rs.ws, w_tok)
    async with httpx.AsyncClient(base_url=rs.http, headers=_auth(mgr_tok)) as h:
        r = await h.post(
            "/api/v1/notices",
            json={
                "as_position": head_pos,
                "selector": "专职网格员@990101/**",
                "client_msg_id": "n-1",
                "title": "防汛通知",
                "body": "今晚有暴雨，请巡查河道。",
                "priority": "urgent",
                "ack_required": True,
            },
        )
        assert r.status_code == 201, r.text
        sent = r.json()
        again = await h.post(
            "/api/v1/notices",
            json={"as_position": head_pos, "selector": "专职网格员@990101/**", "client_msg_id": "n-1", "title": "x"},
        )
        assert again.status_code == 200 and again.json()["notice_id"] == sent["notice_id"]
        nid = sent["notice_id"]

        [ev] = await worker.wait_events(1)
        assert ev["kind"] == "notice.new" and ev["data"]["notice_id"] == nid
        assert w_pos in [p["position_id"] for p in ev["data"]["positions"]]
        read = await worker.request({"type": "notice_read", "notice_id": nid})
        assert read["type"] == "ok"
        ack = await worker.request({"type": "notice_ack", "notice_id": nid, "reply": "收到"})
        assert ack["data"]["receipts"][0]["acked_at"] is not None
        twice = await worker.request({"type": "notice_ack", "notice_id": nid, "reply": "again"})
        assert twice["data"]["receipts"][0]["reply"] == "收到"  # idempotent: the first ack stands

        prog = (await h.get(f"/api/v1/notices/{nid}/progress", params={"unit": "990101"})).json()
        assert prog["total"]["read"] == 1 and prog["total"]["acked"] == 1, prog
        assert sum(c["receipts"] for c in prog["by_child"]) == prog["total"]["receipts"]
        pending = (await h.get(f"/api/v1/notices/{nid}/pending", params={"unit": grid, "missing": "ack"})).json()
        assert all(item["person_id"] != w_id for item in pending["items"])

        # The sender is told about progress by a coalesced event, not one per receipt.
        evs = await manager.wait_events(1)
        assert any(e["kind"] == "notice.progress" for e in evs)

        # Outsiders cannot acknowledge or read progress.
        stranger_tok = (await login(rs.http, (await new_person(s))[1]))["access_token"]
        stranger = await Client.connect(rs.ws, stranger_tok)
        denied = await stranger.request({"type": "notice_ack", "notice_id": nid})
        assert denied["code"] == "not_found"
        async with httpx.AsyncClient(base_url=rs.http, headers=_auth(stranger_tok)) as h2:
            assert (await h2.get(f"/api/v1/notices/{nid}/progress")).status_code == 404

        # Handover: another grid worker position's unread receipt follows the position.
        other_slot = _slot(s.org_index.index, "990101001001002", "grid_worker")
        other_pos = s.org_index.index.position_id(other_slot)
        predecessors = s.org_index.index.primary_holders(other_slot)
        successor, succ_login = await new_person(s)
        # Holding the county head position gives no right to rearrange the org; a grant does.
        refused = await h.post(f"/api/v1/org/positions/{other_pos}/handover", json={"person_id": successor})
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "no_grant")
        await s.grants.grant(SYSTEM, mgr_id, "990101", frozenset({"assignments"}))
        ho = await h.post(f"/api/v1/org/positions/{other_pos}/handover", json={"person_id": successor})
        assert ho.status_code == 200, ho.text
        assert ho.json()["previous_holders"] == list(predecessors)
        assert ho.json()["unread_notices_moved"] == len(predecessors)
        succ_tok = (await login(rs.http, succ_login))["access_token"]
        async with httpx.AsyncClient(base_url=rs.http, headers=_auth(succ_tok)) as h3:
            mine = (await h3.get(f"/api/v1/notices/{nid}")).json()
        assert other_pos in [r["position_id"] for r in mine["receipts"]]
    for c in (manager, worker, stranger):
        await c.close()
