"""The bot API over HTTP (issue 13 item 2), on both backends: notices, check-ins, tasks, reads, bot
messages, previews, idempotency keys; and for every endpoint, that a person token, another app, an app
without the scope and an app addressing outside its subtree are refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
from sqlalchemy import func, select

from messaging.notices.schema import notices
from messaging.tasks.reports import Filing
from messaging.tasks.schema import tasks
from org_tree.jurisdiction import SYSTEM
from tests.apps.helpers import COUNTY, OTHER_COUNTY, VILLAGE, admin_token, app_token, make_app
from tests.client import login, new_people, new_person
from tests.conftest import RunningServer
from tests.org_server import auth, seat

ALL = ["notice:send", "task:create", "task:act", "report:read", "chat:bot", "org:read"]


async def _app(rs: RunningServer, admin: str, name: str, scopes: list[str], **kw: Any) -> tuple[dict[str, Any], str]:
    made = await make_app(rs, admin, name=name, scopes=scopes, **kw)
    r = await app_token(rs, made["client_id"], made["client_secret"])
    assert r.status_code == 200, r.text
    return made, r.json()["access_token"]


def _h(rs: RunningServer, tok: str, key: str | None = None) -> httpx.AsyncClient:
    headers = auth(tok)
    if key is not None:
        headers["Idempotency-Key"] = key
    return httpx.AsyncClient(base_url=rs.http, headers=headers)


async def test_an_app_sends_a_notice_into_its_subtree_only_and_once_per_key(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    admin = await admin_token(rs, None)
    app, tok = await _app(rs, admin, "会议签到", ["notice:send"])
    _, other = await _app(rs, admin, "别县应用", ALL, subtree=OTHER_COUNTY)
    _, no_scope = await _app(rs, admin, "只读应用", ["org:read", "task:create"])
    pid, lg, pos, person_tok = await seat(rs, VILLAGE, "village_secretary")
    body = {"selector": "village_secretary@990101/**", "title": "明早九点开会", "ack_required": True}
    async with _h(rs, tok, "meeting-1") as h:
        r = await h.post("/api/v1/bot/notices", json=body)
        assert r.status_code == 201, r.text
        first = r.json()
        # the answer docs/apps.md shows: the audience's counts, no "recipients"
        assert set(first) == {"notice_id", "created_at", "duplicate", "positions", "persons", "receipts", "unfilled"}
        again = await h.post("/api/v1/bot/notices", json=body)
        assert (again.status_code, again.json(), again.headers["idempotent-replayed"]) == (201, first, "true")
        r = await h.post("/api/v1/bot/notices", json={**body, "title": "改了"})
        assert (r.status_code, r.json()["error"]["code"]) == (409, "idempotency_key_reused")
        r = await h.post("/api/v1/bot/notices", json={**body, "selector": "village_secretary@990102/**"},
                         headers={"Idempotency-Key": "meeting-2"})  # fmt: skip
        assert (r.status_code, r.json()["error"]["code"]) == (403, "out_of_scope")
        r = await h.post("/api/v1/bot/notices", json=body, headers={"Idempotency-Key": ""})
        assert r.status_code == 400
        # a notice at its documented maxima (code points) fits however the client's JSON escapes it:
        # json.dumps' default \uXXXX (6 bytes a character, 12 beyond the BMP) was refused above 64 KiB
        for ch, key in (("通", "long-bmp"), ("\U0001f30a", "long-astral")):
            longest = {**body, "title": ch * 200, "body": ch * 20_000}
            raw = json.dumps(longest).encode()  # ensure_ascii: every character escaped
            assert len(raw) > 65_536
            r = await h.post("/api/v1/bot/notices", content=raw,
                             headers={"Idempotency-Key": key, "Content-Type": "application/json"})  # fmt: skip
            assert r.status_code == 201, r.text[:300]
        over = json.dumps({**body, "body": "x" * 400_000}).encode()
        r = await h.post("/api/v1/bot/notices", content=over,
                         headers={"Idempotency-Key": "too-big", "Content-Type": "application/json"})  # fmt: skip
        assert (r.status_code, r.json()["error"]["data"]) == (400, {"max_bytes": 393_216}), r.text[:300]
        # two keys on one request: no telling which one a retry would repeat, so refused, nothing written
        two = [("Idempotency-Key", "meeting-3"), ("Idempotency-Key", "meeting-4")]
        r = await h.post("/api/v1/bot/notices", json=body, headers=httpx.Headers(two))
        assert (r.status_code, r.json()["error"]["data"]) == (400, {"header": "Idempotency-Key"}), r.text
        r = await h.post("/api/v1/bot/notices", json=body, headers={"Idempotency-Key": "meeting-3"})
        assert (r.status_code, r.json()["duplicate"]) == (201, False)
        assert "idempotent-replayed" not in r.headers
        preview = (await h.post("/api/v1/bot/audience/preview", json={"selector": body["selector"]})).json()
        assert preview["positions"] >= 1 and preview["persons"] >= 1
        got = await h.get(f"/api/v1/bot/notices/{first['notice_id']}")
        assert got.status_code == 200, got.text
    async with s.db.read() as conn:
        row = (await conn.execute(select(notices).where(notices.c.id == first["notice_id"]))).one()
    assert (row.sender_person_id, row.sender_position_id) == (app["bot_person_id"], app["bot_position_id"])
    # the recipient checks in at the door: the device acknowledges for them, once
    async with _h(rs, tok) as h:
        r = await h.post(f"/api/v1/bot/notices/{first['notice_id']}/check-ins", json={"person_id": pid})
        assert r.status_code == 200, r.text
        receipt = r.json()["receipts"][0]
        # a check-in is also the delivery and the reading (docs/apps.md shows all three set)
        assert receipt["acked_at"] is not None and receipt["read_at"] == receipt["delivered_at"] == receipt["acked_at"]
        stranger, _ = await new_person(s)
        r = await h.post(f"/api/v1/bot/notices/{first['notice_id']}/check-ins", json={"person_id": stranger})
        assert r.status_code == 404
    # others: a person token, another app, an app without the scope
    async with _h(rs, person_tok, "k") as h:
        assert (await h.post("/api/v1/bot/notices", json=body)).status_code == 401
        assert (await h.get(f"/api/v1/bot/notices/{first['notice_id']}")).status_code == 401
    async with _h(rs, other, "k") as h:
        assert (await h.get(f"/api/v1/bot/notices/{first['notice_id']}")).status_code == 404
        r = await h.post(f"/api/v1/bot/notices/{first['notice_id']}/check-ins", json={"person_id": pid})
        assert r.status_code == 404
        r = await h.post("/api/v1/bot/notices", json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "out_of_scope")
    async with _h(rs, no_scope, "k") as h:
        r = await h.post("/api/v1/bot/notices", json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "insufficient_scope")
        assert (await h.get(f"/api/v1/bot/notices/{first['notice_id']}")).status_code == 403
    # a person's own notice cannot be checked in by the app
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(person_tok)) as h:
        r = await h.post("/api/v1/notices", json={"as_position": pos, "selector": f"*@{VILLAGE}", "title": "x",
                                                   "client_msg_id": "p1"})  # fmt: skip
        assert r.status_code == 201, r.text
        person_notice = r.json()["notice_id"]
    async with _h(rs, tok) as h:
        r = await h.post(f"/api/v1/bot/notices/{person_notice}/check-ins", json={"person_id": pid})
        assert r.status_code == 404


async def test_tasks_reports_and_org_reads_stay_in_the_subtree(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    idx = s.org_index.index
    admin = await admin_token(rs, None)
    app, tok = await _app(rs, admin, "河长制平台", ALL)
    _, other = await _app(rs, admin, "别县应用", ALL, subtree=OTHER_COUNTY)
    _, creator_only = await _app(rs, admin, "派单应用", ["task:create"])
    _, reader_only = await _app(rs, admin, "只读应用", ["org:read"])
    async with _h(rs, tok, "t-1") as h:
        r = await h.post("/api/v1/bot/tasks", json={"selector": "village_secretary@990101001001", "title": "清理河道"})
        assert r.status_code == 201, r.text
        task = r.json()["tasks"][0]
        r = await h.post("/api/v1/bot/tasks", json={"selector": "village_secretary@990102001001", "title": "x"},
                         headers={"Idempotency-Key": "t-2"})  # fmt: skip
        assert r.status_code == 403
        got = await h.get(f"/api/v1/bot/tasks/{task['task_id']}")
        assert got.status_code == 200 and got.json()["creator"]["person_id"] == app["bot_person_id"]
        r = await h.post(f"/api/v1/bot/tasks/{task['task_id']}/actions", json={"action": "comment", "version": 1,
                                                                              "comment": "请尽快"})  # fmt: skip
        assert r.status_code == 200, r.text
        r = await h.post(f"/api/v1/bot/tasks/{task['task_id']}/actions", json={"action": "cancel", "version": 1})
        assert (r.status_code, r.json()["error"]["code"]) == (409, "stale_version")
        # on a task it created the app is the creator, even with the owner in its subtree (docs/apps.md):
        # it does not take the owner's side of its own task and accept it
        r = await h.post(f"/api/v1/bot/tasks/{task['task_id']}/actions", json={"action": "accept", "version": 2})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden"), r.text
        assert r.json()["error"]["data"]["allowed_sides"] == ["owner"]
        # reassign is the creator's (docs/tasks.md), to a position inside the subtree only
        outside = idx.position_id(next(k for k in idx.unit_slots(idx.unit("990102001001"))))
        r = await h.post(f"/api/v1/bot/tasks/{task['task_id']}/actions",
                         json={"action": "reassign", "version": 2, "to_position": outside})  # fmt: skip
        assert (r.status_code, r.json()["error"]["code"]) == (403, "out_of_scope"), r.text
    for who, status in ((other, 404), (creator_only, 403), (reader_only, 403)):
        async with _h(rs, who) as h:
            r = await h.post(f"/api/v1/bot/tasks/{task['task_id']}/actions", json={"action": "cancel", "version": 2})
            assert r.status_code == status, r.text
    async with _h(rs, other) as h:
        assert (await h.get(f"/api/v1/bot/tasks/{task['task_id']}")).status_code == 404
    async with _h(rs, reader_only) as h:
        assert (await h.get(f"/api/v1/bot/tasks/{task['task_id']}")).status_code == 403
    # a grid worker files a report in the county: the county's app reads it, the other county's does not
    grid = idx.children(idx.unit(VILLAGE))[0]
    worker, _ = await new_person(s)
    grid_pos = next(idx.position_id(k) for k in idx.unit_slots(grid) if idx.position_role(k).key == "grid_worker")
    await s.org.handover(SYSTEM, grid_pos, worker)
    report, _ = await s.reports.file(worker, grid_pos, Filing("r1", "river_litter", "河里有垃圾", 28.9, 118.8))
    async with _h(rs, tok) as h:
        r = await h.get(f"/api/v1/bot/reports/{report['report_id']}")
        assert r.status_code == 200 and r.json()["text"] == "河里有垃圾"
        assert (await h.get(f"/api/v1/bot/tasks/{report['task_id']}")).status_code == 200  # owner in the subtree
        # on the owner's side the app accepts, resolves, rejects; it does not reassign (docs/apps.md said it did)
        back = {"action": "reassign", "version": 1, "to_position": task["owner_position_id"]}
        r = await h.post(f"/api/v1/bot/tasks/{report['task_id']}/actions", json=back)
        assert (r.status_code, r.json()["error"]["data"]["allowed_sides"]) == (403, ["creator"]), r.text
        assert (await h.get("/api/v1/bot/org/units/990101001")).json()["code"] == "990101001"
        assert (await h.get("/api/v1/bot/org/units/990102")).status_code == 404
        assert (await h.get("/api/v1/bot/reports/999999")).status_code == 404
    async with _h(rs, other) as h:
        assert (await h.get(f"/api/v1/bot/reports/{report['report_id']}")).status_code == 404
        assert (await h.get(f"/api/v1/bot/tasks/{report['task_id']}")).status_code == 404
        assert (await h.get("/api/v1/bot/org/units/990101")).status_code == 404
    async with _h(rs, creator_only) as h:
        assert (await h.get(f"/api/v1/bot/reports/{report['report_id']}")).status_code == 403
        assert (await h.get("/api/v1/bot/org/units/990101")).status_code == 403
    _, _, _, person_tok = await seat(rs, COUNTY, "county_head")
    async with _h(rs, person_tok, "x") as h:
        for path in (f"/api/v1/bot/reports/{report['report_id']}", f"/api/v1/bot/tasks/{task['task_id']}"):
            assert (await h.get(path)).status_code == 401
        assert (await h.post("/api/v1/bot/tasks", json={"selector": "pos:1", "title": "x"})).status_code == 401


async def test_a_bot_posts_only_where_it_was_added_and_is_labelled(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    admin = await admin_token(rs, None)
    app, tok = await _app(rs, admin, "值班机器人", ["chat:bot"])
    _, no_scope = await _app(rs, admin, "无聊天", ["org:read"])
    (owner, lg), (member, _) = await new_people(s, 2)
    person_tok = (await login(rs.http, lg))["access_token"]
    with_bot = await s.groups.create(owner, "值班群", person_ids=[member, app["bot_person_id"]])
    without = await s.groups.create(owner, "私聊群", person_ids=[member])
    async with _h(rs, tok, "m1") as h:
        r = await h.post(f"/api/v1/bot/conversations/{with_bot['id']}/messages", json={"body": "今日值班：张三"})
        assert r.status_code == 201, r.text
        assert r.json()["app"] == {"id": app["id"], "name": "值班机器人"}
        again = await h.post(f"/api/v1/bot/conversations/{with_bot['id']}/messages",
                             json={"body": "今日值班：张三"})  # fmt: skip
        assert again.json()["message_id"] == r.json()["message_id"]
        r = await h.post(f"/api/v1/bot/conversations/{without['id']}/messages", json={"body": "hi"},
                         headers={"Idempotency-Key": "m2"})  # fmt: skip
        assert r.status_code in (403, 404)
    async with _h(rs, no_scope, "m3") as h:
        r = await h.post(f"/api/v1/bot/conversations/{with_bot['id']}/messages", json={"body": "hi"})
        assert r.status_code == 403
    async with _h(rs, person_tok, "m4") as h:
        r = await h.post(f"/api/v1/bot/conversations/{with_bot['id']}/messages", json={"body": "hi"})
        assert r.status_code == 401


async def test_the_rate_limit_answers_429_with_retry_after(org_server: RunningServer) -> None:
    rs = org_server
    admin = await admin_token(rs, None)
    _, tok = await _app(rs, admin, "限流", ["org:read"], rate_per_minute=3)
    async with _h(rs, tok) as h:
        codes = [(await h.get("/api/v1/bot/me")).status_code for _ in range(3)]
        r = await h.get("/api/v1/bot/me")
        if r.status_code == 200:
            # The limit is a sliding-window counter (docs/apps.md): the previous minute's count is
            # weighted by the part of it still inside the window, so right after a minute boundary
            # 3 x 0.99 < 3 lets one more through. Then the count is over: the next one is refused.
            r = await h.get("/api/v1/bot/me")
    assert codes == [200, 200, 200]
    assert (r.status_code, r.json()["error"]["code"]) == (429, "rate_limited")
    assert int(r.headers["retry-after"]) in range(1, 61)


async def test_a_platform_accepts_and_resolves_report_tasks_of_its_subtree_with_a_photo(
    org_server: RunningServer,
) -> None:
    import hashlib
    import secrets

    from tests.apps.helpers import file_report, grid_worker

    rs = org_server
    admin = await admin_token(rs, None)
    app, tok = await _app(rs, admin, "河长制平台", ["task:act", "report:read"])
    _, other = await _app(rs, admin, "别县平台", ["task:act"], subtree=OTHER_COUNTY)
    _, reader = await _app(rs, admin, "只读平台", ["report:read"])
    report = await file_report(rs, await grid_worker(rs), "river-1")
    task_id = report["task_id"]
    photo = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + secrets.token_bytes(4000)
    async with _h(rs, tok) as h:
        headers = {"Content-Type": "image/jpeg", "X-Content-SHA256": hashlib.sha256(photo).hexdigest()}
        up = await h.post("/api/v1/bot/uploads", content=photo, headers=headers)
        assert up.status_code == 201, up.text
        r = await h.post(f"/api/v1/bot/tasks/{task_id}/actions", json={"action": "accept", "version": 1})
        assert r.status_code == 200, r.text
        r = await h.post(f"/api/v1/bot/tasks/{task_id}/actions", json={
            "action": "resolve", "version": 2, "comment": "已清理", "attachments": [up.json()["digest"]]})  # fmt: skip
        assert (r.status_code, r.json()["state"]) == (200, "resolved"), r.text
        history = (await h.get(f"/api/v1/bot/tasks/{task_id}")).json()
    assert history["state"] == "resolved"
    last = history["events"][-1] if "events" in history else history["history"][-1]
    assert last["actor"]["person_id"] == app["bot_person_id"]
    for who, status in ((other, 404), (reader, 403)):
        async with _h(rs, who) as h:
            r = await h.post(f"/api/v1/bot/tasks/{task_id}/actions", json={"action": "close", "version": 3})
            assert r.status_code == status, r.text
    async with _h(rs, reader) as h:
        r = await h.post("/api/v1/bot/uploads", content=photo, headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 403


async def test_an_app_downloads_the_photos_it_may_see_and_no_others(org_server: RunningServer) -> None:
    """A report.filed event names its photos by digest: the subscribed platform fetches them
    (``report:read``, subtree), its own uploads (``task:act``), and nothing else (404 as for none)."""
    import hashlib
    import secrets

    from tests.apps.helpers import file_report_with_photo

    rs = org_server
    admin = await admin_token(rs, None)
    _, river = await _app(rs, admin, "河长制平台", ["report:read"])
    _, other = await _app(rs, admin, "别县平台", ["report:read"], subtree=OTHER_COUNTY)
    _, actor = await _app(rs, admin, "办件平台", ["task:act"])
    _, reader = await _app(rs, admin, "组织平台", ["org:read"])
    photo, digest = await file_report_with_photo(rs, "photo-1")
    async with _h(rs, river) as h:
        r = await h.get(f"/api/v1/bot/uploads/{digest}")
        assert (r.status_code, r.content, r.headers["content-type"]) == (200, photo, "image/jpeg"), r.text
        again = await h.get(f"/api/v1/bot/uploads/{digest}", headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304
        for missing in ("0" * 64, "not-a-digest"):
            assert (await h.get(f"/api/v1/bot/uploads/{missing}")).status_code == 404
    for who in (other, actor):  # another county's platform; one without report:read
        async with _h(rs, who) as h:
            r = await h.get(f"/api/v1/bot/uploads/{digest}")
            assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found"), r.text
    async with _h(rs, actor) as h:  # its own upload it may read back
        own = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(2000)
        headers = {"Content-Type": "image/png", "X-Content-SHA256": hashlib.sha256(own).hexdigest()}
        assert (await h.post("/api/v1/bot/uploads", content=own, headers=headers)).status_code == 201
        assert (await h.get(f"/api/v1/bot/uploads/{headers['X-Content-SHA256']}")).content == own
    async with _h(rs, reader) as h:
        r = await h.get(f"/api/v1/bot/uploads/{digest}")
        assert (r.status_code, r.json()["error"]["code"]) == (403, "insufficient_scope")
    _, _, _, person_tok = await seat(rs, VILLAGE, "village_secretary")
    async with _h(rs, person_tok) as h:
        assert (await h.get(f"/api/v1/bot/uploads/{digest}")).status_code == 401


async def test_concurrent_retries_of_one_key_all_get_the_first_answer(org_server: RunningServer) -> None:
    """A retry racing the first request (a client's timeout, then its retry) gets the first answer: 201,
    ``duplicate: false``, marked replayed; and the stored answer stays the first one. Before, a retry that
    arrived while the first was still running ran the create again, got the service's own duplicate
    (200, ``duplicate: true``), and wrote that over the first answer, so every later retry got it too."""
    import asyncio

    rs = org_server
    admin = await admin_token(rs, None)
    _, tok = await _app(rs, admin, "并发重试", ["notice:send", "task:create"])
    cases = (
        ("/api/v1/bot/notices", {"selector": "village_secretary@990101/**", "title": "并发"}),
        ("/api/v1/bot/tasks", {"selector": f"village_secretary@{VILLAGE}", "title": "并发任务"}),
    )
    async with _h(rs, tok) as h:
        for n, (path, body) in enumerate(cases):
            key = f"race-{n}"
            answers = await asyncio.gather(
                *(h.post(path, json=body, headers={"Idempotency-Key": key}) for _ in range(6))
            )
            assert [r.status_code for r in answers] == [201] * 6, [r.text for r in answers]
            first = answers[0].json()
            assert first["duplicate"] is False
            assert all(r.json() == first for r in answers)
            assert sorted(r.headers.get("idempotent-replayed", "") for r in answers) == [""] + ["true"] * 5
            later = await h.post(path, json=body, headers={"Idempotency-Key": key})
            assert (later.status_code, later.json(), later.headers["idempotent-replayed"]) == (201, first, "true")


async def test_the_apps_own_notice_answers_with_its_progress(org_server: RunningServer) -> None:
    """docs/apps.md: ``GET /api/v1/bot/notices/{id}`` is one of the app's own notices *with progress*, the
    organiser's live count (the SDK's ``notice()``). Before, it answered the sender's view alone: the
    audience's size, but not how many were delivered, read or checked in."""
    rs = org_server
    admin = await admin_token(rs, None)
    _, tok = await _app(rs, admin, "进度平台", ["notice:send"])
    attendee, _, _, _ = await seat(rs, VILLAGE, "village_secretary")
    async with _h(rs, tok, "progress-1") as h:
        r = await h.post("/api/v1/bot/notices", json={"selector": "village_secretary@990101/**", "title": "开会",
                                                      "ack_required": True})  # fmt: skip
        sent = r.json()
        r = await h.post(f"/api/v1/bot/notices/{sent['notice_id']}/check-ins", json={"person_id": attendee})
        assert r.status_code == 200, r.text
        view = (await h.get(f"/api/v1/bot/notices/{sent['notice_id']}")).json()
        live = (await h.get(f"/api/v1/bot/notices/{sent['notice_id']}/progress")).json()["notice_total"]
    assert view["progress"] == live
    assert (view["progress"]["receipts"], view["progress"]["acked"]) == (sent["receipts"], 1)


