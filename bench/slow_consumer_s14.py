"""S14 beside S1: does one zero-window client raise the p99 of 500 normal ones?

    .venv/bin/python bench/slow_consumer_s14.py                      # phases ABC three times, 20 s each
    .venv/bin/python bench/slow_consumer_s14.py --phases ABA --seconds 20 --big-count 500

One ``zzd serve`` (PostgreSQL, in-process broker, production defaults for the
socket queue, send timeout and ``TCP_USER_TIMEOUT``) carries 500 connections
of the S1 mix (``tests/loadmix.py``) at 50 sends/s, S1's 200/s for 2,000
connections scaled to 500, in phases on the same server and the same persons
(each phase reconnects them, as ``run_load`` does):

- A: the mix alone, the baseline.
- B: the mix, plus one zero-window client (a real socket with a 4 KiB receive
  buffer that answers its hello and never reads again) to which another
  person sends ``--big-count`` × 16 KiB chat messages at ``--big-rate``/s.
  The server should close it with 1013 at its queue cap and the kernel drop
  the socket (``TCP_USER_TIMEOUT``); the stuck person then resumes and must
  get every message in order (I1).
- C: the same 16 KiB sends to the same person on a socket that reads them.
  B carries the stuck client *and* the extra traffic; C carries only the
  traffic, so B against C is the fair answer to "does a stuck client hurt
  the others", B against A the bar's literal one.

Phases alternate (default ABCABCABC) so that drift of the shared machine shows.
Every phase polls ``/proc/net/tcp`` the same way (B for the stuck socket), so
the generator's own work differs only by the 16 KiB sends of B and C. The
generator's collector is off during each schedule (``tests/loadmix.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: tests.*

from tests.client import Client  # noqa: E402
from tests.faults import rss_bytes, tcp_sockets  # noqa: E402
from tests.loadmix import LoadClient, LoadResult, Person, prepare, run_load  # noqa: E402
from tests.procs import ServerProcess, zzd_processes  # noqa: E402
from tests.test_limits import _masked_text, _stuck_client  # noqa: E402

from zzd.migrate import upgrade  # noqa: E402

from common import postgres_database, raise_fd_limit  # noqa: E402

#: 4,096 code points of 4 bytes: 16 KiB of UTF-8, within the 5,000-character body limit.
BIG_BODY = "\U00020000" * 4096
#: How often every phase reads the kernel's socket table (B looks for the stuck socket in it).
POLL = 0.25


@dataclass
class Phase:
    """One phase's figures: the normal clients' latencies and what happened beside them."""

    name: str
    res: LoadResult
    load: tuple[float, float]
    rss: tuple[int, int]
    #: CPU seconds over the schedule and its drain: the server's, the load generator's.
    cpu: tuple[float, float] = (0.0, 0.0)
    big_acked: int = 0
    big_failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


async def _closes(url: str, http: httpx.AsyncClient | None = None) -> dict[str, int]:
    """The server's ``zzd_ws_closes_total`` by close code."""
    if http is None:
        async with httpx.AsyncClient(timeout=30) as own:
            return await _closes(url, own)
    text = (await http.get(f"{url}/metrics")).text
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("zzd_ws_closes_total{"):
            code = line.split('code="', 1)[1].split('"', 1)[0]
            out[code] = int(float(line.rsplit(" ", 1)[1]))
    return out


def _cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far, from ``/proc``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    """One unmasked server frame's payload (the hello's answer: read once, then never again)."""
    head = await reader.readexactly(2)
    n = head[1] & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    return await reader.readexactly(n)


async def _go_stuck(server: ServerProcess, person: Person) -> tuple[asyncio.StreamWriter, int, dict[str, int]]:
    """A zero-window client of ``person``: hello answered (epoch, last_seq), then no more reads."""
    reader, writer = await _stuck_client(server.port)
    writer.write(_masked_text(f'{{"type":"hello","id":"h","v":1,"token":"{person.token}"}}'.encode()))
    reply = json.loads(await _read_frame(reader))
    assert reply["type"] == "ok", reply
    return writer, writer.get_extra_info("sockname")[1], reply["data"]


