"""``zzd serve --workers N`` (issue 15 item 5): how many clients connect per second, and where they land.

Run:  .venv/bin/python bench/workers.py [--clients 2000] [--workers 2]

On a fresh PostgreSQL database with Redis as the broker, ``--clients``
persons with sessions and tokens (bench/common.py). In one run, one after
another, the same clients connect and say hello (``loadgen.WorkerPool``, all
at once, held open) to:

1. the bare ``websockets`` hello server (bench/bare_ws.py) — the baseline;
2. ``zzd serve --workers 1``;
3. ``zzd serve --workers N`` on one port.

Printed per server: connected, failed, seconds until the last hello was
answered, hellos/s, and for zzd the sockets each worker holds (``/readyz``
asked over fresh connections until every worker has answered).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from common import (
    ZZD,
    Client,
    Server,
    asyncpg_dsn,
    free_port,
    migrate,
    postgres_database,
    seed_postgres,
    start_bare,
    start_process,
    wait_ready,
    zzd_env,
)
from loadgen import WorkerPool

PER_PROCESS = 1_000
REDIS_URL = "redis://127.0.0.1:6379/0"


def spread(server: Server, workers: int, timeout: float = 30.0) -> dict[str, int]:
    """Sockets per worker node, read from /readyz over new connections until ``workers`` nodes answered."""
    seen: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < workers and time.monotonic() < deadline:
        r = httpx.get(f"http://127.0.0.1:{server.port}/readyz", headers={"connection": "close"}, timeout=5)
        seen[r.json()["node"]] = int(r.json()["connections"])
    return seen


def wait_workers(server: Server, workers: int, timeout: float = 120.0) -> None:
    """Until every worker has answered /readyz (each is ready only after its start-up)."""
    wait_ready(server, "/readyz", timeout)
    if len(spread(server, workers, timeout)) < workers:
        raise TimeoutError(f"{workers} workers not ready after {timeout}s")


def connect_all(server: Server, clients: list[Client], workers: int | None) -> dict[str, object]:
    pool = WorkerPool(clients, [server.url], max(1, -(-len(clients) // PER_PROCESS)))
    try:
        replies = pool.call("connect")
        out: dict[str, object] = {
            "connected": sum(r["connected"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "seconds": max(r["seconds"] for r in replies),
        }
        if workers is not None:
            out["spread"] = spread(server, workers)
        return out
    finally:
        pool.shutdown()
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    logdir = Path(tempfile.mkdtemp(prefix="zzd-workers-"))
    results: dict[str, dict[str, object]] = {}
    with postgres_database() as url:
        env = zzd_env(url, REDIS_URL, prefix=f"benchw{uuid.uuid4().hex[:6]}")
        migrate(env)
        clients = seed_postgres(asyncpg_dsn(url), args.clients)
        bare = start_bare("bare_ws.py", "bare", logdir)
        wait_ready(bare, "")
        results["bare websockets hello"] = connect_all(bare, clients, None)
        for n in (1, args.workers):
            port = free_port()
            argv = [ZZD, "serve", "--no-migrate", "--port", str(port), "--workers", str(n)]
            server = start_process(f"zzd-w{n}", argv, env, port, logdir)
            wait_workers(server, n)
            results[f"zzd --workers {n}"] = connect_all(server, clients, n)
    print(f"\n{args.clients:,} clients connecting at once, PostgreSQL + Redis (logs: {logdir})")
    print(f"{'server':<24}{'connected':>10}{'failed':>8}{'seconds':>9}{'hellos/s':>10}  sockets per worker")
    for name, r in results.items():
        secs = float(r["seconds"])  # type: ignore[arg-type]
        per = r.get("spread")
        per_s = " / ".join(str(v) for _, v in sorted(per.items())) if isinstance(per, dict) else "—"
        print(f"{name:<24}{r['connected']:>10}{r['failed']:>8}{secs:>9.1f}{int(r['connected']) / secs:>10.0f}  {per_s}")  # type: ignore[call-overload]


if __name__ == "__main__":
    main()
