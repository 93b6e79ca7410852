"""A delivery backlog written straight into PostgreSQL: the state the claim queries must stay fast in.

Shared by ``tests/apps/test_claim_plan.py`` and ``bench/apps_claim_plan.py``: 10 webhook and 2 stream
subscriptions, one ``report.filed`` outbox row per report (one report per aggregate, as the bench
files them), one delivery per subscription and report; the oldest ``delivered`` of them delivered
(history), the rest pending and due.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

__all__ = ["SUBSCRIPTIONS", "WEBHOOK_SUBSCRIPTIONS", "fill_backlog"]

SUBSCRIPTIONS = 12
#: The subscriptions' signing secret (the example of docs/webhooks.md).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WEBHOOK_SUBSCRIPTIONS = 10


async def fill_backlog(
    conn: asyncpg.Connection,
    pending: int,
    delivered: int,
    *,
    base_url: str = "http://127.0.0.1:9",
    webhooks: int = WEBHOOK_SUBSCRIPTIONS,
) -> dict[str, int]:
    """Write the backlog into a migrated, empty database; returns the deliveries per state.

    ``webhooks`` of the ``SUBSCRIPTIONS`` are webhook subscriptions, to ``<base_url>/app<i>``.
    """
    now = datetime.now(UTC)
    pid = await conn.fetchval(
        "INSERT INTO persons (name, disabled, created_at) VALUES ('bot', false, $1) RETURNING id", now
    )
    for i in range(SUBSCRIPTIONS):
        app = await conn.fetchval(
            "INSERT INTO apps (name, client_id, owning_unit_id, subtree_unit_id, visibility, scopes, "
            "rate_per_minute, bot_person_id, bot_position_id, disabled, created_at, updated_at) "
            "VALUES ($1, $1, 1, 1, '*', 'events:report.filed', 100, $2, 1, false, $3, $3) RETURNING id",
            f"backlog-app-{i}", pid, now,
        )  # fmt: skip
        mode = "webhook" if i < webhooks else "stream"
        await conn.execute(
            "INSERT INTO app_subscriptions (app_id, event_types, filters, mode, url, secret, status, "
            "consecutive_failures, created_at) VALUES ($1, 'report.filed', '{}', $2, $3, $5, 'active', 0, $4)",
            app, mode, f"{base_url}/app{i}" if mode == "webhook" else None, now, SECRET,
        )  # fmt: skip
    reports = (pending + delivered) // SUBSCRIPTIONS
    await conn.execute(
        "INSERT INTO outbox_events (event_id, type, aggregate, aggregate_id, payload, created_at, published_at) "
        "SELECT gen_random_uuid()::text, 'report.filed', 'report', g, '{\"report_id\": ' || g || '}', "
        "$1::timestamptz, $1::timestamptz FROM generate_series(1, $2) g",
        now, reports,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO app_deliveries (subscription_id, app_id, outbox_id, event_id, event_type, aggregate_key, "
        "event_created_at, state, attempts, next_attempt_at, created_at, delivered_at) "
        "SELECT s.id, s.app_id, o.id, o.event_id, o.type, 'report:' || o.aggregate_id, o.created_at, "
        "CASE WHEN o.id <= $2 THEN 'delivered' ELSE 'pending' END, CASE WHEN o.id <= $2 THEN 1 ELSE 0 END, "
        "$1::timestamptz, $1::timestamptz, CASE WHEN o.id <= $2 THEN $1::timestamptz END "
        "FROM outbox_events o CROSS JOIN app_subscriptions s ORDER BY o.id, s.id",
        now - timedelta(seconds=1), delivered // SUBSCRIPTIONS,
    )  # fmt: skip
    rows = await conn.fetch("SELECT state, count(*) AS n FROM app_deliveries GROUP BY state")
    return {str(r["state"]): int(r["n"]) for r in rows}