async def _big_sends(
    sender: LoadClient, to: int, count: int, rate: float, tag: str, phase: Phase, started: list[float]
) -> list[int]:
    """``count`` × 16 KiB messages to ``to``, open loop at ``rate``/s: the acknowledged ids in send order."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    started.append(start)
    ids: list[int | None] = [None] * count

    async def one(i: int) -> None:
        frame = {"type": "send", "to": to, "client_msg_id": f"{tag}-{i}", "body": BIG_BODY}
        try:
            reply = await sender.request(frame, timeout=60)
        except Exception as exc:  # noqa: BLE001 - counted and printed, the run goes on
            phase.big_failed.append(repr(exc))
            return
        if reply["type"] != "ok":
            phase.big_failed.append(str(reply))
            return
        ids[i] = int(reply["data"]["message_id"])

    tasks = []
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    acked = [x for x in ids if x is not None]
    phase.big_acked = len(acked)
    return acked


async def _poll_sockets(
    server: ServerProcess, stuck_port: int | None, seen: list[float], queued: list[int], closed: list[float],
    stop: asyncio.Event,
) -> None:  # fmt: skip
    """Read the socket table every ``POLL`` s (when the stuck socket was in it, its largest send
    queue) and the server's close counts every second (``closed``: when the first 1013 was counted)."""
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=30) as http:
        base = (await _closes(server.http, http)).get("1013", 0)
        for n in itertools.count():
            if stop.is_set():
                return
            for _, tx, remote in tcp_sockets(server.port):
                if remote == stuck_port:
                    seen.append(loop.time())
                    queued[0] = max(queued[0], tx)
            # Every phase reads the counts at the same pace: the server's work for it is the same.
            if n % round(1 / POLL) == 0 and (await _closes(server.http, http)).get("1013", 0) > base and not closed:
                closed.append(loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL)


async def _phase(
    kind: str, n: int, server: ServerProcess, normal: list[Person], stuck: Person, sender: Person,
    args: argparse.Namespace, seconds: float,
) -> Phase:  # fmt: skip
    """One phase: the mix on ``normal``; in B and C also the 16 KiB sends to ``stuck``."""
    loop = asyncio.get_running_loop()
    load0 = os.getloadavg()[0]
    rss0 = rss_bytes(server.proc.pid) >> 20
    closes0 = await _closes(server.http)
    phase = Phase(f"{kind}{n}", LoadResult(), (load0, 0.0), (rss0, 0))
    stuck_writer: asyncio.StreamWriter | None = None
    stuck_port: int | None = None
    hello: dict[str, int] = {}
    reader: LoadClient | None = None
    if kind == "B":
        stuck_writer, stuck_port, hello = await _go_stuck(server, stuck)
    elif kind == "C":
        reader = await LoadClient.connect(server.ws, stuck)
    big_sender = await LoadClient.connect(server.ws, sender) if kind in "BC" else None
    seen: list[float] = []
    stop = asyncio.Event()
    queued = [0]
    closed: list[float] = []
    poller = asyncio.create_task(_poll_sockets(server, stuck_port, seen, queued, closed, stop))
    big: list[asyncio.Task[list[int]]] = []
    started: list[float] = []

    cpu0: list[float] = []

    def connected() -> None:
        cpu0.extend((_cpu(server.proc.pid), time.process_time()))
        if big_sender is not None:
            tag = f"{phase.name}-{secrets.token_hex(3)}"
            big.append(asyncio.create_task(
                _big_sends(big_sender, stuck.pid, args.big_count, args.big_rate, tag, phase, started)
            ))  # fmt: skip

    phase.res = await run_load(
        [server.ws], normal, rate=args.rate, seconds=seconds, on_connected=connected, tag=f"{phase.name}-"
    )
    phase.cpu = (_cpu(server.proc.pid) - cpu0[0], time.process_time() - cpu0[1])
    acked = (await big[0]) if big else []
    if kind == "B":
        # The kernel keeps the socket until TCP_USER_TIMEOUT after its data stopped being acknowledged.
        deadline = loop.time() + args.tcp_user_timeout_ms / 1000 + 60
        while seen and loop.time() - seen[-1] < 2 * POLL + 0.1 and loop.time() < deadline:
            await asyncio.sleep(POLL)  # polling the kernel's table, with a deadline
        gone = any(r == stuck_port for _, _, r in tcp_sockets(server.port))
        left = f"{seen[-1] - started[0]:.1f} s after the first 16 KiB send" if seen and started else "?"
        if closed and started:
            phase.notes.append(f"first 1013 counted {closed[0] - started[0]:.1f} s after the first 16 KiB send (±1 s)")
        phase.notes.append(
            f"stuck socket {'STILL in' if gone else 'left'} /proc/net/tcp ({left}; its kernel send queue "
            f"peaked at {queued[0] >> 10} KiB)"
        )
    stop.set()
    await poller
    closes1 = await _closes(server.http)
    delta = {k: v - closes0.get(k, 0) for k, v in closes1.items() if v != closes0.get(k, 0)}
    phase.notes.append(f"server closes by code {delta}")
    if kind == "B":
        assert stuck_writer is not None
        stuck_writer.transport.abort()
        resume = {"epoch": hello["epoch"], "since": hello["last_seq"]}
        back = await Client.connect(server.ws, stuck.token, resume=resume)
        try:
            await back.wait_events(len(acked), timeout=120)

            def got_ids() -> list[int]:
                return [e["data"]["id"] for e in back.matching(lambda e: e["kind"] == "message.new")]

            until = loop.time() + 60  # other kinds of event may come first: wait for every message
            while len(got_ids()) < len(acked) and loop.time() < until:
                await asyncio.sleep(POLL)
            got = got_ids()
            ok = got == acked
            phase.notes.append(
                f"resume from seq {hello['last_seq']}: {len(got)} of {len(acked)} acknowledged 16 KiB messages, "
                f"{'all, in order (I1)' if ok else 'NOT all in order'}"
            )
        except (TimeoutError, AssertionError) as exc:
            phase.notes.append(f"resume FAILED: {exc!r}")
        finally:
            await back.close()
    if reader is not None:
        got = [f["data"]["id"] for _, f in reader.events if f["kind"] == "message.new"]
        live = "all, in order" if got == acked else f"{len(got)} of {len(acked)}"
        phase.notes.append(f"reading receiver got {live} live (close code {reader.close_code})")
        await reader.ws.close()
    if big_sender is not None:
        await big_sender.ws.close()
    if big:
        phase.notes.append(f"16 KiB sends acknowledged {phase.big_acked} of {args.big_count}, "
                           f"failed {len(phase.big_failed)} {phase.big_failed[:2]}")  # fmt: skip
    phase.load = (load0, os.getloadavg()[0])
    phase.rss = (rss0, rss_bytes(server.proc.pid) >> 20)
    return phase


