"""DING: persisted reminder and escalation steps, claimed exactly once across processes.

Each urgent notice gets one ``notice_ding_steps`` row per step of its
``DingPolicy`` when it is sent (same transaction). Any number of processes run
``DingScheduler.run_due(now)`` periodically:

1. **Claim** (one short write transaction): pick due, unfinished, unclaimed
   (or lease-expired) rows — on PostgreSQL ``SELECT … FOR UPDATE SKIP LOCKED``
   so concurrent claimers never wait on or take each other's rows; on SQLite the
   single writer (``BEGIN IMMEDIATE``) already serialises the select-then-update —
   and stamp them with this run's token and a lease (``claimed_until``).
2. **Run** each claimed step: target the recipients who still have not read the
   notice (or not acknowledged it, when acknowledgement is required).
   ``remind`` appends ``notice.remind`` events and marks the step done in ONE
   transaction, fenced by ``claimed_by = token``: if the lease was lost the
   transaction rolls back, so a reminder is delivered exactly once.
   ``escalate`` calls the ``Notifier`` first, then marks done fenced the same way;
   a crash in between re-sends after the lease expires with the same
   idempotency key (at-least-once, deduplicated by the gateway).
3. A failing step is released with a retry delay and ``last_error``; after
   ``max_attempts`` it is closed with the error kept.

Everything lives in the database, so a restart loses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from messaging.leases import LeaseLost
from messaging.notices.fanout import Label, NoticeHead, notice_events
from messaging.notices.notifier import DingJob, DingSettings, Escalation, EscalationFailed
from messaging.notices.schema import notice_ding_steps, notice_receipts, notices
from messaging.unit_of_work import Txn

logger = logging.getLogger(__name__)

__all__ = ["DingScheduler", "StepOutcome"]


@dataclass(frozen=True, slots=True)
class StepOutcome:
    step_id: int
    notice_id: int
    step: int
    action: str
    recipients: int
    status: str  # done | skipped | retry | failed | lost


class DingScheduler(DingJob):
    """Runs due DING steps; safe to run in every server process at once (settings: ``DingSettings``)."""

    TABLE = notice_ding_steps
    DEFAULTS: ClassVar[DingSettings] = {"lease": timedelta(minutes=2), "batch": 20, "retry_after": timedelta(minutes=1)}

    async def run_due(self, now: datetime | None = None) -> list[StepOutcome]:
        """Claim and run the steps due at ``now`` (default: the clock); returns what happened."""
        now = now or self._clock.now()
        token = self._token()
        claimed = await self._claim(token, now)
        out = []
        for step in claimed:
            out.append(await self._run_step(token, step, now))
        return out

    async def _claim(self, token: str, now: datetime) -> list[dict[str, Any]]:
        """Lease the due steps to ``token`` (a short unit of work of its own)."""
        s = notice_ding_steps

        async def claim(tx: Txn) -> list[dict[str, Any]]:
            return await self._leases.claim_due(
                tx.conn,
                token,
                now,
                where=[s.c.due_at <= now],
                order_by=[s.c.due_at, s.c.id],
                limit=self._batch,
                returning=[s.c.id, s.c.notice_id, s.c.step, s.c.action, s.c.attempts],
            )

        return await self._uow.run(claim)

    async def _targets(self, conn: AsyncConnection, notice_id: int, ack_required: bool) -> dict[int, list[Label]]:
        r = notice_receipts
        open_col = r.c.acked_at if ack_required else r.c.read_at
        rows = await conn.execute(
            select(r.c.person_id, r.c.position_id, r.c.via_position_id, r.c.reason)
            .where(r.c.notice_id == notice_id, open_col.is_(None))
            .order_by(r.c.person_id, r.c.position_id)
        )
        # A receipt of a position retired since the send stays counted (the audience is frozen) but is
        # not reminded or escalated: nothing more is delivered for a position that is gone (S21 d).
        live = self._index().role_and_unit
        out: dict[int, list[Label]] = {}
        for person, pos, via, reason in rows:
            if live(int(pos)) is not None:
                out.setdefault(int(person), []).append((int(pos), int(via), str(reason)))
        return out

    async def _finish(
        self, conn: AsyncConnection, token: str, step_id: int, now: datetime, recipients: int, error: str | None = None
    ) -> None:
        values = {"done_at": now, "recipients": recipients, "last_error": error, "claimed_until": None}
        await self._leases.finish(conn, token, [step_id], values)

    async def _run_step(self, token: str, step: dict[str, Any], now: datetime) -> StepOutcome:
        sid, nid, num, action = int(step["id"]), int(step["notice_id"]), int(step["step"]), str(step["action"])
        escalation: Escalation | None = None

        async def remind_or_prepare(tx: Txn) -> tuple[str, int]:
            nonlocal escalation
            conn = tx.conn
            n = (await conn.execute(select(notices).where(notices.c.id == nid))).one()
            if n.recalled_at is not None:
                await self._finish(conn, token, sid, now, 0, "recalled")
                return "skipped", 0
            targets = await self._targets(conn, nid, bool(n.ack_required))
            if not targets:
                await self._finish(conn, token, sid, now, 0)
                return "done", 0
            if action == "remind":
                head = NoticeHead(
                    nid, n.title, n.priority, bool(n.ack_required), n.deadline, n.created_at,
                    int(n.sender_person_id), int(n.sender_position_id),
                )  # fmt: skip
                evs = notice_events("notice.remind", head, targets, self._index(), {"step": num})
                await self._finish(conn, token, sid, now, len(targets))
                tx.emit(*evs)
                return "done", len(targets)
            escalation = Escalation(
                nid,
                num,
                n.title,
                n.priority,
                bool(n.ack_required),
                tuple((p, tuple(dict.fromkeys(lb[0] for lb in lbls))) for p, lbls in targets.items()),
                int(n.sender_person_id),
            )
            return "escalate", len(targets)

        try:
            status, count = await self._uow.run(remind_or_prepare)
        except LeaseLost:
            return StepOutcome(sid, nid, num, action, 0, "lost")
        if status != "escalate":
            return StepOutcome(sid, nid, num, action, count, status)
        assert escalation is not None
        try:
            await self._notifier.escalate(escalation)
        except EscalationFailed as exc:
            return await self._release(token, sid, nid, num, action, int(step["attempts"]), now, str(exc))

        try:
            await self._uow.run(lambda tx: self._finish(tx.conn, token, sid, now, count))
        except LeaseLost:
            logger.warning("DING step %d escalated but its lease was lost; the gateway deduplicates", sid)
            return StepOutcome(sid, nid, num, action, count, "lost")
        return StepOutcome(sid, nid, num, action, count, "done")

    async def _release(
        self, token: str, sid: int, nid: int, num: int, action: str, attempts: int, now: datetime, error: str
    ) -> StepOutcome:
        final = attempts >= self._max_attempts
        values: dict[str, Any] = {"last_error": error[:500], "claimed_until": now + self._retry_after}
        if final:
            values = {"last_error": error[:500], "done_at": now, "claimed_until": None}

        await self._uow.run(lambda tx: self._leases.finish(tx.conn, token, [sid], values, fenced=False))
        logger.warning("DING step %d of notice %d failed (attempt %d): %s", sid, nid, attempts, error)
        return StepOutcome(sid, nid, num, action, 0, "failed" if final else "retry")

    async def pending_steps(self, notice_ids: Sequence[int]) -> list[dict[str, Any]]:
        """The DING steps of some notices, for tests and the sender's view."""
        s = notice_ding_steps
        async with self._db.read() as conn:
            rows = await conn.execute(
                select(s).where(s.c.notice_id.in_(list(notice_ids))).order_by(s.c.notice_id, s.c.step)
            )
            return [dict(r._mapping) for r in rows]
