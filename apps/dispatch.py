"""Outbox → deliveries: each matching outbox event becomes one delivery row per subscription.

Why in one transaction with the stamp: an outbox row is stamped published in
the very transaction that records its deliveries, so an event is never
stamped without its deliveries, nor given them twice (the unique
``(subscription_id, outbox_id)`` also holds against a replay).

Why one dispatcher at a time (a PostgreSQL advisory lock, SQLite's single
writer): deliveries of one aggregate must be recorded in outbox order, so
that the per-aggregate order the delivery workers keep is the order the
changes happened. Dispatching is a cheap insert; the slow part (HTTP) is the
workers', which run in parallel across processes.

Who gets what: a subscription's app must still hold an ``events:`` scope for
the type, and the event must lie in the app's subtree (its unit: the report's
grid, the task's owner unit, the acknowledging position's unit), before any
filter is even looked at.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from apps.model import event_scope_allows
from apps.schema import app_deliveries, app_subscriptions, apps
from apps.subscriptions import Subscription
from kernel.clock import Clock
from kernel.db.database import Database
from kernel.db.dialect import insert_ignore, refresh_statistics, try_transaction_lock
from kernel.errors import NotFound
from messaging.outbox import OutboxEvent, mark_published, read_unpublished
from messaging.schema import outbox_events
from org_tree.index import OrgIndex

logger = logging.getLogger(__name__)

__all__ = ["Dispatcher", "event_unit_id", "matches", "prune_published"]

_LOCK_KEY = 0x5A5A_A995  # pg advisory lock: one dispatcher at a time
#: Delivery rows this process records between two refreshes of the table's statistics (``refresh_statistics``):
#: the claims' plans stay right while the table grows from empty faster than autovacuum looks at it.
ANALYZE_EVERY = 2_000


def event_unit_id(index: OrgIndex, ev: OutboxEvent) -> int | None:
    """The unit an event happened in (for the subtree check); None when it cannot be placed."""
    p = ev.payload
    if ev.type == "report.filed":
        return int(p["grid_unit_id"])
    if ev.type.startswith("task."):
        return int(p["task"]["owner_unit_id"])
    if ev.type == "notice.acknowledged":
        k = index.find_slot(int(p["position_id"]))
        return None if k < 0 else index.unit_id(index.position_unit(k))
    return None


def _category(ev: OutboxEvent) -> str | None:
    if ev.type == "report.filed":
        return str(ev.payload.get("category"))
    if ev.type.startswith("task."):
        return str(ev.payload["task"].get("category"))
    return None


def matches(index: OrgIndex, sub: Subscription, scopes: frozenset[str], subtree_unit_id: int, ev: OutboxEvent) -> bool:
    """Whether ``ev`` is delivered to ``sub`` (scope, subtree, then the subscription's own filters)."""
    if not any(fnmatch.fnmatchcase(ev.type, t) for t in sub.event_types):
        return False
    if not event_scope_allows(scopes, ev.type):
        return False
    unit_id = event_unit_id(index, ev)
    if unit_id is None:
        return False
    try:
        u = index.unit(unit_id)
        if not index.contains(index.unit(subtree_unit_id), u):
            return False
        if "unit" in sub.filters and not index.contains(index.unit(int(sub.filters["unit"])), u):
            return False
    except NotFound:
        return False
    cat = _category(ev)
    if ev.type == "report.filed" and "report_category" in sub.filters and cat not in sub.filters["report_category"]:
        return False
    if ev.type.startswith("task.") and "task_category" in sub.filters and cat not in sub.filters["task_category"]:
        return False
    return True


class Dispatcher:
    def __init__(
        self, db: Database, clock: Clock, index: Callable[[], OrgIndex], *, batch: int = 500, on_new: Any = None
    ) -> None:
        self._db = db
        self._clock = clock
        self._index = index
        self._batch = batch
        self._on_new: Callable[[], None] | None = on_new
        #: Deliveries recorded by this process (a metric and a test hook).
        self.recorded = 0
        self._analyzed_at = 0

    async def run_once(self) -> int:
        """Dispatch one batch of unpublished events; returns how many outbox rows were stamped."""
        now = self._clock.now()
        async with self._db.write() as conn:
            if not await try_transaction_lock(conn, _LOCK_KEY):
                return 0
            events = await read_unpublished(conn, limit=self._batch)
            if not events:
                return 0
            subs = await self._subscriptions(conn)
            rows = self._plan(events, subs, now)
            if rows:
                await conn.execute(insert_ignore(conn, app_deliveries, ["subscription_id", "outbox_id"]), rows)
            await mark_published(conn, [e.id for e in events], now)
        self.recorded += len(rows)
        if rows and self._on_new is not None:
            self._on_new()
        if self.recorded - self._analyzed_at >= ANALYZE_EVERY:
            self._analyzed_at = self.recorded
            async with self._db.write() as conn:
                await refresh_statistics(conn, app_deliveries.name)
        return len(events)

    async def _subscriptions(self, conn: AsyncConnection) -> list[tuple[Subscription, frozenset[str], int]]:
        """Every subscription of an enabled app, with the app's scopes and subtree as they are now.

        Disabled subscriptions still get deliveries recorded (they wait, and are
        sent once the endpoint is enabled again): nothing is lost while it is off.
        """
        q = select(app_subscriptions, apps.c.scopes.label("app_scopes"), apps.c.subtree_unit_id).join(
            apps, apps.c.id == app_subscriptions.c.app_id
        )
        out = []
        for r in await conn.execute(q.where(apps.c.disabled.is_(False))):
            scopes = frozenset(s for s in str(r.app_scopes).split(",") if s)
            out.append((Subscription.from_row(r), scopes, int(r.subtree_unit_id)))
        return out

    def _plan(
        self, events: list[OutboxEvent], subs: list[tuple[Subscription, frozenset[str], int]], now: datetime
    ) -> list[dict[str, Any]]:
        index = self._index()
        rows: list[dict[str, Any]] = []
        for ev in events:
            for sub, scopes, subtree in subs:
                try:
                    hit = matches(index, sub, scopes, subtree, ev)
                except (KeyError, TypeError, ValueError):
                    logger.warning("outbox event %s (%s) has an unexpected payload; not delivered", ev.id, ev.type)
                    hit = False
                if hit:
                    rows.append(
                        {
                            "subscription_id": sub.id,
                            "app_id": sub.app_id,
                            "outbox_id": ev.id,
                            "event_id": ev.event_id,
                            "event_type": ev.type,
                            "aggregate_key": f"{ev.aggregate}:{ev.aggregate_id}",
                            "event_created_at": ev.created_at,
                            "state": "pending",
                            "attempts": 0,
                            "next_attempt_at": now,
                            "created_at": now,
                        }  # fmt: skip
                    )
        return rows


def envelope(event_id: str, event_type: str, created_at: datetime, payload: dict[str, Any]) -> str:
    """The body sent for an event (webhook body, stream frame ``data``), as compact JSON."""
    return json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "timestamp": created_at.isoformat().replace("+00:00", "Z"),
            "data": payload,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


async def prune_published(conn: AsyncConnection, before: datetime, limit: int) -> int:
    """Retention (messaging/retention.py): delete up to ``limit`` outbox rows published before ``before``.

    A row that a pending delivery still reads its payload from stays until that
    delivery is delivered or dead.
    """
    o, d = outbox_events, app_deliveries
    pending = select(d.c.outbox_id).where(d.c.state == "pending")
    ids = select(o.c.id).where(o.c.published_at < before, o.c.id.not_in(pending)).order_by(o.c.id).limit(limit)
    doomed = [int(i) for i in (await conn.execute(ids)).scalars()]
    if not doomed:
        return 0
    return int((await conn.execute(delete(o).where(o.c.id.in_(doomed)))).rowcount)
