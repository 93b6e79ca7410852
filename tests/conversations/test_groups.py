"""Ad-hoc and unit groups on both backends: management, limits, and membership that follows the org tree."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kernel.errors import BadRequest, Conflict, Forbidden, NotFound
from messaging.conversations.model import ConversationConfig, GroupTooLarge, PostRequest
from org_tree.jurisdiction import Actor
from tests.conversations.conftest import ADMIN, World, make_world


def _members(view: dict[str, Any]) -> set[int]:
    return {m["person_id"] for m in view["members"]}


def _system(stream: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [d["system"] for k, d in stream if k == "message.new" and d["kind"] == "system"]


async def test_group_lifecycle_roles_and_position_members(world: World) -> None:
    owner, a, b, c = [await world.person(n) for n in ("主", "甲", "乙", "丙")]
    [pos] = world.single_positions(1)
    [h] = world.holders(pos)
    g = await world.groups.create(owner, " 防汛专班 ", [a], [pos])
    cid = g["id"]
    assert g["title"] == "防汛专班" and _members(g) == {owner, a, h}
    assert {m["person_id"]: m["derived"] for m in g["members"]}[h] is True
    with pytest.raises(Forbidden):
        await world.groups.add(a, cid, [b])  # members are not admins
    await world.groups.set_admin(owner, cid, a, True)
    g = await world.groups.add(a, cid, [b, c])
    assert _members(g) == {owner, a, b, c, h}
    g = await world.groups.rename(a, cid, "防汛指挥部")
    assert g["title"] == "防汛指挥部"
    with pytest.raises(Forbidden):
        await world.groups.remove(a, cid, [owner])
    g = await world.groups.remove(a, cid, [c])
    assert c not in _members(g)
    with pytest.raises(NotFound):
        await world.conv.history(c, cid)  # removed: same answer as a stranger
    with pytest.raises(Forbidden):
        await world.groups.leave(h, cid)  # a member through the position
    g = await world.groups.remove(owner, cid, position_ids=[pos])
    assert h not in _members(g) and g["position_ids"] == []
    await world.groups.leave(owner, cid)
    g = await world.groups.get(a, cid)
    assert g["owner_id"] == a and owner not in _members(g)
    events = [e["event"] for e in _system(await world.stream(a))]
    assert events == ["created", "members", "renamed", "members", "members", "members"]
    assert [k for k, _ in await world.stream(c)][-1] == "conversation.left"
    with pytest.raises(BadRequest):
        await world.groups.create(owner, "   ")


async def test_a_holder_of_a_member_position_is_not_removed_by_name(world: World) -> None:
    """Named or not, whoever holds a member position stays a member until the position goes.

    Before, removing such a member by name (or their own leave, when they had also been
    named) deleted their row while the position stayed: they lost the group's history and
    messages although the group still listed their position, until some later org change.
    """
    owner, a = await world.person("主"), await world.person("甲")
    [pos] = world.single_positions(1)
    [h] = world.holders(pos)
    named = (await world.groups.create(owner, "named and through a position", [h, a], [pos]))["id"]
    derived = (await world.groups.create(owner, "only through a position", [a], [pos]))["id"]
    for cid in (named, derived):
        with pytest.raises(Forbidden) as e:
            await world.groups.remove(owner, cid, [h])
        assert e.value.data == {"person_id": h, "position_ids": [pos]}
        with pytest.raises(Forbidden):
            await world.groups.remove(owner, cid, [a, h])  # all or nothing: a stays too
        with pytest.raises(Forbidden):
            await world.groups.leave(h, cid)
        g = await world.groups.get(h, cid)
        assert {h, a} <= _members(g) and g["position_ids"] == [pos]
        await world.conv.history(h, cid)  # still a reader
    g = await world.groups.remove(owner, named, position_ids=[pos])
    assert h in _members(g)  # named too: the position going leaves the name
    g = await world.groups.remove(owner, named, [h])
    assert h not in _members(g)
    g = await world.groups.remove(owner, derived, [h], position_ids=[pos])  # both at once: allowed
    assert h not in _members(g) and g["position_ids"] == []


async def test_group_size_limit_is_a_clear_error_and_changes_nothing(conv_url: str) -> None:
    w = await make_world(conv_url, ConversationConfig(max_group_size=3))
    try:
        owner, a, b, c = [await w.person() for _ in range(4)]
        with pytest.raises(GroupTooLarge) as e:
            await w.groups.create(owner, "大群", [a, b, c])
        assert e.value.to_dict()["code"] == "group_too_large" and e.value.data == {"limit": 3, "size": 4}
        g = await w.groups.create(owner, "小群", [a, b])
        with pytest.raises(GroupTooLarge):
            await w.groups.add(owner, g["id"], [c])
        assert _members(await w.groups.get(owner, g["id"])) == {owner, a, b}
    finally:
        await w.db.dispose()


async def test_unit_group_follows_handover_in_another_process_exactly_once(world: World, conv_url: str) -> None:
    idx = world.holder.index
    grid = [u for u in idx.units() if idx.unit_level(u) == 6][-1]
    pos = idx.position_id(idx.unit_slots(grid)[0])  # a grid's position
    u = idx.position_unit(idx.slot(pos))
    [old] = world.holders(pos)
    g = await world.members.create_unit_group(Actor(old, (pos,)), idx.unit_id(u))
    assert old in _members(g) and g["kind"] == "unit"
    with pytest.raises(Conflict):
        await world.members.create_unit_group(ADMIN, idx.unit_id(u))
    other = await make_world(conv_url)  # a second process with its own index
    try:
        new = await world.person("接任")
        await world.conv.post(PostRequest(old, "m1", "交接前", conversation_id=g["id"]))
        await world.handover(pos, new)
        await other.holder.refresh_if_changed()
        # Both processes reconcile the same change: one set of rows, one note.
        assert await other.members.run() == 1
        assert await world.members.run() == 0
        view = await world.groups.get(new, g["id"])
        assert new in _members(view) and old not in _members(view)
        msgs, _ = await world.conv.history(new, g["id"])  # the successor sees the group's history
        assert msgs[0]["kind"] == "system" and msgs[1]["body"] == "交接前"
        assert [s for s in _system(await world.stream(new))] == [
            {
                "event": "members",
                "joined": [new],
                "left": [old],
                "position_ids": [],
                "org_version": world.holder.index.version,
            }
        ]
        with pytest.raises(NotFound):
            await world.conv.history(old, g["id"])
    finally:
        await other.db.dispose()


async def test_unit_group_depth_includes_units_below(world: World) -> None:
    idx = world.holder.index
    county = idx.unit("990101")
    g0 = await world.members.create_unit_group(ADMIN, "990101", depth=0)
    holders = {p for k in idx.unit_slots(county) for p in idx.primary_holders(k)}
    assert _members(g0) == holders
    town = idx.children(county)[0]
    g1 = await world.members.create_unit_group(ADMIN, idx.unit_id(town), depth=2)
    below = {p for v in idx.subtree(town) for k in idx.unit_slots(v) for p in idx.primary_holders(k)}
    assert _members(g1) == below
    with pytest.raises(BadRequest):
        await world.members.create_unit_group(ADMIN, "990102", depth=9)
    with pytest.raises(Forbidden):
        await world.members.create_unit_group(Actor(await world.person(), ()), "990102")


async def test_reconciler_touches_only_groups_a_holder_change_can_affect(world: World) -> None:
    idx = world.holder.index
    a = await world.members.create_unit_group(ADMIN, "990101", depth=5)
    b = await world.members.create_unit_group(ADMIN, "990102", depth=5)
    assert await world.members.run() == 0  # first run: everything is already at this version
    k = idx.unit_slots(idx.unit("990102"))[0]
    pos, [old] = idx.position_id(k), idx.primary_holders(k)
    new = await world.person()
    await world.handover(pos, new)
    assert await world.members.run() == 1
    async with world.db.read() as conn:
        from sqlalchemy import select

        from messaging.schema import conversations

        versions = dict((await conn.execute(select(conversations.c.id, conversations.c.member_version))).all())
    assert versions[b["id"]] == world.holder.index.version  # reconciled
    assert versions[a["id"]] < world.holder.index.version  # not looked at: no position of it changed
    view = await world.groups.get(new, b["id"])
    assert new in _members(view) and (old not in _members(view) or old in world.holders(pos))


async def test_two_processes_reconciling_at_once_write_one_note(world: World, conv_url: str) -> None:
    idx = world.holder.index
    g = await world.members.create_unit_group(ADMIN, "990102", depth=5)
    k = idx.unit_slots(idx.unit("990102"))[0]
    pos = idx.position_id(k)
    new = await world.person()
    other = await make_world(conv_url)
    try:
        await other.members.run()
        await world.members.run()
        await world.handover(pos, new)
        await other.holder.refresh_if_changed()
        changed = await asyncio.gather(world.members.run(), other.members.run())
        assert sum(changed) == 1
        notes = [m for m in (await world.conv.history(new, g["id"]))[0] if m["kind"] == "system"]
        assert len(notes) == 2  # the group's first members, then this change once
    finally:
        await other.db.dispose()


async def test_unit_groups_follow_a_moved_unit_and_ignore_edits_that_move_nobody(world: World) -> None:
    from sqlalchemy import select

    from messaging.schema import conversations
    from org_tree.jurisdiction import SYSTEM

    idx = world.holder.index
    a = await world.members.create_unit_group(ADMIN, "990101", depth=5)
    b = await world.members.create_unit_group(ADMIN, "990102", depth=5)
    village = await world.members.create_unit_group(
        ADMIN, idx.unit_id(idx.children(idx.children(idx.unit("990101"))[1])[0])
    )
    assert await world.members.run() == 0
    await world.org.rename_unit(SYSTEM, "990101", "新柯城区")  # moves nobody: no group is looked at
    assert await world.members.run() == 0
    town = idx.children(idx.unit("990101"))[0]
    movers = {p for v in idx.subtree(town) for k in idx.unit_slots(v) for p in idx.primary_holders(k)}
    assert movers and movers <= _members(await world.groups.get(next(iter(movers)), a["id"]))
    await world.org.move_unit(SYSTEM, idx.unit_id(town), "990102")
    assert await world.members.run() == 2  # the two counties' groups, not the untouched village's
    person = next(iter(movers))
    assert person in _members(await world.groups.get(person, b["id"]))
    stays = {p for v in world.holder.index.subtree(world.holder.index.unit("990101")) for k in
             world.holder.index.unit_slots(v) for p in world.holder.index.primary_holders(k)}  # fmt: skip
    assert not (movers - stays) & _members(await world.groups.get(next(iter(stays)), a["id"]))
    async with world.db.read() as conn:
        versions = dict((await conn.execute(select(conversations.c.id, conversations.c.member_version))).all())
    assert versions[village["id"]] < world.holder.index.version


async def test_a_holder_change_applied_while_a_group_is_reconciled_is_not_stamped_done(
    world: World, conv_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index is patched in place: a change applied while ``reconcile`` awaited was stamped as the
    group's ``member_version`` with members computed before it, so the group never took it."""
    import messaging.conversations.members as members

    idx = world.holder.index
    grid = [u for u in idx.units() if idx.unit_level(u) == 6][-1]
    pos = idx.position_id(idx.unit_slots(grid)[0])
    [old] = world.holders(pos)
    g = await world.members.create_unit_group(Actor(old, (pos,)), idx.unit_id(idx.position_unit(idx.slot(pos))))
    await world.members.run()  # caught up
    first, second = await world.person("接任"), await world.person("再接任")
    await world.handover(pos, first)  # this process's index has it; the group is not reconciled yet
    other = await make_world(conv_url)  # another process hands the position on; ours has not heard yet
    try:
        await other.handover(pos, second)
    finally:
        await other.db.dispose()
    computed = members.desired_members
    applied: list[int] = []

    def hears() -> None:  # what this process's holder does when it hears of the change
        live = world.holder.index
        applied.append(live.version)
        live.patch_holders({pos: ([second], [])}, live.version + 1)

    def then_the_next_change_arrives(*args: Any, **kw: Any) -> set[int]:
        if not applied:  # applied at the reconcile's next await (its read of the stored members)
            asyncio.get_running_loop().call_soon(hears)
        return computed(*args, **kw)

    monkeypatch.setattr(members, "desired_members", then_the_next_change_arrives)
    assert await world.members.reconcile(g["id"]) == 1  # the first handover, as computed
    monkeypatch.setattr(members, "desired_members", computed)
    assert applied and world.holder.index.version == applied[0] + 1
    await world.members.run()  # the pass for the version applied meanwhile
    view = await world.groups.get(second, g["id"])
    assert second in _members(view) and first not in _members(view) and old not in _members(view)


