"""Deadline timers in batches: two claimers split a backlog exactly once; a bad timer does not hold back the rest."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy import func, select, update

from messaging.tasks.reports import Filing
from messaging.tasks.schema import task_events, task_timers, tasks
from messaging.tasks.timers import TaskTimers
from tests.tasks.conftest import TaskWorld

TASKS = 7


async def _overdue(w: TaskWorld, n: int) -> list[int]:
    worker, grid_pos = w.grid_worker_with_held_chain()
    ids = []
    for i in range(n):
        r, _ = await w.reports.file(worker, grid_pos, Filing(f"b{i}", "river_litter", f"垃圾{i}", 28.9, 118.8))
        ids.append(int(r["task_id"]))
    w.clock.advance(7200 + 1)  # river_litter: accept within 2 h
    return ids


async def _escalations(w: TaskWorld) -> Counter[int]:
    async with w.db.read() as conn:
        rows = await conn.execute(select(task_events.c.task_id).where(task_events.c.action == "escalate"))
        return Counter(int(t) for (t,) in rows)


async def test_two_claimers_with_small_batches_and_a_pause_escalate_each_task_once(tw: TaskWorld) -> None:
    w = tw
    ids = await _overdue(w, TASKS)

    def timers(node: str) -> TaskTimers:
        return TaskTimers(w.tasks.uow, w.notifier, lambda: w.index, node_id=node, batch=3, pause=0.5)

    a, b = timers("a"), timers("b")
    out_a, out_b = await asyncio.gather(a.run_due(), b.run_due())
    statuses = Counter(o.status for o in out_a + out_b)
    assert statuses == {"escalated": TASKS, "dinged": TASKS}
    assert await _escalations(w) == dict.fromkeys(ids, 1)
    keys = [e.idempotency_key for e in w.notifier.sent]
    assert sorted(keys) == sorted(f"task-{t}-escalation-1" for t in ids)
    async with w.db.read() as conn:
        open_timers = (
            await conn.execute(
                select(func.count())
                .select_from(task_timers)
                .where(task_timers.c.done_at.is_(None), task_timers.c.kind == "ding")
            )
        ).scalar_one()
    assert open_timers == 0
    assert await a.run_due() == [] and await b.run_due() == []  # nothing runs twice


async def test_a_failing_timer_is_retried_alone_and_closed_after_max_attempts(tw: TaskWorld) -> None:
    w = tw
    ids = await _overdue(w, 4)
    bad = ids[1]
    async with w.db.write() as conn:  # its category vanished: escalating it raises
        await conn.execute(update(tasks).where(tasks.c.id == bad).values(category="gone"))
    t = TaskTimers(w.tasks.uow, w.notifier, lambda: w.index, batch=10, max_attempts=2)
    first = await t.run_due()
    assert Counter(o.status for o in first) == {"escalated": 3, "dinged": 3, "retry": 1}
    assert [o.task_id for o in first if o.status == "retry"] == [bad]
    assert await _escalations(w) == {i: 1 for i in ids if i != bad}
    assert await t.run_due() == []  # waits retry_after
    w.clock.advance(61)
    assert [(o.task_id, o.status) for o in await t.run_due()] == [(bad, "failed")]
    async with w.db.read() as conn:
        row = (
            await conn.execute(
                select(task_timers.c.outcome, task_timers.c.attempts, task_timers.c.last_error).where(
                    task_timers.c.task_id == bad, task_timers.c.kind == "accept"
                )
            )
        ).one()
    assert row.outcome == "failed" and row.attempts == 2 and "unknown category" in row.last_error
    w.clock.advance(3600)
    assert await t.run_due() == []
