"""Notice rows in the dialect each backend is fastest in: receipt claims for the fan-out, receipt saves.

The notice services decide; this module only reads and writes, through the
raw driver where SQLAlchemy's per-row processing would cost more than the
database (a province-wide notice is ~200,000 receipts). Each statement comes
in a PostgreSQL form (asyncpg: ``ANY``/``unnest`` arrays, row locks in id
order) and a SQLite form (one writer, ``json_each`` lists, no locking read).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from asyncpg.exceptions import UniqueViolationError
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.dialect import chunks, driver_fetch, is_postgres
from messaging.events import driver_in_transaction
from messaging.notices.model import ReceiptState
from messaging.notices.rollup import UnitCounts
from messaging.notices.schema import notice_receipts

logger = logging.getLogger(__name__)

__all__ = [
    "RECEIPT_TIMES",
    "ReceiptStore",
    "claim_receipts",
    "insert_claimed",
    "notice_state",
    "persons_with_receipts",
    "receipt_totals",
    "receipt_store",
    "receipts_of",
    "unclaimed_persons",
    "unit_counts",
    "written_persons",
]

#: The receipt's time columns, each only ever going from NULL to a time.
RECEIPT_TIMES = ("delivered_at", "read_at", "acked_at")
_COLS = RECEIPT_TIMES

# The claim: lock the persons' unclaimed receipts in id order, mark them, and
# return them (with their labels) so exactly those persons get an event.
_PG_CLAIM = """
WITH c AS MATERIALIZED (
    SELECT id FROM notice_receipts
    WHERE notice_id = $1 AND person_id = ANY($2::bigint[]) AND NOT fanned_out
    ORDER BY id FOR UPDATE
)
UPDATE notice_receipts AS r SET fanned_out = true FROM c WHERE r.id = c.id
RETURNING r.id, r.person_id, r.position_id, r.via_position_id, r.reason
"""
_SQLITE_CLAIM = """
UPDATE notice_receipts SET fanned_out = 1
WHERE notice_id = ? AND person_id IN (SELECT value FROM json_each(?)) AND NOT fanned_out
RETURNING id, person_id, position_id, via_position_id, reason
"""
_PG_REMAINING = (
    "SELECT DISTINCT person_id FROM notice_receipts WHERE notice_id = $1 AND NOT fanned_out ORDER BY person_id"
)
_SQLITE_REMAINING = (
    "SELECT DISTINCT person_id FROM notice_receipts WHERE notice_id = ? AND NOT fanned_out ORDER BY person_id"
)

# Connected-first write of a notice whose receipts are still packed: the rows are inserted
# already claimed, and only the rows this transaction inserted are returned (a person's
# rows written meanwhile by another process conflict and are skipped), in (person,
# position) order in both processes so that two such inserts cannot deadlock.
_PG_INSERT_CLAIMED = """
INSERT INTO notice_receipts (notice_id, person_id, position_id, via_position_id, reason, unit_id, fanned_out)
SELECT $1, p, q, v, r, u, true
FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[]) AS t(p, q, v, r, u)
ORDER BY p, q
ON CONFLICT (notice_id, position_id, person_id) DO NOTHING
RETURNING id, person_id, position_id, via_position_id, reason
"""
_SQLITE_INSERT_CLAIMED = """
INSERT INTO notice_receipts (notice_id, person_id, position_id, via_position_id, reason, unit_id, fanned_out)
SELECT ?, json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'),
       json_extract(value, '$[4]'), json_extract(value, '$[5]'), 1
