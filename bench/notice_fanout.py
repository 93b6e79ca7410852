"""Notice fan-out: a province-wide notice, 10,000 recipients online, receipts streaming back.

Run:  .venv/bin/python bench/notice_fanout.py --backend postgres|sqlite [--quick]
      [--clients 10000] [--persons 1200000] [--unit 33] [--roles grid_chief,grid_worker,...]
      [--procs 4] [--read-spread 1.0] [--copy-runs 3] [--logdir DIR] [--profile] [--gc-log] [--timings]

Per run, on a fresh database (``zzd migrate``, then the Zhejiang import with
synthetic people exactly as bench/org/import_zhejiang.py does it):
1. the sender is the holder of 省长@33 (the governor position, jurisdiction
   over the whole province); ``--clients`` recipients are drawn at random from
   the people holding one of the addressed roles; login sessions and tokens
   for them are seeded straight into the database (bench/common.py style);
2. baseline push (run after zzd's, with its frame size): the same clients connect to bare ``websockets`` servers
   (bench/notice_bare.py; one for sqlite, two for postgres, same split) and one
   frame of the size of zzd's ``notice.new`` is broadcast: trigger → last
   client has it;
3. zzd: ``zzd serve`` (one process on SQLite; two on PostgreSQL with the Redis
   broker, clients alternating between them) with the clients and the sender
   connected over WebSocket from their own processes; the sender POSTs
   /api/v1/notices (answered after the commit): time to commit, and send → last
   connected recipient's ``notice.new``;
4. read receipts: every connected recipient sends ``notice_read`` over its
   WebSocket, open-loop, evenly over ``--read-spread`` s: receipts/s (replies
   over time from the first scheduled read to the last reply) and the sender's
   progress lag (last read reply → the sender's ``notice.progress`` event that
   counts all their receipts as read);
5. baseline write (after the reads, so it cannot disturb them): the very
   receipt rows the send committed, read back and written again with a bare
   asyncpg ``copy_records_to_table`` (SQLite: bare ``sqlite3.executemany``)
   into a scratch copy of ``notice_receipts`` (same columns, indexes, unique
   constraint and foreign key), in one transaction, ``--copy-runs`` times
   (median).

Also printed: CPU of zzd / PostgreSQL+Redis / the rest of the machine per
phase, what PostgreSQL's backends were doing (``pg_stat_activity`` samples,
bench/notice_pgsample.py), and with ``--profile`` py-spy summaries of the
servers per phase (bench/notice_pyspy.py; raw stacks stay in ``--logdir``).

Goals (issue 4): commit ≤ 1.5× the bare COPY; send → last delivery ≤ 3 s
(PostgreSQL) / ≤ 5 s (SQLite); deliveries/s ≥ 0.7× the bare broadcast;
≥ 5,000 read receipts/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from chat_load import cpu_seconds
from notice_bare import trigger
from notice_baselines import pg_copy_baseline, pg_receipts, sqlite_copy_baseline, sqlite_receipts
from notice_load import NoticePool
from notice_pgsample import PgSampler
from notice_pyspy import Profile
from notice_setup import prepare

from common import (
    BENCH,
    PYTHON,
    ROOT,
    Client,
    Server,
    asyncpg_dsn,
    free_port,
    migrate,
    percentile,
    postgres_database,
    ratio,
    start_process,
    start_zzd,
    wait_ready,
    zzd_env,
)

sys.path.insert(0, str(ROOT))

GOAL_COMMIT_RATIO = 1.5
GOAL_LAST_DELIVERY = {"postgres": 3.0, "sqlite": 5.0}
GOAL_PUSH_RATIO = 0.7
GOAL_READS_PER_S = 5_000.0
DEFAULT_ROLES = "grid_chief,grid_worker,village_secretary,village_director"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- receipts read back, and the bare write baseline ------------------------------------


# --- phases ---------------------------------------------------------------------------


@contextlib.contextmanager
def running(servers: list[Server], ready_path: str, timeout: float = 300.0) -> Iterator[list[Server]]:
    try:
        for s in servers:
            wait_ready(s, ready_path, timeout=timeout)
        yield servers
    finally:
        for s in servers:
            s.stop()


class Cpu:
    """CPU seconds over one phase: our servers, PostgreSQL/Redis, everything else (% of one core)."""

    def __init__(self, servers: list[Server]) -> None:
        self.pids = [s.proc.pid for s in servers]
        self.t = time.time()
        self.marks = self._mark()

    def _mark(self) -> tuple[float, float, float]:
        import psutil

        sys_t = psutil.cpu_times()
        busy = sum(sys_t) - sys_t.idle - getattr(sys_t, "iowait", 0.0)
        db = 0.0
        for proc in psutil.process_iter(["name", "cpu_times"]):
            if proc.info["name"] in ("postgres", "redis-server") and proc.info["cpu_times"] is not None:
                db += proc.info["cpu_times"].user + proc.info["cpu_times"].system
        return cpu_seconds(self.pids), db, busy

    def done(self) -> str:
        end = self._mark()
        span = max(1e-9, time.time() - self.t)
        srv, db, busy = (100 * (b - a) / span for a, b in zip(self.marks, end, strict=True))
        return f"CPU% over {span:.1f} s: zzd {srv:.0f}, postgres+redis {db:.0f}, rest {busy - srv - db:.0f}"


def _phase_done(out: dict[str, Any], phase: str, cpu: Cpu, pgs: PgSampler | None, prof: Profile | None) -> None:
    """Stop what watched one phase and file it under ``cpu_<phase>``, ``pg_<phase>``, ``profile_<phase>``."""
    out[f"cpu_{phase}"] = cpu.done()
    if pgs:
        out[f"pg_{phase}"] = pgs.stop()
    if prof:
        prof.stop()
        out[f"profile_{phase}"] = prof.top()


def connect(pool: NoticePool, label: str, want: int) -> int:
    t = time.time()
    got = sum(r["connected"] for r in pool.call("connect"))
    log(f"{label}: {got}/{want} clients connected in {time.time() - t:.1f} s")
    pool.call("listen")
    return got


BARE_FRAME_LEN = 420


def bare_frame(length: int) -> str:
    """A ``notice.new``-shaped event padded to ``length`` bytes."""
    data = {"notice_id": 1, "title": "bench", "priority": "normal", "positions": [{"position_id": 1}], "pad": ""}
    base = json.dumps({"type": "event", "seq": 1, "kind": "notice.new", "data": data})
    data["pad"] = "x" * max(0, length - len(base))
    return json.dumps({"type": "event", "seq": 1, "kind": "notice.new", "data": data})


def run_bare(
    clients: list[Client], n_servers: int, args: argparse.Namespace, logdir: Path, frame_len: int
) -> dict[str, Any]:
    servers = []
    for i in range(n_servers):
        port = free_port()
        servers.append(
            start_process(
                f"notice_bare_{i}",
                [PYTHON, str(BENCH / "notice_bare.py"), "--port", str(port)],
                dict(os.environ),
                port,
                logdir,
            )
        )
    with running(servers, ""):
        pool = NoticePool(clients, [s.url for s in servers], args.procs)
        try:
            got = connect(pool, "bare", len(clients))
            time.sleep(1.0)
            t0 = asyncio.run(trigger([s.url for s in servers], bare_frame(frame_len)))
            res = pool.call("await_new", timeout=60.0)
        finally:
            pool.shutdown()
    times = [t for r in res for t in r["times"]]
    last = max(times) - t0 if times else float("nan")
    return {
        "connected": got,
        "delivered": len(times),
        "last": last,
        "rate": len(times) / last if times else 0.0,
        "p50": percentile([t - t0 for t in times], 50),
    }


def run_zzd(
    backend: str,
    env: dict[str, str],
    url: str,
    clients: list[Client],
    sender: Client,
    sender_pos: int,
    args: argparse.Namespace,
    logdir: Path,
) -> dict[str, Any]:
    n = 2 if backend == "postgres" else 1
    servers = [start_zzd(f"zzd_{backend}_{i}", env, logdir) for i in range(n)]
    out: dict[str, Any] = {}
    with running(servers, "/readyz"):
        log(f"{n} zzd process(es) ready")
        pool = NoticePool(clients, [s.url for s in servers], args.procs)
        spool = NoticePool([sender], [servers[-1].url], 1, first_index=99)
        try:
            out["connected"] = connect(pool, "zzd", len(clients))
            connect(spool, "sender", 1)
            time.sleep(2.0)
            body = {
                "as_position": sender_pos,
                "selector": args.selector,
                "client_msg_id": uuid.uuid4().hex,
                "title": "全省网格员紧急通知 (bench)",
                "body": "请各网格员立即核查辖区情况。" * 10,
                "priority": "normal",
                "ack_required": False,
            }
            prof = Profile("send", [x.proc.pid for x in servers], logdir) if args.profile else None
            if prof:
                time.sleep(1.0)
            cpu = Cpu(servers)
            pgs = PgSampler(asyncpg_dsn(url), url.rsplit("/", 1)[1]) if backend == "postgres" else None
            t0 = time.time()
            r = httpx.post(
                f"http://127.0.0.1:{servers[0].port}/api/v1/notices",
                json=body,
                headers={"authorization": f"Bearer {sender.token}"},
                timeout=600,
            )
            t1 = time.time()
            if r.status_code != 201:
                raise RuntimeError(f"send failed: {r.status_code} {r.text[:500]}")
            sent = r.json()
            out.update(send=sent, commit=t1 - t0)
            log(f"POST answered after {t1 - t0:.2f} s: {sent}")
            res = pool.call("await_new", timeout=120.0)
            times = [t for x in res for t in x["times"]]
            out.update(
                delivered=len(times),
                missing=sum(x["missing"] for x in res),
                last=(max(times) - t0) if times else float("nan"),
                p50=percentile([t - t0 for t in times], 50),
                after_commit=(max(times) - t1) if times else float("nan"),
                first=(min(times) - t0) if times else float("nan"),
                frame_len=max(x["frame_len"] for x in res),
                closed=sum(x["closed"] for x in res),
            )
            out["rate"] = len(times) / max(1e-9, max(times) - t1) if times else 0.0
            _phase_done(out, "send", cpu, pgs, prof)
            log(f"delivered {len(times)} (missing {out['missing']}), last {out['last']:.2f} s after send")
            if args.gc_log and times:
                out["gc_send"] = gc_pauses(logdir, t0, max(times))
            nid = int(sent["notice_id"])
            if args.timings:
                out["timings"] = path_timings(logdir, t0)
            # The events of the recipients who are not connected (and a large notice's
            # receipts) are written after the commit by the relay's sweep; the reads start
            # once it has finished, so they measure receipt ingestion alone, as before the
            # fan-out was deferred, and the receipts are read back complete.
            out["fanout_all"] = wait_fanout_done(backend, url, nid, t0)
            # The readers are the sockets that got the notice (under load a few may fail to connect).
            persons = [p for x in res for p in x["persons"]]
            if backend == "postgres":
                dsn = asyncpg_dsn(url)
                rows, mine = asyncio.run(pg_receipts(dsn, nid, persons))
            else:
                path = Path(url.split("///", 1)[1])
                rows, mine = sqlite_receipts(path, nid, persons)
            out.update(receipt_rows=len(rows), expected_read=mine)
            log(f"fan-out of all {len(rows):,} receipts finished {out['fanout_all']:.2f} s after send")
            # --- read receipts ---
            prof = Profile("reads", [x.proc.pid for x in servers], logdir) if args.profile else None
            start = time.time() + 1.5
            cpu = Cpu(servers)
            pgs = PgSampler(asyncpg_dsn(url), url.rsplit("/", 1)[1]) if backend == "postgres" else None
            pool.send("read", notice_id=nid, start=start, spread=args.read_spread, drain=60.0)
            spool.send("await_progress", expected_read=mine, timeout=args.read_spread + 75.0)
            rr = pool.collect()
            pr = spool.collect()[0]
            _phase_done(out, "reads", cpu, pgs, prof)
            oks = [t for x in rr for t in x["ok_times"]]
            lat = [t for x in rr for t in x["lat"]]
            errs: dict[str, int] = {}
            for x in rr:
                for k, v in x["errors"].items():
                    errs[k] = errs.get(k, 0) + v
            last_ok = max(oks) if oks else float("nan")
            full = [t for t, d in pr["progress"] if d.get("read", 0) >= mine]
            out.update(
                reads_sent=sum(x["sent"] for x in rr),
                reads_ok=len(oks),
                read_errors=errs,
                read_rate=len(oks) / max(1e-9, last_ok - start) if oks else 0.0,
                read_span=last_ok - start,
                read_p50=percentile(lat, 50) * 1e3,
                read_p99=percentile(lat, 99) * 1e3,
                progress_events=len(pr["progress"]),
                progress_last=pr["progress"][-1][1] if pr["progress"] else None,
                progress_lag=(min(full) - last_ok) if full else float("nan"),
                progress_from_start=(min(full) - start) if full else float("nan"),
            )
            if args.gc_log and oks:
                out["gc_reads"] = gc_pauses(logdir, start, last_ok)
            # --- bare write of the same rows (after the reads, so it cannot disturb them) ---
            if backend == "postgres":
                copies = asyncio.run(pg_copy_baseline(asyncpg_dsn(url), rows, args.copy_runs))
            else:
                copies = sqlite_copy_baseline(Path(url.split("///", 1)[1]), rows, args.copy_runs)
            out["copies"] = copies
            log(f"bare write of {len(rows)} rows: {', '.join(f'{c:.2f}' for c in copies)} s")
        finally:
            pool.shutdown()
            spool.shutdown()
    return out


def path_timings(logdir: Path, t0: float) -> str:
    """The servers' own timings of the connected-first write (``--timings``), in s after the POST."""
    import re

    pat = re.compile(
        r"notice \d+: (\d+) connected recipients written in (\d+) ms, offered to their sockets in (\d+) ms"
        r" \(started at ([\d.]+)\)"
    )
    out = []
    time.sleep(0.5)
    for f in sorted(logdir.glob("zzd_*.log")):
        for line in f.read_text(errors="replace").splitlines():
            m = pat.search(line)
            if m:
                n, wrote, offered, start = int(m[1]), int(m[2]), int(m[3]), float(m[4])
                out.append(
                    f"    {f.stem}: connected-first write of {n:,} persons started {start - t0:.3f} s after the POST,"
                    f" committed after {wrote} ms, offered to the sockets in {offered} ms"
                    f" (done {start - t0 + (wrote + offered) / 1e3:.3f} s)"
                )
    return "\n".join(out) or "    (no timing lines in the server logs)"


