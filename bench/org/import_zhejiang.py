"""Import Zhejiang (+ ~1.2 M synthetic persons) and compare with a bare bulk load of the same rows.

    .venv/bin/python -m bench.org.import_zhejiang [--backend postgres|sqlite] [--persons 1200000] [--runs 3]

ZZD path: ``import_divisions`` (read CSVs, pinyin, upsert, positions) + ``generate_people``
(names, assignments) + ``OrgIndex.load``. Baseline, same run: the very same rows, already in
memory, written with bare asyncpg ``copy_records_to_table`` (or bare sqlite3 ``executemany``
in one transaction) + the same ``OrgIndex.load``.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import time
from typing import Any

from bench.org.common import ORG_TABLES, ZHEJIANG, run, scratch_db

from kernel.db.database import Database
from org_tree.bulk import fetch_rows
from org_tree.importer import import_divisions
from org_tree.index import OrgIndex
from org_tree.synthetic import generate_people

COPY_ORDER = ["roles", "units", "positions", "persons", "assignments"]


async def zzd_path(db: Database, persons: int) -> tuple[dict[str, float], dict[str, list[Any]]]:
    t0 = time.perf_counter()
    await import_divisions(db, ZHEJIANG)
    t1 = time.perf_counter()
    report = await generate_people(db, persons_target=persons)
    t2 = time.perf_counter()
    index = await OrgIndex.load(db)
    t3 = time.perf_counter()
    assert report.persons == persons, report
    rows: dict[str, list[Any]] = {}
    async with db.read() as conn:
        for table in COPY_ORDER:
            rows[table] = [tuple(r) for r in await fetch_rows(conn, f"SELECT * FROM {table} ORDER BY id")]  # noqa: S608
    counts = {t: len(r) for t, r in rows.items()}
    print(f"  rows: {counts}; index positions {index.position_count():,}, holders {index.stats()['primary_holders']:,}")
    return {"import": t1 - t0, "people": t2 - t1, "index": t3 - t2, "total": t3 - t0}, rows


async def baseline(db: Database, rows: dict[str, list[Any]]) -> dict[str, float]:
    t0 = time.perf_counter()
    if db.is_sqlite:
        path = str(db.url.database)
        await db.dispose()
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("BEGIN")
        for table in COPY_ORDER:
            width = len(rows[table][0])
            con.executemany(f"INSERT INTO {table} VALUES ({','.join('?' * width)})", rows[table])  # noqa: S608
        con.execute("COMMIT")
        con.close()
    else:
        async with db.write() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            for table in COPY_ORDER:
                await raw.copy_records_to_table(table, records=rows[table])  # type: ignore[union-attr]
    t1 = time.perf_counter()
    await OrgIndex.load(db)
    t2 = time.perf_counter()
    return {"copy": t1 - t0, "index": t2 - t1, "total": t2 - t0}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--persons", type=int, default=1_200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ours, bare = [], []
    for i in range(args.runs):
        async with scratch_db(args.backend, "zj") as db:
            t, rows = await zzd_path(db, args.persons)
        async with scratch_db(args.backend, "zjbase") as db2:
            b = await baseline(db2, rows)
        del rows
        ours.append(t)
        bare.append(b)
        print(
            f"run {i + 1}: zzd {t['total']:.1f}s (import {t['import']:.1f} + people {t['people']:.1f} + index "
            f"{t['index']:.1f})  |  bare {b['total']:.1f}s (copy {b['copy']:.1f} + index {b['index']:.1f})  "
            f"ratio {t['total'] / b['total']:.2f}x"
        )
    med = statistics.median(o["total"] for o in ours)
    med_b = statistics.median(b["total"] for b in bare)
    print(
        f"\n{args.backend}: Zhejiang + {args.persons:,} persons — median zzd {med:.1f}s vs bare {med_b:.1f}s "
        f"= {med / med_b:.2f}x (goal ≤ 2x, ≤ 60 s); tables {', '.join(ORG_TABLES)}"
    )


if __name__ == "__main__":
    run(main)
