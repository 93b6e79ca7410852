"""Where SQLite and PostgreSQL differ (docs/style.md: no scattered ``isinstance(…, PostgresEngine)`` checks).

This module holds the generic differences: upserts, row locks, id reservation.
Statements written for one driver (COPY, ``unnest`` arrays, ``json_each``) live
in one storage module per domain, next to the rows they store:
``messaging/events.py`` (person streams), ``messaging/notices/storage.py``,
``messaging/tasks/storage.py``, ``messaging/conversations/storage.py``,
``org_tree/bulk.py``; the engines themselves are set up in ``database.py``.
No other module asks which dialect it runs on (``tests/test_dialect_places.py`` checks).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Table, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.selectable import GenerativeSelect

__all__ = [
    "analyze_grown",
    "chunks",
    "driver_fetch",
    "for_update",
    "insert_ignore",
    "is_postgres",
    "reserve_ids",
    "try_transaction_lock",
    "upsert",
]

S = TypeVar("S", bound=GenerativeSelect)


def is_postgres(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


def insert_ignore(conn: AsyncConnection, table: Table, index_elements: list[str]) -> Insert:
    """``INSERT … ON CONFLICT (cols) DO NOTHING`` for the connection's backend.

    Both backends support it; only the construct's import differs.
    """
    if is_postgres(conn):
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=index_elements)
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=index_elements)


def upsert(
    conn: AsyncConnection, table: Table, values: dict[str, Any], index_elements: list[str], update: list[str]
) -> Insert:
    """``INSERT … ON CONFLICT (cols) DO UPDATE SET`` the ``update`` columns of ``values``."""
    ins = (postgresql.insert if is_postgres(conn) else sqlite.insert)(table).values(**values)
    return ins.on_conflict_do_update(index_elements=index_elements, set_={k: values[k] for k in update})


def for_update(conn: AsyncConnection, query: S, *, skip_locked: bool = False, of: Any = None) -> S:
    """Lock the rows ``query`` reads until the transaction ends (PostgreSQL).

    With ``skip_locked``, rows another transaction holds are skipped instead of
    waited for (claiming work). SQLite's writer is alone (``BEGIN IMMEDIATE``),
    so there is nothing to lock or skip and the query is left as it is.
    """
    if not is_postgres(conn):
        return query
    return query.with_for_update(skip_locked=skip_locked, of=of)


async def try_transaction_lock(conn: AsyncConnection, key: int) -> bool:
    """Take the advisory lock ``key`` until the transaction ends, if no one holds it (PostgreSQL).

    On SQLite the writer transaction is already the only one, so it always has it.
    """
    if not is_postgres(conn):
        return True
    got = (await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})).scalar()
    return bool(got)


async def refresh_statistics(conn: AsyncConnection, table: str) -> None:
    """``ANALYZE`` one table on PostgreSQL (nothing on SQLite), for a writer that knows it grew it fast.

    Why: until autovacuum's first analyze, PostgreSQL plans as if a fresh table
    held a row or two; a claim that should read a few rows in index order then
    sorts the whole backlog (issue 13: 37 ms instead of 1.8 ms per claim at 5,850
    pending, PostgreSQL at 0.75 of a core; autovacuum had not analyzed the
    table 2.5 minutes and 8,000 rows in). ``table`` is a name from the schema, never input.
    """
    if is_postgres(conn):
        await conn.execute(text(f"ANALYZE {table}"))


#: Least rows changed since a table's last analyze, plus this share of the rows it had then,
#: before :func:`analyze_grown` analyzes it again (autovacuum's own: 50 and 10 %). A share of
#: 1 is a table that doubled: plans are refreshed as it grows by orders of magnitude, which is
#: what turns a scan into an index probe, and an S1 run analyzed its big tables every 10 s
#: at 20 %, each time a spike in every latency of the next half second (docs/reliability.md).
ANALYZE_BASE = 1000
ANALYZE_SHARE = 1.0

_GROWN = text("""
SELECT s.relname FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid
WHERE s.schemaname = current_schema() AND s.relname = ANY(:names)
  AND s.n_mod_since_analyze > :base + :share * GREATEST(c.reltuples, 0)
ORDER BY s.n_mod_since_analyze DESC
LIMIT 1
""")


async def analyze_grown(conn: AsyncConnection, tables: Collection[str]) -> list[str]:
    """``ANALYZE`` the one of ``tables`` with the most rows changed, if that is more than
    ``ANALYZE_BASE`` plus ``ANALYZE_SHARE`` of its size at its last analyze; returns its
    name, or nothing (PostgreSQL; nothing on SQLite, which plans without statistics of this kind).

    Why: a prepared statement keeps the generic plan it built on its sixth use, until
    the table's statistics change. On a server whose autovacuum is off, or has not
    reached a new table yet, they never do: the receipt writer's ``UPDATE … FROM
    unnest`` kept the sequential scan it chose at a few hundred receipts, and at the
    S1 load read the whole of ``notice_receipts`` ten times a second, more each second
    as it grew (docs/reliability.md, S1). An ``ANALYZE`` invalidates every session's
    plans of the table, so they are planned again for its present size. Where
    autovacuum runs, it analyzes at 10 % and this finds nothing to do. ``tables``
    are names from the schema, never input.

    One table a call: tables that double together (an S1 run's events, receipts and
    outbox at the same second) were analyzed in one pass of 150-400 ms of the
    database's CPU, and the acks of that second waited for it on a 2-core machine;
    the next table waits for the next pass instead.
    """
    if not is_postgres(conn):
        return []
    params = {"names": sorted(tables), "base": ANALYZE_BASE, "share": ANALYZE_SHARE}
    grown = [str(r[0]) for r in await conn.execute(_GROWN, params)]
    for name in grown:
        await refresh_statistics(conn, name)
    return grown


async def reserve_ids(conn: AsyncConnection, table: str, n: int) -> list[int]:
    """``n`` fresh ids of ``table``: from its own sequence (PostgreSQL) or past its maximum (SQLite, one writer).

    ``table`` is a name from the schema, never input.
    """
    if n == 0:
        return []
    if is_postgres(conn):
        sql = text(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, :n)")  # noqa: S608
        return [int(r[0]) for r in await conn.execute(sql, {"n": n})]
    top = (await conn.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {table}"))).scalar_one()  # noqa: S608
    return list(range(int(top) + 1, int(top) + 1 + n))


async def driver_fetch(conn: AsyncConnection, driver: Any, pg_sql: str, sqlite_sql: str, *args: Any) -> list[Any]:
    """The rows of a statement written for each driver, sent straight to ``driver`` (asyncpg or aiosqlite).

    A list argument goes to PostgreSQL as an array and to SQLite as JSON text (read
    there with ``json_each``): one parameter however many ids, the storage modules'
    convention for bulk look-ups. An aware datetime goes to SQLite as the text
    SQLAlchemy's ``DateTime`` stores there (so a comparison with a stored time is
    a comparison of like texts).
    """
    if is_postgres(conn):
        return list(await driver.fetch(pg_sql, *args))
    params = tuple(_sqlite_param(a) for a in args)
    return list(await driver.execute_fetchall(sqlite_sql, params))


def _sqlite_param(value: Any) -> Any:
    if isinstance(value, list):
        return json.dumps(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a driver statement")
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def chunks(rows: list[Any], size: int) -> list[list[Any]]:
    """Split bulk parameter lists so no statement exceeds the backends' bind limits."""
    return [rows[i : i + size] for i in range(0, len(rows), size)]
