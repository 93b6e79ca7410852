"""Position threads on both backends: routing to holders, handover with history, the predecessor's period."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.errors import BadRequest, Forbidden, NotFound
from messaging.conversations.members import MemberReconciler
from messaging.conversations.model import PostRequest
from tests.conversations.conftest import ADMIN, World


def _kinds(stream: list[tuple[str, dict[str, object]]], kind: str = "message.new") -> list[dict[str, object]]:
    return [d for k, d in stream if k == kind]


async def test_person_writes_to_a_position_and_the_holder_replies_as_it(world: World) -> None:
    [pos] = world.single_positions(1)
    [holder] = world.holders(pos)
    citizen = await world.person("群众")
    r = await world.conv.post(PostRequest(citizen, "c1", "水渠堵了", to_position_id=pos))
    assert not r.duplicate and r.sender_seq == 1
    again = await world.conv.post(PostRequest(citizen, "c1", "水渠堵了", to_position_id=pos))
    assert again.duplicate and again.message_id == r.message_id
    [ev] = _kinds(await world.stream(holder))
    assert ev["body"] == "水渠堵了" and ev["sender"] == {"id": citizen, "name": "群众", "position_id": None}
    assert ev["position_id"] == pos and ev["peer_person_id"] == citizen
    reply = await world.conv.post(PostRequest(holder, "h1", "已派人", conversation_id=r.conversation_id))
    msgs, _ = await world.conv.history(citizen, r.conversation_id)
    assert [m["body"] for m in msgs] == ["已派人", "水渠堵了"]
    assert msgs[0]["sender"]["position_id"] == pos and msgs[0]["id"] == reply.message_id
    # The same person writing to the same position again lands in the same thread.
    r2 = await world.conv.post(PostRequest(citizen, "c2", "谢谢", to_position_id=pos))
    assert r2.conversation_id == r.conversation_id


async def test_pool_position_reaches_every_holder_and_one_reply_is_seen_by_all(world: World) -> None:
    pool = world.pool_position()
    a, b = world.holders(pool)[:2]
    citizen = await world.person()
    r = await world.conv.post(PostRequest(citizen, "c1", "求助", to_position_id=pool))
    await world.conv.post(PostRequest(a, "a1", "我来处理", conversation_id=r.conversation_id))
    assert [e["body"] for e in _kinds(await world.stream(b))] == ["求助", "我来处理"]
    assert [e["body"] for e in _kinds(await world.stream(citizen))] == ["求助", "我来处理"]


async def test_position_to_position_thread_reaches_both_sides_holders(world: World) -> None:
    p1, p2 = world.single_positions(2)
    [h1], [h2] = world.holders(p1), world.holders(p2)
    r = await world.conv.post(PostRequest(h1, "x", "请报数据", to_position_id=p2, as_position_id=p1))
    back = await world.conv.post(PostRequest(h2, "y", "明天报", to_position_id=p1, as_position_id=p2))
    assert back.conversation_id == r.conversation_id  # one thread per pair of positions
    for h in (h1, h2):
        assert [e["sender"]["position_id"] for e in _kinds(await world.stream(h))] == [p1, p2]  # type: ignore[index]
    with pytest.raises(Forbidden):
        await world.conv.post(PostRequest(h1, "z", "冒充", to_position_id=p1, as_position_id=p2))


async def test_handover_successor_sees_history_predecessor_only_their_period(world: World) -> None:
    [pos] = world.single_positions(1)
    [old] = world.holders(pos)
    citizen = await world.person()
    new = await world.person("接任者")
    r = await world.conv.post(PostRequest(citizen, "c1", "before", to_position_id=pos))
    await world.conv.post(PostRequest(old, "o1", "old reply", conversation_id=r.conversation_id))
    await world.handover(pos, new)
    # No per-message rewriting: the successor reads the whole thread at once.
    msgs, _ = await world.conv.history(new, r.conversation_id)
    assert [m["body"] for m in msgs] == ["old reply", "before"]
    after = await world.conv.post(PostRequest(citizen, "c2", "after", to_position_id=pos))
    assert after.conversation_id == r.conversation_id
    await world.conv.post(PostRequest(new, "n1", "new reply", conversation_id=r.conversation_id))
    old_view, _ = await world.conv.history(old, r.conversation_id)
    assert [m["body"] for m in old_view] == ["old reply", "before"]
    assert [e["body"] for e in _kinds(await world.stream(old))] == ["before", "old reply"]
    assert [e["body"] for e in _kinds(await world.stream(new))] == ["after", "new reply"]
    with pytest.raises(Forbidden):  # a former holder reads, but no longer writes
        await world.conv.post(PostRequest(old, "o2", "still here?", conversation_id=r.conversation_id))
    with pytest.raises(NotFound):  # nor marks later messages read
        await world.conv.mark_read(old, r.conversation_id, after.message_id)
    assert await world.conv.mark_read(old, r.conversation_id, r.message_id) == r.message_id
    # The successor's inbox lists the thread under the position.
    [item] = [c for c in (await world_inbox(world, new))["conversations"] if c["id"] == r.conversation_id]
    assert item["via_position_id"] == pos and item["last_message"]["snippet"] == "new reply"


async def world_inbox(world: World, person: int) -> dict[str, Any]:
    from messaging.conversations.inbox import inbox

    async with world.db.read() as conn:
        return await inbox(conn, person)


async def test_strangers_get_not_found_like_a_missing_id(world: World) -> None:
    [pos] = world.single_positions(1)
    citizen, stranger = await world.person(), await world.person()
    r = await world.conv.post(PostRequest(citizen, "c1", "秘密", to_position_id=pos))
    for cid in (r.conversation_id, 10**9):
        with pytest.raises(NotFound) as e:
            await world.conv.history(stranger, cid)
        assert e.value.message == "no such conversation"
        with pytest.raises(NotFound):
            await world.conv.post(PostRequest(stranger, f"s{cid}", "hi", conversation_id=cid))
    with pytest.raises(NotFound):
        await world.conv.read_by(stranger, r.conversation_id, r.message_id)
    with pytest.raises(NotFound):
        await world.conv.post(PostRequest(citizen, "c9", "x", to_position_id=10**9))
    with pytest.raises(BadRequest):
        await world.conv.post(PostRequest(citizen, "c9", "x", to_position_id=pos, conversation_id=r.conversation_id))
    assert not _kinds(await world.stream(stranger))


async def test_handover_note_reaches_the_successor_once_across_processes(world: World, conv_url: str) -> None:
    from tests.conversations.conftest import make_world

    p1, p2 = world.single_positions(2)
    [h1] = world.holders(p1)
    citizen, new = await world.person(), await world.person("接任")
    t1 = await world.conv.post(PostRequest(citizen, "c1", "问一", to_position_id=p1))
    t2 = await world.conv.post(PostRequest(h1, "c2", "问二", to_position_id=p2, as_position_id=p1))
    await world.members.run()  # the first run only catches up
    other = await make_world(conv_url)
    try:
        await world.handover(p1, new)
        await other.holder.refresh_if_changed()
        # the other process's clock is the same wall clock: its note is dated after the handover too
        other.clock.advance((world.clock.now() - other.clock.now()).total_seconds())
        await other.members.run()  # its first pass: it writes what the threads' marks say is owed
        await world.members.run()
        assert world.members.notes + other.members.notes == 2  # one per thread, whichever process wrote it
        notes = [d for k, d in await world.stream(new) if k == "message.new" and d["kind"] == "system"]
        assert sorted(n["conversation_id"] for n in notes) == sorted([t1.conversation_id, t2.conversation_id])
        assert notes[0]["system"] == {"event": "handover", "position_id": p1, "holders": [new]}
        assert not [d for k, d in await world.stream(h1) if k == "message.new" and d["kind"] == "system"]
        old_view, _ = await world.conv.history(h1, t1.conversation_id)
        assert [m["kind"] for m in old_view] == ["text"]  # the note is after the predecessor's period
    finally:
        await other.db.dispose()


async def test_a_handover_before_the_reconcilers_first_pass_still_gets_its_note(world: World) -> None:
    """A process's first pass (and a pass holding a tree change) has no window of org changes; a
    handover made just before it got no note at all (a flaky CI run found it: a loaded machine ran the
    first pass after the test's handover). The threads' own marks now say what is owed, once."""
    [p1] = world.single_positions(1)
    citizen, new = await world.person(), await world.person("接任")
    t1 = await world.conv.post(PostRequest(citizen, "c1", "问一", to_position_id=p1))
    await world.handover(p1, new)  # the reconciler (a fresh process's) has not run yet
    assert await world.members.run() >= 0 and world.members.notes == 1
    notes = [d for k, d in await world.stream(new) if k == "message.new" and d["kind"] == "system"]
    assert [(n["conversation_id"], n["system"]["holders"]) for n in notes] == [(t1.conversation_id, [new])]
    await world.members.run()  # the index is unchanged: the next pass has nothing to do
    assert world.members.notes == 1
    fresh = MemberReconciler(world.conv, lambda: world.holder.index)  # a restart: no window again
    await fresh.run()
    assert fresh.notes == 0  # the thread's mark says the note is written


@pytest.mark.parametrize("first_pass", [True, False], ids=["first-pass", "windowed-pass"])
async def test_a_handover_applied_while_a_reconciler_pass_is_running_still_gets_its_note(
    world: World, first_pass: bool
) -> None:
    """The holder patches the index *in place*. A pass that began at version V (its window of
    changes, or on a first pass the threads' marks, read up to V) and awaited its transactions
    while a handover at V+1 was applied recorded V+1 as seen: no later pass read that handover,
    and its thread never got a note. A flaky CI run found it: on a loaded machine the server's
    first pass was still running when the API test's second handover was applied."""
    p1, p2 = world.single_positions(2)
    citizen, new1, new2 = await world.person(), await world.person("接一"), await world.person("接二")
    await world.groups.create(citizen, "群", [], [p1])  # a group for the pass to reconcile
    t2 = await world.conv.post(PostRequest(citizen, "c2", "问二", to_position_id=p2))
    applied: list[int] = []  # the version applied mid-pass

    class HandoverMidPass(MemberReconciler):
        armed = first_pass

        async def reconcile(self, cid: int) -> int:
            if self.armed and not applied:  # the pass has read what it covers and not yet recorded it
                await world.handover(p2, new2)  # committed, and applied to the index object this pass holds
                applied.append(world.holder.index.version)
            return await super().reconcile(cid)

    members = HandoverMidPass(world.conv, lambda: world.holder.index)
    if not first_pass:
        await members.run()  # the first pass catches up
        await world.handover(p1, new1)  # the next pass's window ends here: the group is in it
        members.armed = True
    await members.run()  # p2's handover is applied during this pass
    assert applied == [world.holder.index.version]
    await members.run()  # the next pass reads p2's handover
    notes = [d for k, d in await world.stream(new2) if k == "message.new" and d["kind"] == "system"]
    assert [(n["conversation_id"], n["system"]) for n in notes] == [
        (t2.conversation_id, {"event": "handover", "position_id": p2, "holders": [new2]})
    ]
    assert members.notes == 1


async def test_as_position_in_an_existing_thread_is_checked_not_ignored(world: World) -> None:
    """``as_position`` with a thread's ``conversation_id`` is honoured or refused, never dropped.

    Before, it was ignored there (the 河南 audit): a citizen, or a holder, naming a position
    they do not hold got ``201`` and the message went out as their own side, although the
    protocol answers ``forbidden`` for acting as a position one does not hold.
    """
    p1, p2, p3 = world.single_positions(3)
    [h1] = world.holders(p1)
    citizen = await world.person("群众")
    t1 = (await world.conv.post(PostRequest(citizen, "c1", "请问", to_position_id=p1))).conversation_id
    first = await world.conv.post(PostRequest(h1, "h1", "请报数据", to_position_id=p2, as_position_id=p1))
    t2 = first.conversation_id
    for who, cid in ((citizen, t1), (h1, t1), (h1, t2)):
        with pytest.raises(Forbidden) as e:
            await world.conv.post(PostRequest(who, f"x{who}{cid}", "冒充", conversation_id=cid, as_position_id=p2))
        assert e.value.data == {"as_position": p2}
    await world.handover(p3, h1)  # h1 now holds p1 and p3; p3 is no side of t2
    with pytest.raises(BadRequest) as b:
        await world.conv.post(PostRequest(h1, "h2", "错位", conversation_id=t2, as_position_id=p3))
    assert b.value.data == {"field": "as_position"}
    ok = await world.conv.post(PostRequest(h1, "h3", "本岗", conversation_id=t2, as_position_id=p1))
    msgs, _ = await world.conv.history(h1, t2)
    assert [(m["id"], m["sender"]["position_id"]) for m in msgs if m["kind"] == "text"] == [
        (ok.message_id, p1),
        (msgs[-1]["id"], p1),
    ]
    assert [m["body"] for m in (await world.conv.history(citizen, t1))[0]] == ["请问"]  # nothing stored


async def test_a_thread_of_a_retired_position_takes_no_more_messages(world: World) -> None:
    """Writing into a retired position's thread answers ``not_found``, as writing to the position does.

    Before, ``conversation_id`` of such a thread answered ``201`` (the 河南 audit) and the
    message reached no one, ever: nobody can hold a retired position again. Its history
    stays readable to whoever could read it.
    """
    p1, p2 = world.single_positions(2)
    [h2] = world.holders(p2)
    citizen = await world.person("群众")
    t1 = (await world.conv.post(PostRequest(citizen, "c1", "请问", to_position_id=p1))).conversation_id
    pair = await world.conv.post(PostRequest(h2, "h1", "请报数据", to_position_id=p1, as_position_id=p2))
    t2 = pair.conversation_id
    await world.org.structure.retire_position(ADMIN, p1)
    for who, cid, key in ((citizen, t1, "c2"), (h2, t2, "h2")):
        with pytest.raises(NotFound) as e:
            await world.conv.post(PostRequest(who, key, "还有人吗", conversation_id=cid))
        assert e.value.data == {"position_id": p1}
    with pytest.raises(NotFound):
        await world.conv.post(PostRequest(citizen, "c3", "还有人吗", to_position_id=p1))
    assert [m["body"] for m in (await world.conv.history(citizen, t1))[0]] == ["请问"]
    assert [m["body"] for m in (await world.conv.history(h2, t2))[0]] == ["请报数据"]


async def test_a_holder_does_not_open_a_thread_with_their_own_position(world: World) -> None:
    """The 湖南 audit: a grid worker wrote to their own position as a person and got ``201``: a new
    thread between the position and its own holder, the message written as the position (a holder
    writes as it) to themselves. Opening it is refused now, a primary, deputy or pool holder alike,
    and nothing is stored; anyone else still opens their thread."""
    [pos] = world.single_positions(1)
    [holder] = world.holders(pos)
    pool = world.pool_position()
    member = world.holders(pool)[0]
    for who, target in ((holder, pos), (member, pool)):
        with pytest.raises(BadRequest) as refused:
            await world.conv.post(PostRequest(who, f"self-{target}", "给自己", to_position_id=target))
        assert (refused.value.message, refused.value.data) == (
            "a position cannot open a thread with itself",
            {"field": "to_position"},
        )
        assert _kinds(await world.stream(who)) == []
    citizen = await world.person("群众")
    r = await world.conv.post(PostRequest(citizen, "c1", "水渠堵了", to_position_id=pos))
    assert not r.duplicate
