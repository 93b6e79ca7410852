"""Group messages fanned out after the send: connected members first, a leased sweep for the rest (both backends).

The send's background jobs are held instead of run (the sending process "dies"
right after its commit), so ``post`` commits the message, its pending rows and
the sender's own event only, and the tests drive the relay's two paths
themselves, in the orders and races a server produces.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from kernel.wire import loads
from messaging.broker.memory import MemoryBroker
from messaging.conversations.fanout import BULK_AUDIENCE, GroupFanout, GroupRelay
from messaging.conversations.model import PostRequest
from messaging.conversations.schema import message_fanout_pending, message_fanouts
from messaging.schema import person_events
from messaging.unit_of_work import UnitOfWork
from messaging.wakeup import EventGroup
from tests.conversations.conftest import World, make_world
from tests.notices.test_deferred_fanout import HeldJobs


@dataclass
class Sockets:
    """This process's connected persons (none unless a test connects some)."""

    connected: list[int] = field(default_factory=list)
    caught_up: list[int] = field(default_factory=list)
    delivered: list[EventGroup] = field(default_factory=list)

    def person_ids(self) -> list[int]:
        return list(self.connected)

    def deliver(self, groups: list[EventGroup]) -> None:
        self.delivered.extend(groups)

    async def catch_up(self, person_ids: Sequence[int]) -> None:
        self.caught_up.extend(person_ids)


@dataclass
class Fan:
    w: World
    relay: GroupRelay
    jobs: HeldJobs
    sockets: Sockets
    owner: int
    members: list[int]  # every member, the owner included, ascending
    group_id: int


@pytest.fixture
async def fan(conv_url: str) -> AsyncIterator[Fan]:
    w = await make_world(conv_url)
    try:
        relay = GroupRelay(w.conv.uow, node_id="a", chunk=25)
        jobs = HeldJobs()
        sockets = Sockets()
        w.conv.fanout = GroupFanout(relay, sockets, MemoryBroker(), jobs, node_id="a")  # type: ignore[arg-type]
        owner = await w.person("群主")
        others = [await w.person() for _ in range(BULK_AUDIENCE + 16)]
        g = await w.groups.create(owner, "大群", others)
        yield Fan(w, relay, jobs, sockets, owner, sorted([owner, *others]), int(g["id"]))
    finally:
        await w.db.dispose()


async def _post(f: Fan, sender: int, key: str, **kw: Any) -> int:
    res = await f.w.conv.post(PostRequest(sender, key, f"正文 {key}", conversation_id=f.group_id, **kw))
    assert f.jobs.names[-1] == f"message-fanout-{res.message_id}"
    assert res.sender_seq is not None  # the sender's own event commits with the message
    return res.message_id


async def _news(f: Fan, message_id: int) -> Counter[int]:
    async with f.w.db.read() as conn:
        rows = await conn.execute(
            select(person_events.c.person_id, person_events.c.payload).where(person_events.c.kind == "message.new")
        )
        return Counter(int(p) for p, pl in rows if loads(pl)["id"] == message_id)


async def _pending(f: Fan, message_id: int) -> int:
    async with f.w.db.read() as conn:
        q = select(func.count()).select_from(message_fanout_pending)
        return int((await conn.execute(q.where(message_fanout_pending.c.message_id == message_id))).scalar_one())


async def _unfinished(f: Fan, message_id: int) -> bool:
    """The message's payload row is kept while its fan-out is unfinished."""
    async with f.w.db.read() as conn:
        q = select(message_fanouts.c.id).where(message_fanouts.c.id == message_id)
        return (await conn.execute(q)).first() is not None


async def _stream(f: Fan, person: int) -> list[tuple[int, str, dict[str, Any]]]:
    page = await f.w.events.read(person, epoch=None, since=0)
    return [(s, k, loads(p)) for s, k, p in page.events]


def _gap_free(stream: list[tuple[int, str, dict[str, Any]]]) -> bool:
    return [s for s, _, _ in stream] == list(range(1, len(stream) + 1))


async def test_send_commits_the_sender_only_then_connected_first_then_sweep(fan: Fan) -> None:
    f = fan
    muted, mentioned = f.members[3], f.members[5]
    await f.w.conv.set_muted(muted, f.group_id, True)
    mid = await _post(f, f.owner, "m1", mention_persons=(mentioned,))
    assert await _news(f, mid) == Counter({f.owner: 1})
    assert await _pending(f, mid) == len(f.members) - 1
    assert await _unfinished(f, mid)
    # Unread counts come from the message, not from events: already right before the fan-out.
    inbox = await f.w.conv.inbox(f.members[-1])
    assert next(c for c in inbox["conversations"] if c["id"] == f.group_id)["unread"] == 1

    connected = f.members[1::7]
    delivered: list[int] = []
    n = await f.relay.local(
        f.group_id, mid, connected, lambda gs: delivered.extend(p for g in gs for p, _ in g.recipients)
    )
    assert n == len(connected) and sorted(delivered) == connected
    assert await f.relay.local(f.group_id, mid, connected) == 0  # already written: nothing twice
    assert set(await _news(f, mid)) == {f.owner, *connected}

    assert await f.relay.sweep(mid) == len(f.members) - 1 - len(connected)  # several chunks of 25
    per_person = await _news(f, mid)
    assert sorted(per_person) == f.members and set(per_person.values()) == {1}
    assert await _pending(f, mid) == 0 and not await _unfinished(f, mid)
    assert await f.relay.sweep(mid) == 0  # finished: not claimed again
    for p in f.members:
        stream = await _stream(f, p)
        assert _gap_free(stream)
        [msg] = [d for _, k, d in stream if k == "message.new" and d["id"] == mid]
        assert msg["body"] == "正文 m1" and msg["sender"]["id"] == f.owner
        assert msg["mentioned"] is (p == mentioned) and msg["muted"] is (p == muted)


