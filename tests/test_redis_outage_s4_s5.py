"""S4 and S5 under traffic: Redis killed for 30 s, then hung for 20 s, during two-process chat at 50 sends/s.

Both server processes reach a private ``redis-server`` (never the machine's
shared one) through the fault proxy of ``tests/faults.py``. Chat runs open-loop
at 50 sends a second between persons on both processes, half of it crossing
processes, through five phases: Redis up; Redis killed with SIGKILL for 30 s
(S4); Redis restarted on the same port; Redis hung for 20 s (S5: the proxy
black-holes it, so the servers' TCP connections stay open and nothing is ever
answered, as with a SIGSTOPped server or a dropped route); Redis answering
again.

What the bar asks and the test asserts:

- no send fails because of Redis: every send is acknowledged ``ok``;
- no request blocks on Redis (the bar: over 2 s): against the same run's
  first phase, with Redis up, the median acknowledgement moves by under 1 s
  (waiting on Redis would add its 1 s timeout to every send), the slowest by
  under 5 s, and a ``/healthz`` probe to each process four times a second by
  under 2 s. The shared 2-core machine's own delays are not Redis's, so the
  test compares within one run; docs/reliability.md gives the absolute figures;
- every acknowledged message reaches every recipient, gap-free and in order
  (I1–I3 by the shared history checker), the cross-process ones through the
  database repair while Redis is away (a later local event shows the gap at
  once, the safety poll catches the rest) within 10 s (again over the first
  phase's slowest);
- the subscriber retries with back-off (at most about one attempt a second per
  process, read from each process's log) and no process restarts.

The safety poll runs every 3 s here (production default 5 s) so that its
settled check, two polls, stays inside the bar's 10 s with room on a loaded
machine. Figures are printed (``-s``) for docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.client import login
from tests.faults import private_redis, tcp_proxy
from tests.history import History
from tests.loadmix import LoadClient, Person
from tests.procs import zzd_processes
from tests.test_two_processes import _people
from tests.waiting import scaled, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

PERSONS = 20
RATE = 50.0
#: (phase, seconds): the bar's 30 s kill and 20 s hang, with traffic before, between and after.
PHASES = [("up", 10.0), ("killed", 30.0), ("restarted", 10.0), ("hung", 20.0), ("answering", 8.0)]
BLOCK_LIMIT = 2.0
DELIVER_LIMIT = 10.0


@dataclass
class _Send:
    phase: str
    sender: int
    to: int
    key: str
    crossing: bool
    sent_at: float = 0.0
    latency: float | None = None
    reply: dict[str, object] = field(default_factory=dict)


def _ms(xs: list[float], q: int) -> str:
    """The q-th percentile of ``xs`` (seconds) in whole milliseconds."""
    v = statistics.quantiles(xs, n=100)[q - 1] if len(xs) >= 2 else (xs[0] if xs else 0.0)
    return f"{v * 1000:.0f}"


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _report(
    n: int,
    killed_for: float,
    acks: dict[str, list[float]],
    deliver: dict[str, list[float]],
    probe: dict[str, float],
    retries: list[int],
    accepted: int,
) -> None:
    """The figures docs/reliability.md quotes, one line per phase."""
    print(f"\nS4/S5: {n} sends at {RATE:.0f}/s over 2 processes; Redis killed {killed_for:.1f} s, then hung 20 s")
    for name, _ in PHASES:
        a, d = acks[name], deliver[name]
        print(
            f"  {name:9}: {len(a)} sends, ack p50 {_ms(a, 50)} / p99 {_ms(a, 99)} / max {max(a) * 1000:.0f} ms; "
            f"cross-process deliver p50 {_ms(d, 50)} / p99 {_ms(d, 99)} / max {max(d) * 1000:.0f} ms; "
            f"/healthz worst {probe.get(name, 0) * 1000:.0f} ms"
        )
    print(f"  subscriber reconnect attempts per process: {retries}; connections the proxy accepted: {accepted}")


async def _probe(bases: list[str], worst: dict[str, float], stop: asyncio.Event, phase: list[str]) -> None:
    """``/healthz`` on every process four times a second; the slowest answer per phase."""
    async with httpx.AsyncClient(timeout=scaled(10)) as http:
        while not stop.is_set():
            for base in bases:
                t0 = time.monotonic()
                r = await http.get(f"{base}/healthz")
                assert r.status_code == 200, r.text
                worst[phase[0]] = max(worst.get(phase[0], 0.0), time.monotonic() - t0)
            await asyncio.sleep(0.25)  # the probe's period, not synchronisation


@pytest.mark.timeout(420)
async def test_chat_at_50_per_second_survives_redis_killed_30s_and_hung_20s(pg_database: str, tmp_path: Path) -> None:
    people = await _people(pg_database, PERSONS)
    async with (
        private_redis(tmp_path) as redis,
        tcp_proxy("127.0.0.1", redis.port) as proxy,
        zzd_processes(
            pg_database, f"redis://127.0.0.1:{proxy.port}/0", 2,
            ZZD_SAFETY_POLL_INTERVAL="3", ZZD_SEND_RATE_PER_MINUTE="100000",
        ) as servers,
    ):  # fmt: skip
        clients: list[LoadClient] = []
        for i, (pid, lg) in enumerate(people):
            token = (await login(servers[i % 2].http, lg))["access_token"]
            clients.append(await LoadClient.connect(servers[i % 2].ws, Person(pid, token, "", "", 0)))
        node = {c.person.pid: i % 2 for i, c in enumerate(clients)}
        by_pid = {c.person.pid: c for c in clients}
        rng = random.Random(45)
        phase = ["up"]
        sends: list[_Send] = []
        running: list[asyncio.Task[None]] = []
        counter = itertools.count()

        loop = asyncio.get_running_loop()  # LoadClient stamps events with loop.time(): one clock

        async def send(s: _Send) -> None:
            s.sent_at = loop.time()
            s.reply = await by_pid[s.sender].request(
                {"type": "send", "to": s.to, "client_msg_id": s.key, "body": f"{s.phase} {s.key}"},
                timeout=scaled(30),
            )
            s.latency = loop.time() - s.sent_at

        async def traffic(stop: asyncio.Event) -> None:
            """Open loop: the n-th send leaves at start + n/RATE whatever the answers."""
            start, n = time.monotonic(), 0
            while not stop.is_set():
                while n < (time.monotonic() - start) * RATE:
                    a = rng.choice(clients)
                    crossing = rng.random() < 0.5
                    b = rng.choice(
                        [c for c in clients if c is not a and (node[c.person.pid] != node[a.person.pid]) == crossing]
                    )
                    s = _Send(phase[0], a.person.pid, b.person.pid, f"s{next(counter)}", crossing)
                    sends.append(s)
                    running.append(asyncio.create_task(send(s)))
                    n += 1
                await asyncio.sleep(0.01)  # the schedule's clock tick (pacing, not synchronisation)

        async def hold(name: str, seconds: float) -> None:
            """Run the traffic in phase ``name`` for ``seconds`` (the fault's duration, by the bar)."""
            phase[0] = name
            await asyncio.sleep(seconds)  # the fault's duration itself

        stop = asyncio.Event()
        worst_probe: dict[str, float] = {}
        logs0 = [len(s.log) for s in servers]
        driver = asyncio.create_task(traffic(stop))
        prober = asyncio.create_task(_probe([s.http for s in servers], worst_probe, stop, phase))
        try:
            await hold("up", PHASES[0][1])
            assert redis.proc is not None
            redis.proc.kill()  # S4: kill -9
            await redis.proc.wait()
            killed_at = time.monotonic()
            await hold("killed", PHASES[1][1])
            killed_for = time.monotonic() - killed_at
            await redis.start()  # same port: the proxy reaches it again
            await hold("restarted", PHASES[2][1])
            proxy.black_hole()  # S5: connections stay open, nothing is answered
            try:
                await hold("hung", PHASES[3][1])
            finally:
                proxy.restore()
            await hold("answering", PHASES[4][1])
        finally:
            stop.set()
            await driver
            await prober
            await asyncio.gather(*running, return_exceptions=True)

        # Every send was acknowledged, promptly, whatever Redis did.
        failed = [(s.phase, s.key, s.reply) for s in sends if s.reply.get("type") != "ok"]
        assert not failed, failed[:5]
        hist = History()
        sent_by_id: dict[int, _Send] = {}
        for s in sends:
            data = s.reply["data"]
            assert isinstance(data, dict)
            mid = int(data["message_id"])
            hist.send_ok(s.sender, s.key, mid, {s.sender, s.to})
            sent_by_id[mid] = s

        def undelivered() -> list[tuple[int, int]]:
            got = {
                (c.person.pid, int(f["data"]["id"])) for c in clients for _, f in c.events if f["kind"] == "message.new"
            }
            return [(m, p) for m, s in sent_by_id.items() for p in (s.sender, s.to) if (p, m) not in got]

        await wait_until(lambda: not undelivered(), 30, "every acknowledged message at every recipient")
        for c in clients:
            hist.deliver_events(c.person.pid, [f for _, f in c.events])
        hist.check()  # I1–I3

        # Delivery time of each cross-process message at its recipient (the event's arrival, same clock).
        deliver: dict[str, list[float]] = {p: [] for p, _ in PHASES}
        for c in clients:
            for t, f in c.events:
                sd = sent_by_id.get(int(f["data"]["id"])) if f["kind"] == "message.new" else None
                if sd is not None and sd.to == c.person.pid and sd.crossing:
                    deliver[sd.phase].append(t - sd.sent_at)
        acks = {p: [s.latency for s in sends if s.phase == p and s.latency is not None] for p, _ in PHASES}
        retries = [
            sum("redis subscriber lost" in line for line in s.log[n:]) for s, n in zip(servers, logs0, strict=True)
        ]
        _report(len(sends), killed_for, acks, deliver, worst_probe, retries, proxy.accepted)

        # What Redis may add over what this shared machine costs without a fault in the same run (its first
        # phase). A send waiting on Redis would wait for the 1 s publish timeout or for ever: the median
        # moves by a second or the send is never answered. A slow moment of the box is not Redis's: the
        # slowest send may be up to 5 s slower than the first phase's slowest; the health probe 2 s.
        for name, _ in PHASES[1:]:
            assert _median(acks[name]) < _median(acks["up"]) + scaled(1.0), (name, _median(acks[name]))
            assert max(acks[name]) < max(acks["up"]) + scaled(5.0), (name, max(acks[name]), max(acks["up"]))
            assert worst_probe[name] < worst_probe["up"] + scaled(BLOCK_LIMIT), (name, worst_probe)
            assert max(deliver[name]) < max(deliver["up"]) + scaled(DELIVER_LIMIT), (name, max(deliver[name]))
        # Back-off: about one attempt a second at most (1 s, doubling to 8 s) over the 50 s of faults.
        assert all(n <= PHASES[1][1] + PHASES[3][1] for n in retries), retries
        assert all(s.proc.returncode is None for s in servers), "no process restarted"
        for c in clients:
            assert c.close_code is None, f"{c.person.pid} closed {c.close_code}"
            await c.ws.close()
