"""Large notices commit their receipts packed and write them after the commit (both backends).

``FanoutRelay.inline_receipts`` is set to 0 here so the test tree's notices
take the path a province-wide notice takes (``messaging/notices/deferred.py``).
As in ``test_deferred_fanout.py`` the send's background jobs are held, and the
tests drive the relay's connected-first writes and sweep themselves, in the
orders and races a server produces.
"""

from __future__ import annotations

import asyncio
import dataclasses
from array import array
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from messaging.notices.deferred import PackedReceipts, pack, receipt_columns, unpack
from messaging.notices.relay import FanoutRelay
from messaging.notices.schema import notice_pending_receipts, notice_receipts
from messaging.notices.storage import insert_claimed
from messaging.unit_of_work import UnitOfWork
from org_tree.resolution import REASONS, resolve
from org_tree.selectors import parse_selector
from tests.notices.conftest import CITY, World, make_world
from tests.notices.test_deferred_fanout import HeldJobs, _done_at, _events_per_person, _unfanned
from tests.notices.test_fanout import compose

Receipt = tuple[int, int, int, str, int]  # person, position, via, reason, unit


@pytest.fixture
async def world(tree_url: str) -> AsyncIterator[World]:
    w = await make_world(tree_url, jobs=HeldJobs())  # type: ignore[arg-type]
    w.relay.inline_receipts = 0
    try:
        yield w
    finally:
        await w.svc.close()
        await w.db.dispose()


async def _receipts(w: World, notice_id: int) -> Counter[Receipt]:
    r = notice_receipts.c
    async with w.db.read() as conn:
        rows = await conn.execute(
            select(r.person_id, r.position_id, r.via_position_id, r.reason, r.unit_id).where(r.notice_id == notice_id)
        )
        return Counter((int(p), int(q), int(v), str(s), int(u)) for p, q, v, s, u in rows)


async def _packed_rows(w: World, notice_id: int) -> int | None:
    async with w.db.read() as conn:
        return (
            await conn.execute(
                select(notice_pending_receipts.c.receipts).where(notice_pending_receipts.c.notice_id == notice_id)
            )
        ).scalar()


async def _send(w: World, cid: str) -> tuple[int, int]:
    """A packed send without fan-out: (notice id, receipt count)."""
    person, position = w.governor()
    res = await w.svc.send(person, position, compose(cid))  # type: ignore[arg-type]
    return res.notice_id, res.receipts


async def _inline_receipts(w: World, cid: str) -> Counter[Receipt]:
    """The receipts the same audience gets through the small-notice path (in the send transaction)."""
    w.relay.inline_receipts = 10**9
    nid, _ = await _send(w, cid)
    w.relay.inline_receipts = 0
    return await _receipts(w, nid)


def _persons(receipts: Counter[Receipt]) -> list[int]:
    return sorted({r[0] for r in receipts})


def test_pack_round_trip() -> None:
    cols = PackedReceipts(
        array("q", [3, 4, 2**40]), array("q", [10, 11, 13]), array("q", [10, 12, 13]), array("q", [2, 2, 5]),
        bytes([REASONS.index("holder"), REASONS.index("deputy"), REASONS.index("superior")]),
    )  # fmt: skip
    back = unpack(pack(cols))
    assert (
        back.tuples(9)
        == cols.tuples(9)
        == [
            (9, 3, 10, 10, "holder", 2),
            (9, 4, 11, 12, "deputy", 2),
            (9, 2**40, 13, 13, "superior", 5),
        ]
    )
    assert back.rows(9, lambda p: p != 4, fanned_out=True) == [
        (9, 3, 10, 10, "holder", 2, True, 0),
        (9, 2**40, 13, 13, "superior", 5, True, 2),
    ]
    assert back.rows(9, {4}.__contains__, fanned_out=False, at=[2, 1]) == [(9, 4, 11, 12, "deputy", 2, False, 1)]
    with pytest.raises(ValueError, match="not a packed receipt row"):
        unpack(b"\x02" + bytes(4))