FROM json_each(?) WHERE true
ON CONFLICT (notice_id, position_id, person_id) DO NOTHING
RETURNING id, person_id, position_id, via_position_id, reason
"""
_HOLDING = "SELECT DISTINCT person_id FROM notice_receipts WHERE notice_id = {n} AND person_id {persons}"
_PG_HOLDING = _HOLDING.format(n="$1", persons="= ANY($2::bigint[])")
_SQLITE_HOLDING = _HOLDING.format(n="?", persons="IN (SELECT value FROM json_each(?))")
_RECEIPT_COLUMNS = ["notice_id", "person_id", "position_id", "via_position_id", "reason", "unit_id"]
# Whose receipts among those of the given positions are written: their holders, and
# whoever a handover moved them away from (their rows must not be written a second time
# from the packed audience). By position, which the unique index starts with after the notice.
_PG_WRITTEN = (
    "SELECT person_id, previous_person_id FROM notice_receipts WHERE notice_id = $1 AND position_id = ANY($2::bigint[])"
)
_SQLITE_WRITTEN = (
    "SELECT person_id, previous_person_id FROM notice_receipts"
    " WHERE notice_id = ? AND position_id IN (SELECT value FROM json_each(?))"
)


async def notice_state(conn: AsyncConnection, notice_id: int, *, exclusive: bool) -> tuple[bool, bool] | None:
    """``(recalled, receipts still packed)`` of the notice; None if there is no such notice.

    ``exclusive`` (a transaction that writes packed receipts): the row locked, so no
    other write of them runs meanwhile. Otherwise, while the receipts are packed, a
    shared lock: connected-first writes of several processes run side by side, but not
    beside such a write nor beside a recall; once they are written, no lock.
    """
    mode = "FOR NO KEY UPDATE OF n" if exclusive else "FOR SHARE OF n"
    sql = (
        "SELECT n.recalled_at IS NOT NULL, EXISTS (SELECT 1 FROM notice_pending_receipts p WHERE p.notice_id = n.id)"
        " FROM notices AS n WHERE n.id = {p}"
    )
    driver = await driver_in_transaction(conn)
    if is_postgres(conn):
        if not exclusive:  # once written, nothing to keep apart from: no lock (a sweep would hold off a recall)
            row = await driver.fetchrow(sql.format(p="$1"), notice_id)
            if row is None or not row[1]:
                return None if row is None else (bool(row[0]), False)
        row = await driver.fetchrow(f"{sql.format(p='$1')} {mode}", notice_id)
    else:  # one writer at a time: the write transaction is the lock
        rows = await driver.execute_fetchall(sql.format(p="?"), (notice_id,))
        row = rows[0] if rows else None
    return None if row is None else (bool(row[0]), bool(row[1]))


async def pending_receipts(conn: AsyncConnection, notice_id: int) -> bytes | None:
    """The packed receipts of the notice (``deferred.pack``), None once they are written."""
    driver = await driver_in_transaction(conn)
    if is_postgres(conn):
        data = await driver.fetchval("SELECT data FROM notice_pending_receipts WHERE notice_id = $1", notice_id)
    else:
        rows = await driver.execute_fetchall(
            "SELECT data FROM notice_pending_receipts WHERE notice_id = ?", (notice_id,)
        )
        data = rows[0][0] if rows else None
    return None if data is None else bytes(data)


async def insert_claimed(conn: AsyncConnection, notice_id: int, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Insert receipt ``rows`` (``deferred.PackedReceipts.rows``) as claimed, skipping any already written.

    Returns ``(id, person, position, via, reason)`` of those this transaction
    inserted (on PostgreSQL ``id`` is the row's number in the packed receipts: it
    orders a person's rows, which is all it is used for). Leave out the persons
    with receipts already (:func:`persons_with_receipts`): on PostgreSQL the rows go
    in with one COPY, ~2× faster than an ``INSERT … ON CONFLICT`` that checks
    each; only if another process wrote one of them meanwhile (a person connected
    to both) does that COPY fail, and the rows then go in through the checking insert.
    """
    if not rows:
        return []
    driver = await driver_in_transaction(conn)
    rows = sorted(rows, key=lambda r: (r[1], r[2]))
    if not is_postgres(conn):
        got = await driver.execute_fetchall(_SQLITE_INSERT_CLAIMED, (notice_id, json.dumps([r[:6] for r in rows])))
        return [tuple(r) for r in got]
    try:
        async with conn.begin_nested():
            await driver.copy_records_to_table(
                "notice_receipts", records=[r[:7] for r in rows], columns=[*_RECEIPT_COLUMNS, "fanned_out"]
            )
        return [(r[7], r[1], r[2], r[3], r[4]) for r in rows]
    except UniqueViolationError:
        cols = [[r[i] for r in rows] for i in range(1, 6)]
        return [tuple(r) for r in await driver.fetch(_PG_INSERT_CLAIMED, notice_id, *cols)]


