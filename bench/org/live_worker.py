"""The "other process" of ``bench.org.live_edit``: an org index and directory kept live as a server keeps them.

It loads the index and the directory from the database, then keeps them live
as a server does: a wake-up over Redis for every org commit
(``zzd.org_wake``), and the poll as the fallback
(``OrgIndexHolder.refresh_if_changed`` every ``--interval`` s, default the
server's 0.5 s). It answers the driver over a
pipe: when a version became visible, when a name became findable, selector
latency while changes arrive, a forced rebuild's time and peak RSS, and the
search benchmark (which needs the directory this process holds).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import psutil
from bench.org.search_cases import make_queries, run_search_bench

from kernel.clock import SystemClock
from kernel.db.database import Database
from messaging.broker.redis import RedisBroker
from org_tree.holder import OrgIndexHolder
from org_tree.jurisdiction import SYSTEM
from org_tree.org_service import OrgService
from org_tree.resolution import VacancyPolicy, resolve
from org_tree.selectors import parse_text
from zzd.org_wake import OrgWake


class _Peak:
    """Peak RSS of this process while active (sampled every 20 ms on a thread)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, proc.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> _Peak:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


async def _main(conn: Connection, url: str, interval: float, redis: tuple[str, str] | None) -> None:
    db = Database(url, statement_timeout_ms=3_600_000, pool_size=2)
    holder = OrgIndexHolder(db)
    org = OrgService(db, SystemClock(), holder)
    broker = RedisBroker(redis[0], prefix=redis[1]) if redis else None
    wake = OrgWake(broker, holder) if broker else None
    t0 = time.perf_counter()
    await holder.load()
    t1 = time.perf_counter()
    index_rss = psutil.Process().memory_info().rss
    await org.directory.directory()
    t2 = time.perf_counter()
    gc.collect()
    gc.freeze()
    d = org.directory.loaded
    assert d is not None
    conn.send({"index_load": t1 - t0, "directory_load": t2 - t1, "rss_index": index_rss,
               "rss_with_directory": psutil.Process().memory_info().rss, "index_bytes": holder.index.memory_bytes(),
               "directory_bytes": d.memory_bytes(), "version": holder.index.version})  # fmt: skip
    versions: dict[int, float] = {}
    names: list[tuple[str, int]] = []
    found: dict[str, float] = {}
    lat: list[float] = []
    sampling = False
    selector = None
    peak = _Peak()

    async def applied(_index: object, _applied: object) -> None:
        """After every refresh that applied something (the poll's or a wake-up's; the directory is patched first)."""
        now = time.time()
        versions.setdefault(holder.index.version, now)
        for name, pid in list(names):
            page = await org.search(SYSTEM, name, limit=20)
            if any(h.position_id == pid for h in page.hits):
                found[name] = now
                names.remove((name, pid))

    holder.listen(applied)
    if broker is not None:
        await broker.start()

    async def refresher() -> None:  # the server's poll: the fallback when a wake-up is lost
        while True:
            await holder.refresh_if_changed()
            await asyncio.sleep(interval)

    async def sampler() -> None:
        while True:
            if sampling and selector is not None:
                t = time.perf_counter()
                resolve(holder.index, selector, VacancyPolicy())
                lat.append(time.perf_counter() - t)
            await asyncio.sleep(0.002)

    tasks = [asyncio.create_task(refresher()), asyncio.create_task(sampler())]
    loop = asyncio.get_running_loop()
    while True:
        msg: dict[str, Any] = await loop.run_in_executor(None, conn.recv)
        cmd = msg["cmd"]
        if cmd == "stop":
            break
        if cmd == "versions":
            conn.send(dict(versions))
        elif cmd == "find":
            names.extend((n, p) for n, p in msg["names"])
            conn.send(True)
        elif cmd == "found":
            conn.send(dict(found))
        elif cmd == "sample":
            selector = parse_text(msg["selector"])
            conn.send(list(lat))  # what was sampled until now
            lat.clear()
            sampling = bool(msg["on"])
        elif cmd == "latencies":
            conn.send(list(lat))
        elif cmd == "rebuild":
            before = psutil.Process().memory_info().rss
            with _Peak() as peak:
                t = time.perf_counter()
                await holder.load()
                took = time.perf_counter() - t
            conn.send({"rebuild": took, "rss_before": before, "rss_peak": peak.peak,
                       "rss_after": psutil.Process().memory_info().rss})  # fmt: skip
        elif cmd == "peak_start":
            peak = _Peak().__enter__()
            conn.send(True)
        elif cmd == "peak_stop":
            peak.__exit__()
            conn.send({"rss_peak": peak.peak, "rss": psutil.Process().memory_info().rss})
        elif cmd == "queries":
            conn.send(make_queries(holder.index, await org.directory.directory(), msg["n"]))
        elif cmd == "search":
            conn.send(await run_search_bench(holder.index, org.directory, msg["queries"]))
    for task in tasks:
        task.cancel()
    if wake is not None and broker is not None:
        await wake.close()
        await broker.close()
    await db.dispose()


def worker(conn: Connection, url: str, interval: float, redis: tuple[str, str] | None = None) -> None:
    asyncio.run(_main(conn, url, interval, redis))
