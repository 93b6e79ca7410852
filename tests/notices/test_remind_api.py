"""One-click reminders from the dashboard: who is reminded, who may remind, and how often."""

from __future__ import annotations

import asyncio

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


async def _owing(h: httpx.AsyncClient, nid: int, unit: str) -> set[int]:
    """The persons still owing an acknowledgement under ``unit`` (every page of the pending list)."""
    persons: set[int] = set()
    after: int | None = None
    while True:
        params: dict[str, str | int] = {"unit": unit, "missing": "ack", "limit": 500}
        if after is not None:
            params["after"] = after
        page = (await h.get(f"/api/v1/notices/{nid}/pending", params=params)).json()
        persons |= {int(i["person_id"]) for i in page["items"]}
        after = page["next_after"]
        if after is None:
            return persons


async def _notice_to_county_grids(h: httpx.AsyncClient, head_pos: int, key: str, clients: list[Client]) -> int:
    """A notice to every grid worker under 990101 needing acknowledgement, once each client has it."""
    body = {"as_position": head_pos, "selector": "专职网格员@990101/**", "client_msg_id": key, "title": "防汛",
            "ack_required": True}  # fmt: skip
    nid = int((await h.post("/api/v1/notices", json=body)).json()["notice_id"])
    for c in clients:
        assert (await c.wait_events(1))[0]["kind"] == "notice.new"
    return nid


async def _reminded_once_each(h: httpx.AsyncClient, persons: list[int], clients: list[Client]) -> None:
    """Each client got exactly one reminder: a direct message sent after every attempt comes right after it."""
    for pid in persons:
        dm = {"to": pid, "client_msg_id": f"after-{pid}", "body": "收到请回"}
        assert (await h.post("/api/v1/messages", json=dm)).status_code == 201
    for c in clients:
        kinds = [e["kind"] for e in await c.wait_events(3)]
        assert kinds == ["notice.new", "notice.remind", "message.new"], kinds


async def test_a_person_is_reminded_by_hand_once_a_minute_whichever_unit_or_request_names_them(
    org_server: RunningServer,
) -> None:
    """Found by the 江西 audit: the minute was kept per unit and per process, so asking for the grid's
    township, then its county, then its city reminded the same people three times at once."""
    rs = org_server
    _, _, head_pos, mgr_tok = await seat(rs, "990101", "county_head")
    owe_id, _, _, owe_tok = await seat(rs, "990101001001002", "grid_worker")
    other_id, _, _, other_tok = await seat(rs, "990101002001001", "grid_worker")  # another township
    owe, other = [await Client.connect(rs.ws, t) for t in (owe_tok, other_tok)]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(mgr_tok)) as h:
        nid = await _notice_to_county_grids(h, head_pos, "r-2", [owe, other])
        township, county = await _owing(h, nid, "990101001"), await _owing(h, nid, "990101")
        assert owe_id in township and other_id in county - township
        first = await h.post(f"/api/v1/notices/{nid}/remind", json={"unit": "990101001"})
        assert first.status_code == 200 and first.json()["reminded"] == len(township)
        # The county holds those reminded a moment ago and the rest: only the rest now.
        again = await h.post(f"/api/v1/notices/{nid}/remind", json={"unit": "990101"})
        assert again.status_code == 200 and again.json()["reminded"] == len(county - township)
        # Everyone owing under the city (and the province, and the township again) reminded within the minute:
        # refused as before, by any path to them, and nothing sent.
        for unit in ("9901", "99", "990101001", "990101002"):
            again = await h.post(f"/api/v1/notices/{nid}/remind", json={"unit": unit})
            assert again.status_code == 429, (unit, again.text)
            assert again.json()["error"]["code"] == "rate_limited" and again.json()["error"]["data"]["retry_after"] > 0
        # One reminder each, then the direct message sent after every attempt: nothing else came between.
        await _reminded_once_each(h, [owe_id, other_id], [owe, other])
    for c in (owe, other):
        await c.close()


async def test_reminders_asked_at_once_remind_each_person_once(org_server: RunningServer) -> None:
    """The mark is the claim: concurrent reminders over overlapping units remind each person once in all."""
    rs = org_server
    _, _, head_pos, mgr_tok = await seat(rs, "990101", "county_head")
    seated = [await seat(rs, code, "grid_worker") for code in ("990101001001001", "990101001002001", "990101002001001")]
    clients = [await Client.connect(rs.ws, tok) for _, _, _, tok in seated]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(mgr_tok)) as h:
        nid = await _notice_to_county_grids(h, head_pos, "r-3", clients)
        units = ["990101", "990101001", "990101002", "9901", "990101", "990101001"]
        answers = await asyncio.gather(*(h.post(f"/api/v1/notices/{nid}/remind", json={"unit": u}) for u in units))
        assert {a.status_code for a in answers} <= {200, 429}, [a.text for a in answers]
        # Every unit named lies in the county or holds it: each person owing there reminded once in all.
        assert sum(a.json()["reminded"] for a in answers if a.status_code == 200) == len(await _owing(h, nid, "990101"))
        await _reminded_once_each(h, [pid for pid, _, _, _ in seated], clients)
    for c in clients:
        await c.close()
