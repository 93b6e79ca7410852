"""Issue 10's findings, each reproduced through the public surface (REST and WebSocket), on both backends.

Every test here failed on the code before issue 10: an ordinary account could
take a peer's position, seat itself to widen its jurisdiction, end others'
assignments, edit as a position it no longer held, guess passwords without
limit, crash endpoints with out-of-range integers, and borrow another
person's session id.
"""

from __future__ import annotations

import json

import httpx
import websockets

from kernel.audit import AuditQuery, query
from org_tree.jurisdiction import SYSTEM
from tests.client import PASSWORD, Client, login, new_people, new_person
from tests.conftest import RunningServer, make_settings, start_server
from tests.org_server import auth, position_at, seat

VILLAGE = "990101001001"
GRID = "990101001001001"


async def _denied_entries(s: object, actor: int) -> list[dict[str, object]]:
    items, _ = await query(s.db, AuditQuery(actor_person_id=actor, action="admin.denied"))  # type: ignore[attr-defined]
    return items


async def test_a_peer_cannot_take_a_position_or_end_assignments(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    chief, _, _, chief_tok = await seat(rs, VILLAGE, "river_chief")
    secretary, _, sec_pos, sec_tok = await seat(rs, VILLAGE, "village_secretary")
    head, _, head_pos, head_tok = await seat(rs, "990101", "county_head")
    sec_assignment = (await s.org.history(SYSTEM, sec_pos))[-1].id
    head_assignment = (await s.org.history(SYSTEM, head_pos))[-1].id
    async with httpx.AsyncClient(base_url=rs.http) as h:
        r = await h.post(
            f"/api/v1/org/positions/{sec_pos}/handover", json={"person_id": chief}, headers=auth(chief_tok)
        )
        assert (r.status_code, r.json()["error"]["code"]) == (403, "no_grant")
        assert s.org.get_position(SYSTEM, sec_pos).holders == (secretary,)
        # ending a colleague's assignment, or a manager their own: answered like an unknown id
        unknown = await h.post("/api/v1/org/assignments/987654321/end", headers=auth(chief_tok))
        for aid, tok in ((sec_assignment, chief_tok), (head_assignment, head_tok), (sec_assignment, sec_tok)):
            r = await h.post(f"/api/v1/org/assignments/{aid}/end", headers=auth(tok))
            assert r.status_code == 404
            assert r.json()["error"]["message"] == unknown.json()["error"]["message"]
            assert "position_id" not in r.text and "unit" not in r.text
        assert s.org.get_position(SYSTEM, head_pos).holders == (head,)
        assert s.org.get_position(SYSTEM, sec_pos).holders == (secretary,)
    # the unknown id is on record as the colleague's is (an entry for existing ids alone told them apart)
    assert [e["detail"]["attempted"] for e in await _denied_entries(s, chief)] == [
        "org.assignment_ended", "org.assignment_ended", "org.handover",
    ]  # fmt: skip


async def test_seating_oneself_cannot_widen_jurisdiction(org_server: RunningServer) -> None:
    rs = org_server
    me, _, sec_pos, tok = await seat(rs, VILLAGE, "village_secretary")
    grid_pos = position_at(rs, GRID, "grid_worker")
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        r = await h.post(f"/api/v1/org/positions/{grid_pos}/assignments", json={"person_id": me, "kind": "deputy"})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "no_grant")
        mine = (await h.get("/api/v1/me/positions")).json()
        assert [p["id"] for p in mine["positions"]] == [sec_pos] and mine["grants"] == []
    # and a grid position itself no longer reaches its ancestors (the old chain rule did: 省长 included)
    _, _, w_pos, w_tok = await seat(rs, GRID, "grid_worker")
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(w_tok)) as h:
        for upward in ("省长@99", "村书记@990101001001", "区县长@990101"):
            r = await h.post("/api/v1/org/preview", json={"as_position": w_pos, "selector": upward})
            assert (r.status_code, r.json()["error"]["code"]) == (403, "out_of_scope"), upward
        r = await h.post("/api/v1/org/preview", json={"as_position": w_pos, "selector": f"*@{GRID}"})
        assert r.status_code == 200