def _ms(xs: list[float], q: int) -> float:
    return float(LoadResult.pct(xs, q)) * 1000


def _report(phases: list[Phase]) -> None:
    print("\nper phase (normal clients: send→ack, send→deliver):", flush=True)
    for p in phases:
        r = p.res
        print(
            f"  {p.name}: ack p50/p99 {_ms(r.ack_lat, 50):.0f}/{_ms(r.ack_lat, 99):.0f} ms, "
            f"deliver p50/p99 {_ms(r.deliver_lat, 50):.0f}/{_ms(r.deliver_lat, 99):.0f} ms; "
            f"{len(r.ack_lat)} acks, failed {len(r.failed)}, violations {len(r.violations)}, unexpected closes "
            f"{len(r.unexpected_closes)}; RSS {p.rss[0]}→{p.rss[1]} MiB; CPU s server {p.cpu[0]:.1f}, "
            f"generator {p.cpu[1]:.1f}; load {p.load[0]:.1f}→{p.load[1]:.1f}",
            flush=True,
        )
        for note in p.notes:
            print(f"      {note}", flush=True)
        if r.violations:
            print(f"      first violations {r.violations[:3]}", flush=True)
    pooled: dict[str, tuple[list[float], list[float]]] = {}
    for p in phases:
        acks, dels = pooled.setdefault(p.name[0], ([], []))
        acks.extend(p.res.ack_lat)
        dels.extend(p.res.deliver_lat)
    print("pooled by kind of phase (and the median of the phases' own p99s):", flush=True)
    for k, (acks, dels) in sorted(pooled.items()):
        own = [p for p in phases if p.name[0] == k]
        mid_a = statistics.median(_ms(p.res.ack_lat, 99) for p in own)
        mid_d = statistics.median(_ms(p.res.deliver_lat, 99) for p in own)
        print(
            f"  {k}: ack p50 {_ms(acks, 50):.0f} / p99 {_ms(acks, 99):.0f} ms (median {mid_a:.0f}), deliver p50 "
            f"{_ms(dels, 50):.0f} / p99 {_ms(dels, 99):.0f} ms (median {mid_d:.0f}); {len(acks)} acks; "
            f"server CPU {sum(p.cpu[0] for p in own) / len(own):.1f} s a phase",
            flush=True,
        )
    for num, den in (("B", "A"), ("C", "A"), ("B", "C")):
        if num in pooled and den in pooled:
            a = _ms(pooled[num][0], 99) / max(_ms(pooled[den][0], 99), 1e-9)
            d = _ms(pooled[num][1], 99) / max(_ms(pooled[den][1], 99), 1e-9)
            bar = " (the bar: ≤ 1.20)" if (num, den) == ("B", "A") else ""
            print(f"  p99 ratio {num}/{den}: ack {a:.3f}, deliver {d:.3f}{bar}", flush=True)


