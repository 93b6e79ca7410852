"""A person after their position was handed over: what they keep, and what they may no longer do.

The rule (docs/admin.md "Former holders", docs/notices.md "Access"): work sent *as* a
position stays with the position. Its former holder still reads what they sent and
their own period of its threads, but acting on that work as the position — recalling a
notice, reminding its recipients, turning it into tasks — needs the position held now.
Before this test a county head who had handed over their seat could still recall the
seat's notices, remind hundreds of recipients in its name, and create tasks whose
creator is the seat they no longer held.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select

from messaging.tasks.schema import tasks
from org_tree.jurisdiction import SYSTEM
from tests.client import login, new_person
from tests.conftest import RunningServer
from tests.org_server import auth, seat


async def _tasks(rs: RunningServer) -> int:
    async with rs.services_obj.db.read() as conn:  # type: ignore[attr-defined]
        return int((await conn.execute(select(func.count()).select_from(tasks))).scalar_one())


def _notice(position: int, cid: str) -> dict[str, Any]:
    return {"as_position": position, "selector": "专职网格员@990101/**", "client_msg_id": cid,
            "title": "防汛", "body": "巡查", "ack_required": True}  # fmt: skip


async def test_a_former_sender_reads_the_notice_but_no_longer_acts_as_its_position(
    org_server: RunningServer,
) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    _, _, head_pos, old_tok = await seat(rs, "990101", "county_head")
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(old_tok)) as old:
        first = await old.post("/api/v1/notices", json=_notice(head_pos, "n-former-1"))
        second = await old.post("/api/v1/notices", json=_notice(head_pos, "n-former-2"))
        assert first.status_code == second.status_code == 201, (first.text, second.text)
        n1, n2 = first.json()["notice_id"], second.json()["notice_id"]

        successor, succ_login = await new_person(s)
        await s.org.handover(SYSTEM, head_pos, successor)
        before = await _tasks(rs)

        # What they sent stays readable to them.
        assert (await old.get(f"/api/v1/notices/{n1}")).status_code == 200
        assert (await old.get(f"/api/v1/notices/{n1}/progress")).status_code == 200

        # Acting as the seat is refused, and changes nothing.
        refusals = [
            await old.post(f"/api/v1/notices/{n1}/recall", json={}),
            await old.post(f"/api/v1/notices/{n1}/remind", json={"unit": "990101", "missing": "ack"}),
            await old.post(f"/api/v1/notices/{n2}/tasks", json={"client_msg_id": "t-former"}),
        ]
        for r in refusals:
            assert r.status_code == 403, r.text
            err = r.json()["error"]
            assert err["code"] == "forbidden" and err["data"]["position_id"] == head_pos, err
        assert (await old.get(f"/api/v1/notices/{n1}")).json()["recalled_at"] is None
        assert await _tasks(rs) == before

    # The seat's new holder may do all three.
    succ_tok = (await login(rs.http, succ_login))["access_token"]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(succ_tok)) as new:
        made = await new.post(f"/api/v1/notices/{n2}/tasks", json={"client_msg_id": "t-successor"})
        assert made.status_code == 201, made.text
        r = await new.post(f"/api/v1/notices/{n1}/remind", json={"unit": "990101", "missing": "ack"})
        assert r.status_code == 200, r.text
        assert (await new.post(f"/api/v1/notices/{n1}/recall", json={})).status_code == 200


async def test_the_sender_positions_holder_now_hears_its_progress_and_recall(org_server: RunningServer) -> None:
    """The notice stays with the position: its successor reads the dashboard and may recall it, so
    ``notice.progress`` and the sender's ``notice.recalled`` go to whoever holds the sender position
    now as well as to the sender. Before, they went to the sender alone: the successor's dashboard
    stood still and their other devices never heard of the recall they had made."""
    from tests.client import Client

    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    _, _, head_pos, old_tok = await seat(rs, "990101", "county_head")
    _, _, _, worker_tok = await seat(rs, "990101001001001", "grid_worker")
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(old_tok)) as old:
        r = await old.post(
            "/api/v1/notices", json={**_notice(head_pos, "n-side-1"), "selector": "专职网格员@990101001001001"}
        )
        assert r.status_code == 201, r.text
        nid = r.json()["notice_id"]
    successor, succ_login = await new_person(s)
    await s.org.handover(SYSTEM, head_pos, successor)
    succ_tok = (await login(rs.http, succ_login))["access_token"]
    sender = await Client.connect(rs.ws, old_tok)
    holder = await Client.connect(rs.ws, succ_tok)
    worker = await Client.connect(rs.ws, worker_tok)
    try:
        ack = await worker.request({"type": "notice_ack", "notice_id": nid})
        assert ack["type"] == "ok", ack

        def acked(e: dict[str, Any]) -> bool:
            return e["kind"] == "notice.progress" and e["data"]["notice_id"] == nid and e["data"]["acked"] == 1

        for c in (holder, sender):
            await c.wait_matching(acked)
        async with httpx.AsyncClient(base_url=rs.http, headers=auth(succ_tok)) as new:
            assert (await new.post(f"/api/v1/notices/{nid}/recall", json={})).status_code == 200
        for c in (holder, sender, worker):
            got = await c.wait_matching(lambda e: e["kind"] == "notice.recalled")
            assert [e["data"]["notice_id"] for e in got] == [nid]
    finally:
        for c in (sender, holder, worker):
            await c.close()
