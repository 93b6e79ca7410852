"""Conversations through the served app on both backends: WebSocket frames, REST routes, background reconciler."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.client import Client, login, new_person
from tests.conftest import RunningServer, make_settings, serving
from tests.conversations.conftest import ADMIN
from tests.waiting import wait_until


@pytest.fixture
async def tree_server(conv_url: str) -> AsyncIterator[RunningServer]:
    async with serving(make_settings(conv_url, background_interval=0.05, index_refresh_interval=0.05)) as rs:
        yield rs


def _single_position(s: Any) -> int:
    idx = s.org.index
    for k in idx.slots():
        if not idx.position_role(k).pool and len(idx.primary_holders(k)) == 1:
            return int(idx.position_id(k))
    raise AssertionError("no single position")


async def _person(server: RunningServer) -> tuple[int, str]:
    s = server.services_obj  # type: ignore[attr-defined]
    pid, lg = await new_person(s)
    return pid, (await login(server.http, lg))["access_token"]


async def test_position_thread_over_websocket_with_handover(tree_server: RunningServer) -> None:
    s = tree_server.services_obj  # type: ignore[attr-defined]
    pos = _single_position(s)
    (cit, tok_c), (h1, tok_1), (h2, tok_2), (_, tok_x) = [await _person(tree_server) for _ in range(4)]
    await s.org.handover(ADMIN, pos, h1)
    c = await Client.connect(tree_server.ws, tok_c)
    one = await Client.connect(tree_server.ws, tok_1)
    r = await c.request({"type": "send", "to_position": pos, "client_msg_id": "q1", "body": "请问"})
    assert r["type"] == "ok", r
    cid = r["data"]["conversation_id"]
    [ev] = await one.wait_events(1)
    assert ev["data"]["body"] == "请问" and ev["data"]["position_id"] == pos
    r = await one.request({"type": "send", "conversation_id": cid, "client_msg_id": "a1", "body": "答复"})
    mid = r["data"]["message_id"]
    events = await c.wait_events(2)
    assert events[1]["data"]["sender"] == {"id": h1, "name": events[1]["data"]["sender"]["name"], "position_id": pos}
    assert (await one.request({"type": "edit", "message_id": mid, "body": "答复(改)"}))["type"] == "ok"
    assert (await c.wait_events(3))[2]["kind"] == "message.edited"
    await s.org.handover(ADMIN, pos, h2)
    two = await Client.connect(tree_server.ws, tok_2)
    hist = (await two.request({"type": "history", "conversation_id": cid}))["data"]["messages"]
    assert [m["body"] for m in hist if m["kind"] == "text"] == ["答复(改)", "请问"]
    denied = await one.request({"type": "send", "conversation_id": cid, "client_msg_id": "a2", "body": "x"})
    assert denied["code"] == "forbidden"
    x = await Client.connect(tree_server.ws, tok_x)
    a = await x.request({"type": "history", "conversation_id": cid})
    b = await x.request({"type": "history", "conversation_id": cid + 999})
    assert a["code"] == b["code"] == "not_found" and a["message"] == b["message"]
    inbox = (await two.request({"type": "conversations"}))["data"]
    assert inbox["conversations"][0]["id"] == cid and inbox["conversations"][0]["via_position_id"] == pos
    bad = await c.request({"type": "send", "to": h1, "conversation_id": cid, "client_msg_id": "z", "body": "x"})
    assert bad["code"] == "invalid_frame"
    for cl in (c, one, two, x):
        await cl.close()


async def test_groups_and_unit_groups_over_rest(tree_server: RunningServer) -> None:
    s = tree_server.services_obj  # type: ignore[attr-defined]
    (a, tok_a), (b, tok_b), (c, tok_c) = [await _person(tree_server) for _ in range(3)]
    pos = _single_position(s)
    await s.org.handover(ADMIN, pos, c)
    async with httpx.AsyncClient(base_url=tree_server.http) as h:

        def auth(tok: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {tok}"}

        r = await h.post("/api/v1/groups", json={"title": "专班", "person_ids": [b]}, headers=auth(tok_a))
        assert r.status_code == 201, r.text
        gid = r.json()["id"]
        r = await h.post(
            f"/api/v1/conversations/{gid}/messages",
            json={"client_msg_id": "m1", "body": "@乙", "mention_persons": [b]},
            headers=auth(tok_a),
        )
        assert r.status_code == 201
        mid = r.json()["message_id"]
        again = await h.post(
            f"/api/v1/conversations/{gid}/messages", json={"client_msg_id": "m1", "body": "@乙"}, headers=auth(tok_a)
        )
        assert again.status_code == 200 and again.json()["message_id"] == mid
        r = await h.post(f"/api/v1/conversations/{gid}/read", json={"message_id": mid}, headers=auth(tok_b))
        assert r.json()["last_read_message_id"] == mid
        r = await h.get(f"/api/v1/conversations/{gid}/messages/{mid}/reads", headers=auth(tok_a))
        assert r.json() == {"message_id": mid, "read": [b], "unread": []}
        for path in (f"/api/v1/conversations/{gid}/messages", f"/api/v1/groups/{gid}"):
            assert (await h.get(path, headers=auth(tok_c))).status_code == 404
        r = await h.post(f"/api/v1/groups/{gid}/members", json={"position_ids": [pos]}, headers=auth(tok_a))
        assert {m["person_id"] for m in r.json()["members"]} == {a, b, c}
        # The position member follows a handover through the background reconciler.
        await s.org.handover(ADMIN, pos, b)

        async def handed_over() -> bool:
            r = await h.get(f"/api/v1/groups/{gid}", headers=auth(tok_a))
            return {m["person_id"] for m in r.json()["members"]} == {a, b}

        await wait_until(handed_over, what="the group's position member to follow the handover")
        r = await h.post(f"/api/v1/messages/{mid}/recall", headers=auth(tok_a))
        assert r.status_code == 200 and r.json()["recalled_at"]
        r = await h.get("/api/v1/conversations", headers=auth(tok_b))
        assert r.json()["conversations"][0]["id"] == gid
        # A unit group, created by the holder of one of its positions.
        idx = s.org.index
        unit = idx.unit_id(idx.position_unit(idx.slot(pos)))
        r = await h.post(f"/api/v1/units/%23{unit}/group", json={"depth": 0}, headers=auth(tok_b))
        assert r.status_code == 201, r.text
        assert b in {m["person_id"] for m in r.json()["members"]} and r.json()["kind"] == "unit"
        r = await h.post(f"/api/v1/units/%23{unit}/group", json={}, headers=auth(tok_b))
        assert r.status_code == 409
        r = await h.post("/api/v1/groups", json={"title": "x", "person_ids": [10**12]}, headers=auth(tok_a))
        assert r.status_code == 404
        doc = (await h.get("/openapi.json")).json()
        assert "/api/v1/groups" in doc["paths"] and "/api/v1/positions/{position_id}/messages" in doc["paths"]


async def test_history_shows_each_message_as_its_message_new_did(tree_server: RunningServer) -> None:
    """docs/api/chat.md's Message: history fills the same fields as the event (recipient, thread sides, system).

    A client written from the docs reads ``recipient_id`` of a direct message, the thread's sides and a
    handover note's ``system`` object from history after a reconnect; they were null there before.
    """
    s = tree_server.services_obj  # type: ignore[attr-defined]
    pos = _single_position(s)
    (a, tok_a), (b, tok_b), (h2, _) = [await _person(tree_server) for _ in range(3)]
    await s.org.handover(ADMIN, pos, b)
    ca = await Client.connect(tree_server.ws, tok_a)
    cb = await Client.connect(tree_server.ws, tok_b)
    direct = await ca.request({"type": "send", "to": b, "client_msg_id": "d1", "body": "在吗"})
    thread = await ca.request({"type": "send", "to_position": pos, "client_msg_id": "t1", "body": "请问"})
    assert direct["type"] == thread["type"] == "ok", (direct, thread)
    await s.org.handover(ADMIN, pos, h2)  # the thread gets a handover note, to the citizen among others

    def note_seen() -> bool:
        return any(e["data"].get("kind") == "system" for e in ca.events if e["kind"] == "message.new")

    try:
        await wait_until(note_seen, what="the handover note in the thread")
    except AssertionError as exc:  # say which half failed: the note's writing or its delivery
        raise AssertionError(f"{exc}; {await _note_state(s, thread['data']['conversation_id'], ca)}") from exc
    await cb.wait_events(2)
    seen = {e["data"]["id"]: e["data"] for e in [*ca.events, *cb.events] if e["kind"] == "message.new"}
    checked = 0
    for cid in (direct["data"]["conversation_id"], thread["data"]["conversation_id"]):
        hist = (await ca.request({"type": "history", "conversation_id": cid}))["data"]["messages"]
        async with httpx.AsyncClient(base_url=tree_server.http) as h:
            r = await h.get(f"/api/v1/conversations/{cid}/messages", headers={"Authorization": f"Bearer {tok_a}"})
        assert r.json()["messages"] == hist
        for m in hist:
            event = {k: v for k, v in seen[m["id"]].items() if k != "muted"}
            assert m == event, (m, event)
            checked += 1
    assert checked == 3
    [d] = (await ca.request({"type": "history", "with_person": b}))["data"]["messages"]
    assert d["recipient_id"] == b
    note = next(m for m in seen.values() if m["kind"] == "system")
    assert note["system"]["event"] == "handover" and note["position_id"] == pos
    for cl in (ca, cb):
        await cl.close()


async def test_a_mention_shows_alike_in_the_event_history_sync_and_inbox(tree_server: RunningServer) -> None:
    """Every place a message appears says whether it names the reader; the inbox row counts unread @s.

    Before, only ``message.new`` said ``mentioned``: history did not, and an inbox row had no
    sign that someone had @'d the reader (有人@我), so a client had to redo the membership
    check itself, or lost the mark after a reload.
    """
    s = tree_server.services_obj  # type: ignore[attr-defined]
    pos = _single_position(s)
    (a, tok_a), (b, tok_b), (c, tok_c), (d, tok_d) = [await _person(tree_server) for _ in range(4)]
    await s.org.handover(ADMIN, pos, c)
    async with httpx.AsyncClient(base_url=tree_server.http) as h:

        def auth(tok: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {tok}"}

        r = await h.post(
            "/api/v1/groups", json={"title": "群", "person_ids": [b, d], "position_ids": [pos]}, headers=auth(tok_a)
        )
        gid = r.json()["id"]
        clients = {p: await Client.connect(tree_server.ws, t) for p, t in ((b, tok_b), (c, tok_c), (d, tok_d))}
        body = {"client_msg_id": "m1", "body": "@乙 @岗位", "mention_persons": [b], "mention_positions": [pos]}
        r = await h.post(f"/api/v1/conversations/{gid}/messages", json=body, headers=auth(tok_a))
        mid = r.json()["message_id"]
        expected = {b: True, c: True, d: False}
        for p, tok in ((b, tok_b), (c, tok_c), (d, tok_d)):
            cl = clients[p]
            await wait_until(lambda cl=cl: any(e["data"].get("id") == mid for e in cl.events), what="message.new")
            [ev] = [e for e in cl.events if e["kind"] == "message.new" and e["data"]["id"] == mid]
            synced = (await h.get("/api/v1/sync", params={"since": 0}, headers=auth(tok))).json()["events"]
            [sy] = [e for e in synced if e["kind"] == "message.new" and e["data"]["id"] == mid]
            rest = (await h.get(f"/api/v1/conversations/{gid}/messages", headers=auth(tok))).json()["messages"]
            ws = (await cl.request({"type": "history", "conversation_id": gid}))["data"]["messages"]
            [hr] = [m for m in rest if m["id"] == mid]
            [hw] = [m for m in ws if m["id"] == mid]
            assert (
                ev["data"]["mentioned"] is sy["data"]["mentioned"] is hr["mentioned"] is hw["mentioned"] is expected[p]
            )
            inbox = (await h.get("/api/v1/conversations", headers=auth(tok))).json()["conversations"]
            frame = (await cl.request({"type": "conversations"}))["data"]["conversations"]
            [row] = [x for x in inbox if x["id"] == gid]
            assert row["unread_mentions"] == (1 if expected[p] else 0) and row["unread"] == 1
            assert [x for x in frame if x["id"] == gid] == [row]  # the frame answers the same row, every field
        own = (await h.get(f"/api/v1/conversations/{gid}/messages", headers=auth(tok_a))).json()["messages"]
        assert not any(m["mentioned"] for m in own)  # never one's own message
        seen_by_b = (await h.get(f"/api/v1/conversations/{gid}/messages", headers=auth(tok_b))).json()["messages"]
        [note] = [m for m in seen_by_b if m["kind"] == "system"]  # "created": its mentions list the members
        assert b in note["mentions"]["persons"] and note["mentioned"] is False
        await h.post(f"/api/v1/conversations/{gid}/read", json={"message_id": mid}, headers=auth(tok_b))
        inbox = (await h.get("/api/v1/conversations", headers=auth(tok_b))).json()["conversations"]
        assert [(x["unread"], x["unread_mentions"]) for x in inbox if x["id"] == gid] == [(0, 0)]
    for cl in clients.values():
        await cl.close()


async def _note_state(s: Any, cid: int, client: Client) -> str:
    """What the server holds of a thread's handover note, beside what the client received."""
    from sqlalchemy import select

    from messaging.schema import conversations, messages

    async with s.db.read() as conn:
        mark = (await conn.execute(select(conversations.c.member_version).where(conversations.c.id == cid))).scalar()
        rows = await conn.execute(select(messages.c.kind).where(messages.c.conversation_id == cid))
        kinds = [str(r[0]) for r in rows]
    return (
        f"thread member_version={mark}, its messages' kinds={kinds}, index version={s.org.index.version}, "
        f"reconciler seen={s.members._seen} notes={s.members.notes}, "
        f"client events={[(e['seq'], e['kind']) for e in client.events]}"
    )


