"""An org index rebuild while serving, on a province in PostgreSQL: the event loop during it.

    .venv/bin/python -m bench.org.index_rebuild                # Hunan (43): import, measure, drop
    .venv/bin/python -m bench.org.index_rebuild --db NAME      # on NAME (bench.org.directory_cold --build)

One process, its index loaded and frozen out of the collector with the server's
GC thresholds, as ``zzd serve`` runs. The 10 ms loop-lag probe of
``bench.org.directory_cold`` ticks meanwhile. For each way of rebuilding it
prints the wall time and the probe's max and p99 lag, beside the same run's
baseline (the probe alone):

* all in the loop (main before this change): reads of 100 k rows a chunk, the build in the loop;
* ``OrgIndexHolder.load`` (this change): 10 k-row reads, the build in a thread, caught up, swapped.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from bench.org.common import PG, drop_db, run
from bench.org.directory_cold import build, probed, server_like

from kernel.db.database import Database
from org_tree.index import OrgIndex


async def measure(url: str, runs: int) -> None:
    db = Database(url, statement_timeout_ms=600_000)
    try:
        holder = await server_like(db)
        print(f"load {os.getloadavg()[0]:.1f}; an index rebuild while serving, 10 ms probe in the loop:")
        await probed("idle (baseline: the probe alone, 3 s)", lambda: asyncio.sleep(3))

        async def in_loop() -> OrgIndex:
            rows = await OrgIndex.fetch(db, chunk=100_000)
            return OrgIndex.build(*rows)

        for _ in range(runs):
            await probed("all in the loop (main before this change)", in_loop)
            await probed("OrgIndexHolder.load, off the loop (this change)", holder.load)
        print(f"load {os.getloadavg()[0]:.1f}")
    finally:
        await db.dispose()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=None, help="a database imported before (bench.org.directory_cold --build)")
    ap.add_argument("--province", default="43", help="2-digit division code (default 43, Hunan)")
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    name = args.db or f"zzd_bench_idxrebuild_{os.getpid()}"
    url = f"postgresql+asyncpg://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    if args.db is None:
        await build(url, name, args.province)
    try:
        await measure(url, args.runs)
    finally:
        if args.db is None:
            await drop_db(name)


if __name__ == "__main__":
    run(main)