async def test_a_former_holder_cannot_edit_or_recall_as_the_position(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    writer, _, w_pos, w_tok = await seat(rs, GRID, "grid_worker")
    chief_pos = position_at(rs, VILLAGE, "river_chief")
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(w_tok)) as h:
        sent = []
        for i in range(2):
            r = await h.post(
                f"/api/v1/positions/{chief_pos}/messages",
                json={"client_msg_id": f"m{i}", "body": "河道有垃圾", "as_position": w_pos},
            )
            assert r.status_code == 201, r.text
            sent.append(r.json()["message_id"])
        own = await h.patch(f"/api/v1/messages/{sent[0]}", json={"body": "河道有垃圾（已拍照）"})
        assert own.status_code == 200  # while holding the position the writer may still edit
        successor, _ = await new_person(s)
        await s.org.handover(SYSTEM, w_pos, successor)
        r = await h.patch(f"/api/v1/messages/{sent[0]}", json={"body": "改写"})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")
        r = await h.post(f"/api/v1/messages/{sent[0]}/recall")
        assert r.status_code == 403
    ws = await Client.connect(rs.ws, w_tok)
    try:
        for frame in ({"type": "edit", "message_id": sent[1], "body": "改写"},
                      {"type": "recall", "message_id": sent[1]}):  # fmt: skip
            reply = await ws.request(frame)
            assert (reply["type"], reply["code"]) == ("error", "forbidden"), reply
    finally:
        await ws.ws.close()
    history, _ = await s.conversations.history(successor, (await _thread(s, sent[0])), limit=10)
    texts = {m["id"]: (m["body"], m.get("recalled_at")) for m in history}
    assert texts[sent[0]] == ("河道有垃圾（已拍照）", None) and texts[sent[1]] == ("河道有垃圾", None)
    assert writer != successor


async def _thread(s: object, message_id: int) -> int:
    from sqlalchemy import select

    from messaging.schema import messages

    async with s.db.read() as conn:  # type: ignore[attr-defined]
        return int(
            (await conn.execute(select(messages.c.conversation_id).where(messages.c.id == message_id))).scalar_one()
        )


