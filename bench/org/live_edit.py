"""Structural edits and handovers reaching another process, and 找岗位 at national scale (issues 17, 18).

    .venv/bin/python -m bench.org.live_edit --db zzd_bench_orglive_china [--build] [--changes 50]

``--build`` first imports the national tree (``ZZD_CHINA_DIVISIONS``, 3 grids per village) with
synthetic holders into that PostgreSQL database (about 15 minutes here); without it the database
must hold one already. The database is edited (moves go back and forth, positions are added).

Process A (this one) makes the edits through ``OrgService`` as an administrator would; process
B (``bench.org.live_worker``) keeps its index and directory live exactly as a server does: a
Redis wake-up per org commit (``zzd.org_wake``, prefix ``zzdbench-…``), the 0.5 s poll as the
fallback (``--no-wake``: the poll alone). Printed, all from the same run:

* per kind — a township moved between two counties, a county moved between two cities, a
  position created, a role renamed — p50/p99/max of the time from the edit's call in A to the
  version being applied in B, beside B's forced full rebuild (what every structural edit
  cost before);
* handovers to new persons: time from the call in A to B's directory finding the new holder
  by name (p99 over ``--handovers``);
* a county selector's p50/p99 in B while quiet and during a burst of 100 back-to-back changes,
  and B's peak RSS during the burst and during the forced rebuild;
* index load, directory load and memory of each; the search benchmark (``bench.org.search_cases``)
  beside its bare dict/``str.find`` baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import secrets
import statistics
import time
from typing import Any

from bench.org.common import PG, import_kept_db
from bench.org.live_worker import worker

from kernel.clock import SystemClock
from kernel.db.base import metadata
from kernel.db.database import Database
from messaging.broker.redis import RedisBroker
from org_tree.holder import OrgIndexHolder
from org_tree.jurisdiction import SYSTEM
from org_tree.org_service import OrgService
from org_tree.people import PersonDirectory
from zzd.org_wake import OrgWake


def _pct(xs: list[float]) -> str:
    qs = statistics.quantiles(xs, n=100, method="inclusive") if len(xs) > 1 else [xs[0]] * 99

    def ms(x: float) -> str:  # sub-millisecond selector times keep their decimals
        return f"{x * 1e3:,.2f}" if x < 0.01 else f"{x * 1e3:,.0f}"

    return f"p50 {ms(qs[49])} ms, p99 {ms(qs[98])} ms, max {ms(max(xs))} ms (n={len(xs)})"


class Other:
    """The driver's side of the pipe to process B."""

    def __init__(self, url: str, interval: float, redis: tuple[str, str] | None) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, args=(child, url, interval, redis), daemon=True)
        self.proc.start()

    async def ask(self, msg: dict[str, Any]) -> Any:
        self.conn.send(msg)
        return await asyncio.get_running_loop().run_in_executor(None, self.conn.recv)

    async def until_version(self, v: int) -> float:
        while True:
            seen = await self.ask({"cmd": "versions"})
            hit = [t for ver, t in seen.items() if ver >= v]
            if hit:
                return min(hit)
            await asyncio.sleep(0.01)


async def _build(url: str, name: str) -> None:
    """Create the database with the schema, import the national tree, generate holders (~15 min)."""
    await import_kept_db(url, name, pool_size=1)


