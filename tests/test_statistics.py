"""Tables that grew are analyzed again, so prepared statements' kept plans follow their size.

Why: a prepared statement keeps the generic plan built on its sixth use until the
table's statistics change; with autovacuum off (as on the machines the bar was run
on) they never did, and the receipt writer kept a sequential scan of
``notice_receipts`` chosen at a few hundred rows (docs/reliability.md, S1).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, text

from kernel.audit import audit_log
from kernel.db.database import Database
from kernel.db.dialect import ANALYZE_BASE, analyze_grown
from tests.waiting import wait_until

pytestmark = pytest.mark.postgres


async def _modified(db: Database) -> int:
    async with db.read() as conn:
        q = text("SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = 'audit_log'")
        return int((await conn.execute(q)).scalar_one())


async def _insert_counted(db: Database, rows: list[dict[str, object]]) -> None:
    """Insert ``rows`` into a just-analyzed ``audit_log`` and wait until the statistics count them."""
    async with db.write() as conn:
        await conn.execute(insert(audit_log), rows)
        await conn.execute(text("SELECT pg_stat_force_next_flush()"))

    async def counted() -> bool:
        return await _modified(db) >= len(rows)

    await wait_until(counted, what="the inserts counted in pg_stat_user_tables")


async def test_a_table_is_analyzed_again_once_it_outgrew_its_size_at_the_last_analyze(own_pg_database: str) -> None:
    async with Database(own_pg_database) as db:
        async with db.write() as conn:
            await conn.execute(text("ANALYZE audit_log"))
        assert await _modified(db) == 0
        now = datetime.now(UTC)
        rows = [{"at": now, "action": "test.row", "outcome": "ok", "detail": "{}"} for _ in range(ANALYZE_BASE + 500)]
        await _insert_counted(db, rows)
        async with db.write() as conn:
            assert await analyze_grown(conn, ["audit_log", "persons"]) == ["audit_log"]
        assert await _modified(db) == 0
        async with db.read() as conn:
            q = text("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'audit_log'")
            assert (await conn.execute(q)).scalar_one()
        async with db.write() as conn:
            assert await analyze_grown(conn, ["audit_log"]) == []  # nothing changed since
        more = rows + rows[:500]  # grown by a third more than its size then, but not by ANALYZE_BASE + that
        await _insert_counted(db, more)
        async with db.write() as conn:
            assert await analyze_grown(conn, ["audit_log"]) == []


async def test_one_table_a_pass_the_most_changed_first(own_pg_database: str) -> None:
    async with Database(own_pg_database) as db:
        async with db.write() as conn:
            for name, rows in (("grown_less", ANALYZE_BASE + 200), ("grown_more", ANALYZE_BASE + 900)):
                await conn.execute(text(f"CREATE TABLE {name} (id int)"))
                await conn.execute(text(f"ANALYZE {name}"))
                await conn.execute(text(f"INSERT INTO {name} SELECT generate_series(1, {rows})"))
            await conn.execute(text("SELECT pg_stat_force_next_flush()"))

        async def both_counted() -> bool:
            async with db.read() as conn:
                q = text(
                    "SELECT count(*) FROM pg_stat_user_tables WHERE relname LIKE 'grown_%' AND n_mod_since_analyze > 0"
                )
                return int((await conn.execute(q)).scalar_one()) == 2

        await wait_until(both_counted, what="both tables' inserts counted")
        names = ["grown_less", "grown_more", "audit_log"]
        async with db.write() as conn:
            assert await analyze_grown(conn, names) == ["grown_more"]
        async with db.write() as conn:
            assert await analyze_grown(conn, names) == ["grown_less"]
        async with db.write() as conn:
            assert await analyze_grown(conn, names) == []