async def test_receipt_columns_drop_a_repeated_person_and_position(world: World) -> None:
    """One receipt per distinct (person, addressed position), in the audience's order."""
    w = world
    aud = resolve(w.index, parse_selector(f"village_secretary@{CITY}/**"))
    twice = dataclasses.replace(
        aud,
        person_ids=[*aud.person_ids, aud.person_ids[0]],
        position_ids=[*aud.position_ids, aud.position_ids[0]],
        via_position_ids=[*aud.via_position_ids, aud.via_position_ids[0]],
        reason_codes=[*aud.reason_codes, aud.reason_codes[0]],
    )
    once = receipt_columns(w.index, aud)
    assert len(once) == len(aud.person_ids) > 10
    assert receipt_columns(w.index, twice).tuples(1) == once.tuples(1)
    assert [u for *_, u in once.tuples(1)] == [
        w.index.unit_id(w.index.position_unit(w.index.find_slot(p))) for p in aud.position_ids
    ]


async def test_send_commits_packed_then_connected_first_then_sweep(world: World) -> None:
    w = world
    expected = await _inline_receipts(w, "p0")
    persons = _persons(expected)
    nid, count = await _send(w, "p1")
    assert count == sum(expected.values()) > 100
    assert await _receipts(w, nid) == Counter() and await _packed_rows(w, nid) == count  # only the packed row

    # Connected first: their receipts and events in one transaction, read back from the packed row
    # by a process that did not send it.
    other = FanoutRelay(UnitOfWork(w.db, w.events, w.clock, lambda gs: None), lambda: w.index, node_id="b")
    connected = persons[::7]
    delivered: list[int] = []
    n = await other.local(nid, connected, lambda gs: delivered.extend(p for g in gs for p, _ in g.recipients))
    assert n == len(connected) and sorted(delivered) == connected
    assert _persons(await _receipts(w, nid)) == connected
    assert await w.relay.local(nid, connected) == 0  # the sender's own copy: nothing twice
    assert await _unfanned(w, nid) == 0

    w.relay.chunk, w.relay.materialize_rows = 97, 200
    assert await w.relay.sweep(nid) == len(persons) - len(connected)
    assert await _receipts(w, nid) == expected  # the same rows as written in the send transaction
    assert await _packed_rows(w, nid) is None
    per_person = await _events_per_person(w, "notice.new", nid)
    assert sorted(per_person) == persons and set(per_person.values()) == {1}
    assert await _unfanned(w, nid) == 0 and await _done_at(w, nid) is not None


async def test_connected_first_writes_racing_the_packed_receipts_write_each_receipt_once(world: World) -> None:
    w = world
    expected = await _inline_receipts(w, "r0")
    persons = _persons(expected)
    nid, _ = await _send(w, "r1")
    w.relay.remember(nid, unpack(await _packed_data(w, nid)))
    other = FanoutRelay(UnitOfWork(w.db, w.events, w.clock, lambda gs: None), lambda: w.index, node_id="b", chunk=50)
    w.relay.chunk, w.relay.materialize_rows = 50, 300  # several runs of receipts, then of events
    # Two processes' connected-first writes (a person connected to both) overlap each other,
    # the write of the packed receipts and the sweep.
    counts = await asyncio.gather(
        other.local(nid, persons[::2]),
        w.relay.local(nid, persons[::3]),
        w.relay.sweep(nid),
        other.local(nid, list(reversed(persons))[:400]),
    )
    assert await _receipts(w, nid) == expected
    per_person = await _events_per_person(w, "notice.new", nid)
    assert sorted(per_person) == persons and set(per_person.values()) == {1}
    assert sum(counts) == len(persons)
    assert await _packed_rows(w, nid) is None and await _unfanned(w, nid) == 0


async def _packed_data(w: World, notice_id: int) -> bytes:
    async with w.db.read() as conn:
        data = (
            await conn.execute(
                select(notice_pending_receipts.c.data).where(notice_pending_receipts.c.notice_id == notice_id)
            )
        ).scalar_one()
    return bytes(data)


async def test_killed_sender_packed_receipts_are_written_by_another_process(world: World) -> None:
    w = world
    expected = await _inline_receipts(w, "k0")
    persons = _persons(expected)
    nid, _ = await _send(w, "k1")
    await w.relay.local(nid, persons[:10])  # then the sending process died
    survivor = FanoutRelay(UnitOfWork(w.db, w.events, w.clock, lambda gs: None), lambda: w.index, node_id="b")
    assert await survivor.sweep(nid) == 0  # the lease is still the dead process's
    w.clock.advance((w.relay.lease + timedelta(seconds=1)).total_seconds())
    assert await survivor.sweep(nid) == len(persons) - 10
    assert await _receipts(w, nid) == expected
    per_person = await _events_per_person(w, "notice.new", nid)
    assert sorted(per_person) == persons and set(per_person.values()) == {1}
    assert await _packed_rows(w, nid) is None