async def test_sign_in_is_throttled_with_retry_after(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    _, victim = await new_person(s)
    limit = s.throttle.per_login.amount
    async with httpx.AsyncClient(base_url=rs.http) as h:
        codes = []
        for _ in range(limit + 2):
            r = await h.post("/api/v1/auth/token", json={"grant_type": "password", "login": victim, "password": "x"})
            codes.append(r.status_code)
        assert codes[:limit] == [401] * limit and codes[limit:] == [429, 429]
        assert int(r.headers["Retry-After"]) >= 1 and r.json()["error"]["code"] == "rate_limited"
        # even the right password waits now: the login is throttled, not the guess
        r = await h.post("/api/v1/auth/token", json={"grant_type": "password", "login": victim, "password": PASSWORD})
        assert r.status_code == 429
    failed, _ = await query(s.db, AuditQuery(action="auth.login_failed"))
    assert len(failed) == limit and failed[0]["detail"]["login"] == victim


async def test_spellings_of_one_login_share_its_sign_in_limit(org_server: RunningServer) -> None:
    """The lookup reads a login without case, surrounding spaces and invisible characters, but the per-login
    counter was keyed by the login as sent: "victim" + U+200B (or U+FEFF, or two of them …) signed in as the
    victim with a counter of its own, so per-login throttling, the one guard against guessing one
    account's password from many addresses, never held (found by the trust audit). One key now."""
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    _, victim = await new_person(s)
    limit = s.throttle.per_login.amount
    spellings = [victim + "\u200b" * (i + 1) if i % 3 == 0 else f" {victim.upper()}\ufeff" + "\u200d" * i
                 for i in range(limit)]  # fmt: skip
    async with httpx.AsyncClient(base_url=rs.http) as h:
        ok = await h.post(
            "/api/v1/auth/token", json={"grant_type": "password", "login": spellings[1], "password": PASSWORD}
        )
        assert ok.status_code == 200 and ok.json()["person_id"], ok.text  # the same account, as the lookup reads it
        for spelling in spellings:
            r = await h.post("/api/v1/auth/token", json={"grant_type": "password", "login": spelling, "password": "x"})
            assert r.status_code == 401, r.text
        r = await h.post("/api/v1/auth/token", json={"grant_type": "password", "login": victim, "password": PASSWORD})
        assert (r.status_code, r.json()["error"]["data"]["limit"]) == (429, "login"), r.text
    failed, _ = await query(s.db, AuditQuery(action="auth.login_failed"))
    assert {e["detail"]["login"] for e in failed} == {victim}  # the audit names the account, not the spelling


async def test_out_of_range_integers_answer_404_or_400(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    _, lg = await new_person(s)
    tok = (await login(rs.http, lg))["access_token"]
    big = "9223372036854775808"
    gets = [f"/api/v1/notices/{big}", f"/api/v1/notices/{big}/progress", f"/api/v1/notices/{big}/pending",
            f"/api/v1/org/positions/{big}", f"/api/v1/org/positions/{big}/history", f"/api/v1/tasks/{big}",
            f"/api/v1/reports/{big}", f"/api/v1/conversations/{big}/messages",
            f"/api/v1/conversations/1/messages/{big}/reads", f"/api/v1/groups/{big}"]  # fmt: skip
    posts = [f"/api/v1/notices/{big}/ack", f"/api/v1/notices/{big}/read", f"/api/v1/notices/{big}/recall",
             f"/api/v1/org/assignments/{big}/end", f"/api/v1/messages/{big}/recall",
             f"/api/v1/admin/grants/{big}/revoke"]  # fmt: skip
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        for path in gets:
            r = await h.get(path)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (path, r.text)
        for path in posts:
            r = await h.post(path, json={})
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (path, r.text)
        r = await h.patch(f"/api/v1/messages/{big}", json={"body": "x"})
        assert r.status_code == 404
        for params in ({"cursor": f"{big}.1"}, {"cursor": f"1.{big}"}, {"limit": "²"}):
            r = await h.get("/api/v1/conversations", params=params)
            assert r.status_code == 400 and r.json()["error"]["data"]["field"] in ("cursor", "limit"), r.text
        for params in ({"since": big}, {"since": "١"}):
            r = await h.get("/api/v1/sync", params=params)
            assert r.status_code == 400, r.text
    ws = await Client.connect(rs.ws, tok)
    try:
        reply = await ws.request({"type": "conversations", "cursor": f"{big}.1"})
        assert (reply["type"], reply["code"]) == ("error", "bad_request"), reply
        assert (await ws.request({"type": "ping"}))["type"] == "ok"  # the socket stays usable
    finally:
        await ws.ws.close()


async def test_a_session_must_belong_to_the_tokens_subject(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    (a, a_login), (b, _) = await new_people(s, 2)
    b_session = await s.sessions.open(b)
    forged = s.tokens.issue(a, b_session.session_id)  # signed, but the sid is B's
    async with httpx.AsyncClient(base_url=rs.http) as h:
        r = await h.get("/api/v1/me", headers=auth(forged))
        assert r.status_code == 403
        good = (await login(rs.http, a_login))["access_token"]
        assert (await h.get("/api/v1/me", headers=auth(good))).status_code == 200
    async with websockets.connect(rs.ws) as raw:
        await raw.send(json.dumps({"type": "hello", "id": "1", "v": 1, "token": forged}))
        reply = json.loads(await raw.recv())
        assert (reply["type"], reply["code"]) == ("error", "forbidden")
        await raw.wait_closed()
        assert raw.close_code == 4503


async def _address_seen(db_url: str, forwarded_allow_ips: str) -> list[str]:
    """Fail one sign-in claiming X-Forwarded-For: 203.0.113.7; the audit log says which address counted."""
    rs, task = await start_server(make_settings(db_url, forwarded_allow_ips=forwarded_allow_ips))
    try:
        s = rs.services_obj  # type: ignore[attr-defined]
        _, lg = await new_person(s)
        async with httpx.AsyncClient(base_url=rs.http) as h:
            r = await h.post(
                "/api/v1/auth/token",
                json={"grant_type": "password", "login": lg, "password": "wrong"},
                headers={"X-Forwarded-For": "203.0.113.7"},
            )
            assert r.status_code == 401
        failed, _ = await query(s.db, AuditQuery(action="auth.login_failed"))
        return [e["detail"]["addr"] for e in failed if e["detail"]["login"] == lg]
    finally:
        rs.server.should_exit = True
        await task


async def test_forwarded_for_is_believed_only_from_a_configured_proxy(db_url: str) -> None:
    """Otherwise anyone could pick the address that per-address throttling counts."""
    assert await _address_seen(db_url, "") == ["127.0.0.1"]
    assert await _address_seen(db_url, "10.9.9.9") == ["127.0.0.1"]  # a proxy, but not this peer
    assert await _address_seen(db_url, "127.0.0.1") == ["203.0.113.7"]
