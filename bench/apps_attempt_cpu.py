"""CPU per webhook attempt: one delivery worker drains a backlog to local receivers, beside a bare httpx client.

Run:  .venv/bin/python bench/apps_attempt_cpu.py [--deliveries 6000] [--profile]

Why apart from ``apps_fanout.py``: there the CPU per attempt also carries the
report filing, the chat, the dispatcher and the stream apps, and the machine's
load moves it by ±30 %. Here one ``DeliveryWorker`` (the server's own, with the
real ``AiohttpSender``, on PostgreSQL) claims, signs, posts and records
``--deliveries`` pending deliveries to 12 healthy endpoints of the receivers'
process (``bench/apps_receivers.py``), and its process's CPU seconds are
divided by the attempts; then one asyncio httpx client posts the same number
of bodies to the same receivers, at the same concurrency, and its CPU per post
is the bare baseline of the same run. ``--profile``: py-spy of the worker
(GIL holder only), the top frames.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from notice_pyspy import Profile

from common import ROOT, asyncpg_dsn, migrate, postgres_database, start_bare, wait_ready, zzd_env

sys.path.insert(0, str(ROOT))


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def _worker(
    url: str, base: str, n: int, concurrency: int, logdir: Path, profile: bool
) -> tuple[float, int, float]:
    """Drain ``n`` deliveries with one worker; returns (CPU s, attempts, wall s)."""
    import asyncpg
    from tests.apps.backlog import SUBSCRIPTIONS, fill_backlog

    from apps.addresses import AddressPolicy
    from apps.delivery import DeliveryPolicy, DeliveryWorker
    from kernel.clock import SystemClock
    from kernel.db.database import Database
    from zzd.webhook_http import AiohttpSender

    conn = await asyncpg.connect(asyncpg_dsn(url))
    await fill_backlog(conn, n, 0, base_url=base + "/bare", webhooks=SUBSCRIPTIONS)
    await conn.execute("ANALYZE app_deliveries")
    db = Database(url)
    addresses = AddressPolicy(["127.0.0.0/8"], allow_public=False)
    policy = DeliveryPolicy(concurrency=concurrency, poll=0.1)
    sender = AiohttpSender(10.0, concurrency, addresses)
    worker = DeliveryWorker(db, SystemClock(), sender, addresses.check, node_id="cpu", policy=policy)
    prof = Profile("worker", [os.getpid()], logdir, gil=True) if profile else None
    cpu0, t0 = _cpu(), time.monotonic()
    worker.start()
    worker.kick()
    try:
        while await conn.fetchval("SELECT count(*) FROM app_deliveries WHERE state = 'pending'"):
            await asyncio.sleep(0.5)
        wall, cpu = time.monotonic() - t0, _cpu() - cpu0
        attempts = int(await conn.fetchval("SELECT count(*) FROM app_delivery_attempts"))
        answered = int(await conn.fetchval("SELECT count(*) FROM app_delivery_attempts WHERE status = 200"))
        print(f"worker: {answered} of {attempts} attempts answered 200")
    finally:
        if prof is not None:
            prof.stop()
            print("py-spy of the worker (GIL holder):\n" + prof.top(25))
        await worker.close()
        await sender.close()
        await db.dispose()
        await conn.close()
    return cpu, attempts, wall


async def _bare(base: str, n: int, concurrency: int) -> tuple[float, int, float]:
    """The same number of posts of a body of the same size from one httpx client; returns (CPU s, posts, wall s)."""
    body = b'{"id":"2f0c6a9e-3b1d-4c55-9a43-0d3c1c1f7a10","type":"report.filed","timestamp":"2026-12-03T04:00:00Z",' \
           b'"data":{"report_id":1234}}'  # fmt: skip
    sem = asyncio.Semaphore(concurrency)
    cpu0, t0 = _cpu(), time.monotonic()
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=concurrency)) as h:

        async def one(i: int) -> None:
            async with sem:
                r = await h.post(f"{base}/bare/app{i % 12}", content=body, headers={"content-type": "application/json"})
                r.raise_for_status()

        await asyncio.gather(*(one(i) for i in range(n)))
    return _cpu() - cpu0, n, time.monotonic() - t0


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop  # the servers' loop (uvicorn[standard]); `zzd delivery` runs on asyncio's

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--deliveries", type=int, default=6000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="asyncio",
        help="the worker's event loop (`zzd delivery` runs on asyncio's, `zzd serve` on uvloop)",
    )  # fmt: skip
    ap.add_argument("--log-level", default=None, help="configure logging as `zzd serve` does (its stderr: discard it)")
    args = ap.parse_args()
    if args.log_level:
        from zzd.logs import configure_logging

        configure_logging(args.log_level)
    tmp = Path(tempfile.mkdtemp(prefix="apps-cpu-"))
    rec = start_bare("apps_receivers.py", "receivers", tmp)
    try:
        wait_ready(rec, path="")
        base = f"http://127.0.0.1:{rec.port}"
        print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        with postgres_database() as url:
            migrate(zzd_env(url))
            with asyncio.Runner(loop_factory=_loop_factory(args.loop)) as runner:
                cpu, attempts, wall = runner.run(
                    _worker(url, base, args.deliveries, args.concurrency, tmp, args.profile)
                )
        __import__("logging").getLogger("httpx").setLevel("WARNING")  # the bare client never logs its posts
        bcpu, posts, bwall = asyncio.run(_bare(base, attempts, args.concurrency))
        print(f"worker ({args.loop}): {attempts} attempts in {wall:.1f} s = {attempts / wall:.0f}/s, "
              f"CPU {cpu:.2f} s = {cpu * 1000 / attempts:.2f} ms per attempt")  # fmt: skip
        print(f"bare httpx client: {posts} posts in {bwall:.1f} s = {posts / bwall:.0f}/s, "
              f"CPU {bcpu:.2f} s = {bcpu * 1000 / posts:.2f} ms per post")  # fmt: skip
        print(f"ratio: {cpu / attempts / (bcpu / posts):.2f}x the bare client's CPU per post")
        print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        rec.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