async def test_history_names_exactly_one_conversation(tree_server: RunningServer) -> None:
    """Neither or both of conversation_id and with_person is a bad frame (it was not_found, or both silently)."""
    (a, tok_a), (b, _) = [await _person(tree_server) for _ in range(2)]
    ca = await Client.connect(tree_server.ws, tok_a)
    try:
        for frame in ({"type": "history"}, {"type": "history", "conversation_id": 1, "with_person": b}):
            r = await ca.request(frame)
            assert r["code"] == "invalid_frame", r
            assert r["data"]["errors"][0]["problem"].endswith("give exactly one of conversation_id, with_person")
        none_yet = await ca.request({"type": "history", "with_person": b})
        assert none_yet["data"] == {"conversation_id": None, "messages": [], "next_before": None}
        nobody = await ca.request({"type": "history", "with_person": 10**12})
        assert (nobody["code"], nobody["data"]) == ("not_found", {"person_id": 10**12}), nobody
    finally:
        await ca.close()


async def test_recalling_twice_answers_the_first_recall(tree_server: RunningServer) -> None:
    """docs/conversations.md: "Recalling twice answers the first recall" — over the WebSocket and REST alike.

    The second recall answered without ``conversation_id``, so the frame's answer model refused it and the
    client got ``internal_error`` (REST: 500) for a retry the docs call safe.
    """
    (a, tok_a), (b, _) = [await _person(tree_server) for _ in range(2)]
    c = await Client.connect(tree_server.ws, tok_a)
    r = await c.request({"type": "send", "to": b, "client_msg_id": "r1", "body": "撤回我"})
    mid, cid = r["data"]["message_id"], r["data"]["conversation_id"]
    first = await c.request({"type": "recall", "message_id": mid})
    assert first["type"] == "ok" and first["data"]["conversation_id"] == cid, first
    again = await c.request({"type": "recall", "message_id": mid})
    assert again["type"] == "ok" and again["data"] == first["data"], again
    async with httpx.AsyncClient(base_url=tree_server.http) as h:
        r2 = await h.post(f"/api/v1/messages/{mid}/recall", headers={"Authorization": f"Bearer {tok_a}"})
    assert r2.status_code == 200, r2.text  # REST's MessageChanged also names the edit's fields, null
    assert {k: r2.json()[k] for k in first["data"]} == first["data"], r2.text
    await c.close()


