"""A fresh process's 找岗位 directory on a province in PostgreSQL: the event loop during the build.

    .venv/bin/python -m bench.org.directory_cold                   # Hunan (43): import, measure, drop
    .venv/bin/python -m bench.org.directory_cold --db NAME --build # import into NAME and keep it
    .venv/bin/python -m bench.org.directory_cold --db NAME         # measure on NAME (imported before)

One process, its org index loaded and frozen out of the collector with the
server's GC thresholds, as ``zzd serve`` runs at start-up. A probe task
ticks every 10 ms in the event loop (what ``/healthz`` and every socket of the
process would see); its lateness is the loop's lag. For each way of building
the directory it prints the build's wall time and the probe's max and p99 lag
meanwhile, beside the same run's baselines:

* idle: the probe alone (the floor of the machine);
* all in the loop: the build as before commit 9360d52;
* units in the loop (main before this change): the persons' part in a thread;
* all off the loop (this change): ``DirectoryService`` as a server runs it.

Then the first 找岗位 a user sends: right after start-up with the directory
built lazily (main: the search builds it), arriving while the background build
runs (it waits for it, up to ``DirectoryService.wait``), and after the warm-up;
and the first ``GET /api/v1/org/persons/{id}`` of a cold process (main built the
whole directory for it).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.org.common import PG, drop_db, import_kept_db, run

from kernel.clock import SystemClock
from kernel.db.database import Database
from org_tree.bulk import fetch_columns, lift_statement_timeout
from org_tree.directory import Directory
from org_tree.holder import OrgIndexHolder
from org_tree.jurisdiction import Actor
from org_tree.org_service import OrgService
from zzd.server import GC_THRESHOLDS, freeze_start_up_heap

QUERY = "芙蓉区 网格员"  # a county of Hunan (430102) and a role: every grid worker under it


class Probe:
    """Ticks every ``period`` seconds in the loop and records how late each tick woke."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(self.period)
            self.lags.append(loop.time() - t - self.period)

    def __enter__(self) -> Probe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def summary(self) -> str:
        if not self.lags:
            return "no tick"
        lags = sorted(self.lags)
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        return f"loop lag max {lags[-1] * 1e3:,.0f} ms, p99 {p99 * 1e3:,.0f} ms ({len(lags):,} ticks"


async def probed(label: str, job: Callable[[], Awaitable[Any]]) -> Any:
    with Probe() as probe:
        await asyncio.sleep(0.05)  # the probe is ticking
        t = time.perf_counter()
        out = await job()
        took = time.perf_counter() - t
        await asyncio.sleep(2 * probe.period)  # a tick the job's last stretch held back is counted
    shown = f"{took:6.2f} s " if took >= 1 else f"{took * 1e3:6.1f} ms"
    rate = f", {len(probe.lags) / (took + 0.05 + 2 * probe.period):,.0f}/s)" if probe.lags else ""
    print(f"  {label:<46} {shown}   {probe.summary()}{rate}", flush=True)
    return out


async def rows(db: Database, chunk: int = 100_000) -> tuple[Any, Any]:
    """The two reads ``Directory.load`` makes (before this change: 100 k rows a chunk)."""
    async with db.read() as conn:
        await lift_statement_timeout(conn)
        names = await fetch_columns(
            conn,
            "SELECT p.id, p.name FROM persons p WHERE p.id IN (SELECT person_id FROM assignments WHERE end_at IS NULL)",
            "qO",
            chunk=chunk,
        )
        held = await fetch_columns(
            conn, "SELECT person_id, position_id FROM assignments WHERE end_at IS NULL", "qq", chunk=chunk
        )
    return names, held


async def build(url: str, name: str, province: str) -> None:
    t = time.perf_counter()
    units, persons = await import_kept_db(url, name, provinces={province})  # pools of 3: 551,983 persons in Hunan
    print(f"imported province {province}: {units:,} units, {persons:,} persons in {time.perf_counter() - t:.0f} s")


async def server_like(db: Database) -> OrgIndexHolder:
    """This process's index loaded as ``zzd serve`` does at start-up: then frozen out of the collector."""
    holder = OrgIndexHolder(db)
    t = time.perf_counter()
    index = await holder.load()
    print(
        f"index: {index.unit_count():,} units, {index.position_count():,} positions, loaded in "
        f"{time.perf_counter() - t:.1f} s (version {index.version})",
        flush=True,
    )
    gc.set_threshold(*GC_THRESHOLDS)  # as a server process runs, its start-up heap frozen
    freeze_start_up_heap()
    return holder


async def measure(url: str) -> None:
    db = Database(url, statement_timeout_ms=600_000)
    try:
        holder = await server_like(db)
        index = holder.index
        async with db.read() as conn:
            person = int((await conn.execute(_sql("SELECT min(person_id) FROM assignments"))).scalar_one())
        actor = Actor(person)
        print(f"load {os.getloadavg()[0]:.1f}; the directory's build, 10 ms probe in the loop:")
        await probed("idle (baseline: the probe alone, 3 s)", lambda: asyncio.sleep(3))

        async def all_in_loop() -> Directory:
            names, held = await rows(db)
            d = Directory(index)
            d._build(index.unit_columns(), names, held)
            return d

        async def units_in_loop() -> Directory:
            names, held = await rows(db)
            d = Directory(index)
            d._build_units(index.unit_columns())
            await asyncio.to_thread(d._build_persons, names, held)
            return d

        await probed("all in the loop (before 9360d52)", all_in_loop)
        await probed("units in the loop (main)", units_in_loop)
        fresh = OrgService(db, SystemClock(), holder)
        await probed("all off the loop (this change)", fresh.directory.directory)
        del fresh

        print("the first requests of a fresh process:")
        lazy = OrgService(db, SystemClock(), holder)
        await probed("first search, built lazily by it (as main)", lambda: lazy.search(actor, QUERY))
        warm = OrgService(db, SystemClock(), holder)
        warm.directory.wait = 600.0
        warm.directory.warm()
        await probed("first search at start-up: waits for the warm-up", lambda: warm.search(actor, QUERY))
        await probed("first search after the warm-up (this change)", lambda: warm.search(actor, QUERY))
        cold = OrgService(db, SystemClock(), holder)
        card = await probed("first person lookup, no directory (this change)", lambda: cold.person(actor, person))
        assert cold.directory.loaded is None, "the lookup built the directory"

        async def as_main() -> Any:
            await cold.directory.directory()  # what main's lookup did first
            return await cold.person(actor, person)

        again = await probed("first person lookup, building it (main)", as_main)
        assert card == again, (card, again)
        times = []
        for _ in range(200):
            t = time.perf_counter()
            await cold.person(actor, person)
            times.append(time.perf_counter() - t)
        print(f"  person lookup, 200 more: median {statistics.median(times) * 1e3:.2f} ms")
        print(f"load {os.getloadavg()[0]:.1f}")
    finally:
        await db.dispose()


def _sql(text: str) -> Any:
    from sqlalchemy import text as sql_text

    return sql_text(text)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=None, help="a database imported before (with --build: import into it)")
    ap.add_argument("--build", action="store_true", help="create --db, import the province and keep it")
    ap.add_argument("--province", default="43", help="2-digit division code (default 43, Hunan)")
    args = ap.parse_args()
    name = args.db or f"zzd_bench_dircold_{os.getpid()}"
    url = f"postgresql+asyncpg://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    if args.build or args.db is None:
        await build(url, name, args.province)
    if args.build:
        return
    try:
        await measure(url)
    finally:
        if args.db is None:
            await drop_db(name)


if __name__ == "__main__":
    run(main)
