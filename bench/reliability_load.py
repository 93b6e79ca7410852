"""S1 and S2 at the bar's length: mixed load held on one and two zzd processes, beside a bare relay.

    .venv/bin/python bench/reliability_load.py                # S1 then S2: 2,000 connections, 120 s
    .venv/bin/python bench/reliability_load.py --quick        # 500 connections, 30 s
    .venv/bin/python bench/reliability_load.py --only s2 --rate 50

S1: one ``zzd serve`` (PostgreSQL, in-process broker) at ``--rate`` sends/s
(default 200, the bar's S1). S2: two processes on PostgreSQL + Redis, half the
chat crossing processes, at half the rate (default 100/s, the bar's S2). A
send is what the bar counts: one chat message, one notice (to its 50
recipients) or one task; notice acks come on top, one per 9 sends
(``tests/loadmix.py``). Until 2026-12-03 the rate counted acks as items too,
so a run "at 20/s" made 18 sends/s. The traffic, its audiences and the
I1–I5 checks are ``tests/loadmix.py`` (the CI slice runs the same code).
Each run prints send→ack and send→deliver percentiles, each invariant's
count of checks and violations, unexpected closes, and the servers' RSS at
start and end; then the same schedule over the same number of sockets
against ``bench/bare_relay.py`` (every item one relayed send: no storage,
no fan-out, no auth), the baseline measured in the same run.

PostgreSQL's checkpoints: the S1 schedule and its drain write about 470 MiB of
WAL, and the shared server (``max_wal_size`` 1 GB, ``checkpoint_completion_target``
0.9) requested a checkpoint once 514–517 MiB were written since the last one,
so a window that inherits 45 MiB of someone else's WAL meets one in its last
seconds, and one that starts after a fresh checkpoint does not. So that
every run starts alike, the benchmark issues ``CHECKPOINT`` once all sockets
are open, just before the schedule (``--no-checkpoint`` leaves it out; the
database is fresh and the bare baseline runs afterwards on another one). That
is not what a deployment sees: at 200 sends/s it checkpoints every two
minutes or so, and ``--wal-headstart N`` advances the WAL by N segments first
so that the checkpoint falls inside the window (7: about s107, 17: about s64).
On 2026-12-04 such a checkpoint (full-page images quadrupling the WAL for a
second or two) did not show in the acks (BENCHMARKS.md, issue 16). Each run
prints ``pg_stat_bgwriter``'s checkpoints from the schedule's start to the
end of the load, and when the last one started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: tests.*

from tests.faults import rss_bytes  # noqa: E402
from tests.loadmix import LoadResult, prepare, run_load  # noqa: E402
from tests.procs import zzd_processes  # noqa: E402
from tests.services import REDIS_URL  # noqa: E402

from notice_pyspy import Profile  # noqa: E402
from zzd.migrate import upgrade  # noqa: E402

from common import asyncpg_dsn, postgres_database, raise_fd_limit, start_bare, wait_ready  # noqa: E402
from cpu_split import CpuSplit  # noqa: E402

#: ``pg_stat_bgwriter`` counters read before and after the schedule: a checkpoint inside it shows here.
BGWRITER = ("checkpoints_timed", "checkpoints_req", "buffers_checkpoint", "buffers_backend")

#: Counters read from each server's ``/metrics`` before and after the traffic (their difference is printed).
COUNTERS = ("zzd_catch_ups_total", "zzd_wakeups_published", "zzd_wakeups_dropped", "zzd_broker_reconnects")


async def _counters(url: str) -> dict[str, float]:
    """This server's ``COUNTERS`` (gap repairs read from the database, wake-ups, subscriber reconnects)."""
    async with httpx.AsyncClient(timeout=30) as http:
        text = (await http.get(f"{url}/metrics")).text
    out = dict.fromkeys(COUNTERS, 0.0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        name = name.removesuffix("_total") if name.removesuffix("_total") in out else name  # counter_fn's
        if name in out:
            out[name] = float(value)
    return out


async def _pg_state(db_url: str) -> dict[str, Any]:
    """The shared server's ``BGWRITER`` counters and the start of its last completed checkpoint."""
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        row = dict(await conn.fetchrow(f"SELECT {', '.join(BGWRITER)} FROM pg_stat_bgwriter"))
        row["last"] = await conn.fetchval("SELECT checkpoint_time FROM pg_control_checkpoint()")
    finally:
        await conn.close()
    return row


async def _before_schedule(db_url: str, args: argparse.Namespace) -> str:
    """CHECKPOINT (unless ``--no-checkpoint``), then ``--wal-headstart`` WAL segments; a printable line."""
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    out = []
    try:
        if not args.no_checkpoint:
            t = time.perf_counter()
            await conn.execute("CHECKPOINT")
            out.append(f"CHECKPOINT before the schedule took {1000 * (time.perf_counter() - t):.0f} ms")
        for _ in range(args.wal_headstart):  # a switch needs a record since the last one to move on
            await conn.execute(
                "SELECT pg_logical_emit_message(false, 'zzd-bench', 'headstart'); SELECT pg_switch_wal()"
            )
        if args.wal_headstart:
            out.append(f"WAL advanced by {args.wal_headstart} segments before the schedule")
    finally:
        await conn.close()
    return "; ".join(out) or "no CHECKPOINT before the schedule"


def _checkpoints(before: dict[str, Any], after: dict[str, Any], wall_start: float) -> str:
    """What PostgreSQL's checkpointer did from the schedule's start to the end of the drain."""
    d = {k: after[k] - before[k] for k in BGWRITER}
    line = (
        f"PostgreSQL from the schedule's start to the end of the load: checkpoints timed +{d['checkpoints_timed']}, "
        f"requested +{d['checkpoints_req']}; buffers written by checkpoints +{d['buffers_checkpoint']}, "
        f"by backends +{d['buffers_backend']}"
    )
    if after["last"] != before["last"]:
        at = after["last"].timestamp() - wall_start
        line += f"; the last completed checkpoint started {after['last']:%H:%M:%S} UTC (s{at:.0f} of the schedule)"
    return line


def _tap_split(res: LoadResult, tapfile: Path) -> str:
    """Split each cross-process delivery where its wake-up (or the notice's announcement) was on Redis."""
    wake: dict[tuple[int, int], float] = {}
    announced: dict[int, float] = {}
    for line in tapfile.read_text().splitlines():
        parts = line.split()
        t = float(parts[0])
        if parts[1] == "w":
            nums = [int(x) for x in parts[3:]]
            for i in range(0, len(nums), 2):
                wake.setdefault((nums[i], nums[i + 1]), t)
        elif parts[1] == "n":
            announced.setdefault(int(parts[2]), t)
    legs: dict[str, list[tuple[float, float]]] = {"wake-up": [], "announced": [], "neither seen": []}
    for pid, seq, kind, sid, arrived, due in res.cross_detail:
        if (pid, seq) in wake:
            legs["wake-up"].append((wake[(pid, seq)] - due, arrived - wake[(pid, seq)]))
        elif kind == "notice.new" and sid in announced:
            legs["announced"].append((announced[sid] - due, arrived - announced[sid]))
        else:
            legs["neither seen"].append((arrived - due, 0.0))
    ms = lambda xs, q: f"{LoadResult.pct(xs, q) * 1000:.0f}"  # noqa: E731
    out = []
    for name, xs in legs.items():
        if xs:
            a, b = [x for x, _ in xs], [y for _, y in xs]
            out.append(f"{name} {len(xs)}: sender side p50/p99 {ms(a, 50)}/{ms(a, 99)} ms, "
                       f"receiver side p50/p99 {ms(b, 50)}/{ms(b, 99)} ms")  # fmt: skip
    total = sorted(((arr - due), i) for i, (_, _, _, _, arr, due) in enumerate(res.cross_detail))
    slow = {i for _, i in total[-max(1, len(total) // 100) :]}
    worst = [res.cross_detail[i] for i in slow]
    slow_w = [(wake[(p, q)] - d, a - wake[(p, q)]) for p, q, _, _, a, d in worst if (p, q) in wake]
    if slow_w:
        out.append(
            f"slowest 1 % ({len(worst)}): {len(slow_w)} via a wake-up, mean sender side "
            f"{1000 * sum(x for x, _ in slow_w) / len(slow_w):.0f} ms, receiver side "
            f"{1000 * sum(y for _, y in slow_w) / len(slow_w):.0f} ms"
        )
    return "cross-process deliveries split at Redis (bench/wakeup_tap.py): " + "; ".join(out)


async def _zzd(
    db_url: str, nodes: int, args: argparse.Namespace, workdir: Path, logdir: Path
) -> tuple[LoadResult, str]:
    people = await prepare(db_url, workdir, args.connections)
    broker = REDIS_URL if nodes == 2 else "memory://"
    env = {"ZZD_SEND_RATE_PER_MINUTE": "100000", "ZZD_LIMIT_CONCURRENCY": "30000"}
    prefix = f"{os.environ['ZZD_REDIS_PREFIX']}-{secrets.token_hex(3)}"
    tapfile = logdir / f"wakeups-s{nodes}.txt"
    tap = None
    if nodes == 2:  # a process of its own timestamps what the servers publish on Redis
        here = Path(__file__).resolve().parent
        tap = subprocess.Popen(
            [sys.executable, str(here / "wakeup_tap.py"), REDIS_URL, prefix, str(tapfile)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert tap.stdout is not None
        await asyncio.to_thread(tap.stdout.readline)  # "ready": subscribed
    async with zzd_processes(db_url, broker, nodes, prefixes=[prefix] * nodes, **env) as servers:
        rss0 = [rss_bytes(s.proc.pid) >> 20 for s in servers]
        warm: list[int] = []
        split = CpuSplit({f"server {i + 1}": s.proc.pid for i, s in enumerate(servers)}, db_url.rsplit("/", 1)[1])
        cpu: list[str] = []
        window: list[asyncio.Task[None]] = []
        before: list[dict[str, float]] = []
        finished = asyncio.Event()

        async def traffic_window() -> None:
            """CPU split (and py-spy with ``--profile``) over exactly the schedule's seconds."""
            before.extend(await asyncio.gather(*(_counters(s.http) for s in servers)))
            prof = Profile(f"s{nodes}", [s.proc.pid for s in servers], logdir) if args.profile else None
            split.start()
            if args.kind:  # one kind's cost: every send answered and delivered, however long that took
                await finished.wait()
            else:
                await asyncio.sleep(args.seconds)
            cpu.append(split.stop())
            if prof is not None:
                await asyncio.to_thread(prof.stop)
                cpu.append("py-spy of the server(s), whole schedule:\n" + prof.top(20))

        pg: list[Any] = []

        async def connected() -> None:
            warm.extend(rss_bytes(s.proc.pid) >> 20 for s in servers)
            pg.append(await _before_schedule(db_url, args))
            pg.append(await _pg_state(db_url))
            window.append(asyncio.create_task(traffic_window()))

        rate = args.rate if nodes == 1 else args.rate / 2
        res = await run_load(
            [s.ws for s in servers], people, rate=rate, seconds=args.seconds, on_connected=connected, only=args.kind
        )
        finished.set()
        cpu.append(f"{pg[0]}; {_checkpoints(pg[1], await _pg_state(db_url), res.wall_start)}")
        await asyncio.gather(*window)
        sends = sum(n for k, n in res.sent.items() if k != "ack")
        server_cpu = sum(v for k, v in split.used.items() if k.startswith("server"))
        cpu.append(f"server CPU per send: {1000 * server_cpu / max(sends, 1):.2f} ms ({sends} sends)")
        after = await asyncio.gather(*(_counters(s.http) for s in servers))
        deltas = [{k[4:]: int(a[k] - b[k]) for k in COUNTERS} for b, a in zip(before, after, strict=True)]
        cpu.append(f"server counters over the run (traffic and drain): {deltas}")
        rss1 = [rss_bytes(s.proc.pid) >> 20 for s in servers]
        # S2: each process's Redis subscriber must not have reconnected (the broker logs each loss).
        lost = [sum("redis subscriber lost" in line for line in s.log) for s in servers]
    if tap is not None:
        tap.terminate()
        tap.wait(timeout=10)
        cpu.append(_tap_split(res, tapfile))
    rss = f"RSS MiB at start {rss0}, all connected {warm}, end {rss1}; subscriber reconnects {lost}"
    return res, "\n  ".join([rss, *cpu])


async def _bare(db_url: str, nodes: int, args: argparse.Namespace, workdir: Path, logdir: Path) -> LoadResult:
    people = await prepare(db_url, workdir, args.connections)
    relay = start_bare("bare_relay.py", f"bare{nodes}", logdir)
    try:
        await asyncio.to_thread(wait_ready, relay, "")
        rate = args.rate if nodes == 1 else args.rate / 2
        return await run_load([relay.url], people, rate=rate, seconds=args.seconds, bare=True)
    finally:
        relay.stop()


def _run(nodes: int, args: argparse.Namespace, logdir: Path) -> None:
    label = "S1 (one process)" if nodes == 1 else "S2 (two processes via Redis)"
    with postgres_database() as db_url, tempfile.TemporaryDirectory() as tmp:
        upgrade(db_url)
        res, rss = asyncio.run(_zzd(db_url, nodes, args, Path(tmp), logdir))
    # Printed before the baseline runs: a failure there must not lose this figure.
    print(f"{label}, {args.connections} connections, {args.seconds:.0f} s:", flush=True)
    print(f"  zzd : {res.summary()}; {rss}", flush=True)
    print(f"  zzd : {res.slowest_seconds()}", flush=True)
    (logdir / f"ack_times-s{nodes}.json").write_text(json.dumps(res.ack_times))
    if res.violations:
        print("  first violations:", res.violations[:5])
    if res.failed:
        print("  first failures:", res.failed[:5], flush=True)
    if args.no_bare:
        return
    with postgres_database() as db_url, tempfile.TemporaryDirectory() as tmp:
        upgrade(db_url)
        bare = asyncio.run(_bare(db_url, nodes, args, Path(tmp), logdir))
    print(f"  bare: {bare.summary()}", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--rate", type=float, default=200.0, help="sends/s on one process (two processes: half in all)")
    p.add_argument("--only", choices=["s1", "s2"])
    p.add_argument("--quick", action="store_true", help="500 connections for 30 s")
    p.add_argument("--profile", action="store_true", help="py-spy the server(s) over the schedule")
    p.add_argument("--no-bare", action="store_true", help="skip the baseline (profiling runs only)")
    p.add_argument("--no-checkpoint", action="store_true", help="no CHECKPOINT before the schedule")
    headstart = "advance the WAL by N segments of 16 MiB first: max_wal_size's checkpoint falls inside the schedule"
    p.add_argument("--wal-headstart", type=int, default=0, metavar="N", help=headstart)
    p.add_argument(
        "--kind", choices=["chat", "notice", "task"], help="only this kind of send (CPU measured until all answered)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.connections, args.seconds = 500, 30.0
    raise_fd_limit()
    os.environ.setdefault("ZZD_REDIS_PREFIX", f"bench{secrets.token_hex(4)}")
    logdir = Path(tempfile.mkdtemp(prefix="reliability_load_"))
    print(f"logs and each run's ack times (ack_times-s*.json): {logdir}", flush=True)
    for nodes in (1, 2):
        if args.only in (None, f"s{nodes}"):
            _run(nodes, args, logdir)


if __name__ == "__main__":
    main()
