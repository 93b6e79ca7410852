"""Message features on both backends: mentions, replies, edit, recall, attachments, read state, inbox."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.errors import BadRequest, Conflict, Forbidden, NotFound
from messaging.conversations.inbox import inbox
from messaging.conversations.model import ConversationConfig, PostRequest
from tests.conversations.conftest import World, make_world


def _new(stream: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [d for k, d in stream if k == "message.new" and d["kind"] == "text"]


async def _inbox(world: World, person: int, **kw: Any) -> dict[str, Any]:
    async with world.db.read() as conn:
        return await inbox(conn, person, **kw)


async def test_mentions_of_persons_and_positions_flag_the_recipients(world: World) -> None:
    owner, a, b = [await world.person() for _ in range(3)]
    [pos] = world.single_positions(1)
    [h] = world.holders(pos)
    g = await world.groups.create(owner, "群", [a, b], [pos])
    await world.conv.post(
        PostRequest(owner, "m1", "@甲 @岗位", conversation_id=g["id"], mention_persons=(a,), mention_positions=(pos,))
    )
    flags = {p: _new(await world.stream(p))[0]["mentioned"] for p in (owner, a, b, h)}
    assert flags == {owner: False, a: True, b: False, h: True}
    [ev] = _new(await world.stream(b))
    assert ev["mentions"] == {"persons": [a], "positions": [pos]}
    # History says the same to each reader, and the inbox row counts the unread @s (有人@我)
    for p in (owner, a, b, h):
        msgs, _ = await world.conv.history(p, g["id"])
        assert [m["mentioned"] for m in msgs if m["kind"] == "text"] == [flags[p]]
    rows = {p: (await _inbox(world, p))["conversations"][0] for p in (owner, a, b, h)}
    assert {p: r["unread_mentions"] for p, r in rows.items()} == {owner: 0, a: 1, b: 0, h: 1}
    later = await world.conv.post(PostRequest(owner, "m2", "@甲 again", conversation_id=g["id"], mention_persons=(a,)))
    await world.conv.post(PostRequest(owner, "m3", "no one", conversation_id=g["id"]))
    assert (await _inbox(world, a))["conversations"][0]["unread_mentions"] == 2
    await world.conv.recall(owner, later.message_id)  # a recalled @ is no longer waiting
    assert (await _inbox(world, a))["conversations"][0]["unread_mentions"] == 1
    msgs, _ = await world.conv.history(a, g["id"])
    assert [m["mentioned"] for m in msgs if m["kind"] == "text"] == [False, False, True]
    await world.conv.mark_read(a, g["id"], msgs[0]["id"])
    assert (await _inbox(world, a))["conversations"][0]["unread_mentions"] == 0


async def test_reply_edit_recall_and_their_windows(world: World) -> None:
    a, b = await world.person(), await world.person()
    g = await world.groups.create(a, "群", [b])
    cid = g["id"]
    first = await world.conv.post(
        PostRequest(a, "m1", "原文很长" * 30, conversation_id=cid, attachments=("sha256:ab",))
    )
    reply = await world.conv.post(PostRequest(b, "m2", "回复", conversation_id=cid, reply_to=first.message_id))
    msgs, _ = await world.conv.history(a, cid)
    assert msgs[0]["reply_to"] == {"id": first.message_id, "snippet": ("原文很长" * 30)[:80]}
    assert msgs[1]["attachments"] == ["sha256:ab"]
    with pytest.raises(Forbidden):
        await world.conv.edit(b, first.message_id, "改别人的")
    edited = await world.conv.edit(a, first.message_id, "改过")
    assert edited["body"] == "改过"
    world.clock.advance(16 * 60)
    with pytest.raises(Forbidden):
        await world.conv.edit(a, first.message_id, "太晚")
    await world.conv.recall(b, reply.message_id)
    assert (await world.conv.recall(b, reply.message_id))["recalled_at"]  # idempotent
    with pytest.raises(Conflict):
        await world.conv.edit(b, reply.message_id, "撤回后")
    msgs, _ = await world.conv.history(a, cid)
    assert msgs[0]["recalled_at"] and msgs[0]["body"] == ""
    assert msgs[1]["body"] == "改过" and msgs[1]["edited_at"]
    kinds = [k for k, _ in await world.stream(a)]
    assert kinds.count("message.edited") == 1 and kinds.count("message.recalled") == 1
    with pytest.raises(NotFound):
        await world.conv.post(PostRequest(a, "m3", "x", conversation_id=cid, reply_to=10**9))


async def test_bad_input_changes_nothing(world: World) -> None:
    a, b = await world.person(), await world.person()
    g = await world.groups.create(a, "群", [b])
    bad = [
        PostRequest(a, "sys:1", "x", conversation_id=g["id"]),
        PostRequest(a, "ok", "x\x00", conversation_id=g["id"]),
        PostRequest(a, "ok", "x", conversation_id=g["id"], attachments=("../../etc/passwd\n",)),
        PostRequest(a, "ok", "x", conversation_id=g["id"], mention_persons=(0,)),
        PostRequest(a, "ok", "   ", conversation_id=g["id"]),
    ]
    for req in bad:
        with pytest.raises(BadRequest):
            await world.conv.post(req)
    msgs, _ = await world.conv.history(a, g["id"])
    assert [m["kind"] for m in msgs] == ["system"]


async def test_read_markers_sync_devices_and_read_lists(world: World) -> None:
    a, b, c = [await world.person() for _ in range(3)]
    g = await world.groups.create(a, "群", [b, c])
    cid = g["id"]
    m1 = await world.conv.post(PostRequest(a, "m1", "一", conversation_id=cid))
    m2 = await world.conv.post(PostRequest(a, "m2", "二", conversation_id=cid))
    assert (await _inbox(world, b))["conversations"][0]["unread"] == 2
    assert await world.conv.mark_read(b, cid, m2.message_id) == m2.message_id
    assert await world.conv.mark_read(b, cid, m1.message_id) == m2.message_id  # never moves back
    assert [d for k, d in await world.stream(b) if k == "conversation.read"] == [
        {"conversation_id": cid, "last_read_message_id": m2.message_id}
    ]
    assert (await _inbox(world, b))["conversations"][0]["unread"] == 0
    assert await world.conv.read_by(a, cid, m1.message_id) == {"message_id": m1.message_id, "read": [b], "unread": [c]}


async def test_read_list_limit(conv_url: str) -> None:
    w = await make_world(conv_url, ConversationConfig(read_list_max=1))
    try:
        a, b, c = [await w.person() for _ in range(3)]
        g = await w.groups.create(a, "群", [b, c])
        m = await w.conv.post(PostRequest(a, "m1", "一", conversation_id=g["id"]))
        with pytest.raises(BadRequest):
            await w.conv.read_by(a, g["id"], m.message_id)
    finally:
        await w.db.dispose()


async def test_mute_marks_events_and_inbox(world: World) -> None:
    a, b = await world.person(), await world.person()
    g = await world.groups.create(a, "群", [b])
    await world.conv.set_muted(b, g["id"], True)
    await world.conv.post(PostRequest(a, "m1", "一", conversation_id=g["id"]))
    assert _new(await world.stream(b))[0]["muted"] is True
    assert _new(await world.stream(a))[0]["muted"] is False
    assert (await _inbox(world, b))["conversations"][0]["muted"] is True


async def test_inbox_pages_across_kinds(world: World) -> None:
    me = await world.person()
    [pos] = world.single_positions(1)
    groups = [await world.groups.create(me, f"群{i}") for i in range(3)]
    t = await world.conv.post(PostRequest(me, "t", "问岗位", to_position_id=pos))
    await world.conv.post(PostRequest(me, "g0", "最新", conversation_id=groups[0]["id"]))
    first = await _inbox(world, me, limit=2)
    assert [c["id"] for c in first["conversations"]] == [groups[0]["id"], t.conversation_id]
    rest = await _inbox(world, me, cursor=first["next_cursor"], limit=10)
    assert [c["id"] for c in rest["conversations"]] == [g["id"] for g in reversed(groups[1:])]
    assert rest["next_cursor"] is None
    # Every row has every field, whatever its kind: the WebSocket `conversations` frame answers
    # this dict as it is (REST filled the missing ones with null, the frame left them out).
    keys = {frozenset(c) for c in first["conversations"] + rest["conversations"]}
    assert len(keys) == 1 and {"peer_id", "position_id", "peer_position_id", "unit_id", "unread_mentions"} <= set(
        next(iter(keys))
    )
    with pytest.raises(BadRequest):
        await _inbox(world, me, cursor="x")


async def test_large_group_takes_the_bulk_path_with_per_person_flags(world: World) -> None:
    from messaging.conversations.service import BULK_AUDIENCE

    owner = await world.person()
    others = [await world.person() for _ in range(BULK_AUDIENCE + 5)]
    g = await world.groups.create(owner, "大群", others)
    await world.conv.set_muted(others[1], g["id"], True)
    first = await world.conv.post(
        PostRequest(owner, "m1", "全体", conversation_id=g["id"], mention_persons=(others[0],))
    )
    second = await world.conv.post(PostRequest(others[2], "m2", "收到", conversation_id=g["id"]))
    assert first.sender_seq is not None and second.sender_seq is not None
    for p in [owner, *others]:
        stream = await world.stream(p)
        msgs = _new(stream)
        assert [m["id"] for m in msgs] == [first.message_id, second.message_id]
        assert msgs[0]["mentioned"] is (p == others[0]) and msgs[0]["muted"] is (p == others[1])
        page = await world.events.read(p, epoch=None, since=0)
        assert [s for s, _, _ in page.events] == list(range(1, len(page.events) + 1))  # gap-free
    await world.conv.edit(owner, first.message_id, "全体(改)")
    await world.conv.recall(owner, first.message_id)
    for p in (owner, others[-1]):
        kinds = [k for k, _ in await world.stream(p)]
        assert kinds[-2:] == ["message.edited", "message.recalled"]


async def test_retry_answers_the_stored_message_even_after_the_sender_left_or_was_disabled(world: World) -> None:
    # The send reads the sender and a stored message of the same client_msg_id in one query:
    # a retry is answered before the sender's state or membership is looked at.
    a, b = await world.person(), await world.person()
    g = await world.groups.create(a, "群", [b])
    first = await world.conv.post(PostRequest(b, "m1", "一", conversation_id=g["id"]))
    await world.groups.leave(b, g["id"])
    again = await world.conv.post(PostRequest(b, "m1", "一", conversation_id=g["id"]))
    assert again.duplicate and again.message_id == first.message_id
    with pytest.raises(NotFound):
        await world.conv.post(PostRequest(b, "m2", "二", conversation_id=g["id"]))
    await world.people.set_disabled(b, True)
    assert (await world.conv.post(PostRequest(b, "m1", "一", conversation_id=g["id"]))).duplicate
    with pytest.raises(Forbidden):
        await world.conv.post(PostRequest(b, "m3", "三", conversation_id=g["id"]))
    assert [m["id"] for m in _new(await world.stream(a))] == [first.message_id]


async def test_a_recall_answers_the_edited_at_of_an_edited_message(world: World) -> None:
    """Audit (河南): recalling an edited message answered ``edited_at: null``; the answer, a second
    recall's answer, the ``message.recalled`` event and history now all say when it was edited."""
    a, b = await world.person(), await world.person()
    g = await world.groups.create(a, "群", [b])
    edited_msg = await world.conv.post(PostRequest(a, "m1", "原文", conversation_id=g["id"]))
    plain = await world.conv.post(PostRequest(a, "m2", "未改", conversation_id=g["id"]))
    world.clock.advance(5)
    edited = await world.conv.edit(a, edited_msg.message_id, "改过")
    world.clock.advance(5)
    first = await world.conv.recall(a, edited_msg.message_id)
    assert first["edited_at"] == edited["edited_at"] is not None
    assert (await world.conv.recall(a, edited_msg.message_id)) == first
    assert (await world.conv.recall(a, plain.message_id))["edited_at"] is None
    recalls = [d for k, d in await world.stream(b) if k == "message.recalled"]
    assert [d["edited_at"] for d in recalls] == [edited["edited_at"], None]
    msgs, _ = await world.conv.history(b, g["id"])
    by_id = {m["id"]: m for m in msgs}
    assert by_id[edited_msg.message_id]["edited_at"] == edited["edited_at"]
    assert by_id[edited_msg.message_id]["recalled_at"] == first["recalled_at"]
    assert by_id[plain.message_id]["edited_at"] is None
