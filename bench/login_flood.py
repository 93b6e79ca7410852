"""Issue 10 item 4: a flood of wrong passwords against one zzd process, beside the same run without it.

For each server configuration (a fresh ``zzd serve`` on SQLite with the real
Argon2id cost, 64 MiB per hash):

1. **baseline** — other users' ``GET /api/v1/me`` at a fixed concurrency for
   ``--seconds``: latency p50/p99 and the server's RSS;
2. **flood** — the same load while ``--attempts`` wrong-password sign-ins
   arrive ``--flood-concurrency`` at a time (distinct logins, one address):
   the same figures, plus the flood's outcome counts, RSS growth over the
   process's start and the p99 ratio to the baseline of this run.

Configurations: ``default`` (the shipped throttling: per-address failures,
per-login attempts) and ``hash-bound`` (throttling lifted, so every attempt
is hashed: what remains is the hashing bound alone).

    .venv/bin/python bench/login_flood.py                      # 1,000 attempts, both configurations
    .venv/bin/python bench/login_flood.py --hash-bound-attempts 200 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from common import migrate, percentile, ratio, seed_sqlite, start_zzd, wait_ready, zzd_env

OTHERS = 50


class RssSampler:
    """Samples a process's RSS every 50 ms in a thread; ``peak`` since the last ``reset``."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.05)

    def now(self) -> int:
        return int(self.proc.memory_info().rss)

    def reset(self) -> None:
        self.peak = self.now()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


async def _others(base: str, tokens: list[str], seconds: float, concurrency: int) -> list[float]:
    """Closed-loop GET /api/v1/me by other users; returns latencies in ms (errors count as failures)."""
    lat: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def worker(i: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            n = i
            while time.monotonic() < deadline:
                tok = tokens[n % len(tokens)]
                n += concurrency
                t = time.perf_counter()
                r = await c.get("/api/v1/me", headers={"Authorization": f"Bearer {tok}"})
                if r.status_code != 200:
                    errors += 1
                lat.append((time.perf_counter() - t) * 1000)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    if errors:
        raise RuntimeError(f"{errors} of other users' requests failed")
    return lat


async def _flood(base: str, attempts: int, concurrency: int) -> dict[int, int]:
    codes: dict[int, int] = {}
    queue = iter(range(attempts))

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=120) as c:
            for i in queue:
                body = {"grant_type": "password", "login": f"victim{i % 100}", "password": f"guess-{i}"}
                r = await c.post("/api/v1/auth/token", json=body)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return codes


def _flood_process(base: str, attempts: int, concurrency: int, out: Any) -> None:
    """The attacker, in a process of its own so its CPU does not slow the measuring client."""
    out.put(asyncio.run(_flood(base, attempts, concurrency)))


async def _phase(base: str, tokens: list[str], args: argparse.Namespace, attempts: int) -> dict[str, Any]:
    t0 = time.monotonic()
    if attempts:
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        attacker = ctx.Process(target=_flood_process, args=(base, attempts, args.flood_concurrency, results))
        attacker.start()
        lat = await _others(base, tokens, args.seconds, args.concurrency)
        # keep measuring other users until the flood is answered in full
        while attacker.is_alive():
            lat += await _others(base, tokens, 2.0, args.concurrency)
        attacker.join()
        codes = results.get(timeout=10)
    else:
        lat, codes = await _others(base, tokens, args.seconds, args.concurrency), {}
    return {"p50": statistics.median(lat), "p99": percentile(lat, 99), "n": len(lat), "codes": codes,
            "seconds": time.monotonic() - t0}  # fmt: skip


def run_config(name: str, extra_env: dict[str, str], attempts: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = zzd_env(f"sqlite+aiosqlite:///{folder / 'zzd.db'}")
        env.update(extra_env)
        migrate(env)
        clients = seed_sqlite(folder / "zzd.db", OTHERS)
        server = start_zzd(f"flood-{name}", env, folder)
        try:
            wait_ready(server)
            base = f"http://127.0.0.1:{server.port}"
            rss = RssSampler(server.proc.pid)
            tokens = [c.token for c in clients]
            asyncio.run(_others(base, tokens, 2.0, args.concurrency))  # warm up
            start_rss = rss.now()
            rss.reset()
            baseline = asyncio.run(_phase(base, tokens, args, 0))
            baseline["peak_rss"] = rss.peak
            rss.reset()
            flood = asyncio.run(_phase(base, tokens, args, attempts))
            flood["peak_rss"] = rss.peak
            rss.stop()
        finally:
            server.stop()
    return {"config": name, "attempts": attempts, "start_rss": start_rss, "baseline": baseline, "flood": flood}


def report(r: dict[str, Any]) -> None:
    mib = 1024 * 1024
    b, f = r["baseline"], r["flood"]
    print(f"\n== {r['config']}: {r['attempts']} wrong passwords, {r['flood']['seconds']:.0f} s ==")
    print(
        f"  other users p50/p99  baseline {b['p50']:.1f} / {b['p99']:.1f} ms ({b['n']} req)   "
        f"flood {f['p50']:.1f} / {f['p99']:.1f} ms ({f['n']} req)   p99 ratio {ratio(f['p99'], b['p99']):.2f}x"
    )
    print(
        f"  server RSS  start {r['start_rss'] / mib:.0f} MiB   peak baseline {b['peak_rss'] / mib:.0f} MiB   "
        f"peak flood {f['peak_rss'] / mib:.0f} MiB   growth {(f['peak_rss'] - r['start_rss']) / mib:+.0f} MiB"
    )
    print(f"  flood answers {dict(sorted(f['codes'].items()))}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attempts", type=int, default=1000)
    p.add_argument(
        "--hash-bound-attempts",
        type=int,
        default=200,
        help="attempts for the hash-bound configuration (each is hashed: ~0.3-0.8 s of CPU)",
    )
    p.add_argument("--flood-concurrency", type=int, default=20)
    p.add_argument("--concurrency", type=int, default=10, help="other users' concurrent requests")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--only", choices=["default", "hash-bound"], default=None)
    args = p.parse_args()
    print(f"load before: {open('/proc/loadavg').read().split()[:3]}")
    results = []
    if args.only in (None, "default"):
        results.append(run_config("default", {}, args.attempts, args))
    if args.only in (None, "hash-bound"):
        lifted = {"ZZD_LOGIN_LIMIT_PER_LOGIN": "1000000/minute", "ZZD_LOGIN_FAILURES_PER_ADDRESS": "1000000/minute"}
        results.append(run_config("hash-bound", lifted, args.hash_bound_attempts, args))
    for r in results:
        report(r)
    print(f"load after: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
