"""Idle connections: server RSS per authenticated connection, zzd vs a bare websockets server.

Run:  .venv/bin/python bench/idle_connections.py [--quick] [-n 5000] [--runs 1]

For each server: start it, warm it up with a few connections (so lazily
imported modules and pools are not charged to the connections), read its RSS,
open N authenticated idle connections from separate load processes, let it
settle, read RSS again. Goal (issue 2): zzd ≤ 2× bare and ≤ 32 KiB each.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from common import Client, Server, migrate, ratio, seed_sqlite, start_bare, start_zzd, wait_ready, zzd_env
from loadgen import WorkerPool

PER_PROCESS = 2_500
WARMUP = 50
SETTLE_SECONDS = 3.0
GOAL_RATIO = 2.0
GOAL_KIB = 32.0


def rss(server: Server) -> int:
    return int(psutil.Process(server.proc.pid).memory_info().rss)


def hold(server: Server, clients: list[Client]) -> tuple[int, int]:
    """Open ``clients`` against ``server`` and hold them; returns (connected, failed)."""
    pool = WorkerPool(clients, [server.url], max(1, -(-len(clients) // PER_PROCESS)))
    try:
        replies = pool.call("connect")
        time.sleep(SETTLE_SECONDS)
        return sum(r["connected"] for r in replies), sum(r["failed"] for r in replies)
    finally:
        pool.shutdown()


def measure(server: Server, clients: list[Client], ready_path: str) -> dict[str, float]:
    """RSS delta per connection for one server holding all ``clients`` at once."""
    try:
        wait_ready(server, ready_path)
        hold(server, clients[:WARMUP])
        time.sleep(1.0)
        before = rss(server)
        pool = WorkerPool(clients[WARMUP:], [server.url], max(1, -(-(len(clients) - WARMUP) // PER_PROCESS)))
        try:
            replies = pool.call("connect")
            time.sleep(SETTLE_SECONDS)
            after = rss(server)
        finally:
            pool.shutdown()
        connected = sum(r["connected"] for r in replies)
        failed = sum(r["failed"] for r in replies)
        return {
            "connected": connected,
            "failed": failed,
            "rss_before_mib": before / 2**20,
            "rss_after_mib": after / 2**20,
            "kib_per_conn": (after - before) / 1024 / max(1, connected),
            "connect_s": max(r["seconds"] for r in replies),
        }
    finally:
        server.stop()


def one_run(n: int, logdir: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Bare and zzd back to back, same clients, same machine state."""
    db = logdir / "idle.db"
    env = zzd_env(f"sqlite+aiosqlite:///{db}")
    migrate(env)
    clients = seed_sqlite(db, n + WARMUP)
    bare = measure(start_bare("bare_ws.py", "bare_ws", logdir), clients, "")
    zzd = measure(start_zzd("zzd", env, logdir), clients, "/readyz")
    db.unlink(missing_ok=True)
    return bare, zzd


def fmt(label: str, r: dict[str, float]) -> str:
    return (
        f"  {label:<8} {r['kib_per_conn']:7.1f} KiB/conn  connected {int(r['connected'])}"
        f" (failed {int(r['failed'])})  RSS {r['rss_before_mib']:.0f} → {r['rss_after_mib']:.0f} MiB"
        f"  connect {r['connect_s']:.1f} s"
    )


def median_of(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--connections", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=1, help="repeat and report medians")
    parser.add_argument("--quick", action="store_true", help="smoke run: 500 connections, one run")
    args = parser.parse_args(argv)
    n, runs = (500, 1) if args.quick else (args.connections, args.runs)
    bares: list[dict[str, float]] = []
    zzds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="zzd-bench-idle-") as tmp:
        for i in range(runs):
            bare, zzd = one_run(n, Path(tmp))
            bares.append(bare)
            zzds.append(zzd)
            print(f"run {i + 1}/{runs}: {n} idle authenticated connections")
            print(fmt("bare", bare))
            print(fmt("zzd", zzd))
            print(f"  ratio zzd/bare {ratio(zzd['kib_per_conn'], bare['kib_per_conn']):.2f}×", flush=True)
    summarize(bares, zzds, median_of)


def summarize(
    bares: list[dict[str, float]], zzds: list[dict[str, float]], med: Callable[[list[dict[str, float]], str], float]
) -> None:
    b, z = med(bares, "kib_per_conn"), med(zzds, "kib_per_conn")
    r = ratio(z, b)
    print(f"\nmedian of {len(zzds)} run(s): zzd {z:.1f} KiB/conn, bare {b:.1f} KiB/conn, ratio {r:.2f}×")
    print(
        f"goal ≤ {GOAL_RATIO:.0f}× bare: {'MET' if r <= GOAL_RATIO else 'MISSED'};"
        f" goal ≤ {GOAL_KIB:.0f} KiB: {'MET' if z <= GOAL_KIB else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
