"""Same-run baselines for the notice fan-out benchmark: the committed receipt rows,
read back and written again with a bare driver into an identical scratch table.

Kept apart from the orchestrator so each file stays one noun.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import asyncpg

#: The receipt columns a fan-out writes (ids and timestamps aside).
RECEIPT_COLS = ["notice_id", "person_id", "position_id", "via_position_id", "reason", "unit_id"]
SCRATCH = "bench_copy_receipts"


async def pg_receipts(dsn: str, notice_id: int, persons: list[int]) -> tuple[list[tuple[Any, ...]], int]:

    conn = await asyncpg.connect(dsn)
    try:
        rows = [
            tuple(r)
            for r in await conn.fetch(
                f"SELECT {', '.join(RECEIPT_COLS)} FROM notice_receipts WHERE notice_id = $1 ORDER BY id", notice_id
            )
        ]
        mine = await conn.fetchval(
            "SELECT count(*) FROM notice_receipts WHERE notice_id = $1 AND person_id = ANY($2::bigint[])",
            notice_id,
            persons,
        )
        return rows, int(mine)
    finally:
        await conn.close()


async def pg_copy_baseline(dsn: str, rows: list[tuple[Any, ...]], runs: int) -> list[float]:

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {SCRATCH}")
        await conn.execute(f"CREATE TABLE {SCRATCH} (LIKE notice_receipts INCLUDING ALL)")
        await conn.execute(
            f"ALTER TABLE {SCRATCH} ADD FOREIGN KEY (notice_id) REFERENCES notices (id) ON DELETE CASCADE"
        )
        out = []
        for _ in range(runs):
            await conn.execute(f"TRUNCATE {SCRATCH}")
            t = time.perf_counter()
            async with conn.transaction():
                await conn.copy_records_to_table(SCRATCH, records=rows, columns=RECEIPT_COLS)
            out.append(time.perf_counter() - t)
        await conn.execute(f"DROP TABLE {SCRATCH}")
        return out
    finally:
        await conn.close()


def sqlite_receipts(path: Path, notice_id: int, persons: list[int]) -> tuple[list[tuple[Any, ...]], int]:
    with contextlib.closing(sqlite3.connect(path)) as con:
        rows = con.execute(
            f"SELECT {', '.join(RECEIPT_COLS)} FROM notice_receipts WHERE notice_id = ? ORDER BY id",  # noqa: S608
            (notice_id,),
        ).fetchall()
        mine = set(persons)
        n = sum(1 for r in rows if r[1] in mine)
        return rows, n


def sqlite_copy_baseline(path: Path, rows: list[tuple[Any, ...]], runs: int) -> list[float]:
    """Bare executemany in one transaction into an identical table (same PRAGMAs as zzd)."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA busy_timeout=30000")
        con.execute("PRAGMA foreign_keys=ON")
        ddl = [
            r[0]
            for r in con.execute(
                "SELECT sql FROM sqlite_master"
                " WHERE tbl_name = 'notice_receipts' AND sql IS NOT NULL ORDER BY type DESC"
            )
        ]
        con.execute(f"DROP TABLE IF EXISTS {SCRATCH}")
        for stmt in ddl:  # table first ('table' > 'index'), then its indexes, renamed
            con.execute(stmt.replace("notice_receipts", SCRATCH))
        sql = f"INSERT INTO {SCRATCH} ({', '.join(RECEIPT_COLS)}) VALUES ({', '.join('?' * len(RECEIPT_COLS))})"
        out = []
        for _ in range(runs):
            con.execute(f"DELETE FROM {SCRATCH}")
            t = time.perf_counter()
            con.execute("BEGIN")
            con.executemany(sql, rows)
            con.execute("COMMIT")
            out.append(time.perf_counter() - t)
        con.execute(f"DROP TABLE {SCRATCH}")
        return out
    finally:
        con.close()