async def _run(db_url: str, args: argparse.Namespace, workdir: Path) -> list[Phase]:
    people = await prepare(db_url, workdir, args.connections + 2)
    assert len(people) == args.connections + 2, f"only {len(people)} persons in the synthetic tree"
    # The last two hold no grid worker's position in the mix: no notice or chat of the mix reaches them.
    normal, stuck, sender = people[: args.connections], people[-2], people[-1]
    phases = []
    timeout = str(args.tcp_user_timeout_ms)
    async with zzd_processes(
        db_url, "memory://", 1,
        ZZD_SEND_RATE_PER_MINUTE="100000", ZZD_LIMIT_CONCURRENCY="30000", ZZD_TCP_USER_TIMEOUT_MS=timeout,
    ) as servers:  # fmt: skip
        counts: dict[str, int] = {}
        if args.warmup > 0:  # first-phase costs (caches, prepared statements) out of the figures
            w = await _phase("A", 0, servers[0], normal, stuck, sender, args, args.warmup)
            print(f"warm-up ({args.warmup:g} s, not counted): ack p99 {_ms(w.res.ack_lat, 99):.0f} ms", flush=True)
        for kind in args.phases:
            counts[kind] = counts.get(kind, 0) + 1
            p = await _phase(kind, counts[kind], servers[0], normal, stuck, sender, args, args.seconds)
            print(f"{p.name} done: ack p99 {_ms(p.res.ack_lat, 99):.0f} ms; {'; '.join(p.notes)}", flush=True)
            phases.append(p)
    return phases


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=500, help="normal clients of the S1 mix")
    p.add_argument("--rate", type=float, default=50.0, help="their sends/s (S1: 200 for 2,000 connections)")
    p.add_argument("--seconds", type=float, default=20.0, help="each phase's schedule")
    p.add_argument("--phases", default="ABCABCABC", help="A: mix alone; B: + stuck client; C: + same sends, read")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds of the mix alone first, not counted")
    p.add_argument("--big-count", type=int, default=1000, help="16 KiB messages to the stuck person per phase")
    p.add_argument("--big-rate", type=float, default=50.0, help="their rate, per second")
    p.add_argument("--tcp-user-timeout-ms", type=int, default=30_000, help="the server's (production default)")
    args = p.parse_args(argv)
    if set(args.phases) - set("ABC"):
        p.error("--phases: letters A, B, C")
    raise_fd_limit()
    os.environ.setdefault("ZZD_REDIS_PREFIX", f"bench{secrets.token_hex(4)}")
    print(f"S14 beside S1: {args.connections} connections at {args.rate:g} sends/s, phases {args.phases} of "
          f"{args.seconds:g} s; B and C carry {args.big_count} × 16 KiB at {args.big_rate:g}/s on top "
          f"(B to a zero-window socket, C to one that reads); load {os.getloadavg()}", flush=True)  # fmt: skip
    with postgres_database() as db_url, tempfile.TemporaryDirectory() as tmp:
        upgrade(db_url)
        phases = asyncio.run(_run(db_url, args, Path(tmp)))
    _report(phases)
    print(f"load after {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
