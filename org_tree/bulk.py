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
from array import array
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.dialect import is_postgres

logger = logging.getLogger(__name__)

__all__ = [
    "SMALL_ROWS",
    "Columns",
    "bulk_insert",
    "fetch_columns",
    "fetch_rows",
    "lift_statement_timeout",
    "next_id",
    "sync_sequence",
]

_SQLITE_CHUNK = 50_000


#: Up to this many rows go to PostgreSQL as one ``INSERT … SELECT FROM unnest`` instead of COPY.
#: Why: COPY is the fastest way to load thousands of rows, but for a few it is three or four round
#: trips (the statement timeout lifted, the table's column types read, the data, the end), and a
#: notice to 50 recipients or one escalation batch pays them per transaction.
SMALL_ROWS = 1_000
_UNNEST_SQL: dict[tuple[str, tuple[str, ...]], str] = {}


def _unnest_insert(conn: AsyncConnection, table: Table, columns: tuple[str, ...]) -> str:
    """The fixed statement inserting one array per column (types from our ``Table``, never from input)."""
    key = (table.name, columns)
    sql = _UNNEST_SQL.get(key)
    if sql is None:
        types = [table.c[c].type.compile(dialect=conn.dialect) for c in columns]
        arrays = ", ".join(f"${i + 1}::{ty}[]" for i, ty in enumerate(types))
        sql = _UNNEST_SQL[key] = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"  # noqa: S608
    return sql


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
    if is_postgres(conn) and len(rows) <= SMALL_ROWS:
        sql = _unnest_insert(conn, table, tuple(columns))
        await driver.execute(sql, *(list(col) for col in zip(*rows, strict=True)))  # type: ignore[union-attr]
        return len(rows)
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


class Columns(Sequence[tuple[Any, ...]]):
    """Rows seen through compact columns: ``cols[i][j]`` is row ``j``'s value ``i`` (tuples made on demand)."""

    def __init__(self, cols: list[Any]) -> None:
        self.cols = cols

    def __len__(self) -> int:
        return len(self.cols[0]) if self.cols else 0

    def __getitem__(self, j: Any) -> Any:
        if isinstance(j, slice):
            return [tuple(c[i] for c in self.cols) for i in range(*j.indices(len(self)))]
        return tuple(c[j] for c in self.cols)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return zip(*self.cols, strict=True)


async def fetch_columns(conn: AsyncConnection, sql: str, types: str, *, chunk: int = 100_000) -> Columns:
    """Stream a read-only SQL text into one column per selected value, ``chunk`` rows at a time.

    Why (issue 17): the index load read every unit, position and holder row at
    once — about 2.5 GiB of row objects at national scale, on top of the index
    being built and, for a rebuild, the live one beside it. Streamed, only one
    chunk of rows lives at a time; the columns hold 8 bytes per integer.

    ``types``: one letter per value — an ``array`` typecode (``q``, ``i``, ``b``)
    for integers (never NULL: ``COALESCE`` them), ``O`` for a list of objects,
    ``S`` for a list of few distinct values shared between rows (a status).
    """
    cols: list[Any] = [[] if t in "OS" else array(t) for t in types]
    shared: dict[Any, Any] = {}

    def take(rows: Sequence[Any]) -> None:
        for i, (col, t) in enumerate(zip(cols, types, strict=True)):
            if t == "S":
                col.extend(shared.setdefault(r[i], r[i]) for r in rows)
            else:
                col.extend(r[i] for r in rows)

    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if is_postgres(conn):  # a server-side cursor: the read transaction is open
        cursor = await driver.cursor(sql)
        while rows := await cursor.fetch(chunk):
            take(rows)
    else:
        cursor = await driver.execute(sql)
        while rows := await cursor.fetchmany(chunk):
            take(rows)
        await cursor.close()
    return Columns(cols)


async def lift_statement_timeout(conn: AsyncConnection) -> None:
    """Let the rest of this transaction run past the service's statement timeout (PostgreSQL).

    Why: imports and index loads read or write millions of rows in single statements,
    which legitimately take longer than the timeout meant for interactive queries.
    """
    if is_postgres(conn):
        await conn.execute(text("SET LOCAL statement_timeout = 0"))
