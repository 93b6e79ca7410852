"""Send and sync cost on a small and a large event table (issue 15 item 6).

Run:  .venv/bin/python bench/event_growth.py [--small 1000000] [--large 10000000]
      [--persons 20000] [--ops 400]

On two fresh PostgreSQL databases: ``--persons`` persons with streams in each,
then ``person_events`` filled (straight SQL, ``generate_series``, in rounds as
traffic writes them) to ``--small`` rows in one and ``--large`` rows in the
other; then the same operations on both, alternating op by op, so that both
meet the same moments of the machine. The small table is the same-run
baseline of the large one. What is measured, in process (no HTTP, no sockets:
the database part of each path):

- **send**: ``ChatService.send`` of a direct message between two persons
  picked at random, one after another (message row, conversation, two stream bumps,
  two event rows, commit);
- **sync**: ``EventLog.read`` of a random person's last 20 events (the page a
  resuming client gets), and of 20 events from the middle of a stream (a
  client far behind, paging).

The claim under test: every path reads a stream by its primary key
``(person_id, seq)`` and writes at its end, so the cost should not depend on
how many rows the table holds (retention keeps it bounded anyway; this shows
that a table grown before a pass does not slow the system down).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402

from common import JWT_KID, JWT_SECRET, asyncpg_dsn, migrate, percentile, postgres_database, zzd_env  # noqa: E402

PAYLOAD = '{"id":1,"conversation_id":1,"sender":{"id":1,"name":"张三"},"body":"' + "消息" * 40 + '"}'


def settings(url: str) -> Any:
    from zzd.config import Settings

    return Settings(database_url=url, jwt_keys=f"{JWT_KID}:{JWT_SECRET}", log_level="warning")  # type: ignore[arg-type]


async def seed_persons(dsn: str, n: int) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO persons (name, disabled, created_at) "
            "SELECT 'g' || g, false, now() FROM generate_series(1, $1) g",
            n,
        )
        ids = [int(r[0]) for r in await conn.fetch("SELECT id FROM persons ORDER BY id")]
        await conn.execute(
            "INSERT INTO person_streams (person_id, epoch, last_seq, min_seq) "
            "SELECT id, substr(md5(id::text), 1, 8), 0, 1 FROM persons"
        )
        return ids
    finally:
        await conn.close()


#: Events per stream written in one round of the fill.
ROUND = 100


async def fill(dsn: str, per_person: int) -> tuple[int, float]:
    """Grow every stream to ``per_person`` events; returns the table's rows and size in MB.

    In rounds of ``ROUND`` events per stream, every stream in each round, so that the newest
    events of all streams lie together at the table's end, as traffic writes them. Filled one
    stream at a time instead, each stream's tail sat in a page of its own anywhere in the
    table: on 50 M rows (21 GB, more than this machine caches) every "last 20 events" read
    was a cold page, which no running system's tails are (2026-12-03: sync 3.3x slower).
    """
    conn = await asyncpg.connect(dsn)
    try:
        low = int(await conn.fetchval("SELECT min(last_seq) FROM person_streams"))
        for top in range(low + ROUND, per_person + ROUND, ROUND):
            # Each stream continues from its own last_seq (the measured sends added to some): gap-free.
            await conn.execute(
                "INSERT INTO person_events (person_id, seq, kind, payload, created_at) "
                "SELECT s.person_id, g, 'message.new', $1, now() - interval '20 days' "
                "FROM person_streams s, generate_series(s.last_seq + 1, $2::bigint) g",
                PAYLOAD,
                min(top, per_person),
            )
            await conn.execute("UPDATE person_streams SET last_seq = greatest(last_seq, $1)", min(top, per_person))
        await conn.execute("VACUUM ANALYZE person_events")
        await conn.execute("VACUUM ANALYZE person_streams")
        rows = int(await conn.fetchval("SELECT count(*) FROM person_events"))
        size = float(await conn.fetchval("SELECT pg_total_relation_size('person_events')")) / 1e6
        return rows, size
    finally:
        await conn.close()


async def measure(urls: dict[str, str], persons: dict[str, list[int]], ops: int) -> dict[str, dict[str, list[float]]]:
    """``ops`` operations of each kind on every database, alternating between them op by op.

    Why alternate: one database measured after the other meets another machine (on 2026-12-03
    the load went 8.6 -> 2.2 between the two phases and the large table came out 4x faster);
    side by side, both see the same moments.
    """
    from messaging.chat import SendRequest
    from zzd.services import Services

    svc = {k: Services.build(settings(u)) for k, u in urls.items()}
    out: dict[str, dict[str, list[float]]] = {k: {"send": [], "sync_tail": [], "sync_page": []} for k in urls}
    rng = random.Random(7)
    run = uuid.uuid4().hex[:8]
    try:
        for i in range(ops):
            order = list(urls) if i % 2 == 0 else list(reversed(urls))
            pick = rng.random()
            for k in order:
                s, ids = svc[k], persons[k]
                a, b = ids[int(pick * len(ids))], ids[int(pick * len(ids)) - 1]
                t = time.perf_counter()
                await s.chat.send(SendRequest(a, b, f"{run}-{i}", "增长后发送"))
                out[k]["send"].append((time.perf_counter() - t) * 1000)
        for _ in range(ops):
            pick = rng.random()
            for k in list(urls) if _ % 2 == 0 else list(reversed(urls)):
                s, ids = svc[k], persons[k]
                p = ids[int(pick * len(ids))]
                st = await s.events.state(p)
                t = time.perf_counter()
                page = await s.events.read(p, epoch=st.epoch, since=st.last_seq - 20)
                out[k]["sync_tail"].append((time.perf_counter() - t) * 1000)
                assert len(page.events) == 20
                t = time.perf_counter()
                page = await s.events.read(p, epoch=st.epoch, since=st.last_seq // 2, limit=20)
                out[k]["sync_page"].append((time.perf_counter() - t) * 1000)
                assert len(page.events) == 20
    finally:
        for s in svc.values():
            await close(s)
    return out


async def close(s: Any) -> None:
    """Close what the bench used of ``Services``: its chat and both pools.

    The chat's own pool (``ZZD_DB_CHAT_POOL_SIZE``) left open kept its backends idle, and an idle
    backend reports its table statistics only ten seconds later, so ``table_writes`` read zero rows.
    """
    await s.chat.close()
    await s.db.dispose()
    if s.chat_db is not None and s.chat_db is not s.db:
        await s.chat_db.dispose()


async def table_writes(dsn: str) -> dict[str, tuple[int, int]]:
    """Rows inserted and updated so far per messaging table (pg_stat_user_tables, after its flush)."""
    await asyncio.sleep(1.5)  # statistics reach the shared view within a second of the writer's commit
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT relname, n_tup_ins, n_tup_upd FROM pg_stat_user_tables "
            "WHERE relname IN ('messages', 'conversations', 'conversation_members', 'person_events', 'person_streams')"
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}
    finally:
        await conn.close()


async def sends_only(url: str, persons: list[int], n: int) -> None:
    from messaging.chat import SendRequest
    from zzd.services import Services

    s = Services.build(settings(url))
    rng = random.Random(11)
    ten = persons[:10]
    pairs = [(a, b) for a in ten for b in ten if a < b] if n == 0 else [tuple(rng.sample(ten, 2)) for _ in range(n)]
    try:
        for i, (a, b) in enumerate(pairs):
            await s.chat.send(SendRequest(a, b, f"w{uuid.uuid4().hex[:8]}-{i}", "计数"))
    finally:
        await close(s)


async def prune_pass(url: str, days: int) -> tuple[int, float]:
    """One whole retention pass deleting events older than ``days``: (events deleted, seconds)."""
    from datetime import timedelta

    from kernel.clock import SystemClock
    from kernel.db.database import Database
    from messaging.retention import Retention

    db = Database(url)
    try:
        job = Retention(db, SystemClock(), node_id="bench", event_days=days, outbox_days=30, pass_every=timedelta(0))
        t = time.monotonic()
        done = await job.run_until_complete()
        return done.events, time.monotonic() - t
    finally:
        await db.dispose()


def row(name: str, small: list[float], large: list[float]) -> str:
    s50, l50 = statistics.median(small), statistics.median(large)
    s99, l99 = percentile(small, 99), percentile(large, 99)
    return f"{name:<26}{s50:>9.2f}{s99:>9.2f}{l50:>10.2f}{l99:>9.2f}{l50 / s50:>9.2f}×"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=1_000_000)
    ap.add_argument("--large", type=int, default=10_000_000)
    ap.add_argument("--persons", type=int, default=20_000)
    ap.add_argument("--ops", type=int, default=400)
    args = ap.parse_args()
    with postgres_database() as small_url, postgres_database() as url:
        dsn = asyncpg_dsn(url)
        filled: dict[str, tuple[int, float]] = {}
        persons: dict[str, list[int]] = {}
        for name, u, n in (("small", small_url, args.small), ("large", url, args.large)):
            migrate(zzd_env(u))
            persons[name] = asyncio.run(seed_persons(asyncpg_dsn(u), args.persons))
            t = time.monotonic()
            filled[name] = asyncio.run(fill(asyncpg_dsn(u), n // args.persons))
            rows, mb = filled[name]
            print(f"{name}: filled to {rows:,} rows ({mb:,.0f} MB) in {time.monotonic() - t:.0f} s", flush=True)
        (small_rows, _), (large_rows, _) = filled["small"], filled["large"]
        got = asyncio.run(measure({"small": small_url, "large": url}, persons, args.ops))
        small, large = got["small"], got["large"]
        # Printed before the writes count and the retention pass, so that a failure there keeps them.
        print(f"\n{args.persons:,} persons; {args.ops} operations of each kind on each database, alternating (ms)")
        print(f"{'':<26}{'small p50':>9}{'p99':>9}{'large p50':>10}{'p99':>9}{'ratio':>10}")
        print(f"{'event rows':<26}{small_rows:>18,}{large_rows:>19,}")
        print(row("send (ChatService.send)", small["send"], large["send"]))
        print(row("sync: last 20 events", small["sync_tail"], large["sync_tail"]))
        print(row("sync: 20 from the middle", small["sync_page"], large["sync_page"]), flush=True)
        persons_large = persons["large"]
        asyncio.run(sends_only(url, persons_large, 0))  # every pair of the ten has its conversation now
        before = asyncio.run(table_writes(dsn))
        asyncio.run(sends_only(url, persons_large, 200))
        after = asyncio.run(table_writes(dsn))
        # Half of every stream is dated 20 days ago (the fill), half of the rest is new: prune the fill.
        pruned, prune_s = asyncio.run(prune_pass(url, 10))
        # The steady state: a pass over every stream when nothing is old (one key lookup per stream).
        _, idle_s = asyncio.run(prune_pass(url, 10))
    print("\nrows written per direct message (200 sends, 10 persons, conversations existing; pg_stat_user_tables):")
    for table in sorted(after):
        ins = (after[table][0] - before.get(table, (0, 0))[0]) / 200
        upd = (after[table][1] - before.get(table, (0, 0))[1]) / 200
        print(f"  {table:<22} inserted {ins:5.2f}  updated {upd:5.2f}")
    print(
        f"\nretention pass over {large_rows:,} rows: {pruned:,} events deleted in {prune_s:.1f} s "
        f"({pruned / prune_s:,.0f} events/s)"
    )
    print(f"a pass with nothing left to delete over {args.persons:,} streams: {idle_s:.2f} s")


if __name__ == "__main__":
    main()
