"""Report fan-out to apps: grid reports filed through the API, delivered to 10 webhook apps and 2 stream apps.

Run:  .venv/bin/python bench/apps_fanout.py [--reports 1000] [--seconds 60] [--chat-rate 20]

Two ``zzd serve`` processes on a fresh PostgreSQL database with the Redis
broker. Ten apps subscribe to ``report.filed`` by signed webhook on real local
HTTP receivers (``bench/apps_receivers.py``, a process of their own; one
answers after 2 s, one fails half its requests), two by
stream (the SDK's consumer, acknowledging each event). Reports are filed
open-loop at ``reports / seconds`` per second, alternating between the two
processes. Meanwhile two people chat across the processes at ``--chat-rate``
messages per second; chat send→ack is measured first alone (same duration),
then under the app traffic.

Reported: deliveries per second (first attempts at every app), report→first
attempt p50/p99 per healthy app (goal p99 ≤ 1 s), chat p99 alone and with app
traffic (goal: at most 20 % worse), and the bare baseline of the same run: the
same payloads posted straight to the same healthy receivers from one asyncio
httpx client at the same rate.

``--control`` adds a third chat phase with no app traffic, beside two busy-loop
processes burning as much CPU as the app traffic added to the machine (its
busy cores minus the chat-alone phase's): the control for "the chat waits for
the platform" against "the chat waits for the cores".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx

from notice_pgsample import PgSampler
from notice_pyspy import Profile

from common import (
    BENCH,
    PYTHON,
    ROOT,
    ZZD,
    Server,
    asyncpg_dsn,
    mint_token,
    percentile,
    postgres_database,
    start_bare,
    start_process,
    start_zzd,
    wait_ready,
    zzd_env,
)

sys.path.insert(0, str(ROOT))

WEBHOOK_APPS = 10
STREAM_APPS = 2
SLOW, FLAKY = "/app0", "/app1"  # answers after 2 s; fails half its requests


async def _setup(url: str, tmp: Path, reporters: int) -> dict[str, Any]:
    from tests.notices.conftest import write_divisions

    from apps.registry import AppRegistry, NewApp
    from kernel.clock import SystemClock
    from kernel.db.database import Database
    from kernel.sessions import SessionStore
    from org_tree.importer import import_divisions
    from org_tree.index import OrgIndexHolder
    from org_tree.jurisdiction import SYSTEM
    from org_tree.org_service import OrgService
    from org_tree.people import PersonDirectory
    from org_tree.synthetic import generate_people

    db = Database(url)
    try:
        await import_divisions(db, write_divisions(tmp / "div", townships=4, villages=8), grids_per_village=2)
        await generate_people(db, seed=11)
        holder = OrgIndexHolder(db)
        await holder.load()
        clock = SystemClock()
        org = OrgService(db, clock, holder)
        persons = PersonDirectory(db, clock)
        sessions = SessionStore(db, clock, refresh_ttl=__import__("datetime").timedelta(days=1))
        reg = AppRegistry(db, clock, org, persons, lambda: holder.index)
        apps = []
        for i in range(WEBHOOK_APPS + STREAM_APPS):
            app, secret = await reg.create(SYSTEM, NewApp(f"bench-app-{i}", "99", "99", "*@99", ["events:report.filed"],
                                                          rate_per_minute=100_000))  # fmt: skip
            apps.append((app.client_id, secret.secret))
        idx = holder.index
        grid_positions = [
            idx.position_id(k)
            for u in range(idx.unit_count())
            if idx.unit_level(u) == 6
            for k in idx.unit_slots(u)
            if idx.position_role(k).key == "grid_worker"
        ][:reporters]
        workers = []
        for pos in grid_positions:
            p = await persons.create("网格员")
            await org.handover(SYSTEM, pos, p.id)
            sid = (await sessions.open(p.id)).session_id
            workers.append((p.id, pos, mint_token(p.id, sid)))
        chat = []
        for name in ("甲", "乙"):
            p = await persons.create(name)
            chat.append((p.id, mint_token(p.id, (await sessions.open(p.id)).session_id)))
        return {"apps": apps, "workers": workers, "chat": chat}
    finally:
        await db.dispose()


class Receivers:
    """The receivers' process (``bench/apps_receivers.py``); its ``/stats`` after the run."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.first: dict[str, dict[int, float]] = defaultdict(dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def fetch(self) -> None:
        async with httpx.AsyncClient(timeout=60) as h:
            got = (await h.get(self.base + "/stats")).json()
        self.first = defaultdict(dict, {p: {int(r): float(t) for r, t in v.items()} for p, v in got["first"].items()})