def gc_pauses(logdir: Path, start: float, end: float) -> str:
    """The servers' generation-2 collections that ended within [start, end] (``--gc-log``)."""
    ms = []
    for f in logdir.glob("gc-*.txt"):
        for line in f.read_text().splitlines():
            at, dur = (float(x) for x in line.split())
            if start <= at <= end:
                ms.append(dur)
    longest = max(ms, default=0.0)
    return f"{len(ms)} full collection(s), {sum(ms):.0f} ms in all, longest {longest:.0f} ms"


def wait_fanout_done(backend: str, url: str, notice_id: int, t0: float, timeout: float = 600.0) -> float:
    """Seconds from the POST until the notice's ``fanout_done_at`` is set (every recipient's event written)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if backend == "postgres":

            async def get() -> Any:
                import asyncpg

                conn = await asyncpg.connect(asyncpg_dsn(url))
                try:
                    return await conn.fetchval("SELECT fanout_done_at FROM notices WHERE id = $1", notice_id)
                finally:
                    await conn.close()

            done = asyncio.run(get())
            at = done.timestamp() if done is not None else None
        else:
            with contextlib.closing(sqlite3.connect(Path(url.split("///", 1)[1]))) as con:
                row = con.execute("SELECT fanout_done_at FROM notices WHERE id = ?", (notice_id,)).fetchone()
            at = datetime.fromisoformat(row[0]).replace(tzinfo=UTC).timestamp() if row and row[0] else None
        if at is not None:
            return float(at - t0)
        time.sleep(0.05)
    return float("nan")


def report(backend: str, info: dict[str, Any], bare: dict[str, Any], z: dict[str, Any]) -> None:
    copy_med = statistics.median(z["copies"])
    cr = ratio(z["commit"], copy_med)
    pr = ratio(z["rate"], bare["rate"])
    goal_last = GOAL_LAST_DELIVERY[backend]
    s = z["send"]

    def verdict(ok: bool) -> str:
        return "MET" if ok else "MISSED"

    print(f"\n=== notice fan-out, backend {backend} ===")
    print(
        f"  org: {info['persons']:,} synthetic persons"
        f" (import {info['import_s']:.1f} s + people {info['people_s']:.1f} s);"
        f" sender person {info['sender']} as 省长 position {info['sender_position']}"
    )
    print(f"  selector: {args_selector}")
    print(
        f"  audience: {s['positions']:,} positions, {s['persons']:,} persons, {s['receipts']:,} receipts"
        f" ({s['unfilled']} unfilled); rows read back {z['receipt_rows']:,}"
    )
    print(
        f"  (1) commit: POST → 201 {z['commit']:.2f} s | bare {'COPY' if backend == 'postgres' else 'executemany'}"
        f" of the same rows median {copy_med:.2f} s (runs {', '.join(f'{c:.2f}' for c in z['copies'])})"
        f" | ratio {cr:.2f}× (goal ≤ {GOAL_COMMIT_RATIO}×: {verdict(cr <= GOAL_COMMIT_RATIO)})"
    )
    print(
        f"  (2) push: {z['delivered']:,}/{z['connected']:,} connected recipients got notice.new"
        f" (missing {z['missing']}, sockets closed {z['closed']});"
        f" send → first {z['first']:.2f} s, p50 {z['p50']:.2f} s,"
        f" last {z['last']:.2f} s (goal ≤ {goal_last:.0f} s: {verdict(z['last'] <= goal_last)});"
        f" commit → last {z['after_commit']:.2f} s; all {z['receipt_rows']:,} receipts' events written"
        f" {z['fanout_all']:.2f} s after send"
    )
    print(
        f"      deliveries/s after commit {z['rate']:,.0f} | bare broadcast ({bare['delivered']:,} clients,"
        f" frame {z['frame_len']} B) last {bare['last'] * 1e3:.0f} ms = {bare['rate']:,.0f}/s"
        f" | ratio {pr:.2f}× (goal ≥ {GOAL_PUSH_RATIO}×: {verdict(pr >= GOAL_PUSH_RATIO)})"
    )
    print(
        f"  (3) reads: {z['reads_ok']:,}/{z['reads_sent']:,} notice_read answered (errors {z['read_errors']}),"
        f" offered over {args_spread:.1f} s, done in {z['read_span']:.2f} s → {z['read_rate']:,.0f} receipts/s"
        f" (offered {z['reads_sent'] / args_spread:,.0f}/s; goal ≥ {GOAL_READS_PER_S:,.0f}:"
        f" {verdict(z['read_rate'] >= GOAL_READS_PER_S)});"
        f" reply p50 {z['read_p50']:.0f} ms p99 {z['read_p99']:.0f} ms"
    )
    print(
        f"      sender progress: {z['progress_events']} notice.progress events, last {z['progress_last']};"
        f" all {z['expected_read']:,} receipts of the readers shown read {z['progress_lag']:.2f} s after the last"
        f" read reply ({z['progress_from_start']:.2f} s after the first read)",
        flush=True,
    )
    print(f"  send→last delivery {z['cpu_send']}; reads {z['cpu_reads']}")
    if "timings" in z:
        print(f"  where the first second goes (server logs):\n{z['timings']}")
    for key in ("gc_send", "gc_reads"):
        if key in z:
            print(f"  full GC pauses of the servers, {key[3:]} phase: {z[key]}")
    for key in ("pg_send", "pg_reads"):
        if key in z:
            print(f"  PostgreSQL, {key[3:]} phase:\n{z[key]}")
    for key in ("profile_send", "profile_reads"):
        if key in z:
            print(f"  py-spy, servers, {key[8:]} phase:\n{z[key]}", flush=True)


args_selector = ""
args_spread = 0.0


def main(argv: list[str] | None = None) -> None:
    global args_selector, args_spread  # noqa: PLW0603
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["sqlite", "postgres"], default="postgres")
    p.add_argument("--clients", type=int, default=10_000)
    p.add_argument("--persons", type=int, default=1_200_000, help="synthetic persons (--quick: one pool of 3 per grid)")
    p.add_argument("--unit", default="33", help="unit code the selector addresses (subtree)")
    p.add_argument("--roles", default=DEFAULT_ROLES, help="role keys addressed under --unit")
    p.add_argument("--procs", type=int, default=4, help="load-generator processes")
    p.add_argument("--read-spread", type=float, default=1.0, help="seconds over which the reads are offered")
    p.add_argument("--copy-runs", type=int, default=3)
    p.add_argument("--logdir", type=Path)
    p.add_argument("--profile", action="store_true", help="py-spy the servers during the send and the reads")
    p.add_argument("--quick", action="store_true", help="smoke run: one county (330802), 500 clients")
    p.add_argument("--gc-log", action="store_true", help="log the servers' full GC pauses (bench/gclog) per phase")
    p.add_argument(
        "--timings", action="store_true", help="servers log at info: print their connected-first write timings"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.unit, args.clients, args.procs, args.persons = "330802", 500, 2, None
    args.selector = " | ".join(f"{r}@{args.unit}/**" for r in args.roles.split(","))
    args_selector, args_spread = args.selector, args.read_spread
    log(f"notice fan-out: backend {args.backend}, selector {args.selector}, {args.clients} clients")
    with tempfile.TemporaryDirectory(prefix="zzd-bench-notice-") as tmp:
        logdir = args.logdir or Path(tmp)
        logdir.mkdir(parents=True, exist_ok=True)
        args.tmp = tmp
        if args.backend == "postgres":
            with postgres_database() as url:
                env = zzd_env(url, "redis://127.0.0.1:6379/0", f"benchnotice{uuid.uuid4().hex[:8]}")
                _one(args, "postgres", url, env, logdir)
        else:
            db = Path(tmp) / f"notice-{uuid.uuid4().hex[:6]}.db"
            url = f"sqlite+aiosqlite:///{db}"
            _one(args, "sqlite", url, zzd_env(url), logdir)


def _one(args: argparse.Namespace, backend: str, url: str, env: dict[str, str], logdir: Path) -> None:
    if args.timings:
        env = {**env, "ZZD_LOG_LEVEL": "info"}
    if args.gc_log:
        path = os.pathsep.join(filter(None, [str(BENCH / "gclog"), env.get("PYTHONPATH")]))
        env = {**env, "PYTHONPATH": path, "ZZD_BENCH_GC_LOG": str(logdir)}
    migrate(env)
    t = time.time()
    info, sender, sender_pos, clients = asyncio.run(prepare(url, args))
    log(f"prepared in {time.time() - t:.1f} s: {info}")
    n = 2 if backend == "postgres" else 1
    z = run_zzd(backend, env, url, clients, sender, sender_pos, args, logdir)
    bare = run_bare(clients, n, args, logdir, z.get("frame_len") or BARE_FRAME_LEN)
    report(backend, info, bare, z)


if __name__ == "__main__":
    main()