async def test_the_last_member_leaving_dissolves_the_group(world: World) -> None:
    """Audit (河南): the last member's leave left an empty group whose ``owner_id`` named them.

    Now the group is dissolved: no owner, no members, no member positions (a vacant one would
    bring its next holder into a group nobody manages), and nobody can read or write it again."""
    owner, a, newcomer = [await world.person(n) for n in ("主", "甲", "新")]
    [pos] = world.single_positions(1)
    [h] = world.holders(pos)
    g = await world.groups.create(owner, "专班", [a], [pos])
    cid = g["id"]
    [current] = [v for v in await world.org.history(ADMIN, pos) if v.end_at is None]
    await world.org.end_assignment(ADMIN, current.id)  # the position falls vacant
    await world.members.run()
    assert _members(await world.groups.get(owner, cid)) == {owner, a}
    g = await world.groups.leave(owner, cid)
    assert g["owner_id"] == a and g["position_ids"] == [pos]  # one left: ownership passes as before
    g = await world.groups.leave(a, cid)
    assert (g["owner_id"], g["members"], g["position_ids"]) == (None, [], [])
    assert [k for k, _ in await world.stream(a)][-1] == "conversation.left"
    await world.org.assign(ADMIN, pos, newcomer)  # the position's next holder is not drawn in
    await world.members.run()
    for p in (owner, a, h, newcomer):
        with pytest.raises(NotFound):
            await world.groups.get(p, cid)
        with pytest.raises(NotFound):
            await world.conv.post(PostRequest(p, "late", "还在吗", conversation_id=cid))