async def test_recall_while_receipts_are_packed(world: World) -> None:
    """Who got notice.new gets notice.recalled; the others get neither, and their receipts are still written."""
    w = world
    expected = await _inline_receipts(w, "c0")
    persons = _persons(expected)
    nid, _ = await _send(w, "c1")
    got = persons[:25]
    await w.relay.local(nid, got)
    sender, _ = w.governor()
    await w.svc.recall(sender, nid)
    assert await w.relay.local(nid, persons[25:40]) == 0  # after the recall: no notice.new
    assert await w.relay.sweep(nid) == 0
    assert await _receipts(w, nid) == expected
    assert set(await _events_per_person(w, "notice.new", nid)) == set(got)
    recalled = await _events_per_person(w, "notice.recalled", nid)
    assert set(recalled) == {*got, sender} and set(recalled.values()) == {1}
    assert await _unfanned(w, nid) == 0 and await _packed_rows(w, nid) is None


async def test_receipt_moved_by_a_handover_before_the_packed_write_is_not_written_again(world: World) -> None:
    w = world
    expected = await _inline_receipts(w, "h0")
    nid, _ = await _send(w, "h1")
    per_position = Counter(q for _p, q, _v, _s, _u in expected)
    person, position = next(
        (p, q) for p, q, v, s, _u in sorted(expected) if s == "holder" and q == v and per_position[q] == 1
    )
    await w.relay.local(nid, [person])
    successor = next(p for p in _persons(expected) if p != person)
    assert await w.svc.transfer_unread(position, person, successor) >= 1
    await w.relay.sweep(nid)
    async with w.db.read() as conn:
        r = notice_receipts.c
        holders = (
            await conn.execute(
                select(r.person_id, func.count())
                .where(r.notice_id == nid, r.position_id == position)
                .group_by(r.person_id)
            )
        ).all()
    assert dict((int(p), int(c)) for p, c in holders) == {successor: 1}


async def test_connected_first_write_between_runs_claims_what_the_runs_wrote(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    expected = await _inline_receipts(w, "m0")
    persons = _persons(expected)
    nid, _ = await _send(w, "m1")
    # Only the first run of receipts is written (the writer fails on the second), the packed row stays.
    whole = PackedReceipts.person_chunks
    monkeypatch.setattr(PackedReceipts, "person_chunks", lambda self, size: [whole(self, size)[0], None])
    w.relay.materialize_rows = 300
    with pytest.raises(TypeError):
        await w.relay.materialize(nid)
    monkeypatch.undo()
    first = _persons(await _receipts(w, nid))
    assert 0 < len(first) < len(persons) and await _packed_rows(w, nid) is not None
    assert await _unfanned(w, nid) == sum((await _receipts(w, nid)).values())  # written unclaimed
    connected = [*first[::2], *persons[len(first) :: 5]]
    delivered: list[int] = []
    n = await w.relay.local(nid, connected, lambda gs: delivered.extend(p for g in gs for p, _ in g.recipients))
    assert n == len(connected) and sorted(delivered) == sorted(connected)
    assert await w.relay.sweep(nid) == len(persons) - len(connected)
    assert await _receipts(w, nid) == expected
    per_person = await _events_per_person(w, "notice.new", nid)
    assert sorted(per_person) == persons and set(per_person.values()) == {1}


async def test_claimed_insert_skips_the_rows_another_process_wrote_meanwhile(world: World) -> None:
    """A person connected to two processes: the second insert of their rows writes nothing twice."""
    w = world
    expected = await _inline_receipts(w, "u0")
    nid, _ = await _send(w, "u1")
    packed = unpack(await _packed_data(w, nid))
    persons = _persons(expected)[:6]
    assert await w.relay.local(nid, persons[:3]) == 3
    async with w.db.write() as conn:  # as if the other process had not seen those three yet
        got = await insert_claimed(conn, nid, packed.rows(nid, set(persons).__contains__, fanned_out=True))
    assert sorted({int(g[1]) for g in got}) == persons[3:]
    mine = Counter({r: n for r, n in expected.items() if r[0] in persons})
    assert await _receipts(w, nid) == mine