async def test_a_muted_direct_chat_says_muted_on_every_send_path(tree_server: RunningServer) -> None:
    """``message.new`` carries the recipient's own mute, however the direct message was sent.

    Before, a send with ``to`` (REST ``POST /api/v1/messages`` or the frame) always said
    ``"muted": false`` (the direct chat's own statements never read the flag); only a send
    with the chat's ``conversation_id`` said ``true`` (the 河南 audit).
    """
    (a, tok_a), (b, tok_b) = [await _person(tree_server) for _ in range(2)]
    sender = await Client.connect(tree_server.ws, tok_a)
    reader = await Client.connect(tree_server.ws, tok_b)
    http = httpx.AsyncClient(base_url=tree_server.http)
    first = await sender.request({"type": "send", "to": b, "client_msg_id": "m0", "body": "在吗"})
    cid = first["data"]["conversation_id"]
    hb = {"authorization": f"Bearer {tok_b}"}
    ha = {"authorization": f"Bearer {tok_a}"}
    r = await http.post(f"/api/v1/conversations/{cid}/mute", json={"muted": True}, headers=hb)
    assert r.status_code == 200, r.text
    assert (await sender.request({"type": "send", "to": b, "client_msg_id": "m1", "body": "帧"}))["type"] == "ok"
    r = await http.post("/api/v1/messages", json={"to": b, "client_msg_id": "m2", "body": "REST"}, headers=ha)
    assert r.status_code == 201, r.text
    body = {"client_msg_id": "m3", "body": "会话"}
    assert (await http.post(f"/api/v1/conversations/{cid}/messages", json=body, headers=ha)).status_code == 201
    await reader.wait_matching(lambda e: e["kind"] == "message.new" and e["data"]["body"] == "会话")
    events = reader.matching(lambda e: e["kind"] == "message.new")
    assert [(e["data"]["body"], e["data"]["muted"]) for e in events] == [
        ("在吗", False),
        ("帧", True),
        ("REST", True),
        ("会话", True),
    ]
    # The sender's own events carry the sender's flag (not muted), and theirs only.
    await sender.wait_matching(lambda e: e["kind"] == "message.new" and e["data"]["body"] == "会话")
    mine = sender.matching(lambda e: e["kind"] == "message.new")
    assert [e["data"]["muted"] for e in mine] == [False] * 4
    # A chat with oneself, muted: one event, muted.
    own = await http.post("/api/v1/messages", json={"to": a, "client_msg_id": "s0", "body": "备忘"}, headers=ha)
    own_cid = own.json()["conversation_id"]
    await http.post(f"/api/v1/conversations/{own_cid}/mute", json={"muted": True}, headers=ha)
    r = await http.post("/api/v1/messages", json={"to": a, "client_msg_id": "s1", "body": "备忘2"}, headers=ha)
    assert r.status_code == 201, r.text
    [tail] = await sender.wait_matching(lambda e: e["kind"] == "message.new" and e["data"]["body"] == "备忘2")
    assert (tail["data"]["body"], tail["data"]["muted"]) == ("备忘2", True)
    await sender.close()
    await reader.close()
    await http.aclose()


