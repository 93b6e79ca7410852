"""Which deliveries are due, in which order, and how a worker or a stream connection leases them.

Why one module for webhook workers and stream connections: both take the
same delivery rows under the same rules — due, not leased by anyone whose
lease still holds, of an active subscription of their mode and of an app
that is not disabled, and only when no
earlier delivery of the same aggregate to the same subscription is still
pending (so a receiver that was down gets each report's and task's events in
the order they happened; a dead delivery no longer holds the line). The lease
itself is ``messaging.leases``: the claim is ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL and the single writer on SQLite, so two processes never take the
same row, and a killed process's lease lapses for the next claimer.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, insert, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from apps.model import event_scope_allows
from apps.schema import app_deliveries, app_delivery_attempts, app_subscriptions, apps
from apps.subscriptions import Subscription
from messaging.leases import Leases
from messaging.tasks.schema import outbox_events

__all__ = ["PENDING", "delivery_leases", "drop_uncovered", "due", "load_claimed", "webhook_candidates"]

#: ``state = 'pending'`` with the word in the SQL text, not a bound parameter. Why: the claims are
#: prepared statements (asyncpg), and after a few runs PostgreSQL may plan them once for any
#: parameter values (a generic plan); a plan made for ``state = $1`` cannot use an index whose
#: predicate is ``state = 'pending'`` (migration 0012), and the claim fell back to reading and
#: sorting the whole backlog — at the issue-13 full rate, to the 10 s statement timeout.
PENDING = app_deliveries.c.state == literal_column("'pending'")


def delivery_leases(seconds: float, *, count_attempts: bool = False) -> Leases:
    """Leases on ``app_deliveries``: a pending row, leased to a process (webhooks) or a connection (stream).

    ``count_attempts``: a claim is itself an attempt (stream: each send is one);
    webhook workers count an attempt when its outcome is recorded instead.
    """
    d = app_deliveries
    return Leases(
        d, d.c.leased_by, d.c.leased_until, PENDING, timedelta(seconds=seconds),
        attempts=d.c.attempts if count_attempts else None,
    )  # fmt: skip


def due(now: datetime, mode: str, app_id: int | None = None) -> list[ColumnElement[bool]]:
    """Pending deliveries due by ``now`` of active ``mode`` subscriptions of enabled apps whose aggregate has no
    earlier one pending.

    The lease's own "free" condition is added by the claimer (``Leases.free``).
    """
    d, s = app_deliveries, app_subscriptions
    earlier = aliased(app_deliveries)
    blocked = (
        select(earlier.c.id)
        .where(
            earlier.c.subscription_id == d.c.subscription_id,
            earlier.c.aggregate_key == d.c.aggregate_key,
            earlier.c.outbox_id < d.c.outbox_id,
            earlier.c.state == literal_column("'pending'"),
        )
        .exists()
    )
    # Of an app that is not disabled: an administrator's disabling stops what was already waiting
    # too, not only new deliveries (docs/apps.md); enabling the app lets it go on.
    active = (
        select(s.c.id)
        .join(apps, apps.c.id == s.c.app_id)
        .where(s.c.mode == mode, s.c.status == "active", apps.c.disabled.is_(False))
    )
    if app_id is not None:
        active = active.where(s.c.app_id == app_id)
    out: list[ColumnElement[bool]] = [
        PENDING,
        d.c.next_attempt_at <= now,
        d.c.subscription_id.in_(active),
        ~blocked,
    ]
    if app_id is not None:
        out.append(d.c.app_id == app_id)
    return out


def webhook_candidates(now: datetime, leases: Leases, limit: int, full: list[int]) -> Select[int, int]:
    """A webhook worker's candidates: due, free deliveries in outbox order, none of the ``full`` endpoints'.

    The worker locks them ``FOR UPDATE SKIP LOCKED`` and keeps those its per-endpoint bound allows.
    The plan PostgreSQL picks for it (the partial index ``ix_app_deliveries_pending``) is in
    docs/webhooks.md; ``bench/apps_claim_plan.py`` shows it on a large backlog.
    """
    d = app_deliveries
    q = select(d.c.id, d.c.subscription_id).where(*due(now, "webhook"), leases.free(now))
    if full:
        q = q.where(d.c.subscription_id.not_in(full))
    return q.order_by(d.c.outbox_id).limit(limit)


_SUB_COLUMNS = ("event_types", "filters", "mode", "url", "secret", "previous_secret", "previous_expires_at",
                "status", "disabled_reason", "consecutive_failures")  # fmt: skip


async def load_claimed(conn: AsyncConnection, ids: list[int]) -> list[dict[str, Any]]:
    """Claimed deliveries with their subscription (``sub``) and the event's ``payload``, in outbox order."""
    d, s, o = app_deliveries, app_subscriptions, outbox_events
    rows = await conn.execute(
        select(d, *[s.c[n] for n in _SUB_COLUMNS], o.c.payload)
        .join(s, s.c.id == d.c.subscription_id)
        .join(o, o.c.id == d.c.outbox_id)
        .where(d.c.id.in_(ids))
        .order_by(d.c.outbox_id)
    )
    out = []
    for r in rows:
        m = dict(r._mapping)
        m["sub"] = Subscription.from_row(_SubRow(m))
        out.append(m)
    return out


class _SubRow:
    """The subscription columns of a joined row, under the names ``Subscription.from_row`` reads."""

    def __init__(self, m: dict[str, Any]) -> None:
        self.id = m["subscription_id"]
        self.app_id = m["app_id"]
        for name in _SUB_COLUMNS:
            setattr(self, name, m[name])


async def drop_uncovered(
    conn: AsyncConnection, claimed: list[dict[str, Any]], now: datetime, *, counted: bool
) -> list[dict[str, Any]]:
    """The claimed deliveries the app's scopes still cover; the others are dead-lettered, not sent.

    Why at the claim and not only at dispatch: a delivery recorded before the app's scopes were narrowed
    (its endpoint disabled or down, its stream not connected) would otherwise still go out, though
    narrowing the scopes stops the app's deliveries at once (docs/webhooks.md); a redelivery of an event
    of a type taken away is refused the same way. Dead, not left pending, so it holds back no later event
    of its aggregate; the delivery log says why. ``counted``: the claim already counted the attempt
    (stream), so the log entry carries that number rather than the next one.
    """
    if not claimed:
        return claimed
    app_ids = {int(r["app_id"]) for r in claimed}
    scopes = {
        int(i): frozenset(filter(None, str(sc).split(",")))
        for i, sc in await conn.execute(select(apps.c.id, apps.c.scopes).where(apps.c.id.in_(app_ids)))
    }
    keep: list[dict[str, Any]] = []
    drop: list[dict[str, Any]] = []
    for r in claimed:
        covered = event_scope_allows(scopes.get(int(r["app_id"]), frozenset()), str(r["event_type"]))
        (keep if covered else drop).append(r)
    if drop:
        d = app_deliveries
        ids = [int(r["id"]) for r in drop]
        await conn.execute(
            insert(app_delivery_attempts),
            [
                {
                    "delivery_id": int(r["id"]),
                    "subscription_id": int(r["subscription_id"]),
                    "attempt": int(r["attempts"]) + (0 if counted else 1),
                    "at": now,
                    "status": None,
                    "latency_ms": 0,
                    "error": f"not sent: the app's scopes no longer cover {r['event_type']}"[:200],
                }  # fmt: skip
                for r in drop
            ],
        )
        await conn.execute(update(d).where(d.c.id.in_(ids)).values(state="dead", leased_until=None, leased_by=None))
    return keep
