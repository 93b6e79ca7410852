"""Bulk loading for imports and synthetic data: COPY on PostgreSQL, executemany on SQLite.

Why not ``conn.execute(insert(t), rows)``: building a parameter dict per row
and going through SQLAlchemy's executemany costs more than the database
itself at a million rows. Here rows are plain tuples handed to the driver
inside the caller's transaction: asyncpg's binary COPY (~635 k rows/s on this
machine) or sqlite3's executemany (~1 M rows/s in one transaction). Ids are
allocated by the caller, so sequences are moved past them afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.dialect import is_postgres

logger = logging.getLogger(__name__)

__all__ = ["bulk_insert", "fetch_rows", "lift_statement_timeout", "next_id", "sync_sequence"]

_SQLITE_CHUNK = 50_000


def _sqlite_value(value: Any) -> Any:
    # sqlite3's default datetime adapter is deprecated (a warning, an error under -W error);
    # store the same text SQLAlchemy's SQLite DateTime type writes and reads.
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


async def bulk_insert(
    conn: AsyncConnection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> int:
    """Insert ``rows`` (tuples in ``columns`` order) into ``table`` within the open transaction.

    Returns:
        the number of rows inserted.
    """
    if not rows:
        return 0
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if is_postgres(conn):
        # A bulk load may outlast the service's statement timeout; lift it for this transaction only.
        await driver.execute("SET LOCAL statement_timeout = 0")  # type: ignore[union-attr]
        await driver.copy_records_to_table(table.name, records=rows, columns=list(columns))  # type: ignore[union-attr]
        return len(rows)
    # Table and column names come from our own ``Table`` objects, never from input.
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"  # noqa: S608
    dt_cols = [i for i, v in enumerate(rows[0]) if isinstance(v, datetime)]
    memo: dict[Any, Any] = {}  # bulk rows mostly share one timestamp: convert it once
    for start in range(0, len(rows), _SQLITE_CHUNK):
        chunk: Sequence[tuple[Any, ...]] = rows[start : start + _SQLITE_CHUNK]
        if dt_cols:
            converted = []
            for row in chunk:
                cells = list(row)
                for i in dt_cols:
                    v = cells[i]
                    c = memo.get(v)
                    if c is None:
                        c = memo[v] = _sqlite_value(v)
                    cells[i] = c
                converted.append(cells)
            chunk = converted  # type: ignore[assignment]
        await driver.executemany(sql, chunk)  # type: ignore[union-attr]
    return len(rows)


async def next_id(conn: AsyncConnection, table: Table) -> int:
    """The first id above every existing row (ids of bulk rows are allocated by the caller)."""
    current = (await conn.execute(select(func.max(table.c.id)))).scalar()
    return int(current or 0) + 1


async def sync_sequence(conn: AsyncConnection, table: Table) -> None:
    """Move PostgreSQL's id sequence past explicitly inserted ids (SQLite needs nothing)."""
    if not is_postgres(conn):
        return
    name = table.name  # our own table, never input
    seq = f"pg_get_serial_sequence('{name}', 'id')"
    sql = f"SELECT setval({seq}, (SELECT COALESCE(MAX(id), 0) + 1 FROM {name}), false)"  # noqa: S608
    await conn.execute(text(sql))


async def fetch_rows(conn: AsyncConnection, sql: str) -> list[tuple[Any, ...]]:
    """Run a read-only SQL text on the raw driver and return plain tuples.

    Why raw: loading the in-memory index reads millions of rows; skipping
    SQLAlchemy's result processing makes the load several times faster.
    """
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if is_postgres(conn):
        return list(await driver.fetch(sql))  # type: ignore[union-attr]  # asyncpg Records index like tuples
    return list(await driver.execute_fetchall(sql))  # type: ignore[union-attr]


async def lift_statement_timeout(conn: AsyncConnection) -> None:
    """Let the rest of this transaction run past the service's statement timeout (PostgreSQL).

    Why: imports and index loads read or write millions of rows in single statements,
    which legitimately take longer than the timeout meant for interactive queries.
    """
    if is_postgres(conn):
        await conn.execute(text("SET LOCAL statement_timeout = 0"))