def _cases(org: OrgService) -> dict[str, Any]:
    idx = org.index
    best = None
    for c in idx.units():
        if idx.unit_level(c) != 3:
            continue
        towns = idx.children(c)
        for t in towns:
            n = len(idx.children(t))
            if 18 <= n <= 22 and len(towns) >= 2:
                best = (c, t)
                break
        if best:
            break
    assert best is not None, "no township with about 20 villages"
    county, town = best
    city = idx.parent(county)
    other_county = next(c for c in idx.children(city) if c != county)
    cities: list[int] = []
    for prov in (u for u in idx.units() if idx.parent(u) < 0):
        cities = [c for c in idx.children(prov) if len(idx.children(c)) >= 2]
        if len(cities) >= 2:
            break
    moving_county = idx.children(cities[0])[0]
    return {
        "town": idx.unit_id(town), "counties": (idx.unit_id(county), idx.unit_id(other_county)),
        "county": idx.unit_id(moving_county), "cities": (idx.unit_id(cities[0]), idx.unit_id(cities[1])),
        "villages": [idx.unit_id(v) for v in idx.children(town)],
        "selector": f"专职网格员@{idx.unit_code(county)}/**",
        "size": len(list(idx.subtree(town))),
    }  # fmt: skip


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="zzd_bench_orglive_china")
    ap.add_argument("--build", action="store_true")
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--handovers", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--redis", default=os.environ.get("ZZD_BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--no-wake", action="store_true", help="the poll alone (no Redis wake-up): the old path")
    args = ap.parse_args()
    url = f"postgresql+asyncpg://{PG['user']}@{PG['host']}:{PG['port']}/{args.db}"
    if args.build:
        await _build(url, args.db)
    redis = None if args.no_wake else (args.redis, f"zzdbench-{secrets.token_hex(4)}")
    other = Other(url, args.interval, redis)
    db = Database(url, statement_timeout_ms=3_600_000)
    async with db.write() as c:  # tables the edits write besides the tree (a database built by an older bench)
        await c.run_sync(metadata.create_all)
    holder = OrgIndexHolder(db)
    org = OrgService(db, SystemClock(), holder)
    await holder.load()
    broker = RedisBroker(redis[0], prefix=redis[1]) if redis else None
    wake = OrgWake(broker, holder) if broker else None
    if broker is not None:
        await broker.start()
    print(f"changes reach B by {'the 0.5 s poll alone' if args.no_wake else 'a Redis wake-up (the poll as fallback)'}")
    loaded = await asyncio.get_running_loop().run_in_executor(None, other.conn.recv)
    mib = 2**20
    print(f"B: index load {loaded['index_load']:.1f} s, directory load {loaded['directory_load']:.1f} s; "
          f"RSS {loaded['rss_index'] / mib:,.0f} MiB after the index, {loaded['rss_with_directory'] / mib:,.0f} MiB "
          f"with the directory; estimates: index {loaded['index_bytes'] / mib:,.0f} MiB, directory "
          f"{loaded['directory_bytes'] / mib:,.0f} MiB", flush=True)  # fmt: skip
    c = _cases(org)
    print(f"cases: township #{c['town']} ({c['size']} units) between counties {c['counties']}; "
          f"county #{c['county']} between cities {c['cities']}; selector {c['selector']}", flush=True)  # fmt: skip
    await other.ask({"cmd": "sample", "selector": c["selector"], "on": True})
    await asyncio.sleep(3)
    quiet = await other.ask({"cmd": "sample", "selector": c["selector"], "on": False})
    lat: dict[str, list[float]] = {"township move": [], "county move": [], "position create": [], "role rename": []}
    apply_a: list[float] = []
    role = org.index.roles[org.index.role_id("river_chief")]
    for i in range(args.changes):
        for kind in lat:
            t = time.time()
            if kind == "township move":
                await org.move_unit(SYSTEM, c["town"], c["counties"][(i + 1) % 2])
            elif kind == "county move":
                await org.move_unit(SYSTEM, c["county"], c["cities"][(i + 1) % 2])
            elif kind == "position create":
                await org.create_position(SYSTEM, c["villages"][i % len(c["villages"])], "river_chief")
            else:
                await org.update_role(SYSTEM, role.key, name=role.name if i % 2 else f"{role.name}（测）")
            apply_a.append(time.time() - t)
            lat[kind].append(await other.until_version(org.index.version) - t)
    people = PersonDirectory(db, SystemClock())
    grid_role = org.index.role_id("grid_worker")
    targets = [
        org.index.position_id(k)
        for v in c["villages"]
        for g in org.index.children(org.index.unit(v))
        for k in org.index.unit_slots(g)
        if org.index.position_role_id(k) == grid_role
    ]
    found_lat: list[float] = []
    for i in range(args.handovers):
        name = f"测{chr(0x4E00 + (int(time.time() * 1000) + i * 7919) % 20000)}{chr(0x4E00 + i * 131 % 20000)}{i}"
        person = await people.create(name)
        pid = targets[i % len(targets)]
        await other.ask({"cmd": "find", "names": [(name, pid)]})  # before: B may apply it within milliseconds
        t = time.time()
        await org.handover(SYSTEM, pid, person.id)
        while True:
            got = await other.ask({"cmd": "found"})
            if name in got:
                found_lat.append(got[name] - t)
                break
            await asyncio.sleep(0.01)
    await other.ask({"cmd": "sample", "selector": c["selector"], "on": True})
    await other.ask({"cmd": "peak_start"})
    t = time.time()
    for i in range(100):
        if i % 3 == 0:
            await org.move_unit(SYSTEM, c["town"], c["counties"][(i // 3 + 1) % 2])
        elif i % 3 == 1:
            await org.create_position(SYSTEM, c["villages"][i % len(c["villages"])], "river_chief")
        else:
            await org.update_role(SYSTEM, role.key, name=role.name if i % 2 else f"{role.name}（测）")
    burst_made = time.time() - t
    await other.until_version(org.index.version)
    burst_seen = time.time() - t
    during = await other.ask({"cmd": "latencies"})
    await other.ask({"cmd": "sample", "selector": c["selector"], "on": False})
    burst_peak = await other.ask({"cmd": "peak_stop"})
    for kind, xs in lat.items():
        print(f"{kind}: commit → applied in B: {_pct(xs)}", flush=True)
    print(f"edit call in A (write, commit, A's own patch): {_pct(apply_a)}")
    print(f"handover → new holder found by name in B: {_pct(found_lat)}")
    print(
        f"burst of 100 changes: made in {burst_made:.1f} s, all applied in B after {burst_seen:.1f} s; "
        f"B peak RSS {burst_peak['rss_peak'] / mib:,.0f} MiB"
    )
    print(f"selector in B quiet: {_pct(quiet)}; during the burst: {_pct(during)}")
    queries = await other.ask({"cmd": "queries", "n": args.queries})
    s = await other.ask({"cmd": "search", "queries": queries})
    print(f"search, {s['queries']} queries ({s['with_hits']} with hits): p50 {s['p50_ms']:.2f} ms, "
          f"p99 {s['p99_ms']:.2f} ms, max {s['max_ms']:.1f} ms; bare dict + str.find baseline: "
          f"p50 {s['bare_p50_ms']:.2f} ms, p99 {s['bare_p99_ms']:.2f} ms; CPU per query (thread time): zzd p50 "
          f"{s['cpu_p50_ms']:.2f} ms, p99 {s['cpu_p99_ms']:.2f} ms, bare p50 {s['bare_cpu_p50_ms']:.2f} ms, p99 "
          f"{s['bare_cpu_p99_ms']:.2f} ms; slowest (CPU ms): {s['slowest_cpu']}", flush=True)  # fmt: skip
    r = await other.ask({"cmd": "rebuild"})
    print(f"B forced rebuild: {r['rebuild']:.1f} s; RSS before {r['rss_before'] / mib:,.0f} MiB, peak "
          f"{r['rss_peak'] / mib:,.0f} MiB, after {r['rss_after'] / mib:,.0f} MiB")  # fmt: skip
    other.conn.send({"cmd": "stop"})
    other.proc.join(timeout=60)
    if wake is not None and broker is not None:
        await wake.close()
        await broker.close()
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
