"""Deadline timers: claimed exactly once across processes, escalating overdue tasks up the tree.

Each task has at most one open deadline timer (``accept`` while created,
``resolve`` while accepted or in progress), written in the transaction that
put the task in that state. Every server process runs ``TaskTimers.run_due``
periodically:

1. **Deadline timers are claimed and escalated in one transaction.** It picks
   a batch of due, unfinished timers (on PostgreSQL ``SELECT … FOR UPDATE SKIP
   LOCKED``, so claimers never wait on or take each other's rows; on SQLite the
   single ``BEGIN IMMEDIATE`` writer serialises everything), locks their tasks,
   escalates them and marks the timers done, all before one commit. The row
   locks are the claim: nobody else can take those timers until the commit,
   after which they are done. A process killed with ``kill -9`` mid-batch loses
   its connection, PostgreSQL rolls the transaction back, and the timers are
   free for the next claimer at once (no lease to wait out, nothing half
   written). Why not a committed claim first: it cost a transaction and a
   second row version per timer, the largest single item of a batch.
2. **DING timers** (armed by an escalation in a DING category) need a lease,
   because the out-of-band call happens outside any transaction. The
   escalating transaction inserts them already leased to this run, which then
   calls the notifier (up to 20 calls at a time) right after the commit and
   marks the reached ones done together, fenced by the lease token (``WHERE
   claimed_by = token``). A crash in between leaves them leased; when the lease
   expires another process claims them and repeats the calls with the same
   idempotency keys (at-least-once, deduplicated by the gateway). DING timers
   armed elsewhere (a rejection) are claimed the same way.

A batch that fails for another reason is retried timer by timer, so one bad
row cannot hold the others back; a failed timer waits ``retry_after`` and is
closed with its error kept after ``max_attempts`` tries.

``pause`` bounds the job's share of the database while it drains a big
backlog: after each batch it sleeps that fraction of the batch's duration, so
chat and other requests get the database (and this event loop) in between.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from typing_extensions import Unpack

from kernel.db.dialect import for_update
from messaging.leases import LeaseLost
from messaging.notices.notifier import DingJob, DingSettings, Escalation, EscalationFailed, Notifier
from messaging.tasks.categories import Category, get_category
from messaging.tasks.lifecycle import Action, State
from messaging.tasks.model import TaskRow
from messaging.tasks.routing import escalation_target
from messaging.tasks.schema import task_timers, tasks
from messaging.tasks.service import IndexProvider, TaskService
from messaging.tasks.writer import Change, Planned, write_changes_locked
from messaging.unit_of_work import Txn, UnitOfWork
from org_tree.resolution import VacancyPolicy, resolve_slots

logger = logging.getLogger(__name__)

__all__ = ["TaskEscalation", "TaskTimers", "TimerOutcome"]

_DING_CONCURRENCY = 20
_TIMER_COLUMNS = (task_timers.c.id, task_timers.c.task_id, task_timers.c.kind, task_timers.c.task_version,
                  task_timers.c.attempts)  # fmt: skip
_AWAITS = {"accept": (State.CREATED,), "resolve": (State.ACCEPTED, State.IN_PROGRESS)}


@dataclass(frozen=True, slots=True)
class TaskEscalation(Escalation):
    """A task's DING: the notice-shaped escalation with the task's own idempotency key.

    ``notice_id`` carries the task id and ``step`` the escalation level, so existing
    gateways keep working; ``idempotency_key`` is ``task-<id>-escalation-<level>``.
    """

    @property
    def idempotency_key(self) -> str:
        return f"task-{self.notice_id}-escalation-{self.step}"

    @property
    def subject(self) -> str:
        return f"task {self.notice_id}"

    def to_dict(self) -> dict[str, Any]:
        return {**super(TaskEscalation, self).to_dict(), "kind": "task", "task_id": self.notice_id}


@dataclass(frozen=True, slots=True)
class TimerOutcome:
    timer_id: int
    task_id: int
    kind: str
    #: escalated | top (nowhere above) | stale (task moved on) | dinged | retry | failed | lost
    status: str


class TaskTimers(DingJob):
    """Runs due task timers; safe to run in every server process at once.

    ``settings`` (``DingSettings``) govern the DING timers' lease and the retries;
    ``batch`` is also how many deadline timers are escalated per transaction.
    ``pause``: after each batch of a backlog, sleep this fraction of the batch's duration.
    """

    TABLE = task_timers
    DEFAULTS: ClassVar[DingSettings] = {
        "lease": timedelta(minutes=1),
        "batch": 200,
        "retry_after": timedelta(minutes=1),
    }

    def __init__(
        self, uow: UnitOfWork, notifier: Notifier, index_provider: IndexProvider, *, pause: float = 0.0,
        **settings: Unpack[DingSettings],
    ) -> None:  # fmt: skip
        super().__init__(uow, notifier, index_provider, **settings)
        self._pause = pause
        #: Holders per position for the index they were resolved with (reused while it stays current).
        self._holders: tuple[object, dict[int, frozenset[int]]] = (None, {})

    async def run_due(self, now: datetime | None = None, *, drain: bool = True) -> list[TimerOutcome]:
        """Escalate due deadline timers and call due DINGs (batch after batch while ``drain``, until none is due)."""
        out: list[TimerOutcome] = []
        loop = asyncio.get_running_loop()
        while True:
            at = now or self._clock.now()
            started = loop.time()
            token = self._token()
            picked, escalated, armed = await self._escalate_due(token, at)
            out.extend(escalated)
            if armed:
                out.extend(await self._ding_batch(token, armed, at))
            claimed: list[dict[str, Any]] = []
            if picked < self._batch:  # the deadline backlog is drained: DINGs armed elsewhere or left by a crash
                dtoken = self._token()
                claimed = await self._uow.run(lambda tx, t=dtoken, a=at: self._claim_dings(tx.conn, t, a))  # type: ignore[misc]
                if claimed:
                    out.extend(await self._ding_batch(dtoken, claimed, at))
            if not drain or (not picked and not claimed):
                return out
            if self._pause > 0:
                await asyncio.sleep(self._pause * (loop.time() - started))

    async def _claim_dings(self, conn: AsyncConnection, token: str, now: datetime) -> list[dict[str, Any]]:
        """Lease due DING timers to this run (in a short transaction of its own)."""
        t = task_timers
        return await self._leases.claim_due(
            conn,
            token,
            now,
            where=[t.c.due_at <= now, t.c.kind == "ding"],
            order_by=[t.c.due_at, t.c.id],
            limit=self._batch,
            returning=_TIMER_COLUMNS,
        )

    async def _pick(self, conn: AsyncConnection, now: datetime, limit: int, only: int | None) -> list[dict[str, Any]]:
        """Due deadline timers, row-locked until this transaction ends (skipping those another claimer holds)."""
        t = task_timers
        q = (
            select(*_TIMER_COLUMNS)
            .where(
                t.c.done_at.is_(None),
                t.c.due_at <= now,
                t.c.kind != "ding",
                self._leases.free(now),
            )
            .order_by(t.c.due_at, t.c.id)
            .limit(limit)
        )
        if only is not None:
            q = q.where(t.c.id == only)
        return [dict(r._mapping) for r in await conn.execute(for_update(conn, q, skip_locked=True))]

    async def _finish(
        self, conn: AsyncConnection, token: str, ids: list[int], now: datetime, outcome: str, error: str | None = None
    ) -> None:
        """Close leased DING timers, fenced by the lease token."""
        values = {"done_at": now, "outcome": outcome, "last_error": error, "claimed_until": None}
        await self._leases.finish(conn, token, ids, values)

    async def _escalate_due(
        self, token: str, now: datetime, only: dict[str, Any] | None = None
    ) -> tuple[int, list[TimerOutcome], list[dict[str, Any]]]:
        """Claim and escalate one batch of due deadline timers in one transaction.

        Returns how many timers were picked, their outcomes, and the DING timers the
        escalations armed, leased to ``token``.
        """
        picked: list[dict[str, Any]] = []
        armed: list[dict[str, Any]] = []

        async def change(tx: Txn) -> list[TimerOutcome]:
            picked.clear()
            armed.clear()
            index = self._index()
            conn = tx.conn
            batch = await self._pick(conn, now, self._batch, None if only is None else int(only["id"]))
            picked.extend(batch)
            if not batch:
                return []
            q = select(tasks).where(tasks.c.id.in_(sorted({int(t["task_id"]) for t in batch}))).order_by(tasks.c.id)
            locked = {int(r.id): TaskRow.from_row(r) for r in await conn.execute(for_update(conn, q))}
            out, planned, by_outcome = await self._plan(conn, batch, locked, index, now)
            t = task_timers
            for outcome, ids in sorted(by_outcome.items()):
                # Held locked since _pick (SQLite: the only writer), so no fence is needed.
                await conn.execute(
                    update(t)
                    .where(t.c.id.in_(ids))
                    .values(done_at=now, outcome=outcome, claimed_by=token, claimed_until=None,
                            attempts=t.c.attempts + 1)
                )  # fmt: skip
            if self._holders[0] is not index:
                self._holders = (index, {})
            written = await write_changes_locked(
                conn, index, planned, now, ding_lease=(token, now + self.lease), holders=self._holders[1]
            )
            armed.extend(written.dings)
            tx.emit(*written.events)
            return out

        try:
            out = await self._uow.run(change)
        except Exception as exc:
            if not picked:
                raise  # nothing was picked: the database itself failed; the job retries next interval
            if only is not None:
                return 1, [await self._release(only, now, repr(exc))], []
            tried = list(picked)
            logger.warning("escalating %d timers together failed (%r); trying one by one", len(tried), exc)
            out, dings = [], []
            for tm in tried:
                _, got, armed_one = await self._escalate_due(token, now, tm)
                out.extend(got)
                dings.extend(armed_one)
            return len(tried), out, dings
        return len(picked), out, list(armed)

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
                k = index.find_slot(task.owner_position_id)
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
            k = index.find_slot(pos)
            people = sorted(resolve_slots(index, [k], VacancyPolicy()).persons) if k >= 0 else []
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
                out.append(await self._release(tm, now, error, lease=token))
            else:
                done.setdefault("dinged" if reached else "nobody", []).append(int(tm["id"]))

        async def mark(tx: Txn) -> None:
            for outcome, ids in sorted(done.items()):
                await self._finish(tx.conn, token, ids, now, outcome)

        finished = [(tm, reached) for tm, error, reached in results if error is None]
        try:
            if done:
                await self._uow.run(mark)
        except LeaseLost:
            logger.warning("%d task DINGs sent but their lease was lost; the gateway deduplicates", len(finished))
            return out + [TimerOutcome(int(tm["id"]), int(tm["task_id"]), "ding", "lost") for tm, _ in finished]
        return out + [
            TimerOutcome(int(tm["id"]), int(tm["task_id"]), "ding", "dinged" if reached else "nobody")
            for tm, reached in finished
        ]

    async def _release(self, tm: dict[str, Any], now: datetime, error: str, lease: str | None = None) -> TimerOutcome:
        """Record a failed try: retry after ``retry_after``, or close the timer after ``max_attempts``.

        A DING timer is released under its ``lease`` token (its claim already counted the
        attempt); a deadline timer's failed transaction left nothing behind, so the try is
        counted here.
        """
        t = task_timers
        tries = int(tm["attempts"]) + (0 if lease else 1)
        final = tries >= self._max_attempts
        values: dict[str, Any] = {
            "last_error": error[:500],
            "claimed_until": now + self._retry_after,
            "attempts": tries,
        }
        if final:
            values.update(done_at=now, outcome="failed", claimed_until=None)
        where = [t.c.id == int(tm["id"]), t.c.done_at.is_(None)]
        if lease:
            where.append(t.c.claimed_by == lease)

        async def change(tx: Txn) -> None:
            await tx.conn.execute(update(t).where(*where).values(**values))

        await self._uow.run(change)
        logger.warning("task timer %s of task %s failed: %s", tm["id"], tm["task_id"], error)
        return TimerOutcome(int(tm["id"]), int(tm["task_id"]), str(tm["kind"]), "failed" if final else "retry")
