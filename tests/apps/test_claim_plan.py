"""The webhook and stream claims on a large backlog walk the pending index in order and stop at their limit.

Why a plan test: at the issue-13 full rate the webhook claim read, checked and
sorted every pending delivery on each call and hit the 10 s statement timeout
at a backlog of tens of thousands (docs/webhooks.md, "The claim query"). With
the partial indexes of migration 0012 a claim reads about ``limit`` rows; if a
change to the query or the indexes brings the full sort back, this fails.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Select

from apps.claims import delivery_leases, due, webhook_candidates
from apps.schema import app_deliveries
from kernel.db.database import Database
from kernel.db.dialect import refresh_statistics
from tests.apps.backlog import WEBHOOK_SUBSCRIPTIONS, fill_backlog
from tests.services import PG_HOST, PG_PORT, PG_USER, pg_url

pytestmark = pytest.mark.postgres

PENDING, DELIVERED = 24_000, 24_000


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    out = [plan]
    for child in plan.get("Plans", []):
        out += _nodes(child)
    return out


def _literal(v: object) -> str:
    """A parameter value as SQL text (EXECUTE takes no bound parameters)."""
    if isinstance(v, datetime):
        return f"'{v.isoformat()}'"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return str(int(v))  # type: ignore[call-overload]


async def _explain(db: Database, q: Select[Any]) -> tuple[dict[str, Any], list[int]]:
    """The executed plan of ``q`` locked as the claimers lock it, and the ids it returned (rolled back).

    Planned as a **generic** plan (``plan_cache_mode = force_generic_plan``) of the statement with its
    bound parameters, as PostgreSQL may plan the claimers' prepared statements after a few runs: a
    value the plan needs to use the partial index must be in the SQL text, not a parameter.
    """
    d = app_deliveries
    locked = q.with_for_update(skip_locked=True, of=d)
    compiled = locked.compile(dialect=db.writer.dialect, compile_kwargs={"render_postcompile": True})
    params = [compiled.params[name] for name in compiled.positiontup or []]
    async with db.writer.connect() as sa_conn:
        raw_conn = await sa_conn.get_raw_connection()
        conn: asyncpg.Connection = raw_conn.driver_connection  # type: ignore[assignment]
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute("PREPARE claim AS " + compiled.string)
        args = ", ".join(_literal(v) for v in params)
        tx = conn.transaction()
        await tx.start()
        try:
            raw = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim({args})")
            ids = [int(r[0]) for r in await conn.fetch(compiled.string, *params)]
        finally:
            await tx.rollback()
            await conn.execute("DEALLOCATE claim")
            await conn.execute("RESET plan_cache_mode")
    doc = raw if isinstance(raw, list) else json.loads(str(raw))
    return doc[0]["Plan"], ids


async def test_claims_read_about_their_limit_not_the_backlog(own_pg_database: str) -> None:
    name = own_pg_database.rsplit("/", 1)[1]
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=name)
    try:
        counts = await fill_backlog(conn, PENDING, DELIVERED)
        await conn.execute("ANALYZE app_deliveries; ANALYZE app_subscriptions")
    finally:
        await conn.close()
    assert counts == {"pending": PENDING, "delivered": DELIVERED}
    db = Database(pg_url(name))
    now = datetime.now(UTC)
    stream = delivery_leases(60.0, count_attempts=True)
    stream_app = WEBHOOK_SUBSCRIPTIONS + 1  # the first stream app (ids follow insertion order)
    try:
        claims = {
            "webhook": webhook_candidates(now, delivery_leases(60.0), 128, []),
            "webhook, two endpoints full": webhook_candidates(now, delivery_leases(60.0), 128, [1, 2]),
            "stream": select_stream(now, stream, stream_app),
        }
        first_pending = DELIVERED // 12 + 1
        for label, q in claims.items():
            plan, ids = await _explain(db, q)
            nodes = _nodes(plan)
            kinds = [n["Node Type"] for n in nodes]
            assert "Sort" not in kinds, f"{label}: the claim sorts the backlog again: {kinds}"
            used = {n.get("Index Name") for n in nodes}
            assert "ix_app_deliveries_pending" in used, f"{label}: {used}"
            read = max(n["Actual Rows"] for n in nodes if n.get("Relation Name") == "app_deliveries")
            assert read <= 1_000, f"{label}: read {read} delivery rows for a claim of {plan['Plan Rows']}"
            # and they are the oldest pending ones, in outbox order
            got = await _outbox_ids(db, ids)
            assert got == sorted(got) and got[0] == first_pending, (label, got[:5])
    finally:
        await db.dispose()


def select_stream(now: datetime, leases: Any, app_id: int) -> Select[Any]:
    """The stream claim's candidates, as ``Leases.claim_due`` builds them for ``StreamDeliveries.claim``."""
    d = app_deliveries
    return (
        d.select()
        .with_only_columns(d.c.id)
        .where(leases.unfinished, leases.free(now), *due(now, "stream", app_id), d.c.attempts < 12)
        .order_by(d.c.outbox_id)
        .limit(100)
    )


async def _outbox_ids(db: Database, ids: list[int]) -> list[int]:
    d = app_deliveries
    async with db.writer.connect() as conn:
        rows = await conn.execute(d.select().with_only_columns(d.c.id, d.c.outbox_id).where(d.c.id.in_(ids)))
        by_id = {int(r[0]): int(r[1]) for r in rows}
    return [by_id[i] for i in ids]


async def test_a_fresh_backlog_sorts_until_the_dispatcher_refreshes_the_statistics(own_pg_database: str) -> None:
    """Without statistics PostgreSQL plans a fresh table as nearly empty, and the claim sorts the whole backlog.

    That is what a new deployment (and every benchmark run) meets while autovacuum has not yet looked at
    ``app_deliveries`` (issue 13: 37 ms instead of 1.8 ms per claim at 5,850 pending, PostgreSQL at 0.75 of a
    core). Autovacuum is off for the table here, so the statistics are exactly those ``refresh_statistics``
    (which the dispatcher runs every ``ANALYZE_EVERY`` recorded deliveries) gives.
    """
    name = own_pg_database.rsplit("/", 1)[1]
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=name)
    try:
        await conn.execute("ALTER TABLE app_deliveries SET (autovacuum_enabled = false)")
        await fill_backlog(conn, PENDING // 4, DELIVERED // 4)
    finally:
        await conn.close()
    db = Database(pg_url(name))
    try:
        q = webhook_candidates(datetime.now(UTC), delivery_leases(60.0), 128, [1])
        before, _ = await _explain(db, q)
        assert "Sort" in [n["Node Type"] for n in _nodes(before)]  # the failure mode, so this test can fail
        async with db.write() as c:
            await refresh_statistics(c, app_deliveries.name)
        after, _ = await _explain(db, q)
        kinds = [n["Node Type"] for n in _nodes(after)]
        assert "Sort" not in kinds, kinds
        assert "ix_app_deliveries_pending" in {n.get("Index Name") for n in _nodes(after)}
    finally:
        await db.dispose()
