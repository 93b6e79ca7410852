"""Photo uploads of grid reports: 200 KB photos from many clients, two zzd processes vs a bare uploader.

Run:  .venv/bin/python bench/upload_reports.py [--quick] [--runs 1]
      [--clients 200] [--per-client 5] [--open-clients 1000] [--duration 20] [--size 204800]

Per run, against the same two-process layout each time:
- ``bare``: two processes of bench/upload_bare.py (uvicorn + Starlette that
  hashes, writes, fsyncs and renames the body: the storage cost alone);
- ``zzd``: two ``zzd serve`` processes on one fresh PostgreSQL database with
  the Redis broker, sharing one upload directory, through ``POST /api/v1/uploads``
  (bearer auth, rate limit, magic-byte sniffing, SHA-256 check, fsync + rename,
  the row and the uploader link in PostgreSQL).
Clients alternate between the two processes. Two loads:
1. **saturation** (closed loop): ``--clients`` connections each upload
   ``--per-client`` photos back to back; uploads/s and latency p50/p99;
2. **grid workers** (open loop, the issue's scenario scaled): ``--open-clients``
   connected clients upload one photo each at times spread evenly over
   ``--duration`` s; latency from the *scheduled* time, so a stalled server
   shows up as latency.
Every photo is unique (no dedupe shortcut) and carries its real SHA-256. After
each zzd phase the rows in ``attachments`` and the files on disk are counted
and must equal the 201s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import secrets
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from notice_pyspy import Profile

from common import (
    PYTHON,
    ROOT,
    Client,
    Server,
    asyncpg_dsn,
    http_exchange,
    migrate,
    percentile,
    postgres_database,
    raise_fd_limit,
    seed_postgres,
    start_process,
    start_zzd,
    wait_ready,
    zzd_env,
)

JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
PATH = "/api/v1/uploads"
START_LEAD = 1.0


# --- the load (runs in a separate process) ----------------------------------------------


def _photo(base: bytes, tag: bytes) -> bytes:
    """A unique JPEG-looking photo: the JPEG magic, a 16-byte tag, then shared random bytes."""
    return JPEG_HEAD + tag + base


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str, data: bytes, digest: str) -> int:
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: image/jpeg\r\nContent-Length: {len(data)}\r\nX-Content-SHA256: {digest}\r\n\r\n"
    )
    status, _ = await http_exchange(reader, writer, head.encode() + data)
    return status


async def _load(
    ports: list[int], clients: list[Client], mode: str, per_client: int, duration: float, size: int
) -> dict[str, Any]:
    nonce = secrets.token_bytes(8)
    base = os.urandom(size - len(JPEG_HEAD) - 16)
    jobs: list[list[tuple[bytes, str]]] = []
    for i in range(len(clients)):
        mine = []
        for k in range(per_client):
            tag = nonce + i.to_bytes(4, "big") + k.to_bytes(4, "big")
            data = _photo(base, tag)
            mine.append((tag, hashlib.sha256(data).hexdigest()))
        jobs.append(mine)
    conns = []
    for i in range(len(clients)):
        conns.append(await asyncio.open_connection("127.0.0.1", ports[i % len(ports)]))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    t0 = time.perf_counter() + START_LEAD
    n_open = len(clients)

    async def client(i: int) -> None:
        nonlocal errors
        reader, writer = conns[i]
        for tag, digest in jobs[i]:
            due = t0 + (i * duration / n_open if mode == "open" else 0.0)
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            start = due if mode == "open" else time.perf_counter()
            try:
                st = await _one(reader, writer, clients[i].token, _photo(base, tag), digest)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                errors += 1
                return
            latencies.append(time.perf_counter() - start)
            statuses[st] = statuses.get(st, 0) + 1

    await asyncio.gather(*(client(i) for i in range(len(clients))))
    end = time.perf_counter()
    for _, w in conns:
        w.close()
    return {"latencies": latencies, "statuses": statuses, "errors": errors, "elapsed": end - t0}


def run_load(
    ports: list[int], clients: list[Client], mode: str, per_client: int, duration: float, size: int
) -> dict[str, Any]:
    """Entry point of the load-generator process."""
    import uvloop

    raise_fd_limit()
    return uvloop.run(_load(ports, clients, mode, per_client, duration, size))


# --- orchestration ------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    mode: str
    ok: int
    statuses: dict[int, int]
    errors: int
    rate: float
    mb_s: float
    p50: float
    p99: float
    #: Server CPU (both processes) per successful upload, ms: setup outside the timed window costs ~0.
    cpu_ms: float
    machine_cpu: float
    checked: str = ""

    def line(self) -> str:
        return (
            f"  {self.label:<5} {self.mode:<10} ok {self.ok:>5}  errors {self.errors:>3}"
            f" | {self.rate:7.1f} uploads/s {self.mb_s:6.1f} MB/s | p50 {self.p50:7.1f} p99 {self.p99:7.1f} ms"
            f" | server CPU {self.cpu_ms:5.2f} ms/upload, machine busy {self.machine_cpu:.0f}%"
            + (f" | statuses {self.statuses}" if set(self.statuses) - {200, 201} else "")
            + (f" | {self.checked}" if self.checked else "")
        )


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
    return total


def measure(
    pool: ProcessPoolExecutor,
    label: str,
    servers: list[Server],
    clients: list[Client],
    mode: str,
    args: argparse.Namespace,
) -> Result:
    per_client = args.per_client if mode == "saturation" else 1
    prof = Profile(f"{label}-{mode}", [s.proc.pid for s in servers], args.logdir) if args.profile else None
    cpu0, sys0, w0 = _cpu([s.proc.pid for s in servers]), psutil.cpu_times(), time.monotonic()
    out = pool.submit(
        run_load,
        [s.port for s in servers],
        clients,
        "closed" if mode == "saturation" else "open",
        per_client,
        args.duration,
        args.size,
    ).result()
    wall = time.monotonic() - w0
    cpu1, sys1 = _cpu([s.proc.pid for s in servers]), psutil.cpu_times()
    if prof is not None:
        prof.stop()
        print(f"  py-spy {label} {mode}:\n{prof.top(16)}")
    busy = (sys1.user + sys1.system - sys0.user - sys0.system) / wall * 100
    lat = out["latencies"]
    ok = sum(v for k, v in out["statuses"].items() if k in (200, 201))
    return Result(
        label=label,
        mode=mode,
        ok=ok,
        statuses=out["statuses"],
        errors=out["errors"],
        rate=ok / out["elapsed"],
        mb_s=ok * args.size / out["elapsed"] / 1e6,
        p50=percentile(lat, 50) * 1000,
        p99=percentile(lat, 99) * 1000,
        cpu_ms=(cpu1 - cpu0) / max(1, ok) * 1000,
        machine_cpu=busy,
    )


async def _rows(dsn: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM attachments"))
    finally:
        await conn.close()


def _files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file() and p.parent != root / ".incoming")


def one_run(args: argparse.Namespace, pool: ProcessPoolExecutor, logdir: Path) -> list[Result]:
    results: list[Result] = []
    n_clients = max(args.clients, args.open_clients)
    with postgres_database() as db_url:
        env = zzd_env(db_url, "redis://127.0.0.1:6379/0")
        up_dir = logdir / "zzd-uploads"
        env.update(ZZD_UPLOAD_DIR=str(up_dir), ZZD_UPLOAD_RATE_PER_MINUTE="100000", ZZD_DB_POOL_SIZE=str(args.db_pool))
        migrate(env)
        people = seed_postgres(asyncpg_dsn(db_url), n_clients)
        bare_dir = logdir / "bare-uploads"
        bare = [
            start_process(
                f"bare{i}",
                [PYTHON, str(ROOT / "bench" / "upload_bare.py"), "--port", str(port), "--dir", str(bare_dir)],
                dict(os.environ),
                port,
                logdir,
            )
            for i, port in enumerate(_ports(2))
        ]
        zzd = [start_zzd(f"zzd{i}", env, logdir) for i in range(2)]
        try:
            for s in bare:
                wait_ready(s, path="")
            for s in zzd:
                wait_ready(s)
            expected_rows = 0
            for mode, clients in (("saturation", people[: args.clients]), ("open", people[: args.open_clients])):
                results.append(measure(pool, "bare", bare, clients, mode, args))
                r = measure(pool, "zzd", zzd, clients, mode, args)
                expected_rows += r.statuses.get(201, 0)
                rows, files = asyncio.run(_rows(asyncpg_dsn(db_url))), _files(up_dir)
                r.checked = f"rows {rows} files {files} (201s so far {expected_rows})" + (
                    "" if rows == files == expected_rows else "  MISMATCH"
                )
                results.append(r)
        finally:
            for s in [*bare, *zzd]:
                s.stop()
    return results


def _ports(n: int) -> list[int]:
    from common import free_port

    return [free_port() for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--clients", type=int, default=200, help="concurrent uploaders in the saturation load")
    parser.add_argument("--per-client", type=int, default=5)
    parser.add_argument("--open-clients", type=int, default=1000, help="grid workers, one photo each")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds the open-loop uploads spread over")
    parser.add_argument("--size", type=int, default=200 * 1024)
    parser.add_argument("--quick", action="store_true", help="smoke run: 50x4 saturation, 200 over 5 s")
    parser.add_argument("--profile", action="store_true", help="py-spy the servers during each phase")
    parser.add_argument(
        "--db-pool", type=int, default=10, help="ZZD_DB_POOL_SIZE per process (PostgreSQL here is shared, 100 max)"
    )
    args = parser.parse_args()
    if args.quick:
        args.clients, args.per_client, args.open_clients, args.duration = 50, 4, 200, 5.0
    raise_fd_limit()
    print(
        f"uploads of {args.size // 1024} KB photos, two processes each; saturation: {args.clients} clients x "
        f"{args.per_client}; open loop: {args.open_clients} clients, one each over {args.duration:.0f} s "
        f"({args.open_clients / args.duration:.0f}/s offered)"
    )
    all_results: list[Result] = []
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        for run in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="zzd-upbench-") as tmp:
                args.logdir = Path(tmp)
                results = one_run(args, pool, Path(tmp))
            print(f"run {run + 1}:")
            for r in results:
                print(r.line())
            all_results.extend(results)
    if args.runs > 1:
        print("median over runs:")
        for label in ("bare", "zzd"):
            for mode in ("saturation", "open"):
                rs = [r for r in all_results if r.label == label and r.mode == mode]
                rate, p50, p99 = (statistics.median(getattr(r, f) for r in rs) for f in ("rate", "p50", "p99"))
                print(f"  {label:<5} {mode:<10} {rate:7.1f} uploads/s p50 {p50:7.1f} p99 {p99:7.1f} ms")


if __name__ == "__main__":
    main()