async def test_a_retired_position_leaves_the_groups_listing(world: World) -> None:
    """Audit (河南): a group kept listing a retired position in ``position_ids`` although the
    reconciler had taken its holder out. Now the same pass removes it from the listing and its
    members note says so (``position_ids``); a named holder stays, as when the position is removed."""
    owner = await world.person("主")
    p1, p2, p3 = world.single_positions(3)
    [h1] = world.holders(p1)
    [h2] = world.holders(p2)
    [h3] = world.holders(p3)
    g = await world.groups.create(owner, "专班", [h2, h3], [p1, p2, p3])
    await world.members.run()
    await world.org.structure.retire_position(ADMIN, p1)
    await world.org.structure.retire_position(ADMIN, p3)  # its holder was also named: stays
    await world.holder.refresh_if_changed()
    assert await world.members.run() == 1
    view = await world.groups.get(owner, g["id"])
    assert view["position_ids"] == [p2]
    assert h1 not in _members(view) and h3 in _members(view)
    [note] = _system(await world.stream(owner))[-1:]
    assert note["left"] == [h1] and note["position_ids"] == sorted([p1, p3])
    assert await world.members.run() == 0
    # Only a position whose holder is also named: nobody leaves, the note says the position went
    await world.org.structure.retire_position(ADMIN, p2)  # h2 was named too
    await world.holder.refresh_if_changed()
    assert await world.members.run() == 1
    view = await world.groups.get(owner, g["id"])
    assert view["position_ids"] == [] and h2 in _members(view)
    [(_, last)] = [(k, d) for k, d in await world.stream(owner) if k == "message.new"][-1:]
    assert (last["body"], last["system"]["left"], last["system"]["position_ids"]) == ("1 positions retired", [], [p2])