async def test_a_direct_message_sent_by_conversation_id_names_its_recipient(tree_server: RunningServer) -> None:
    """``recipient_id`` of a direct chat's ``message.new`` is the other person, whichever way it was sent.

    Before, a reply with the chat's ``conversation_id`` (the frame or
    ``POST /api/v1/conversations/{id}/messages``) said ``"recipient_id": null`` in both
    persons' events while history said the person (the 河南 audit); a client keying
    direct chats by ``recipient_id`` put the reply nowhere.
    """
    (a, tok_a), (b, tok_b) = [await _person(tree_server) for _ in range(2)]
    ca = await Client.connect(tree_server.ws, tok_a)
    cb = await Client.connect(tree_server.ws, tok_b)
    first = await ca.request({"type": "send", "to": b, "client_msg_id": "d1", "body": "在吗"})
    cid = first["data"]["conversation_id"]
    reply = await cb.request({"type": "send", "conversation_id": cid, "client_msg_id": "d2", "body": "在"})
    assert reply["type"] == "ok", reply
    async with httpx.AsyncClient(base_url=tree_server.http) as h:
        r = await h.post(
            f"/api/v1/conversations/{cid}/messages",
            json={"client_msg_id": "d3", "body": "好"},
            headers={"Authorization": f"Bearer {tok_a}"},
        )
        assert r.status_code == 201, r.text
        own = await h.post(
            "/api/v1/messages",
            json={"to": a, "client_msg_id": "s1", "body": "备忘"},
            headers={"Authorization": f"Bearer {tok_a}"},
        )
        own_cid = own.json()["conversation_id"]
    note = await ca.request({"type": "send", "conversation_id": own_cid, "client_msg_id": "s2", "body": "备忘2"})
    assert note["type"] == "ok", note
    await ca.wait_matching(lambda e: e["kind"] == "message.new" and e["data"]["body"] == "备忘2")
    await cb.wait_matching(lambda e: e["kind"] == "message.new" and e["data"]["body"] == "好")
    expected = {"在吗": b, "在": a, "好": b, "备忘": a, "备忘2": a}
    for cl in (ca, cb):
        got = {e["data"]["body"]: e["data"]["recipient_id"] for e in cl.matching(lambda e: e["kind"] == "message.new")}
        assert got == {k: v for k, v in expected.items() if k in got}, got
    hist = (await ca.request({"type": "history", "conversation_id": cid}))["data"]["messages"]
    assert {m["body"]: m["recipient_id"] for m in hist} == {"在吗": b, "在": a, "好": b}
    for cl in (ca, cb):
        await cl.close()