async def _chat(ws_url: str, a: tuple[int, str], b: tuple[int, str], rate: float, seconds: float,
                outcomes: Counter[str], lag: list[float]) -> list[float]:  # fmt: skip
    """Send a→b at ``rate``/s for ``seconds`` from ``bench/apps_chat_client.py``; returns send→ack latencies in ms.

    A process of its own, so the filing and the stream apps in this one do not delay the replies it times.
    ``outcomes`` counts the replies by kind, ``lag`` gets the client's own event-loop lag samples.
    """
    proc = await asyncio.create_subprocess_exec(
        PYTHON, str(BENCH / "apps_chat_client.py"), "--url", ws_url, "--token", a[1], "--to", str(b[0]),
        "--rate", str(rate), "--seconds", str(seconds), stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    got = json.loads(out)
    outcomes.update(got["outcomes"])
    lag.extend(got["lag"])
    return [float(x) for x in got["lat"]]


async def _file(http: list[str], workers: list[tuple[int, int, str]], n: int, seconds: float) -> dict[int, float]:
    """File ``n`` reports open-loop; returns report id → time the POST started."""
    filed: dict[int, float] = {}
    t0 = time.monotonic()
    async with httpx.AsyncClient(timeout=60) as h:

        async def one(i: int) -> None:
            pid, pos, tok = workers[i % len(workers)]
            due = t0 + i * seconds / n
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            start = time.time()
            r = await h.post(f"{http[i % len(http)]}/api/v1/reports", headers={"Authorization": f"Bearer {tok}"},
                             json={"as_position": pos, "client_msg_id": f"b{i}", "category": "river_litter",
                                   "text": f"河道垃圾 {i}", "location": {"lat": 28.97, "lon": 118.86}})  # fmt: skip
            if r.status_code in (200, 201):
                filed[int(r.json()["report_id"])] = start

        await asyncio.gather(*(one(i) for i in range(n)))
    return filed


async def _bare(base: str, paths: list[str], payloads: list[bytes], seconds: float) -> list[float]:
    """The baseline: the same payloads posted straight to the healthy receivers from one httpx client."""
    lat: list[float] = []
    t0 = time.monotonic()
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as h:

        async def one(i: int, body: bytes) -> None:
            due = t0 + i * seconds / len(payloads)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            for p in paths:
                start = time.time()
                try:
                    await h.post(base + "/bare" + p, content=body, headers={"content-type": "application/json"})
                    lat.append((time.time() - start) * 1000)
                except httpx.HTTPError:
                    lat.append(float("inf"))  # counted as lost, like a chat reply that never came

        await asyncio.gather(*(one(i, b) for i, b in enumerate(payloads)))
    return lat


def _wait_log(server: Server, line: str, timeout: float = 60.0) -> None:
    """Wait for a process that listens on nothing (``zzd delivery``) to log ``line``."""
    deadline = time.monotonic() + timeout
    while line not in server.log.read_text(errors="replace"):
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} did not start: {server.log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far: a figure a loaded machine does not inflate."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _all_cpu() -> dict[int, tuple[str, float]]:
    """Every process on the machine: pid → (command, CPU seconds so far). Who used the cores in a window."""
    out: dict[int, tuple[str, float]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            out[int(d.name)] = (cmd or (d / "comm").read_text().strip(), _cpu(int(d.name)))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _cpu_report(before: dict[int, tuple[str, float]], ours: dict[int, str], seconds: float) -> tuple[str, float]:
    """CPU seconds per process over a window: this run's processes by name, PostgreSQL, Redis, the rest;
    and the cores this run's processes, PostgreSQL and Redis kept busy (the other tenants left out).

    Why: on the shared 2-core machine a chat tail can be the cores, not the
    server; this says who had them (the other tenants' processes included).
    """
    after = _all_cpu()
    groups: Counter[str] = Counter()
    for pid, (cmd, cpu) in after.items():
        used = cpu - before.get(pid, (cmd, 0.0))[1]
        if used <= 0:
            continue
        if pid in ours:
            groups[ours[pid]] += used
        elif cmd.startswith("postgres"):
            groups["postgres (all databases)"] += used
        elif "redis-server" in cmd:
            groups["redis"] += used
        else:
            groups["other tenants"] += used
    total = float(sum(groups.values()))
    text = (f"CPU of the machine over {seconds:.0f} s ({total / seconds:.2f} of 2 cores busy): "
            + ", ".join(f"{k} {v:.1f} s" for k, v in groups.most_common()))  # fmt: skip
    return text, (total - groups["other tenants"]) / seconds


#: A control load: CPU burnt in 2 ms slices at a duty cycle, and nothing else (no I/O, no database).
_HOG = """
import sys, time
duty, end = float(sys.argv[1]), time.monotonic() + float(sys.argv[2])
busy = 0.002
idle = busy * (1 - duty) / max(duty, 1e-3)
while time.monotonic() < end:
    t = time.perf_counter()
    while time.perf_counter() - t < busy:
        pass
    time.sleep(idle)
"""


def _hogs(cores: float, seconds: float) -> list[subprocess.Popen[bytes]]:
    """Two processes that keep ``cores`` of the machine busy for ``seconds`` (``--control``)."""
    duty = min(1.0, max(0.0, cores) / 2)
    return [subprocess.Popen([PYTHON, "-c", _HOG, str(duty), str(seconds)]) for _ in range(2)]


def _own_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def _stages(url: str) -> int:
    """Where the time went, per delivery mode: event → dispatched (delivery row written) → first attempt."""
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch(
            """SELECT s.mode, s.url, extract(epoch FROM d.created_at - d.event_created_at) AS dispatch,
                      extract(epoch FROM min(a.at) - d.created_at) AS first, min(a.latency_ms) AS took
                 FROM app_deliveries d JOIN app_subscriptions s ON s.id = d.subscription_id
                 JOIN app_delivery_attempts a ON a.delivery_id = d.id AND a.attempt = 1
                GROUP BY d.id, s.mode, s.url"""
        )
        attempts = int(await conn.fetchval("SELECT count(*) FROM app_delivery_attempts"))
    finally:
        await conn.close()
    for mode in ("webhook", "stream"):
        got = [r for r in rows if r["mode"] == mode and not str(r["url"] or "").endswith((SLOW, FLAKY))]
        disp = [float(r["dispatch"]) * 1000 for r in got]
        first = [float(r["first"]) * 1000 for r in got]
        print(f"  {mode} (healthy): event→dispatched {_stats(disp)}; dispatched→first attempt recorded {_stats(first)}"
              + (f"; HTTP post {_stats([float(r['took']) for r in got])}" if mode == "webhook" else ""))  # fmt: skip
    return attempts


def _stats(xs: list[float]) -> str:
    return f"p50 {percentile(xs, 50):.0f} ms, p99 {percentile(xs, 99):.0f} ms" if xs else "no samples"


async def main_async(args: argparse.Namespace, url: str) -> None:
    from apps.sdk import AppClient

    tmp = Path(tempfile.mkdtemp(prefix="apps-fanout-"))
    try:
        env = zzd_env(url, os.environ.get("ZZD_BENCH_REDIS", "redis://127.0.0.1:6379/0"))
        env.update(ZZD_WEBHOOK_ALLOWED_NETWORKS='["127.0.0.0/8"]', ZZD_WEBHOOK_ALLOW_PUBLIC="false",
                   ZZD_DELIVERY_POLL_INTERVAL="0.1", ZZD_WEBHOOK_TIMEOUT="5", ZZD_WEBHOOK_BACKOFF_BASE="1",
                   ZZD_WEBHOOK_DISABLE_AFTER="100000")  # fmt: skip
        import subprocess

        subprocess.run([ZZD, "migrate"], env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        data = await _setup(url, tmp, args.reporters)
        print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
        if args.delivery_processes:
            env["ZZD_DELIVERY_IN_SERVER"] = "false"
        servers = [start_zzd(f"zzd{i}", env, tmp) for i in range(2)]
        # zzd delivery processes (--delivery-processes): they send the webhooks the servers record
        senders = [start_process(f"delivery{i}", [ZZD, "delivery", "--nice", str(args.delivery_nice)],
                                 {**env, "ZZD_LOG_LEVEL": "info"}, 0, tmp)
                   for i in range(args.delivery_processes)]  # fmt: skip
        servers_only = servers
        rec = Receivers(start_bare("apps_receivers.py", "receivers", tmp))
        try:
            for s in servers:
                wait_ready(s)
            for s in senders:
                _wait_log(s, "sending webhooks")
            servers = [*servers_only, *senders]  # CPU and profiles below: every zzd process
            wait_ready(rec.server, path="")
            http = [f"http://127.0.0.1:{s.port}" for s in servers_only]
            base = rec.base
            clients = [AppClient(http[i % 2], cid, sec) for i, (cid, sec) in enumerate(data["apps"])]
            for i, c in enumerate(clients[:WEBHOOK_APPS]):
                await c.subscribe(["report.filed"], url=f"{base}/app{i}")
            stream_first: dict[int, dict[int, float]] = defaultdict(dict)

            async def consume(k: int, c: AppClient) -> None:
                await c.subscribe(["report.filed"])
                async for ev in c.stream():
                    stream_first[k].setdefault(int(ev.event["data"]["report_id"]), time.time())
                    await ev.ack()

            consumers = [asyncio.create_task(consume(k, c)) for k, c in enumerate(clients[WEBHOOK_APPS:])]
            for t in consumers:  # a consumer that stops is a finding, not a silent gap in the figures
                t.add_done_callback(lambda t: t.cancelled() or print(f"stream consumer ended: {t.exception()!r}"))
            healthy = [f"/app{i}" for i in range(WEBHOOK_APPS) if f"/app{i}" not in (SLOW, FLAKY)]
            # the bare baseline first, while the servers are idle: the same kind of bodies, straight to the receivers
            payloads = [json.dumps({"id": str(r), "type": "report.filed", "data": {"report_id": r}}).encode()
                        for r in range(args.reports)]  # fmt: skip
            t_bare, cpu_bare = time.time(), _own_cpu()
            bare = await _bare(base, healthy, payloads, args.seconds)
            took, cpu_bare = time.time() - t_bare, _own_cpu() - cpu_bare
            a, b = data["chat"]
            ws0 = f"ws://127.0.0.1:{servers_only[0].port}/ws"
            alone_outcomes: Counter[str] = Counter()
            loaded_outcomes: Counter[str] = Counter()
            ours = {x.proc.pid: x.name for x in [*servers, rec.server]} | {os.getpid(): "bench (filing, stream apps)"}
            lag_alone: list[float] = []
            lag_loaded: list[float] = []
            cpu_a0, t_a0, machine0 = sum(_cpu(x.proc.pid) for x in servers), time.time(), _all_cpu()
            chat_alone = await _chat(ws0, a, b, args.chat_rate, args.seconds, alone_outcomes, lag_alone)
            machine_alone, machine_alone_busy = _cpu_report(machine0, ours, time.time() - t_a0)
            # the servers' CPU per second with chat alone: what the app traffic's window would cost without it
            cpu_alone_rate = (sum(_cpu(x.proc.pid) for x in servers) - cpu_a0) / (time.time() - t_a0)
            started, cpu0 = time.time(), sum(_cpu(x.proc.pid) for x in servers)
            cpu_each0 = {x.name: _cpu(x.proc.pid) for x in servers}
            machine0 = _all_cpu()
            chat_task = asyncio.create_task(_chat(ws0, a, b, args.chat_rate, args.seconds, loaded_outcomes, lag_loaded))
            prof = Profile("fanout", [x.proc.pid for x in servers], tmp) if args.profile else None
            pgs = PgSampler(asyncpg_dsn(url), url.rsplit("/", 1)[1]) if args.pg_sample else None
            filed = await _file(http, data["workers"], args.reports, args.seconds)
            chat_loaded = await chat_task
            pg_busy = pgs.stop(12) if pgs is not None else ""
            machine_loaded, machine_loaded_busy = _cpu_report(machine0, ours, time.time() - started)
            if prof is not None:
                prof.stop()
                print("py-spy of both servers while the reports were filed:\n" + prof.top(20))
            deadline = time.time() + 60
            await rec.fetch()
            while time.time() < deadline and not all(
                len(rec.first[p]) >= len(filed) for p in healthy
            ):  # the drain: wait for the healthy apps to have every report
                await asyncio.sleep(0.5)
                await rec.fetch()
            cpu_zzd, window = sum(_cpu(x.proc.pid) for x in servers) - cpu0, time.time() - started
            cpu_each = {x.name: _cpu(x.proc.pid) - cpu_each0[x.name] for x in servers}
            finished = max([max(v.values()) for v in rec.first.values() if v] + [started + 1])
            firsts = sum(len(v) for v in rec.first.values()) + sum(len(v) for v in stream_first.values())
            print(
                f"reports filed: {len(filed)} of {args.reports} in {args.seconds:g} s; two processes, PostgreSQL, Redis"
            )
            print(f"deliveries (first attempts, 12 apps): {firsts} in {finished - started:.1f} s = "
                  f"{firsts / max(0.001, finished - started):.0f}/s")  # fmt: skip
            worst = 0.0
            for p in healthy:
                lat = [(rec.first[p][r] - t) * 1000 for r, t in filed.items() if r in rec.first[p]]
                worst = max(worst, percentile(lat, 99) if lat else float("inf"))
                print(f"  webhook {p}: {len(lat)}/{len(filed)} report→first attempt {_stats(lat)}")
            for k, got in stream_first.items():
                lat = [(got[r] - t) * 1000 for r, t in filed.items() if r in got]
                worst = max(worst, percentile(lat, 99) if lat else float("inf"))
                print(f"  stream app {k}: {len(lat)}/{len(filed)} report→event {_stats(lat)}")
            print(
                f"  slow app {SLOW}: {len(rec.first[SLOW])} reached; flaky app {FLAKY}: {len(rec.first[FLAKY])} reached"
            )
            print(f"worst healthy p99: {worst:.0f} ms (goal ≤ 1000 ms)")
            attempts = await _stages(url)
            per = cpu_zzd * 1000 / max(1, attempts)
            print("CPU by process: " + ", ".join(f"{k} {v:.1f} s" for k, v in cpu_each.items()))
            print(f"CPU: every zzd process {cpu_zzd:.1f} s for {len(filed)} reports and {attempts} delivery attempts"
                  f" (with the chat and the filing) = {per:.1f} ms per attempt")  # fmt: skip
            extra = cpu_zzd - cpu_alone_rate * window
            print(f"  beyond the chat-alone phase's {cpu_alone_rate:.2f} CPU s/s over the same {window:.0f} s: "
                  f"{extra:.1f} s = {extra * 1000 / max(1, attempts):.1f} ms per attempt (filing, dispatch, webhooks, "
                  "streams); bench/apps_attempt_cpu.py measures the webhook attempt alone")  # fmt: skip
            p_alone, p_loaded = percentile(chat_alone, 99), percentile(chat_loaded, 99)
            print(f"chat send→ack: alone {_stats(chat_alone)}; with app traffic {_stats(chat_loaded)} "
                  f"({(p_loaded / max(p_alone, 0.001) - 1) * 100:+.0f} % p99; goal ≤ +20 %)")  # fmt: skip
            print(f"  replies alone: {dict(alone_outcomes)}; with app traffic: {dict(loaded_outcomes)}")
            print(f"  the chat client's own event-loop lag (a process of its own): alone {_stats(lag_alone)};"
                  f" with app traffic {_stats(lag_loaded)}")  # fmt: skip
            print(f"  chat alone: {machine_alone}")
            print(f"  with app traffic: {machine_loaded}")
            if pg_busy:
                print("  what PostgreSQL was busy with while chat ran beside the app traffic:\n" + pg_busy)
            if args.control:
                # The control: chat again with no app traffic, beside a load that only burns the CPU the
                # app traffic added to the machine. A tail as long as with the app traffic says the cores
                # were what the chat waited for, not anything the platform's code holds it behind.
                added = machine_loaded_busy - machine_alone_busy
                hogs = _hogs(added, args.seconds + 2)
                lag_control: list[float] = []
                control_outcomes: Counter[str] = Counter()
                machine0, t_c0 = _all_cpu(), time.time()
                chat_control = await _chat(ws0, a, b, args.chat_rate, args.seconds, control_outcomes, lag_control)
                machine_control, _ = _cpu_report(machine0, ours, time.time() - t_c0)
                for h in hogs:
                    h.wait()
                p_control = percentile(chat_control, 99)
                print(f"control: chat beside {added:.2f} cores of plain CPU load (two busy-loop processes, no app"
                      f" traffic): {_stats(chat_control)} ({(p_control / max(p_alone, 0.001) - 1) * 100:+.0f} % p99"
                      f" against alone); replies {dict(control_outcomes)}")  # fmt: skip
                print(f"  control: {machine_control}")
            print(f"bare baseline (one httpx client, {len(healthy)} receivers, before the run): {len(bare)} posts"
                  f" in {took:.1f} s = {len(bare) / took:.0f}/s, post→answered {_stats(bare)};"
                  f" client CPU {cpu_bare * 1000 / max(1, len(bare)):.1f} ms per post")  # fmt: skip
            for t in consumers:
                t.cancel()
            for c in clients:
                await c.close()
        finally:
            print(f"load after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
            for s in [*servers_only, *senders, rec.server]:
                s.stop()
            for s in [*servers_only, *senders]:
                tail = s.log.read_text(errors="replace").splitlines()[-15:]
                if any("Error" in line or "Traceback" in line for line in tail):
                    print(f"--- {s.name} log tail\n" + "\n".join(tail))
    finally:
        if args.keep_logs:
            print(f"server logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--reports", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--reporters", type=int, default=50)
    ap.add_argument("--chat-rate", type=float, default=20.0)
    ap.add_argument("--profile", action="store_true", help="py-spy both servers while the reports are filed")
    ap.add_argument("--pg-sample", action="store_true", help="sample pg_stat_activity while the reports are filed")
    ap.add_argument(
        "--delivery-processes",
        type=int,
        default=0,
        help="send webhooks from N `zzd delivery` processes (servers: ZZD_DELIVERY_IN_SERVER=false)",
    )
    ap.add_argument("--delivery-nice", type=int, default=0, help="their `--nice` (10: below the servers, and everyone)")
    ap.add_argument("--keep-logs", action="store_true", help="keep the server logs (their folder is printed)")
    ap.add_argument(
        "--control",
        action="store_true",
        help="a third chat phase: no app traffic, beside busy loops burning the CPU the app traffic added",
    )
    args = ap.parse_args()
    with postgres_database() as url:
        asyncio.run(main_async(args, url))


if __name__ == "__main__":
    main()