async def test_an_owner_taken_out_by_the_membership_job_passes_the_group_on(world: World) -> None:
    """Audit (河南): ownership that had passed to a member drawn in through a position stayed with
    them after they left the position and the membership job took them out — ``owner_id`` named
    someone gone and nobody could manage the group. Now it passes on as on a leave; and when the
    job takes out every member, the group has no owner until the position's next holder, who
    gets it."""
    owner, newcomer = [await world.person(n) for n in ("主", "新")]
    p1, p2 = world.single_positions(2)
    [h1] = world.holders(p1)
    [h2] = world.holders(p2)
    g = await world.groups.create(owner, "专班", [], [p1, p2])
    cid = g["id"]
    await world.members.run()
    g = await world.groups.leave(owner, cid)
    heir = g["owner_id"]
    assert heir == min(h1, h2)
    heir_pos, other_pos, other = (p1, p2, h2) if heir == h1 else (p2, p1, h1)
    [seat] = [v for v in await world.org.history(ADMIN, heir_pos) if v.end_at is None]
    await world.org.end_assignment(ADMIN, seat.id)
    assert await world.members.run() == 1
    g = await world.groups.get(other, cid)
    assert g["owner_id"] == other and heir not in _members(g)
    assert (await world.groups.rename(other, cid, "新专班"))["title"] == "新专班"  # the heir manages it
    # The job takes out the last member too: no owner naming them; the next holder gets the group
    [seat] = [v for v in await world.org.history(ADMIN, other_pos) if v.end_at is None]
    await world.org.end_assignment(ADMIN, seat.id)
    assert await world.members.run() == 1
    async with world.db.read() as conn:
        from sqlalchemy import select

        from messaging.schema import conversations

        stored = (await conn.execute(select(conversations.c.owner_id).where(conversations.c.id == cid))).scalar()
    assert stored is None
    await world.org.assign(ADMIN, other_pos, newcomer)
    await world.holder.refresh_if_changed()
    assert await world.members.run() == 1
    g = await world.groups.get(newcomer, cid)
    assert g["owner_id"] == newcomer and _members(g) == {newcomer}


async def test_a_unit_groups_first_note_is_its_creators(world: World) -> None:
    """The 湖南 audit: 识书记 made 识字里's group and its first note, "16 joined, 0 left", was written
    as 网格甲, the member with the lowest id, who had done nothing; the inbox showed it as theirs.
    The note of a group's first reconciliation is its creator's word (later ones stay the first
    joiner's: "接任 joined" as 接任)."""
    idx = world.holder.index
    village = next(u for u in idx.units() if idx.unit_level(u) == 5 and len(idx.unit_slots(u)) > 1)
    holders = sorted({p for k in idx.unit_slots(village) for p in idx.primary_holders(k)})
    assert len(holders) > 1
    creator = holders[-1]
    held = tuple(idx.position_id(k) for k in idx.unit_slots(village) if creator in idx.primary_holders(k))
    g = await world.members.create_unit_group(Actor(creator, held), idx.unit_id(village))
    msgs, _ = await world.conv.history(holders[0], g["id"])
    [note] = msgs
    assert (note["kind"], note["sender"]["id"], note["system"]["joined"]) == ("system", creator, holders)
