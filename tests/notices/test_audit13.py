"""河北 audit (2026-12-05): what a client written from docs/ met with notices on a province nobody tuned on."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest

from kernel.clock import SystemClock
from kernel.db.database import Database
from messaging.notices import validate_compose
from org_tree.holder import OrgIndexHolder
from org_tree.importer import import_divisions
from org_tree.jurisdiction import SYSTEM
from org_tree.org_service import OrgService
from org_tree.people import PersonDirectory
from tests.client import PASSWORD, Client, login
from tests.conftest import FAST_PASSWORDS, RunningServer
from tests.notices.conftest import CITY, World, write_divisions
from tests.org_server import auth, seat, slot
from tests.procs import zzd_processes

SEL = f"grid_worker@{CITY}/** | grid_volunteer@{CITY}/** | river_chief@{CITY}/** | village_secretary@{CITY}/**"


async def test_a_notice_to_nobody_is_refused_and_nothing_is_stored(org_server: RunningServer) -> None:
    """An exclusion that takes away everything was sent (201, 0 receipts) as a notice to nobody."""
    rs = org_server
    _, _, head_pos, tok = await seat(rs, "990101", "county_head")
    _, _, grid_pos, _ = await seat(rs, "990101001001001", "grid_worker")
    nobody = f"pos:{grid_pos} - pos:{grid_pos}"
    async with httpx.AsyncClient(base_url=rs.http) as h:
        pv = await h.post(
            "/api/v1/notices/preview", headers=auth(tok), json={"as_position": head_pos, "selector": nobody}
        )
        assert pv.status_code == 200 and pv.json()["positions"] == 0  # the preview shows it first
        body = {
            "as_position": head_pos,
            "selector": nobody,
            "client_msg_id": "empty-1",
            "title": "空",
            "priority": "urgent",
        }
        r = await h.post("/api/v1/notices", headers=auth(tok), json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"] == {
            "code": "bad_request",
            "message": "the selector addresses no position",
            "data": {"field": "selector"},
        }
        # Nothing stored: the same client_msg_id is still free for the notice meant.
        r = await h.post("/api/v1/notices", headers=auth(tok), json={**body, "selector": f"pos:{grid_pos}"})
        assert r.status_code == 201 and r.json()["duplicate"] is False and r.json()["receipts"] == 1


async def test_pending_pages_are_as_long_as_the_documented_limit(world: World) -> None:
    """``limit`` takes up to 500 (docs/api/notices.md) but pages were cut at 200 without a word."""
    w = world
    person, position = w.governor()
    res = await w.send(person, position, validate_compose(client_msg_id="p500", title="t", body="b", selector=SEL))
    assert res.receipts > 500
    page = await w.svc.pending(person, res.notice_id, unit=CITY, missing="read", limit=500)
    assert len(page.items) == 500 and page.next_after == page.items[-1]["receipt_id"]
    rest = await w.svc.pending(person, res.notice_id, unit=CITY, missing="read", after=page.next_after, limit=500)
    assert len(page.items) + len(rest.items) == min(res.receipts, 1000)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
async def test_a_recipient_connected_to_both_processes_gets_the_notice_on_both_at_once(
    own_pg_database: str, redis_url: str, tmp_path: Path
) -> None:
    """The process whose connected-first write claimed the person handed the event to its own sockets
    only; the person's device on the other process waited for the safety poll (5.7 s in the audit;
    here the poll is an hour, so it would never come)."""
    db = Database(own_pg_database)
    try:
        await import_divisions(db, write_divisions(tmp_path / "div", townships=1, villages=2), grids_per_village=1)
        holder = OrgIndexHolder(db)
        await holder.load()
        org = OrgService(db, SystemClock(), holder)
        people = PersonDirectory(db, SystemClock())
        seated = []
        for unit, role in (("990101", "county_head"), ("990101001001001", "grid_worker")):
            lg = f"p{secrets.token_hex(5)}"
            p = await people.create(lg, login=lg, password_hash=FAST_PASSWORDS.hash_sync(PASSWORD))
            position = int(holder.index.position_id(slot(holder.index, unit, role)))
            await org.handover(SYSTEM, position, p.id)
            seated.append((lg, position))
    finally:
        await db.dispose()
    (boss, boss_pos), (worker, worker_pos) = seated
    async with zzd_processes(own_pg_database, redis_url, 2, ZZD_SAFETY_POLL_INTERVAL="3600") as (p1, p2):
        tok = (await login(p1.http, worker))["access_token"]
        phone, desk = await Client.connect(p1.ws, tok), await Client.connect(p2.ws, tok)
        for sender in (p1, p2):  # whichever process the sender's request reaches
            btok = (await login(sender.http, boss))["access_token"]
            async with httpx.AsyncClient(base_url=sender.http) as h:
                r = await h.post(
                    "/api/v1/notices",
                    headers=auth(btok),
                    json={"as_position": boss_pos, "selector": f"pos:{worker_pos}", "client_msg_id": f"b-{sender.port}",
                          "title": "两端"},
                )  # fmt: skip
                assert r.status_code == 201, r.text
            n = len(phone.events) + 1
            for c in (phone, desk):
                ev = (await c.wait_events(n, timeout=5))[n - 1]
                assert ev["kind"] == "notice.new" and ev["data"]["notice_id"] == r.json()["notice_id"]
        for c in (phone, desk):
            await c.close()


async def test_a_sender_among_the_recipients_is_told_of_the_recall_once(org_server: RunningServer) -> None:
    """A head who addressed every position of their own unit got ``notice.recalled`` twice."""
    rs = org_server
    _, _, head_pos, tok = await seat(rs, "990101", "county_head")
    async with httpx.AsyncClient(base_url=rs.http) as h:
        r = await h.post(
            "/api/v1/notices",
            headers=auth(tok),
            json={"as_position": head_pos, "selector": "*@990101", "client_msg_id": "self-1", "title": "自己也在"},
        )
        assert r.status_code == 201, r.text
        nid = r.json()["notice_id"]
        mine = (await h.get(f"/api/v1/notices/{nid}", headers=auth(tok))).json()["receipts"]
        assert head_pos in [x["position_id"] for x in mine]  # a recipient as well as the sender
        assert (await h.post(f"/api/v1/notices/{nid}/recall", headers=auth(tok))).status_code == 200
        # The recall's events commit with it; the sender's stream, read after the answer, has them all.
        evs = (await h.get("/api/v1/sync?since=0", headers=auth(tok))).json()["events"]
        kinds = [e["kind"] for e in evs if e["data"].get("notice_id") == nid and e["kind"].startswith("notice.")]
        assert kinds.count("notice.recalled") == 1, kinds


async def test_a_read_frame_naming_a_position_or_a_reply_is_refused_and_changes_nothing(
    org_server: RunningServer,
) -> None:
    """``notice_read`` took ``position_id`` and ``reply`` (fields of ``notice_ack``), marked every position
    read and dropped the reply."""
    rs = org_server
    _, _, head_pos, tok = await seat(rs, "990101", "county_head")
    _, _, grid_pos, wtok = await seat(rs, "990101001001001", "grid_worker")
    worker = await Client.connect(rs.ws, wtok)
    async with httpx.AsyncClient(base_url=rs.http) as h:
        r = await h.post(
            "/api/v1/notices",
            headers=auth(tok),
            json={"as_position": head_pos, "selector": f"pos:{grid_pos}", "client_msg_id": "rd-1", "title": "读"},
        )
        nid = r.json()["notice_id"]
        await worker.wait_events(1)
        for kind in ("notice_read", "notice_delivered"):
            for extra in ({"position_id": grid_pos}, {"reply": "收到"}):
                rep = await worker.request({"type": kind, "notice_id": nid, **extra})
                field = next(iter(extra))
                assert rep["type"] == "error" and rep["code"] == "bad_request", rep
                assert rep["data"] == {"field": field} and rep["message"] == f"{field} goes with notice_ack only"
        [receipt] = (await h.get(f"/api/v1/notices/{nid}", headers=auth(wtok))).json()["receipts"]
        assert receipt["read_at"] is None and receipt["reply"] is None
        ok = await worker.request({"type": "notice_ack", "notice_id": nid, "position_id": grid_pos, "reply": "收到"})
        assert ok["type"] == "ok" and ok["data"]["receipts"][0]["reply"] == "收到"
    await worker.close()


async def test_an_acknowledgement_without_a_body_takes_every_field_as_left_out(org_server: RunningServer) -> None:
    """``POST …/ack``'s fields are all optional, so a client calls it with no body; that answered
    ``invalid_json`` (河北 audit). No body — none at all, or an empty one declared JSON — is ``{}``; a
    create with required fields then says which is missing (``invalid_body``), and nothing is stored."""
    rs = org_server
    _, _, head_pos, tok = await seat(rs, "990101", "county_head")
    _, _, grid_pos, grid_tok = await seat(rs, "990101001001001", "grid_worker")
    _, _, vil_pos, vil_tok = await seat(rs, "990101001001", "village_secretary")
    async with httpx.AsyncClient(base_url=rs.http) as h:
        none = await h.post("/api/v1/notices", headers=auth(tok))
        assert none.status_code == 400 and none.json()["error"]["code"] == "invalid_body", none.text
        assert none.json()["error"]["data"]["field"] in ("as_position", "selector", "title", "client_msg_id")
        plain = await h.post("/api/v1/notices", headers={**auth(tok), "content-type": "text/plain"}, content=b"x")
        assert plain.status_code == 400 and plain.json()["error"]["code"] == "invalid_json"  # a body: JSON only
        body = {"as_position": head_pos, "selector": f"pos:{grid_pos} | pos:{vil_pos}", "client_msg_id": "nb-1",
                "title": "请确认"}  # fmt: skip
        r = await h.post("/api/v1/notices", headers=auth(tok), json=body)
        assert r.status_code == 201, r.text
        nid = r.json()["notice_id"]
        r = await h.post(f"/api/v1/notices/{nid}/ack", headers=auth(grid_tok))  # no body, no content type
        assert r.status_code == 200, r.text
        assert [x["acked_at"] is not None for x in r.json()["receipts"]] == [True]
        r = await h.post(f"/api/v1/notices/{nid}/ack", headers={**auth(vil_tok), "content-type": "application/json"})
        assert r.status_code == 200, r.text  # an empty body declared JSON: the same
        progress = (await h.get(f"/api/v1/notices/{nid}/progress", headers=auth(tok))).json()
        assert progress["total"]["acked"] == 2, progress
