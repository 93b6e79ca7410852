"""The webhook and stream claim queries on a large delivery backlog: ``EXPLAIN ANALYZE`` of each.

Run:  .venv/bin/python bench/apps_claim_plan.py [--pending 50000] [--delivered 120000]

Why: at the issue-13 full rate the webhook claim (``apps.claims.webhook_candidates``,
locked ``FOR UPDATE SKIP LOCKED``) hit the 10 s statement timeout once tens of
thousands of deliveries were pending. This builds that state in a fresh
PostgreSQL database — 10 webhook and 2 stream subscriptions, one delivery per
subscription and report, ``--delivered`` of them already delivered (history)
and ``--pending`` pending, one report per aggregate like the bench's — and
prints the plans and times of the real queries, first on the statistics as the
inserts left them (what a server sees while the backlog grows faster than
autovacuum analyses), then after ``ANALYZE``. The transactions are rolled back.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime

from common import ROOT, migrate, postgres_database, zzd_env

sys.path.insert(0, str(ROOT))


async def _fill(url: str, pending: int, delivered: int) -> None:
    import asyncpg
    from tests.apps.backlog import fill_backlog

    from common import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        counts = await fill_backlog(conn, pending, delivered)
        print("deliveries:", ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
    finally:
        await conn.close()


async def _explain(url: str, label: str) -> None:
    from sqlalchemy import text

    from apps.claims import delivery_leases, due, webhook_candidates
    from apps.schema import app_deliveries
    from kernel.db.database import Database

    db = Database(url)
    d = app_deliveries
    now = datetime.now(UTC)
    hooks = delivery_leases(60.0)
    stream = delivery_leases(60.0, count_attempts=True)
    queries = {
        "webhook claim (room 32, none full)": webhook_candidates(now, hooks, 128, []),
        "webhook claim (room 32, 3 endpoints full)": webhook_candidates(now, hooks, 128, [1, 2, 3]),
        "stream claim (one app)": (
            d.select()
            .with_only_columns(d.c.id)
            .where(stream.unfinished, stream.free(now), *due(now, "stream", 11), d.c.attempts < 12)
            .order_by(d.c.outbox_id)
            .limit(100)
        ),
    }
    try:
        for name, q in queries.items():
            sql = str(q.with_for_update(skip_locked=True, of=d).compile(
                dialect=db.writer.dialect, compile_kwargs={"literal_binds": True}))  # fmt: skip
            async with db.writer.connect() as conn:
                t0 = time.perf_counter()
                plan = [r[0] for r in await conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql))]
                took = (time.perf_counter() - t0) * 1000
                await conn.rollback()
            print(f"\n--- {label}: {name}: {took:.1f} ms\n" + "\n".join(plan))
    finally:
        await db.dispose()


async def _analyze(url: str) -> None:
    import asyncpg

    from common import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("ANALYZE app_deliveries; ANALYZE app_subscriptions")
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--pending", type=int, default=50_000)
    ap.add_argument("--delivered", type=int, default=120_000)
    args = ap.parse_args()
    with postgres_database() as url:
        migrate(zzd_env(url))
        asyncio.run(_fill(url, args.pending, args.delivered))
        asyncio.run(_explain(url, "statistics as the inserts left them"))
        asyncio.run(_analyze(url))
        asyncio.run(_explain(url, "after ANALYZE"))


if __name__ == "__main__":
    main()
