"""Endpoints and frames whose "others cannot" side had no test: a stranger, a plain member, another app.

Each refusal is the documented status with a JSON error body, and changes nothing
(the group's members and title, the stranger's inbox, the subscription's secret).
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.apps.helpers import admin_token, app_token, make_app
from tests.client import Client, login, new_people
from tests.conftest import RunningServer
from tests.org_server import auth, seat


def _refused(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, (r.request.method, r.request.url.path, r.text)
    assert r.json()["error"]["code"] == code, r.text


async def test_a_stranger_and_a_plain_member_cannot_work_a_group(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    (owner, owner_lg), (member, member_lg), (stranger, stranger_lg) = await new_people(s, 3)
    tok = {who: (await login(rs.http, lg))["access_token"] for who, lg in
           ((owner, owner_lg), (member, member_lg), (stranger, stranger_lg))}  # fmt: skip
    async with httpx.AsyncClient(base_url=rs.http) as h:
        r = await h.post("/api/v1/groups", json={"title": "专班", "person_ids": [member]}, headers=auth(tok[owner]))
        assert r.status_code == 201, r.text
        gid = r.json()["id"]
        r = await h.post(f"/api/v1/conversations/{gid}/messages", json={"client_msg_id": "g1", "body": "开会"},
                         headers=auth(tok[owner]))  # fmt: skip
        assert r.status_code == 201, r.text
        mid = r.json()["message_id"]
        before = (await h.get(f"/api/v1/groups/{gid}", headers=auth(tok[owner]))).json()

        calls: list[tuple[str, str, dict[str, Any] | None]] = [
            ("GET", f"/api/v1/groups/{gid}", None),
            ("PATCH", f"/api/v1/groups/{gid}", {"title": "改"}),
            ("POST", f"/api/v1/groups/{gid}/members", {"person_ids": [stranger]}),
            ("POST", f"/api/v1/groups/{gid}/members/remove", {"person_ids": [member]}),
            ("POST", f"/api/v1/groups/{gid}/admins", {"person_id": stranger, "admin": True}),
            ("POST", f"/api/v1/groups/{gid}/leave", {}),
            ("POST", f"/api/v1/conversations/{gid}/mute", {"muted": True}),
            ("POST", f"/api/v1/conversations/{gid}/read", {"message_id": mid}),
            ("GET", f"/api/v1/conversations/{gid}/messages/{mid}/reads", None),
            ("GET", f"/api/v1/conversations/{gid}/messages", None),
            ("PATCH", f"/api/v1/messages/{mid}", {"body": "改"}),
            ("POST", f"/api/v1/messages/{mid}/recall", None),
        ]
        for method, path, body in calls:  # a stranger: the answer for a conversation that does not exist
            r = await h.request(method, path, json=body, headers=auth(tok[stranger]))
            _refused(r, 404, "not_found")
        assert (await h.get("/api/v1/conversations", headers=auth(tok[stranger]))).json()["conversations"] == []

        # A plain member reads, but neither administers the group nor changes another's message.
        for method, path, body in calls[1:5] + calls[10:]:
            r = await h.request(method, path, json=body, headers=auth(tok[member]))
            _refused(r, 403, "forbidden")
        assert (await h.get(f"/api/v1/groups/{gid}", headers=auth(tok[owner]))).json() == before
        r = await h.get(f"/api/v1/conversations/{gid}/messages", headers=auth(tok[owner]))
        assert [m["body"] for m in r.json()["messages"] if m["kind"] == "text"] == ["开会"]


async def test_an_app_cannot_reach_another_apps_notices_or_subscriptions(org_server: RunningServer) -> None:
    rs = org_server
    admin = await admin_token(rs)
    tokens = []
    for name in ("甲平台", "乙平台"):
        made = await make_app(rs, admin, name=name, scopes=["notice:send", "events:report.filed"])
        tokens.append((await app_token(rs, made["client_id"], made["client_secret"])).json()["access_token"])
    mine, theirs = tokens
    async with httpx.AsyncClient(base_url=rs.http) as h:
        r = await h.post("/api/v1/bot/notices", json={"selector": "专职网格员@990101/**", "title": "通知"},
                         headers={**auth(mine), "Idempotency-Key": "n1"})  # fmt: skip
        assert r.status_code == 201, r.text
        nid = r.json()["notice_id"]
        sub = {"mode": "stream", "event_types": ["report.filed"]}
        r = await h.post("/api/v1/bot/subscriptions", json=sub, headers=auth(mine))
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        calls: list[tuple[str, str, dict[str, Any] | None]] = [
            ("GET", f"/api/v1/bot/notices/{nid}", None),
            ("GET", f"/api/v1/bot/notices/{nid}/progress", None),
            ("GET", f"/api/v1/bot/subscriptions/{sid}", None),
            ("PATCH", f"/api/v1/bot/subscriptions/{sid}", {"status": "disabled"}),
            ("GET", f"/api/v1/bot/subscriptions/{sid}/attempts", None),
            ("GET", f"/api/v1/bot/subscriptions/{sid}/deliveries", None),
            (
                "POST",
                f"/api/v1/bot/subscriptions/{sid}/redeliver",
                {"event_id": "0b6c3a52-8a4e-4f7e-9d3c-2f1e0a9b8c7d"},
            ),
        ]
        for method, path, body in calls:
            _refused(await h.request(method, path, json=body, headers=auth(theirs)), 404, "not_found")
        assert (await h.get("/api/v1/bot/subscriptions", headers=auth(theirs))).json()["subscriptions"] == []
        r = await h.get(f"/api/v1/bot/subscriptions/{sid}", headers=auth(mine))
        assert r.json()["status"] == "active", r.text


async def test_websocket_frames_about_others_conversations_notices_and_streams(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    _, _, head_pos, head_tok = await seat(rs, "990101", "county_head")
    (owner, owner_lg), (member, _), (_, stranger_lg) = await new_people(s, 3)
    owner_c = await Client.connect(rs.ws, (await login(rs.http, owner_lg))["access_token"])
    stranger = await Client.connect(rs.ws, (await login(rs.http, stranger_lg))["access_token"])
    try:
        group = await s.groups.create(owner, "专班", person_ids=[member])
        sent = await owner_c.request({"type": "send", "conversation_id": group["id"], "client_msg_id": "w1",
                                      "body": "内部"})  # fmt: skip
        mid = sent["data"]["message_id"]
        async with httpx.AsyncClient(base_url=rs.http, headers=auth(head_tok)) as h:
            r = await h.post("/api/v1/notices", json={"as_position": head_pos, "selector": "专职网格员@990101/**",
                                                      "client_msg_id": "wn", "title": "通知"})  # fmt: skip
            assert r.status_code == 201, r.text
            nid = r.json()["notice_id"]
        frames: list[dict[str, Any]] = [
            {"type": "history", "conversation_id": group["id"]},
            {"type": "read", "conversation_id": group["id"], "message_id": mid},
            {"type": "send", "conversation_id": group["id"], "client_msg_id": "x1", "body": "闯入"},
            {"type": "edit", "message_id": mid, "body": "改"},
            {"type": "recall", "message_id": mid},
            {"type": "notice_read", "notice_id": nid},
            {"type": "notice_ack", "notice_id": nid},
            {"type": "notice_delivered", "notice_id": nid},
        ]
        for frame in frames:
            r = await stranger.request(frame)
            assert (r["type"], r.get("code")) == ("error", "not_found"), (frame, r)
        # Another person's epoch in a sync gets the caller's own stream: nothing of the owner's.
        theirs = (await owner_c.request({"type": "sync", "since": 0}))["data"]["epoch"]
        page = (await stranger.request({"type": "sync", "epoch": theirs, "since": 0}))["data"]
        assert page["epoch"] != theirs and page["events"] == [], page
        hist = (await owner_c.request({"type": "history", "conversation_id": group["id"]}))["data"]["messages"]
        assert [m["body"] for m in hist if m["kind"] == "text"] == ["内部"]
    finally:
        await owner_c.close()
        await stranger.close()
