"""Deferred fan-out: connected recipients first, the sweep for the rest, one event per person (both backends).

The send's background jobs are held here instead of run (the sending process
"dies" right after its commit), so ``send`` commits the notice and its receipts
only and the tests drive the relay's two paths themselves, in the orders and
races a server produces.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from messaging.notices.relay import FanoutRelay
from messaging.notices.schema import notice_receipts, notices
from messaging.schema import person_events
from messaging.unit_of_work import UnitOfWork
from tests.notices.conftest import World, make_world
from tests.notices.test_fanout import compose


@dataclass
class HeldJobs:
    """Background jobs that never run: a process killed right after its commit."""

    names: list[str] = field(default_factory=list)

    def soon(self, job: Awaitable[object], name: str) -> None:
        self.names.append(name)
        getattr(job, "close", lambda: None)()  # never run: closed, so nothing warns it was never awaited


@pytest.fixture
async def world(tree_url: str) -> AsyncIterator[World]:
    w = await make_world(tree_url, jobs=HeldJobs())  # type: ignore[arg-type]
    try:
        yield w
    finally:
        await w.svc.close()
        await w.db.dispose()


async def _deferred_send(w: World, cid: str) -> tuple[int, list[int]]:
    """Send without fanning out; returns the notice id and its recipients (sorted)."""
    person, position = w.governor()
    res = await w.svc.send(person, position, compose(cid))  # type: ignore[arg-type]
    assert w.jobs.names == [f"notice-fanout-{res.notice_id}"]  # type: ignore[attr-defined]
    async with w.db.read() as conn:
        persons = sorted(
            int(p)
            for (p,) in await conn.execute(
                select(notice_receipts.c.person_id).where(notice_receipts.c.notice_id == res.notice_id).distinct()
            )
        )
    return res.notice_id, persons


async def _events_per_person(w: World, kind: str, notice_id: int) -> Counter[int]:
    async with w.db.read() as conn:
        rows = await conn.execute(
            select(person_events.c.person_id, person_events.c.payload).where(person_events.c.kind == kind)
        )
        return Counter(int(p) for p, pl in rows if json.loads(pl)["notice_id"] == notice_id)


async def _unfanned(w: World, notice_id: int) -> int:
    async with w.db.read() as conn:
        return int(
            (
                await conn.execute(
                    select(func.count())
                    .select_from(notice_receipts)
                    .where(notice_receipts.c.notice_id == notice_id, notice_receipts.c.fanned_out.is_(False))
                )
            ).scalar_one()
        )


async def _done_at(w: World, notice_id: int) -> object:
    async with w.db.read() as conn:
        return (await conn.execute(select(notices.c.fanout_done_at).where(notices.c.id == notice_id))).scalar_one()


async def test_commit_writes_no_event_then_connected_first_then_sweep(world: World) -> None:
    w = world
    nid, persons = await _deferred_send(w, "d1")
    assert await _events_per_person(w, "notice.new", nid) == Counter()
    assert await _unfanned(w, nid) > len(persons) // 2  # every receipt still owes its event

    connected = persons[::7]
    delivered: list[int] = []
    n = await w.relay.local(nid, connected, lambda gs: delivered.extend(p for g in gs for p, _ in g.recipients))
    assert n == len(connected) and sorted(delivered) == connected
    assert await w.relay.local(nid, connected) == 0  # already written: nothing twice
    assert set(await _events_per_person(w, "notice.new", nid)) == set(connected)
    assert await _done_at(w, nid) is None

    w.relay.chunk = 97  # several sweep transactions
    assert await w.relay.sweep(nid) == len(persons) - len(connected)
    per_person = await _events_per_person(w, "notice.new", nid)
    assert sorted(per_person) == persons and set(per_person.values()) == {1}
    assert await _unfanned(w, nid) == 0
    assert await _done_at(w, nid) is not None
    assert await w.relay.sweep(nid) == 0  # finished: not claimed again


async def test_sweep_racing_connected_first_writes_one_event_per_person(world: World) -> None:
    w = world
    nid, persons = await _deferred_send(w, "d2")
    other = FanoutRelay(UnitOfWork(w.db, w.events, w.clock, lambda gs: None), lambda: w.index, node_id="b", chunk=50)
    w.relay.chunk = 50
    # Two processes' connected-first writes overlap each other and the sweep.
    counts = await asyncio.gather(
        w.relay.sweep(nid),
        w.relay.local(nid, persons[::3]),
        other.local(nid, persons[::2]),
        other.local(nid, list(reversed(persons))[:400]),
    )
    per_person = await _events_per_person(w, "notice.new", nid)
    assert sorted(per_person) == persons and set(per_person.values()) == {1}
    assert sum(counts) == len(persons)
    assert await _unfanned(w, nid) == 0


async def test_killed_sweeper_lease_is_taken_over(world: World) -> None:
    w = world
    nid, persons = await _deferred_send(w, "d3")
    # The sending process wrote its connected recipients' events, then died before sweeping.
    await w.relay.local(nid, persons[:10])
    uow = UnitOfWork(w.db, w.events, w.clock, lambda gs: None)
    survivor = FanoutRelay(uow, lambda: w.index, node_id="b", chunk=200)
    assert await survivor.run_pending() == 0  # the lease is still the dead process's
    assert await survivor.sweep(nid) == 0
    w.clock.advance((w.relay.lease + timedelta(seconds=1)).total_seconds())
    assert await survivor.run_pending() == len(persons) - 10
    per_person = await _events_per_person(w, "notice.new", nid)
    assert sorted(per_person) == persons and set(per_person.values()) == {1}
    assert await _done_at(w, nid) is not None
    assert await survivor.run_pending() == 0


async def test_recall_while_fanout_is_pending(world: World) -> None:
    """Who got notice.new gets notice.recalled after it; the rest get neither."""
    w = world
    nid, persons = await _deferred_send(w, "d4")
    got = persons[:25]
    await w.relay.local(nid, got)
    sender, _ = w.governor()
    await w.svc.recall(sender, nid)
    assert await w.relay.sweep(nid) == 0
    assert set(await _events_per_person(w, "notice.new", nid)) == set(got)
    recalled = await _events_per_person(w, "notice.recalled", nid)
    assert set(recalled) == {*got, sender} and set(recalled.values()) == {1}
    async with w.db.read() as conn:
        rows = (
            await conn.execute(
                select(person_events.c.person_id, person_events.c.seq, person_events.c.kind).where(
                    person_events.c.person_id.in_(got)
                )
            )
        ).all()
    order: dict[int, list[str]] = {}
    for p, _seq, kind in sorted(rows, key=lambda r: (int(r[0]), int(r[1]))):
        order.setdefault(int(p), []).append(kind)
    assert all(kinds.index("notice.new") < kinds.index("notice.recalled") for kinds in order.values())
    assert await _unfanned(w, nid) == 0
    assert await _done_at(w, nid) is not None


async def test_positions_retired_while_pending_get_no_event(world: World) -> None:
    """S21 (d): a recipient whose only addressed position is retired before the sweep reaches them gets nothing."""
    w = world
    nid, persons = await _deferred_send(w, "d5")
    async with w.db.read() as conn:
        rows = await conn.execute(
            select(notice_receipts.c.person_id, notice_receipts.c.position_id).where(notice_receipts.c.notice_id == nid)
        )
        held: dict[int, set[int]] = {}
        for p, pos in rows:
            held.setdefault(int(p), set()).add(int(pos))
    gone = [p for p in persons if len(held[p]) == 1][:5]
    assert len(gone) == 5
    for p in gone:
        assert w.index.retire_position(next(iter(held[p])))  # the change log entry, applied by this process
    assert await w.relay.sweep(nid) == len(persons) - len(gone)
    assert set(await _events_per_person(w, "notice.new", nid)) == set(persons) - set(gone)
    assert await _unfanned(w, nid) == 0  # their receipts are settled, not retried by the next sweep
    assert await _done_at(w, nid) is not None


async def test_a_reminder_before_the_sweep_writes_notice_new_first(world: World) -> None:
    """The dashboard's 一键提醒 right after the send, before the fan-out reached anyone.

    Found by a client written from the docs: an offline recipient's sync showed ``notice.remind``
    and only then ``notice.new``; a recipient whose sending process died (S8) got the reminder of a
    notice it was never told of until the lease ran out. The reminder now writes the owed
    ``notice.new`` first, in its own transaction, and the sweep then has nothing left for them.
    """
    w = world
    nid, persons = await _deferred_send(w, "d6")
    sender, _ = w.governor()
    reminded = await w.svc.remind(sender, nid, unit="9901", missing="read")
    assert reminded == len(persons)
    assert await _events_per_person(w, "notice.new", nid) == Counter(dict.fromkeys(persons, 1))
    async with w.db.read() as conn:
        rows = (
            await conn.execute(
                select(person_events.c.person_id, person_events.c.seq, person_events.c.kind).where(
                    person_events.c.person_id.in_(persons), person_events.c.kind.like("notice.%")
                )
            )
        ).all()
    order: dict[int, list[str]] = {}
    for p, _seq, kind in sorted(rows, key=lambda r: (int(r[0]), int(r[1]))):
        order.setdefault(int(p), []).append(kind)
    assert all(kinds == ["notice.new", "notice.remind"] for kinds in order.values()), order
    assert await w.relay.sweep(nid) == 0  # nobody is owed a notice.new any more
    assert await _unfanned(w, nid) == 0
