"""Server CPU per hello (issue 15 item 2): zzd beside the bare ``websockets`` hello server, same run.

Run:  .venv/bin/python bench/hello_cpu.py [--clients 2000] [--rounds 3] [--profile out.raw]

On a fresh PostgreSQL database with Redis as the broker, ``--clients``
persons with sessions and tokens (bench/common.py). Each round, every client
connects at once, says hello, holds its socket until all have been answered,
then closes (``loadgen.WorkerPool``). ``--rounds`` such rounds go to the bare
hello server (bench/bare_ws.py) and then to one ``zzd serve``.

Printed per server: each round's hellos/s, and the server process's CPU time
(utime + stime from /proc) over all its rounds divided by the hellos: the
CPU one connect + hello + close costs it (less the process's idle CPU over
that time, measured before the rounds). Why CPU and not only the rate: the
machine is shared, and the wall rate moves with everything else running,
while a process's own CPU per hello moves far less. The rate ratio is the
issue's goal (≥ 0.5×); the CPU ratio says how far zzd's code is from it.

``--profile`` records zzd's rounds with py-spy (raw format, for flame graphs
or a summary by function).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

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
from cpu_split import cpu_seconds
from loadgen import WorkerPool

PER_PROCESS = 1_000
REDIS_URL = "redis://127.0.0.1:6379/0"


IDLE_WINDOW = 5.0


def rounds(server: Server, clients: list[Client], n: int) -> tuple[list[float], float]:
    """``n`` rounds of everyone connecting at once; (hellos/s of each, server CPU s over them, idle CPU taken off).

    The idle CPU (a zzd process's timers and pollers, measured for ``IDLE_WINDOW``
    seconds first) is taken off at its rate for the rounds' duration: on a loaded
    machine the rounds last longer and would otherwise charge more of it to each hello.
    """
    rates: list[float] = []
    cpu0 = cpu_seconds(server.proc.pid)
    time.sleep(IDLE_WINDOW)
    t0, cpu1 = time.monotonic(), cpu_seconds(server.proc.pid)
    idle_rate = (cpu1 - cpu0) / IDLE_WINDOW
    for _ in range(n):
        pool = WorkerPool(clients, [server.url], max(1, -(-len(clients) // PER_PROCESS)))
        try:
            replies = pool.call("connect")
        finally:
            pool.shutdown()
        connected = sum(r["connected"] for r in replies)
        if connected < len(clients):
            print(f"  {server.name}: {len(clients) - connected} of {len(clients)} clients failed", file=sys.stderr)
        rates.append(connected / max(r["seconds"] for r in replies))
        time.sleep(1)  # the closes are handled (and counted) before the next round
    return rates, cpu_seconds(server.proc.pid) - cpu1 - idle_rate * (time.monotonic() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", default="", help="py-spy raw output file for zzd's rounds")
    args = ap.parse_args()
    logdir = Path(tempfile.mkdtemp(prefix="zzd-hello-"))
    results: dict[str, tuple[list[float], float]] = {}
    with postgres_database() as url:
        env = zzd_env(url, REDIS_URL, prefix=f"benchh{uuid.uuid4().hex[:6]}")
        migrate(env)
        clients = seed_postgres(asyncpg_dsn(url), args.clients)
        bare = start_bare("bare_ws.py", "bare", logdir)
        try:
            wait_ready(bare, "")
            results["bare websockets hello"] = rounds(bare, clients, args.rounds)
        finally:
            bare.stop()
        port = free_port()
        server = start_process("zzd", [ZZD, "serve", "--no-migrate", "--port", str(port)], env, port, logdir)
        spy: subprocess.Popen[bytes] | None = None
        try:
            wait_ready(server, "/readyz", 120)
            time.sleep(2)  # start-up work (first safety poll, pools) is not a hello's
            if args.profile:
                pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
                argv = [pyspy, "record", "-p", str(server.proc.pid), "-r", "200", "-f", "raw", "-o", args.profile]
                spy = subprocess.Popen([*argv, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1)
            results["zzd serve"] = rounds(server, clients, args.rounds)
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait()
            server.stop()
    hellos = args.clients * args.rounds
    print(f"\n{args.clients:,} clients connecting at once, {args.rounds} rounds, PostgreSQL + Redis (logs: {logdir})")
    print(f"{'server':<24}{'hellos/s per round':<26}{'CPU ms per hello':>17}")
    for name, (rates, cpu) in results.items():
        print(f"{name:<24}{' / '.join(f'{r:,.0f}' for r in rates):<26}{1000 * cpu / hellos:>17.3f}")
    (bare_rates, bare_cpu), (zzd_rates, zzd_cpu) = results.values()
    print(
        f"zzd / bare: rate {max(zzd_rates) / max(bare_rates):.2f}x (best rounds), "
        f"CPU per hello {zzd_cpu / bare_cpu:.1f}x"
    )


if __name__ == "__main__":
    main()
