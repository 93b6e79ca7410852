"""The one write idiom: events and outbox rows commit with the change, wake-ups and callbacks follow the commit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import DBAPIError

from kernel.clock import FakeClock
from kernel.db.database import Database
from kernel.errors import BadRequest
from kernel.schema import persons
from messaging.events import EventLog, NewEvent
from messaging.schema import person_events
from messaging.tasks.schema import outbox_events
from messaging.unit_of_work import Txn, UnitOfWork
from messaging.wakeup import EventGroup


class _Deadlock(Exception):
    sqlstate = "40P01"


async def _people(db: Database, n: int) -> list[int]:
    async with db.write() as conn:
        rows = await conn.execute(
            insert(persons).returning(persons.c.id),
            [{"name": f"uow-{i}", "disabled": False, "created_at": datetime.now(UTC)} for i in range(n)],
        )
        return sorted(int(r[0]) for r in rows)


async def _events_of(db: Database, person_id: int) -> list[tuple[int, str, str]]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(person_events.c.seq, person_events.c.kind, person_events.c.payload)
            .where(person_events.c.person_id == person_id)
            .order_by(person_events.c.seq)
        )
        return [(int(s), k, p) for s, k, p in rows]


async def _outbox_for(db: Database, aggregate_id: int) -> list[str]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(outbox_events.c.type).where(
                outbox_events.c.aggregate == "notice", outbox_events.c.aggregate_id == aggregate_id
            )
        )
        return [str(r[0]) for r in rows]


async def test_events_and_outbox_rows_commit_with_the_change_then_wake_up(db: Database) -> None:
    a, b = await _people(db, 2)
    notified: list[list[EventGroup]] = []
    log: list[str] = []

    def notify(groups: list[EventGroup]) -> None:
        notified.append(groups)
        log.append("notify")

    uow = UnitOfWork(db, EventLog(db), FakeClock(), notify)

    async def change(tx: Txn) -> str:
        await tx.conn.execute(update(persons).where(persons.c.id == a).values(name="renamed"))
        tx.emit(NewEvent("test.changed", json.dumps({"n": 1}), [a, b]))
        tx.emit(NewEvent("test.empty", "{}", []))  # no recipients: nothing written
        tx.on_commit(lambda: log.append("callback"))
        return tx.record("notice.acknowledged", "notice", a, {"n": 1})

    event_id = await uow.run(change)

    assert len(event_id) == 36
    assert await _events_of(db, a) == [(1, "test.changed", '{"n": 1}')]
    assert await _events_of(db, b) == [(1, "test.changed", '{"n": 1}')]
    assert await _outbox_for(db, a) == ["notice.acknowledged"]
    assert log == ["notify", "callback"]
    assert [[(g.kind, g.recipients) for g in gs] for gs in notified] == [[("test.changed", [(a, 1), (b, 1)])]]


async def test_a_change_that_raises_writes_and_announces_nothing(db: Database) -> None:
    (a,) = await _people(db, 1)
    notified: list[list[EventGroup]] = []
    called: list[str] = []
    uow = UnitOfWork(db, EventLog(db), FakeClock(), notified.append)

    async def change(tx: Txn) -> None:
        await tx.conn.execute(update(persons).where(persons.c.id == a).values(name="never"))
        await tx.append([NewEvent("test.changed", "{}", [a])])
        tx.record("notice.acknowledged", "notice", a, {})
        tx.on_commit(lambda: called.append("callback"))
        raise BadRequest("no")

    with pytest.raises(BadRequest):
        await uow.run(change)

    assert await _events_of(db, a) == []
    assert await _outbox_for(db, a) == []
    async with db.read() as conn:
        assert (await conn.execute(select(persons.c.name).where(persons.c.id == a))).scalar_one() == "uow-0"
    assert notified == [] and called == []


async def test_a_lock_conflict_reruns_the_change_on_a_fresh_transaction(db: Database) -> None:
    (a,) = await _people(db, 1)
    notified: list[list[EventGroup]] = []
    called: list[int] = []
    uow = UnitOfWork(db, EventLog(db), FakeClock(), notified.append)
    attempts = 0

    async def change(tx: Txn) -> int:
        nonlocal attempts
        attempts += 1
        n = attempts
        tx.emit(NewEvent("test.attempt", json.dumps({"attempt": n}), [a]))
        tx.record("notice.acknowledged", "notice", a, {"attempt": n})
        tx.on_commit(lambda: called.append(n))
        if n == 1:
            raise DBAPIError("UPDATE …", None, _Deadlock())
        return n

    assert await uow.run(change) == 2
    assert await _events_of(db, a) == [(1, "test.attempt", '{"attempt": 2}')]
    assert await _outbox_for(db, a) == ["notice.acknowledged"]
    assert called == [2]
    assert [[(g.kind, g.payload) for g in gs] for gs in notified] == [[("test.attempt", '{"attempt": 2}')]]


@pytest.mark.postgres
async def test_a_real_deadlock_between_two_units_commits_both(pg_database: str) -> None:
    """Two changes lock two rows in opposite orders: PostgreSQL aborts one, the unit of work reruns it."""
    db = Database(pg_database)
    try:
        a, b = await _people(db, 2)
        notified: list[list[EventGroup]] = []
        uow = UnitOfWork(db, EventLog(db), FakeClock(), notified.append)
        both_locked_first = asyncio.Barrier(2)
        first_attempts = {"ab": True, "ba": True}

        def change_in_order(name: str, first: int, second: int) -> Callable[[Txn], Awaitable[None]]:
            async def change(tx: Txn) -> None:
                await tx.conn.execute(update(persons).where(persons.c.id == first).values(name=name))
                if first_attempts[name]:
                    first_attempts[name] = False
                    await both_locked_first.wait()
                await tx.conn.execute(update(persons).where(persons.c.id == second).values(name=name))
                tx.emit(NewEvent("test.locked", json.dumps({"by": name}), [first]))

            return change

        await asyncio.gather(
            uow.run(change_in_order("ab", a, b)),
            uow.run(change_in_order("ba", b, a)),
        )
        async with db.read() as conn:
            n = (await conn.execute(select(func.count()).select_from(person_events).where(
                person_events.c.person_id.in_([a, b])))).scalar_one()  # fmt: skip
        assert n == 2  # each change committed once, its events with it
        assert sorted(g.payload for gs in notified for g in gs) == ['{"by": "ab"}', '{"by": "ba"}']
    finally:
        await db.dispose()


async def test_a_commit_that_wrote_outbox_rows_rings_the_outbox_bell_and_no_other_does(db: Database) -> None:
    (a,) = await _people(db, 1)
    rung: list[str] = []
    uow = UnitOfWork(db, EventLog(db), FakeClock(), lambda gs: None, on_outbox=lambda: rung.append("bell"))

    async def plain(tx: Txn) -> None:
        tx.emit(NewEvent("test.plain", "{}", [a]))

    async def with_outbox(tx: Txn) -> None:
        tx.record("notice.acknowledged", "notice", a, {"n": 2})

    async def failing(tx: Txn) -> None:
        tx.record("notice.acknowledged", "notice", a, {"n": 3})
        raise BadRequest("no")

    await uow.run(plain)
    assert rung == []
    with pytest.raises(BadRequest):
        await uow.run(failing)
    assert rung == []  # rolled back: nothing for the dispatcher to read
    await uow.run(with_outbox)
    assert rung == ["bell"] and await _outbox_for(db, a) == ["notice.acknowledged"]


async def test_a_periodic_job_with_a_wake_event_runs_when_woken_not_only_at_its_interval() -> None:
    from kernel.jobs import Jobs

    jobs, bell, ran = Jobs(), asyncio.Event(), asyncio.Event()

    async def job() -> None:
        ran.set()

    jobs.every(3600.0, job, "woken", wake=bell)  # an interval no test run reaches
    try:
        await asyncio.sleep(0)
        assert not ran.is_set()
        bell.set()
        await asyncio.wait_for(ran.wait(), 10)
    finally:
        await jobs.stop()
