"""Writing webhook attempts' outcomes: the log, the delivery's next state, the endpoint's failure count.

Why in batches (group commit): each attempt used to be recorded in a write
transaction of its own — an insert, an update of the delivery and one of the
subscription row, and a commit — so at a few hundred deliveries a second the
database round trips and commits, not HTTP, bounded the throughput, and every
delivered attempt rewrote (and locked) its subscription's row. Now an attempt
that has its answer queues the outcome and waits for it to be written;
whichever attempt gets the lock first writes every outcome queued by then in
one transaction (one multi-row insert, one fenced update per kind of
outcome), and the failure count is written only when it changes. The attempt
still returns only once its outcome is committed, so nothing is claimed again
before it is recorded; if the process dies first, the lease lapses and the
event is sent again with the same ``webhook-id`` (at least once).

Why fenced by the lease (``messaging.leases``): a worker that stalled past its
lease while another process took the delivery over must not overwrite what
that process records.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from apps.schema import app_delivery_attempts, app_subscriptions, apps
from apps.subscriptions import Subscription
from kernel.audit import AuditEntry, record
from kernel.clock import Clock
from kernel.db.database import Database
from messaging.leases import Leases
from org_tree.org_schema import units

if TYPE_CHECKING:
    from apps.delivery import DeliveryPolicy, Outcome

logger = logging.getLogger(__name__)

__all__ = ["Attempted", "OutcomeRecorder"]


@dataclass(frozen=True, slots=True)
class Attempted:
    """One finished attempt, waiting to be written."""

    delivery_id: int
    sub: Subscription
    attempt: int
    at: datetime
    outcome: Outcome
    latency_ms: int


class OutcomeRecorder:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        leases: Leases,
        token: str,
        policy: Callable[[], DeliveryPolicy],
        on_disabled: Callable[[Subscription, str], Awaitable[None]] | None,
        on_retry: Callable[[float], None] | None = None,
    ) -> None:
        self._db = db
        #: Told, once an outcome is committed, in how many seconds a failed delivery is due again: a
        #: retry then goes when it is due, not at the next poll (up to ``poll`` seconds late otherwise).
        self._on_retry = on_retry
        self._clock = clock
        self._leases = leases
        self._token = token
        self._policy = policy
        self._on_disabled = on_disabled
        self._queue: list[Attempted] = []
        self._lock = asyncio.Lock()
        #: Transactions written (a metric: attempts per transaction under load).
        self.batches = 0

    async def record(self, item: Attempted) -> None:
        """Queue ``item`` and return once it is committed (in this call's batch or an earlier one)."""
        self._queue.append(item)
        async with self._lock:
            batch, self._queue = self._queue, []
            if batch:
                disabled, waits = await self._write(batch)
                self.batches += 1
                if self._on_retry is not None:
                    for wait in waits:
                        self._on_retry(wait)
                for sub, reason in disabled:
                    await self._tell(sub, reason)

    async def _write(self, batch: list[Attempted]) -> tuple[list[tuple[Subscription, str]], list[float]]:
        """Write the batch's outcomes; returns the endpoints disabled and the seconds until each retry is due."""
        now = self._clock.now()
        policy = self._policy()
        free = {"leased_until": None, "leased_by": None, "attempts": self._leases.table.c.attempts + 1}
        ok = [b.delivery_id for b in batch if b.outcome.ok]
        dead = [b.delivery_id for b in batch if not b.outcome.ok and b.attempt >= policy.max_attempts]
        retry: dict[int, list[int]] = defaultdict(list)
        for b in batch:
            if not b.outcome.ok and b.attempt < policy.max_attempts:
                retry[b.attempt].append(b.delivery_id)
        async with self._db.write() as conn:
            await conn.execute(insert(app_delivery_attempts), [_log_row(b) for b in batch])
            if ok:
                done = {"state": "delivered", "delivered_at": now, **free}
                await self._leases.finish(conn, self._token, ok, done, fenced=False)
            if dead:
                await self._leases.finish(conn, self._token, dead, {"state": "dead", **free}, fenced=False)
            waits: list[float] = []
            for attempt, ids in retry.items():  # one jittered wait per attempt number in the batch
                wait = policy.backoff(attempt)
                waits.append(wait.total_seconds())
                again = {"next_attempt_at": now + wait, **free}
                await self._leases.finish(conn, self._token, ids, again, fenced=False)
            return await self._count_failures(conn, batch, now, policy.disable_after), waits

    async def _count_failures(
        self, conn: AsyncConnection, batch: list[Attempted], now: datetime, disable_after: int
    ) -> list[tuple[Subscription, str]]:
        """Failures in a row per endpoint: reset by a success, written only when they change."""
        s = app_subscriptions
        runs: dict[int, list[Attempted]] = defaultdict(list)
        for b in batch:
            runs[b.sub.id].append(b)
        disabled: list[tuple[Subscription, str]] = []
        healthy = [sid for sid, items in runs.items() if items[-1].outcome.ok]
        if healthy:  # the common case, in one statement for all of them: reset, where not already 0
            await conn.execute(
                update(s).where(s.c.id.in_(healthy), s.c.consecutive_failures != 0).values(consecutive_failures=0)
            )
        for sid, items in runs.items():
            if items[-1].outcome.ok:
                continue
            tail = 0
            for b in reversed(items):  # failures after this batch's last success
                if b.outcome.ok:
                    break
                tail += 1
            if tail == len(items):
                q = update(s).where(s.c.id == sid).values(consecutive_failures=s.c.consecutive_failures + tail)
            else:
                q = update(s).where(s.c.id == sid, s.c.consecutive_failures != tail).values(consecutive_failures=tail)
            row = (await conn.execute(q.returning(s.c.consecutive_failures))).first()
            fails = tail if row is None else int(row[0])
            if fails >= disable_after and await self._disable(conn, items[-1].sub, fails, now):
                last = items[-1].outcome
                disabled.append((items[-1].sub, f"{fails} failed attempts in a row; last: {last.error or last.status}"))
        return disabled

    async def _disable(self, conn: AsyncConnection, sub: Subscription, fails: int, now: datetime) -> bool:
        """Disable the endpoint, audited in the same transaction; False when it already was."""
        s = app_subscriptions
        res = await conn.execute(
            update(s)
            .where(s.c.id == sub.id, s.c.status == "active")
            .values(status="disabled", disabled_reason=f"{fails} failed attempts in a row")
        )
        if res.rowcount != 1:
            return False
        unit = (await conn.execute(select(apps.c.owning_unit_id).where(apps.c.id == sub.app_id))).scalar()
        detail = {"app_id": sub.app_id, "subscription_id": sub.id, "url": sub.url, "failures": fails}
        path = await _unit_path(conn, unit)  # without it the app's own auditors would never see the entry
        entry = AuditEntry("app.endpoint_disabled", None, outcome="failed", unit_id=unit, unit_path=path, detail=detail)
        await record(conn, entry, now)  # on record in the transaction that disables it
        return True

    async def _tell(self, sub: Subscription, reason: str) -> None:
        if self._on_disabled is None:
            return
        try:
            await self._on_disabled(sub, reason)
        except Exception:
            logger.exception("could not tell the owner of app %s that endpoint %s was disabled", sub.app_id, sub.id)


async def _unit_path(conn: AsyncConnection, unit_id: int | None) -> str | None:
    """``"/root id/…/unit id/"`` of ``unit_id`` read from ``units`` (this writer has no org index), as
    ``org_tree.grants.unit_path_of`` writes it: audit queries match an auditor's subtree by this prefix."""
    ids: list[int] = []
    u = unit_id
    while u is not None and len(ids) < 32:  # six levels; units created through the API may nest deeper
        ids.append(int(u))
        u = (await conn.execute(select(units.c.parent_id).where(units.c.id == u))).scalar()
    return "/" + "/".join(str(i) for i in reversed(ids)) + "/" if ids else None


def _log_row(b: Attempted) -> dict[str, Any]:
    return {
        "delivery_id": b.delivery_id, "subscription_id": b.sub.id, "attempt": b.attempt, "at": b.at,
        "status": b.outcome.status, "latency_ms": b.latency_ms, "error": b.outcome.error,
        "response_excerpt": b.outcome.excerpt[:500] or None,
    }  # fmt: skip