async def test_members_connected_to_the_sending_process_get_theirs_with_the_commit(fan: Fan) -> None:
    f = fan
    here = f.members[2::5]
    f.sockets.connected = [*here, 10**9]  # and someone who is no member
    mid = await _post(f, f.members[1], "m1")
    assert await _news(f, mid) == Counter({p: 1 for p in {f.members[1], *here}})
    owed = len(f.members) - len({f.members[1], *here})
    assert await _pending(f, mid) == owed
    assert await f.relay.sweep(mid) == owed
    per_person = await _news(f, mid)
    assert sorted(per_person) == f.members and set(per_person.values()) == {1}


async def test_sweep_racing_connected_first_writes_one_event_per_person(fan: Fan) -> None:
    f = fan
    mid = await _post(f, f.owner, "m1")
    other = GroupRelay(UnitOfWork(f.w.db, f.w.events, f.w.clock, lambda gs: None), node_id="b", chunk=10)
    counts = await asyncio.gather(
        f.relay.sweep(mid),
        f.relay.local(f.group_id, mid, f.members[::3]),
        other.local(f.group_id, mid, f.members[::2]),
        other.local(f.group_id, mid, list(reversed(f.members))[:40]),
    )
    per_person = await _news(f, mid)
    assert sorted(per_person) == f.members and set(per_person.values()) == {1}
    assert sum(counts) == len(f.members) - 1  # the sender's was written by the send
    assert await _pending(f, mid) == 0


async def test_killed_sweeper_lease_is_taken_over(fan: Fan) -> None:
    f = fan
    mid = await _post(f, f.owner, "m1")
    # The sending process wrote its connected members' events, then died before sweeping.
    await f.relay.local(f.group_id, mid, f.members[:10])
    survivor = GroupRelay(UnitOfWork(f.w.db, f.w.events, f.w.clock, lambda gs: None), node_id="b", chunk=30)
    assert await survivor.run_pending() == 0  # the lease is still the dead process's
    assert await survivor.sweep(mid) == 0
    f.w.clock.advance((f.relay.lease + timedelta(seconds=1)).total_seconds())
    assert await survivor.run_pending() == len(f.members) - 10
    per_person = await _news(f, mid)
    assert sorted(per_person) == f.members and set(per_person.values()) == {1}
    assert not await _unfinished(f, mid)
    assert await survivor.run_pending() == 0


async def test_streams_keep_message_order_across_pending_sends_edits_and_replies(fan: Fan) -> None:
    """Nothing about a message, and no later message, reaches a stream before the message itself."""
    f = fan
    offline, replier = f.members[-1], f.members[-2]
    m1 = await _post(f, f.owner, "m1")
    m2 = await _post(f, f.owner, "m2")
    await f.w.conv.edit(f.owner, m1, "改过的")  # every reader is owed m1 first: written with the edit
    m3 = await _post(f, replier, "m3")  # the replier is owed m2 first: written with the send
    # The killed process's sweeps are finished by another, newest message first.
    f.w.clock.advance((f.relay.lease + timedelta(seconds=1)).total_seconds())
    for mid in (m3, m2, m1):
        await f.relay.sweep(mid)
    for mid in (m1, m2, m3):
        per_person = await _news(f, mid)
        assert sorted(per_person) == f.members and set(per_person.values()) == {1}
    new, edited = "message.new", "message.edited"
    expected = {
        offline: [(new, m1), (edited, m1), (new, m2), (new, m3)],
        replier: [(new, m1), (edited, m1), (new, m2), (new, m3)],
        f.owner: [(new, m1), (new, m2), (edited, m1), (new, m3)],  # the sender's own come with each send
    }
    for p, order in expected.items():
        stream = await _stream(f, p)
        assert _gap_free(stream)
        seen = [(k, d.get("id", d.get("message_id"))) for _, k, d in stream if d.get("kind") != "system"]
        assert [(k, m) for k, m in seen if k.startswith("message.")] == order
    # The first payload is the message as sent; the edit follows it.
    [first] = [d for _, k, d in await _stream(f, offline) if k == "message.new" and d["id"] == m1]
    assert first["body"] == "正文 m1"


async def test_small_groups_and_services_without_a_relay_write_every_event_with_the_send(fan: Fan) -> None:
    f = fan
    f.w.conv.fanout = None
    res = await f.w.conv.post(PostRequest(f.owner, "m1", "全体", conversation_id=f.group_id))
    assert sorted(await _news(f, res.message_id)) == f.members
    assert await _pending(f, res.message_id) == 0 and not await _unfinished(f, res.message_id)


async def test_pending_events_of_a_vanished_payload_row_are_dropped_not_stuck(fan: Fan) -> None:
    """Messages are never deleted today; if one were, its members' pending rows must not block the relay."""
    f = fan
    mid = await _post(f, f.owner, "m1")
    async with f.w.db.write() as conn:
        await conn.execute(message_fanouts.delete().where(message_fanouts.c.id == mid))
    assert await f.relay.local(f.group_id, mid, f.members) == 0
    assert await _pending(f, mid) == 0
    assert await _news(f, mid) == Counter({f.owner: 1})
