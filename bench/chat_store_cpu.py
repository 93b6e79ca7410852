"""A direct chat send batch's server CPU without sockets: ``ChatService.send`` in batches of a fixed size.

Run:  PYTHONPATH=<tree> .venv/bin/python <tree>/bench/chat_store_cpu.py --backend sqlite|postgres
      [--batch 8] [--rounds 1500] [--existing] [--repeat 3]

Why: ``bench/chat_load.py``'s CPU per message moves with the machine's load,
because a starved server gathers more messages per send batch and pays each
batch's fixed cost (transaction, commit, trips to the database) over more of
them; on a shared 2-core machine that spread (±15 %) hides a change worth a
few per cent. Here the batch size is fixed: ``--batch`` sends are submitted at
once, awaited, and the next ``--batch`` go; each to a new direct chat between
two of 5,000 persons (what ``chat_load.py``'s random recipients make nearly
every message), or with ``--existing`` within 2,500 fixed pairs whose chats
exist. Every person's event stream exists first (as after a hello). Printed:
this process's CPU per message, split into the event loop thread and the
others (on SQLite, aiosqlite's writer thread: SQLite itself, the fsync
included), and on PostgreSQL the database's backends' CPU per message.
Run each tree alternately (``PYTHONPATH``) to compare code.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kernel.clock import SystemClock
from kernel.db.database import Database
from messaging.chat import ChatService, SendRequest
from messaging.chat_storage import PG_KEY_LOOKUPS
from messaging.events import EventLog
from messaging.unit_of_work import UnitOfWork

from common import asyncpg_dsn, migrate, postgres_database, seed_postgres, seed_sqlite, zzd_env
from cpu_split import cpu_seconds, pg_backends, thread_cpu, thread_split

PERSONS = 5_000


@contextmanager
def database(backend: str) -> Iterator[tuple[str, list[int]]]:
    """A migrated database with ``PERSONS`` persons: (SQLAlchemy URL, their ids)."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="zzd-bench-store-") as tmp:
            path = Path(tmp) / "chat.db"
            url = f"sqlite+aiosqlite:///{path}"
            migrate(zzd_env(url))
            yield url, [c.person_id for c in seed_sqlite(path, PERSONS)]
        return
    with postgres_database() as url:
        migrate(zzd_env(url))
        yield url, [c.person_id for c in seed_postgres(asyncpg_dsn(url), PERSONS)]


async def measure(url: str, ids: list[int], args: argparse.Namespace) -> list[tuple[float, float, float]]:
    """(loop, other threads, database backends) CPU ms per message, one tuple per repeat."""
    postgres = url.startswith("postgresql")
    db = Database(url, server_settings=PG_KEY_LOOKUPS) if postgres else Database(url)
    events = EventLog(db)
    await events.ensure_streams(ids)
    chat = ChatService(UnitOfWork(db, events, SystemClock(), lambda _groups: None))
    rnd = random.Random(7)
    pairs = [(ids[i], ids[i + 1]) for i in range(0, len(ids) - 1, 2)]
    sent = 0

    async def batch() -> None:
        nonlocal sent
        reqs = []
        for _ in range(args.batch):
            a, b = rnd.choice(pairs) if args.existing else rnd.sample(ids, 2)
            sent += 1
            reqs.append(chat.send(SendRequest(a, b, f"m{sent}", f"{time.time():.6f}")))
        await asyncio.gather(*reqs)

    if args.existing:  # every pair's chat exists before the measurement
        for a, b in pairs:
            await chat.send(SendRequest(a, b, f"first-{a}", "hello"))
    for _ in range(50):  # warm: statements prepared, caches filled
        await batch()
    dbname = url.rsplit("/", 1)[1]
    out = []
    for _ in range(args.repeat):
        pid = os.getpid()
        threads = thread_cpu(pid)
        pg = {p: cpu_seconds(p) for p in pg_backends(dbname)} if postgres else {}
        for _ in range(args.rounds):
            await batch()
        loop, _busiest, others = thread_split(pid, threads, thread_cpu(pid))
        pg_used = sum(cpu_seconds(p) - pg.get(p, 0.0) for p in pg_backends(dbname)) if postgres else 0.0
        n = args.rounds * args.batch
        out.append((1000 * loop / n, 1000 * others / n, 1000 * pg_used / n))
    await chat.close()
    await db.dispose()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--batch", type=int, default=8, help="sends per batch")
    p.add_argument("--rounds", type=int, default=1_500, help="batches per measurement")
    p.add_argument("--repeat", type=int, default=3, help="measurements (the median is printed last)")
    p.add_argument("--existing", action="store_true", help="send within fixed pairs whose chats exist")
    args = p.parse_args()
    with database(args.backend) as (url, ids):
        rows = asyncio.run(measure(url, ids, args))
    kind = "existing chats" if args.existing else "a new chat each"
    for loop, others, pg in rows:
        print(
            f"  {args.backend}, batches of {args.batch}, {kind}: loop {loop:.3f} ms, other threads {others:.3f} ms,"
            f" process {loop + others:.3f} ms per message"
            + (f", PostgreSQL {pg:.3f} ms" if args.backend == "postgres" else "")
        )
    med = [statistics.median(r[i] for r in rows) for i in range(3)]
    print(
        f"median: loop {med[0]:.3f} ms, other threads {med[1]:.3f} ms, process {med[0] + med[1]:.3f} ms per message"
        + (f", PostgreSQL {med[2]:.3f} ms" if args.backend == "postgres" else ""),
        flush=True,
    )


if __name__ == "__main__":
    main()
