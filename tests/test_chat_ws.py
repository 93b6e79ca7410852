"""Direct chat end to end through real WebSocket clients, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json

from messaging.shapes import MessageNew
from tests.client import Client, connect_as, login, new_people, new_person
from tests.conftest import RunningServer
from tests.history import History
from tests.rawws import RawSocket, frame


async def _pair(server: RunningServer) -> tuple[int, Client, int, Client]:
    s = server.services_obj  # type: ignore[attr-defined]
    a_id, a_login = await new_person(s, "张三")
    b_id, b_login = await new_person(s, "李四")
    a = await connect_as(server, a_login)
    b = await connect_as(server, b_login)
    return a_id, a, b_id, b


async def test_send_is_acked_and_delivered_to_recipient_and_sender_devices(server: RunningServer) -> None:
    a_id, a, b_id, b = await _pair(server)
    a_login_token = a.hello
    assert a_login_token["person_id"] == a_id
    reply = await a.send_message(b_id, "你好，李四")
    assert reply["type"] == "ok"
    mid = reply["data"]["message_id"]
    [ev] = await b.wait_events(1)
    assert ev["kind"] == "message.new" and ev["data"]["id"] == mid and ev["data"]["body"] == "你好，李四"
    assert ev["data"]["sender"] == {"id": a_id, "name": "张三", "position_id": None}
    # One message.new shape for every kind of conversation (messaging/shapes.py): all fields present.
    assert set(ev["data"]) == set(MessageNew.model_fields)
    assert ev["data"]["conversation_kind"] == "direct" and ev["data"]["recipient_id"] == b_id
    assert ev["data"]["created_at"].endswith("Z")
    [echo] = await a.wait_events(1)
    assert echo["seq"] == reply["data"]["seq"] and echo["data"]["id"] == mid
    await a.close()
    await b.close()


async def test_retried_send_returns_same_id_and_stores_one_message(server: RunningServer) -> None:
    a_id, a, b_id, b = await _pair(server)
    first = await a.send_message(b_id, "once", client_msg_id="cm-1")
    again = await a.send_message(b_id, "once, retried with other text", client_msg_id="cm-1")
    assert again["data"]["message_id"] == first["data"]["message_id"]
    assert again["data"]["duplicate"] is True
    hist = await a.request({"type": "history", "with_person": b_id})
    assert [m["body"] for m in hist["data"]["messages"]] == ["once"]
    # Another sender may use the same client_msg_id: a different message.
    other = await b.send_message(a_id, "mine", client_msg_id="cm-1")
    assert other["data"]["message_id"] != first["data"]["message_id"]
    await a.close()
    await b.close()


async def test_concurrent_duplicate_sends_from_two_devices_store_one_message(server: RunningServer) -> None:
    s = server.services_obj  # type: ignore[attr-defined]
    (a_id, a_login), (b_id, _) = await new_people(s, 2)
    tok = (await login(server.http, a_login))["access_token"]
    a1 = await Client.connect(server.ws, tok)
    a2 = await Client.connect(server.ws, tok)
    r1, r2 = await asyncio.gather(
        a1.send_message(b_id, "x", client_msg_id="same"), a2.send_message(b_id, "x", client_msg_id="same")
    )
    assert r1["data"]["message_id"] == r2["data"]["message_id"]
    assert sorted([r1["data"]["duplicate"], r2["data"]["duplicate"]]) == [False, True]
    await a1.close()
    await a2.close()


async def test_many_senders_history_checker_holds(server: RunningServer) -> None:
    """I1–I3 over concurrent traffic between five people, each on one device."""
    s = server.services_obj  # type: ignore[attr-defined]
    people = [await new_person(s) for _ in range(5)]
    clients = [await connect_as(server, lg) for _, lg in people]
    hist = History()

    async def talk(i: int) -> None:
        me = people[i][0]
        for k in range(20):
            to = people[(i + 1 + k % 4) % 5][0]
            cmid = f"{i}-{k}"
            r = await clients[i].send_message(to, f"m{i}-{k}", client_msg_id=cmid)
            hist.send_ok(me, cmid, r["data"]["message_id"], {me, to})

    await asyncio.gather(*(talk(i) for i in range(5)))
    # Each person sent 20 and received 20 (echoes count too): 40 events each.
    for (pid, _), c in zip(people, clients, strict=True):
        await c.wait_events(40)
        hist.deliver_events(pid, c.events)
    hist.check()
    for c in clients:
        await c.close()


async def test_reconnect_with_resume_gets_exactly_what_was_missed(server: RunningServer) -> None:
    s = server.services_obj  # type: ignore[attr-defined]
    (a_id, a_login), (b_id, b_login) = await new_people(s, 2)
    tok_b = (await login(server.http, b_login))["access_token"]
    a = await connect_as(server, a_login)
    b = await Client.connect(server.ws, tok_b)
    await a.send_message(b_id, "seen live")
    await b.wait_events(1)
    epoch, last = b.hello["epoch"], b.events[-1]["seq"]
    await b.close()
    sent = [(await a.send_message(b_id, f"offline {i}"))["data"]["message_id"] for i in range(30)]
    b2 = await Client.connect(server.ws, tok_b, resume={"epoch": epoch, "since": last})
    assert b2.hello["resumed"] is True
    evs = await b2.wait_events(30)
    assert [e["data"]["id"] for e in evs] == sent
    assert [e["seq"] for e in evs] == list(range(last + 1, last + 31))
    await a.close()
    await b2.close()


async def test_resume_with_wrong_epoch_says_resync_required(server: RunningServer) -> None:
    s = server.services_obj  # type: ignore[attr-defined]
    (a_id, a_login), (b_id, b_login) = await new_people(s, 2)
    a = await connect_as(server, a_login)
    await a.send_message(b_id, "one event in b's stream")
    tok = (await login(server.http, b_login))["access_token"]
    c = await Client.connect(server.ws, tok, resume={"epoch": "deadbeef", "since": 1})
    assert c.hello["resumed"] is False and "resync_required" in c.hello
    # The pull form says so explicitly too, never an empty "up to date".
    r = await c.request({"type": "sync", "epoch": "deadbeef", "since": 1})
    assert r["type"] == "error" and r["code"] == "resync_required"
    assert r["data"]["last_seq"] == 1
    # A client that has nothing (since 0) can always start from the beginning.
    fresh = await c.request({"type": "sync", "epoch": "deadbeef", "since": 0})
    assert [e["seq"] for e in fresh["data"]["events"]] == [1]
    await a.close()
    await c.close()


async def test_sync_pages_are_bounded_and_ordered(server: RunningServer) -> None:
    s = server.services_obj  # type: ignore[attr-defined]
    (a_id, a_login), (b_id, b_login) = await new_people(s, 2)
    a = await connect_as(server, a_login)
    for i in range(12):
        await a.send_message(b_id, f"n{i}")
    b = await connect_as(server, b_login)
    seen: list[int] = []
    since = 0
    while True:
        r = await b.request({"type": "sync", "since": since, "limit": 5})
        seen += [e["seq"] for e in r["data"]["events"]]
        since = r["data"]["next_since"]
        if not r["data"]["limited"]:
            break
    assert seen == list(range(1, 13))
    await a.close()
    await b.close()


async def test_history_paginates_and_read_marker_syncs_to_other_devices(server: RunningServer) -> None:
    s = server.services_obj  # type: ignore[attr-defined]
    (a_id, a_login), (b_id, b_login) = await new_people(s, 2)
    a = await connect_as(server, a_login)
    ids = [(await a.send_message(b_id, f"h{i}"))["data"]["message_id"] for i in range(7)]
    tok_b = (await login(server.http, b_login))["access_token"]
    b1 = await Client.connect(server.ws, tok_b)
    b2 = await Client.connect(server.ws, tok_b)
    page1 = (await b1.request({"type": "history", "with_person": a_id, "limit": 4}))["data"]
    assert [m["id"] for m in page1["messages"]] == ids[::-1][:4]
    page2 = (
        await b1.request(
            {"type": "history", "conversation_id": page1["conversation_id"], "before": page1["next_before"]}
        )
    )["data"]
    assert [m["id"] for m in page2["messages"]] == ids[::-1][4:] and page2["next_before"] is None
    r = await b1.request({"type": "read", "conversation_id": page1["conversation_id"], "message_id": ids[-1]})
    assert r["data"]["last_read_message_id"] == ids[-1]
    [ev] = await b2.wait_events(1)
    assert ev["kind"] == "conversation.read" and ev["data"]["last_read_message_id"] == ids[-1]
    peer = await a.wait_events(8)
    assert peer[-1]["kind"] == "peer.read" and peer[-1]["data"]["person_id"] == b_id
    conv = (await b1.request({"type": "conversations"}))["data"]["conversations"]
    assert conv[0]["unread"] == 0 and conv[0]["peer_id"] == a_id
    for c in (a, b1, b2):
        await c.close()


async def test_outsider_cannot_read_a_conversation(server: RunningServer) -> None:
    s = server.services_obj  # type: ignore[attr-defined]
    (a_id, a_login), (b_id, _) = await new_people(s, 2)
    _, c_login = await new_person(s)
    a = await connect_as(server, a_login)
    cid = (await a.send_message(b_id, "private"))["data"]["conversation_id"]
    c = await connect_as(server, c_login)
    denied = await c.request({"type": "history", "conversation_id": cid})
    missing = await c.request({"type": "history", "conversation_id": cid + 10_000})
    # The same answer for "not yours" and "does not exist": no existence oracle.
    assert denied["code"] == missing["code"] == "not_found"
    assert denied["message"] == missing["message"]
    await a.close()
    await c.close()


async def test_conversation_list_counts_unread_per_conversation(server: RunningServer) -> None:
    s = server.services_obj  # type: ignore[attr-defined]
    me, me_login = await new_person(s)
    others = [await new_person(s) for _ in range(3)]
    for i, (_pid, lg) in enumerate(others):
        c = await connect_as(server, lg)
        for k in range(i + 1):
            await c.send_message(me, f"{i}-{k}")
        await c.close()
    mine = await connect_as(server, me_login)
    await mine.send_message(others[0][0], "my own message is never unread")
    convs = (await mine.request({"type": "conversations"}))["data"]["conversations"]
    assert {c["peer_id"]: c["unread"] for c in convs} == {others[0][0]: 1, others[1][0]: 2, others[2][0]: 3}
    assert convs[0]["peer_id"] == others[0][0]  # most recent first
    await mine.close()


async def test_direct_messages_can_be_edited_and_recalled_and_send_stays_text_only(server: RunningServer) -> None:
    s = server.services_obj  # type: ignore[attr-defined]
    (a_id, a_login), (b_id, b_login) = await new_people(s, 2)
    a = await connect_as(server, a_login)
    b = await connect_as(server, b_login)
    sent = (await a.send_message(b_id, "原话"))["data"]
    mid, cid = sent["message_id"], sent["conversation_id"]
    assert (await b.request({"type": "edit", "message_id": mid, "body": "冒改"}))["code"] == "forbidden"
    assert (await a.request({"type": "edit", "message_id": mid, "body": "改过"}))["data"]["body"] == "改过"
    assert (await a.request({"type": "recall", "message_id": mid}))["data"]["recalled_at"]
    kinds = [e["kind"] for e in await b.wait_events(3)]
    assert kinds == ["message.new", "message.edited", "message.recalled"]
    [m] = (await b.request({"type": "history", "conversation_id": cid}))["data"]["messages"]
    assert m["body"] == "" and m["recalled_at"] and m["edited_at"]
    # Replies, mentions and attachments go to a conversation id; ``to`` stays plain text.
    bad = await a.request({"type": "send", "to": b_id, "client_msg_id": "x", "body": "hi", "reply_to": mid})
    assert bad["code"] == "bad_request"
    ok = await a.request(
        {"type": "send", "conversation_id": cid, "client_msg_id": "y", "body": "回复", "reply_to": mid}
    )
    assert ok["type"] == "ok"
    [ev] = [e for e in await b.wait_events(4) if e["kind"] == "message.new"][1:]
    assert ev["data"]["reply_to"] == {"id": mid, "snippet": ""}  # the quoted message was recalled
    await a.close()
    await b.close()


def _text_frames(data: bytes) -> list[dict[str, object]]:
    """The unmasked text frames in ``data``, which must end on a frame boundary."""
    out = []
    while data:
        n, at = data[1] & 0x7F, 2
        if n == 126:
            n, at = int.from_bytes(data[2:4], "big"), 4
        assert data[0] == 0x81, data[:2]  # FIN + text
        out.append(json.loads(data[at : at + n]))
        data = data[at + n :]
    return out


async def test_the_ack_and_the_senders_echo_leave_in_one_write(server: RunningServer) -> None:
    """The sender's own event and the acknowledgement come in one socket write (zzd.gateway.wsproto).

    Still two frames, echo first, as before: one read returns both whole.
    """
    s = server.services_obj  # type: ignore[attr-defined]
    _, a_login = await new_person(s, "王五")
    b_id, _ = await new_person(s, "赵六")
    token = (await login(server.http, a_login))["access_token"]
    raw = await RawSocket.open(server.port)
    try:
        raw.send(frame(0x1, json.dumps({"type": "hello", "id": "h", "v": 1, "token": token}).encode()))
        _, hello = await asyncio.wait_for(raw.read_frame(), 10)
        assert json.loads(hello)["type"] == "ok"
        send = {"type": "send", "id": "s1", "to": b_id, "client_msg_id": "c-1", "body": "一次写"}
        raw.send(frame(0x1, json.dumps(send).encode()))
        echo, ack = _text_frames(await asyncio.wait_for(raw.reader.read(65_536), 10))
        assert echo["type"] == "event" and ack == {"type": "ok", "ref": "s1", "data": ack["data"]}
        assert echo["seq"] == ack["data"]["seq"] and echo["data"]["id"] == ack["data"]["message_id"]  # type: ignore[index]
    finally:
        raw.abort()