async def persons_with_receipts(conn: AsyncConnection, notice_id: int, persons: list[int]) -> set[int]:
    """Those of ``persons`` who hold a receipt of the notice."""
    driver = await driver_in_transaction(conn)
    return {int(r[0]) for r in await driver_fetch(conn, driver, _PG_HOLDING, _SQLITE_HOLDING, notice_id, persons)}


async def written_persons(conn: AsyncConnection, notice_id: int, positions: list[int]) -> set[int]:
    """Persons whose receipts of the notice through any of ``positions`` are written, or were moved from them."""
    driver = await driver_in_transaction(conn)
    rows = await driver_fetch(conn, driver, _PG_WRITTEN, _SQLITE_WRITTEN, notice_id, positions)
    return {int(p) for r in rows for p in r if p is not None}


async def unclaimed_persons(conn: AsyncConnection, notice_id: int) -> list[int]:
    """The persons still owed the notice's ``notice.new`` (receipts not yet fanned out), ascending."""
    driver = (await conn.get_raw_connection()).driver_connection
    return [int(r[0]) for r in await driver_fetch(conn, driver, _PG_REMAINING, _SQLITE_REMAINING, notice_id)]


async def claim_receipts(conn: AsyncConnection, notice_id: int, persons: list[int]) -> list[tuple[Any, ...]]:
    """``(id, person, position, via, reason)`` of the receipts claimed, in the caller's transaction."""
    driver = await driver_in_transaction(conn)
    out: list[tuple[Any, ...]] = []
    for part in chunks(persons, 100_000):
        rows = await driver_fetch(conn, driver, _PG_CLAIM, _SQLITE_CLAIM, notice_id, part)
        out.extend(tuple(r) for r in rows)
    return out


class ReceiptStore(Protocol):
    """Reads a batch's receipts locked for update and saves the changed ones (inside the caller's transaction)."""

    async def lock(self, notice_id: int, persons: list[int]) -> list[dict[str, Any]]:
        """The receipts of ``persons`` for the notice, in id order, each with ``recalled`` (the notice's)."""
        ...

    async def save(self, rows: list[dict[str, Any]]) -> None:
        """Write the time columns and reply of ``rows`` back."""
        ...


def receipt_store(conn: AsyncConnection, driver: Any) -> ReceiptStore:
    """The receipt store of the connection's backend (``driver`` from ``driver_in_transaction``)."""
    return _PgStore(driver) if is_postgres(conn) else _SqliteStore(driver)


_SELECT = (
    "SELECT r.id, r.person_id, r.position_id, r.via_position_id, r.reply, r.delivered_at, r.read_at, r.acked_at,"
    " n.recalled_at IS NOT NULL FROM notice_receipts AS r JOIN notices AS n ON n.id = r.notice_id"
)
_FIELDS = ("id", "person_id", "position_id", "via_position_id", "reply", *_COLS, "recalled")


class _PgStore:
    """asyncpg statements: ``person_id = ANY($2)`` is one index scan (a row-value IN list
    of pairs was the bottleneck), and the changed rows go back in one set-based UPDATE."""

    def __init__(self, driver: Any) -> None:
        self._d = driver

    async def lock(self, notice_id: int, persons: list[int]) -> list[dict[str, Any]]:
        rows = await self._d.fetch(
            f"{_SELECT} WHERE r.notice_id = $1 AND r.person_id = ANY($2::bigint[]) ORDER BY r.id FOR UPDATE OF r",  # noqa: S608
            notice_id,
            persons,
        )
        return [dict(zip(_FIELDS, r, strict=True)) for r in rows]

    async def save(self, rows: list[dict[str, Any]]) -> None:
        await self._d.execute(
            "UPDATE notice_receipts AS r SET delivered_at = u.d, read_at = u.rd, acked_at = u.a, reply = u.rep"
            " FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[], $5::text[])"
            " AS u(id, d, rd, a, rep) WHERE r.id = u.id",
            [m["id"] for m in rows],
            [m["delivered_at"] for m in rows],
            [m["read_at"] for m in rows],
            [m["acked_at"] for m in rows],
            [m["reply"] for m in rows],
        )