async def test_an_apps_task_takes_a_due_at_as_a_persons_does(org_server: RunningServer) -> None:
    """``POST /api/v1/bot/tasks`` reads ``due_at`` (截止时间) as ``POST /api/v1/tasks`` does: the task is due
    then, its accept deadline no later; a bad one is the same 400 naming the field, nothing stored. Before,
    the field was refused as unknown (400 invalid_body): an app could only give the category's windows."""
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    _, tok = await _app(rs, await admin_token(rs, None), "截止平台", ALL)
    now = datetime.now(UTC)
    due = (now + timedelta(hours=3)).replace(microsecond=0).astimezone(timezone(timedelta(hours=8)))
    body = {"selector": f"village_secretary@{VILLAGE}", "title": "限时清理"}
    async with _h(rs, tok, "due-1") as h:
        async with s.db.read() as conn:
            before = (await conn.execute(select(func.count()).select_from(tasks))).scalar_one()
        for bad in ((now - timedelta(minutes=5)).isoformat(), "2026-12-31T17:00:00", "明天"):
            r = await h.post("/api/v1/bot/tasks", json={**body, "due_at": bad})
            assert r.status_code == 400, (bad, r.text)
            assert (r.json()["error"]["code"], r.json()["error"]["data"]["field"]) == ("bad_request", "due_at"), bad
        async with s.db.read() as conn:
            assert (await conn.execute(select(func.count()).select_from(tasks))).scalar_one() == before
        r = await h.post("/api/v1/bot/tasks", json={**body, "due_at": due.isoformat()})
        assert r.status_code == 201, r.text
        made = r.json()["tasks"][0]
        assert datetime.fromisoformat(made["due_at"]) == due
        assert made["accept_due_at"] == made["due_at"]  # general: a day to accept, but due in three hours
        got = (await h.get(f"/api/v1/bot/tasks/{made['task_id']}")).json()
        assert got["due_at"] == made["due_at"]
