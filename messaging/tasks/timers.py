"""Deadline timers: claimed exactly once across processes, escalating overdue tasks up the tree.

Each task has at most one open deadline timer (``accept`` while created,
``resolve`` while accepted or in progress), written in the transaction that
put the task in that state. Every server process runs ``TaskTimers.run_due``
periodically; the claim is the DING scheduler's (``messaging.notices.ding``):

1. **Claim** (one short write transaction): due, unfinished rows whose lease is
   free or expired; on PostgreSQL ``SELECT … FOR UPDATE SKIP LOCKED`` so claimers
   never wait on or take each other's rows, on SQLite the single ``BEGIN
   IMMEDIATE`` writer serialises the select-then-update. The rows get this run's
   token and a lease (``claimed_until``).
2. **Escalate** the claimed batch in ONE transaction that first marks the timers
   done *fenced by the token* (``WHERE claimed_by = token``): if any lease was
   lost to another process, the transaction rolls back and nothing happens
   twice. A process killed with ``kill -9`` after claiming leaves rows whose
   lease simply expires; the next claimer takes them over.
3. **DING** timers (armed by an escalation in a DING category) call the
   out-of-band notifier (up to 20 calls at a time), then the reached ones are
   marked done together, fenced the same way; a crash in between repeats the
   calls with the same idempotency keys (at-least-once, deduplicated by the
   gateway).

A batch that fails for another reason is retried timer by timer, so one bad
row cannot hold the others back; a timer failing ``max_attempts`` times is
closed with its error kept.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from messaging.chat import Notify
from messaging.db_errors import with_db_retry
from messaging.events import EventLog
from messaging.notices.notifier import Escalation, EscalationFailed, Notifier
from messaging.tasks.categories import Category, get_category
from messaging.tasks.lifecycle import Action, State
from messaging.tasks.model import TaskRow
from messaging.tasks.routing import escalation_target
from messaging.tasks.schema import task_timers, tasks
from messaging.tasks.service import IndexProvider, TaskService
from messaging.tasks.writer import Change, Planned, write_changes_locked
from messaging.wakeup import EventGroup
from org_tree.clock import Clock
from org_tree.db.database import Database
from org_tree.db.dialect import is_postgres
from org_tree.resolution import VacancyPolicy, resolve_ranges

logger = logging.getLogger(__name__)

__all__ = ["TaskEscalation", "TaskTimers", "TimerOutcome"]

_DING_CONCURRENCY = 20
_AWAITS = {"accept": (State.CREATED,), "resolve": (State.ACCEPTED, State.IN_PROGRESS)}


class _LeaseLost(Exception):
    """Another process took over one of our timers: undo this transaction."""


@dataclass(frozen=True, slots=True)
class TaskEscalation(Escalation):
    """A task's DING: the notice-shaped escalation with the task's own idempotency key.

    ``notice_id`` carries the task id and ``step`` the escalation level, so existing
    gateways keep working; ``idempotency_key`` is ``task-<id>-escalation-<level>``.
    """

    @property
    def idempotency_key(self) -> str:
        return f"task-{self.notice_id}-escalation-{self.step}"

    def to_dict(self) -> dict[str, Any]:
        return {**super(TaskEscalation, self).to_dict(), "kind": "task", "task_id": self.notice_id}


@dataclass(frozen=True, slots=True)
class TimerOutcome:
    timer_id: int
    task_id: int
    kind: str
    #: escalated | top (nowhere above) | stale (task moved on) | dinged | retry | failed | lost
    status: str


class TaskTimers:
    """Runs due task timers; safe to run in every server process at once.

    Args:
        node_id: names this process in ``claimed_by``.
        lease: how long a claim is exclusive; longer than one batch takes.
        batch: timers claimed and escalated per transaction.
        retry_after: delay before a failed timer is tried again.
        max_attempts: tries before a timer is closed as failed.
    """

    def __init__(
        self,
        db: Database,
        events: EventLog,
        clock: Clock,
        notify: Notify,
        notifier: Notifier,
        index_provider: IndexProvider,
        *,
        node_id: str = "node",
        lease: timedelta = timedelta(seconds=60),
        batch: int = 200,
        retry_after: timedelta = timedelta(seconds=60),
        max_attempts: int = 5,
    ) -> None:
        self._db = db
        self._events = events
        self._clock = clock
        self._notify = notify
        self._notifier = notifier
        self._index = index_provider
        self._node = node_id[:40]
        self.lease = lease
        self._batch = batch
        self._retry_after = retry_after
        self._max_attempts = max_attempts

    async def run_due(self, now: datetime | None = None, *, drain: bool = True) -> list[TimerOutcome]:
        """Claim and run due timers (batch after batch while ``drain``, until none is due)."""
        out: list[TimerOutcome] = []
        while True:
            at = now or self._clock.now()
            token = f"{self._node}:{secrets.token_hex(6)}"
            claimed = await with_db_retry(lambda t=token, a=at: self._claim(t, a))  # type: ignore[misc]
            if not claimed:
                return out
            deadlines = [c for c in claimed if c["kind"] != "ding"]
            if deadlines:
                out.extend(await self._escalate_batch(token, deadlines, at))
            dings = [c for c in claimed if c["kind"] == "ding"]
            if dings:
                out.extend(await self._ding_batch(token, dings, at))
            if not drain:
                return out

    async def _claim(self, token: str, now: datetime) -> list[dict[str, Any]]:
        t = task_timers
        free = or_(t.c.claimed_until.is_(None), t.c.claimed_until < now)
        async with self._db.write() as conn:
            q = (
                select(t.c.id)
                .where(t.c.done_at.is_(None), t.c.due_at <= now, free)
                .order_by(t.c.due_at, t.c.id)
                .limit(self._batch)
            )
            if is_postgres(conn):
                q = q.with_for_update(skip_locked=True)
            ids = [int(r[0]) for r in await conn.execute(q)]
            if not ids:
                return []
            await conn.execute(
                update(t)
                .where(t.c.id.in_(ids), t.c.done_at.is_(None), free)
                .values(claimed_by=token, claimed_until=now + self.lease, attempts=t.c.attempts + 1)
            )
            rows = await conn.execute(
                select(t.c.id, t.c.task_id, t.c.kind, t.c.task_version, t.c.attempts)
                .where(t.c.id.in_(ids), t.c.claimed_by == token)
                .order_by(t.c.id)
            )
            return [dict(r._mapping) for r in rows]

    async def _finish(
        self, conn: AsyncConnection, token: str, ids: list[int], now: datetime, outcome: str, error: str | None = None
    ) -> None:
        t = task_timers
        res = await conn.execute(
            update(t)
            .where(t.c.id.in_(ids), t.c.claimed_by == token, t.c.done_at.is_(None))
            .values(done_at=now, outcome=outcome, last_error=error, claimed_until=None)
        )
        if res.rowcount != len(ids):
            raise _LeaseLost

    async def _escalate_batch(self, token: str, timers: list[dict[str, Any]], now: datetime) -> list[TimerOutcome]:
        groups: list[EventGroup] = []

        async def txn(batch: list[dict[str, Any]]) -> list[TimerOutcome]:
            groups.clear()
            index = self._index()
            async with self._db.write() as conn:
                q = select(tasks).where(tasks.c.id.in_(sorted({int(t["task_id"]) for t in batch}))).order_by(tasks.c.id)
                if is_postgres(conn):
                    q = q.with_for_update()
                locked = {int(r.id): TaskRow.from_row(r) for r in await conn.execute(q)}
                out, planned, by_outcome = await self._plan(conn, batch, locked, index, now)
                for outcome, ids in sorted(by_outcome.items()):
                    await self._finish(conn, token, ids, now, outcome)
                new_events = await write_changes_locked(conn, index, planned, now)
                groups.extend(await self._events.append(conn, new_events, now))
            return out

        try:
            out = await with_db_retry(lambda: txn(timers))
        except _LeaseLost:
            return [TimerOutcome(int(t["id"]), int(t["task_id"]), str(t["kind"]), "lost") for t in timers]
        except Exception as exc:
            if len(timers) == 1:
                return [await self._release(token, timers[0], now, repr(exc))]
            logger.warning("escalating %d timers together failed (%r); trying one by one", len(timers), exc)
            out = []
            for tm in timers:
                out.extend(await self._escalate_batch(token, [tm], now))
            return out
        if groups:
            self._notify(groups)
        return out

    async def _plan(
        self,
        conn: AsyncConnection,
        batch: list[dict[str, Any]],
        locked: dict[int, TaskRow],
        index: Any,
        now: datetime,
    ) -> tuple[list[TimerOutcome], list[Planned], dict[str, list[int]]]:
        """Decide each claimed timer: escalate (with the planned change), top (nowhere above) or stale."""
        cats: dict[str, Category] = {}
        out: list[TimerOutcome] = []
        planned: list[Planned] = []
        by_outcome: dict[str, list[int]] = {}
        for tm in batch:
            tid, kind, timer_id = int(tm["task_id"]), str(tm["kind"]), int(tm["id"])
            task = locked.pop(tid, None)  # pop: a second timer of one task in a batch is stale
            status = "stale"
            if task is not None and task.version == int(tm["task_version"]) and State(task.state) in _AWAITS[kind]:
                cat = cats.get(task.category)
                if cat is None:
                    cat = cats[task.category] = await get_category(conn, task.category)
                k = index.k_of_id[task.owner_position_id] if 0 <= task.owner_position_id < len(index.k_of_id) else -1
                target = escalation_target(index, cat.escalation, k) if k >= 0 else -1
                status = "top"
                if target >= 0 and task.escalation_level < cat.max_escalations:
                    status = "escalated"
                    change = Change(Action.ESCALATE, None, None, urgent=cat.ding)
                    values, change = TaskService.plan_move(
                        index, task, cat, target, now, change, level=task.escalation_level + 1, rule=cat.escalation
                    )
                    change.data["reason"] = f"{kind}_overdue"
                    planned.append(Planned(task, values, change, State.CREATED))
            by_outcome.setdefault(status, []).append(timer_id)
            out.append(TimerOutcome(timer_id, tid, kind, status))
        return out, planned, by_outcome

    async def _ding_batch(self, token: str, timers: list[dict[str, Any]], now: datetime) -> list[TimerOutcome]:
        """Call the notifier for each task's new owner (a few at a time), then close the reached ones together."""
        async with self._db.read() as conn:
            rows = await conn.execute(select(tasks).where(tasks.c.id.in_(sorted({int(t["task_id"]) for t in timers}))))
            by_id = {int(r.id): TaskRow.from_row(r) for r in rows}
        index = self._index()

        async def call(tm: dict[str, Any]) -> tuple[dict[str, Any], str | None, bool]:
            task = by_id.get(int(tm["task_id"]))
            if task is None:
                return tm, None, False
            pos = task.owner_position_id
            k = index.k_of_id[pos] if 0 <= pos < len(index.k_of_id) else -1
            people = sorted(resolve_ranges(index, [(k, k + 1)], VacancyPolicy()).persons) if k >= 0 else []
            if not people:
                return tm, None, False
            esc = TaskEscalation(
                task.id, task.escalation_level, f"[任务升级] {task.title}", "urgent", True,
                tuple((p, (pos,)) for p in people), task.creator_person_id,
            )  # fmt: skip
            try:
                await self._notifier.escalate(esc)
            except EscalationFailed as exc:
                return tm, str(exc), False
            return tm, None, True

        results: list[tuple[dict[str, Any], str | None, bool]] = []
        for i in range(0, len(timers), _DING_CONCURRENCY):
            results.extend(await asyncio.gather(*(call(tm) for tm in timers[i : i + _DING_CONCURRENCY])))
        out: list[TimerOutcome] = []
        done: dict[str, list[int]] = {}
        for tm, error, reached in results:
            if error is not None:
                out.append(await self._release(token, tm, now, error))
            else:
                done.setdefault("dinged" if reached else "nobody", []).append(int(tm["id"]))

        async def mark() -> None:
            async with self._db.write() as conn:
                for outcome, ids in sorted(done.items()):
                    await self._finish(conn, token, ids, now, outcome)

        finished = [(tm, reached) for tm, error, reached in results if error is None]
        try:
            if done:
                await with_db_retry(mark)
        except _LeaseLost:
            logger.warning("%d task DINGs sent but their lease was lost; the gateway deduplicates", len(finished))
            return out + [TimerOutcome(int(tm["id"]), int(tm["task_id"]), "ding", "lost") for tm, _ in finished]
        return out + [
            TimerOutcome(int(tm["id"]), int(tm["task_id"]), "ding", "dinged" if reached else "nobody")
            for tm, reached in finished
        ]

    async def _release(self, token: str, tm: dict[str, Any], now: datetime, error: str) -> TimerOutcome:
        t = task_timers
        final = int(tm["attempts"]) >= self._max_attempts
        values: dict[str, Any] = {"last_error": error[:500], "claimed_until": now + self._retry_after}
        if final:
            values = {"last_error": error[:500], "done_at": now, "outcome": "failed", "claimed_until": None}

        async def txn() -> None:
            async with self._db.write() as conn:
                await conn.execute(update(t).where(t.c.id == int(tm["id"]), t.c.claimed_by == token).values(**values))

        await with_db_retry(txn)
        logger.warning("task timer %s of task %s failed: %s", tm["id"], tm["task_id"], error)
        return TimerOutcome(int(tm["id"]), int(tm["task_id"]), str(tm["kind"]), "failed" if final else "retry")