def _from_sqlite(value: Any) -> datetime | None:
    if value is None:
        return None
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _to_sqlite(value: datetime | None) -> str | None:
    # The text SQLAlchemy's SQLite DateTime writes (see org_tree.bulk), so both paths read alike.
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class _SqliteStore:
    """Plain sqlite3 statements through aiosqlite: SQLAlchemy's per-row parameter and
    result processing cost more than SQLite itself here (one writer, so no locking read)."""

    def __init__(self, driver: Any) -> None:
        self._d = driver

    async def lock(self, notice_id: int, persons: list[int]) -> list[dict[str, Any]]:
        rows = await self._d.execute_fetchall(
            f"{_SELECT} WHERE r.notice_id = ? AND r.person_id IN (SELECT value FROM json_each(?)) ORDER BY r.id",  # noqa: S608
            (notice_id, json.dumps(persons)),
        )
        out = []
        for r in rows:
            m = dict(zip(_FIELDS, r, strict=True))
            for c in _COLS:
                m[c] = _from_sqlite(m[c])
            out.append(m)
        return out

    async def save(self, rows: list[dict[str, Any]]) -> None:
        await self._d.executemany(
            "UPDATE notice_receipts SET delivered_at = ?, read_at = ?, acked_at = ?, reply = ? WHERE id = ?",
            [(*(_to_sqlite(m[c]) for c in _COLS), m["reply"], m["id"]) for m in rows],
        )


# ------------------------------------------------------------ receipt counts
async def receipts_of(conn: AsyncConnection, notice_id: int, person_id: int) -> list[ReceiptState]:
    """One recipient's receipts of a notice, by position (what ``get`` shows them)."""
    r = notice_receipts
    rows = await conn.execute(
        select(r.c.position_id, r.c.via_position_id, r.c.delivered_at, r.c.read_at, r.c.acked_at, r.c.reply)
        .where(r.c.notice_id == notice_id, r.c.person_id == person_id)
        .order_by(r.c.position_id)
    )
    return [ReceiptState(notice_id, int(p), int(v), d, rd, a, rep) for p, v, d, rd, a, rep in rows]


async def unit_counts(conn: AsyncConnection, notice_id: int) -> list[UnitCounts]:
    """Receipts, delivered, read and acknowledged per unit: the rows the progress roll-up sums up the tree."""
    r = notice_receipts
    rows = await conn.execute(
        select(
            r.c.unit_id, func.count(), func.count(r.c.delivered_at), func.count(r.c.read_at), func.count(r.c.acked_at)
        )
        .where(r.c.notice_id == notice_id)
        .group_by(r.c.unit_id)
    )
    return [(int(u), int(n), int(d), int(rd), int(a)) for u, n, d, rd, a in rows]


async def receipt_totals(conn: AsyncConnection, notice_ids: Sequence[int]) -> dict[int, tuple[int, int, int, int]]:
    """Per notice: receipts, delivered, read, acknowledged (one grouped read for a whole progress flush)."""
    r = notice_receipts
    rows = await conn.execute(
        select(
            r.c.notice_id, func.count(), func.count(r.c.delivered_at), func.count(r.c.read_at), func.count(r.c.acked_at)
        )
        .where(and_(r.c.notice_id.in_(list(notice_ids))))
        .group_by(r.c.notice_id)
    )
    return {int(n): (int(c), int(d), int(rd), int(a)) for n, c, d, rd, a in rows}
