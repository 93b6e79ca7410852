"""S1/S2 mixed load: many authenticated sockets, chat + notices + tasks + acks, checked by I1–I5.

Used by the CI slice (``tests/test_load_s1_s2.py``) and the full-length
benchmark (``bench/reliability_load.py``). The tree is a synthetic one (two
counties, townships of 25 villages × 2 grids, so "every 专职网格员 of a
township" is 50 positions); every connected person holds a position in it.

Traffic is open-loop at ``rate`` sends a second, counted as the bar counts
them: one chat message, one notice (one send, to its 50 recipients) or one
task assignment is one send. Of the sends, 7 in 9 are direct chat between
random connected persons (half crossing processes when there are two), 1 in 9
a notice from a township head to its 50 grid workers (REST), 1 in 9 a task
from a township head to one of its grid workers (REST); acknowledgements of
notices already received (WS) come on top, one per 9 sends. Items (sends and
acks) are scheduled at ``rate / SEND_SHARE``: the n-th is due at ``start + n /
item_rate`` whatever the answers, and latencies count from that due time.

The audience of each item is computed here from the tree, not taken from the
server, so the checks are independent: I1 every acknowledged item reached
every connected member of its audience; I2 no (recipient, item) twice and one
id per idempotency key; I3 each person's seqs rise by exactly one; I4 no
item reached anyone outside its audience; I5 nothing delivered that was not
acknowledged (or left unanswered).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import websockets
from sqlalchemy import select

from kernel.clock import SystemClock
from kernel.db.database import Database
from kernel.sessions import SessionStore
from org_tree.importer import import_divisions
from org_tree.org_schema import assignments, positions, roles, units
from org_tree.synthetic import generate_people
from tests.conftest import make_settings
from tests.notices.conftest import write_divisions
from zzd.auth.tokens import TokenService

__all__ = ["LoadResult", "Person", "prepare", "run_load"]

#: The share of scheduled items that are sends (chat, notice, task); the rest are notice acks.
SEND_SHARE = 0.9

#: REST requests go through HTTP_POOLS clients of HTTP_POOL connections each, per server.
HTTP_POOLS, HTTP_POOL = 40, 16

#: Item kinds: how each is sent and which event kind carries it.
EVENT_KIND = {"chat": "message.new", "notice": "notice.new", "task": "task.created"}


@dataclass
class Person:
    pid: int
    token: str
    unit: str  # township code for heads and grid workers
    role: str
    position: int


async def prepare(db_url: str, workdir: Path, connections: int) -> list[Person]:
    """Tree + synthetic holders, then ``connections`` persons with sessions and access tokens."""
    townships = max(1, -(-connections // 400))  # ~200 positions per township across two counties
    db = Database(db_url)
    try:
        await import_divisions(db, write_divisions(workdir / "div", townships=townships, villages=25))
        await generate_people(db, seed=16, vacancy_rate=0.0, deputy_rate=0.0, multi_share=0.0, pool_size=1)
        q = (
            select(assignments.c.person_id, positions.c.id, roles.c.key, units.c.code, units.c.level)
            .select_from(assignments.join(positions).join(roles).join(units))
            .where(assignments.c.end_at.is_(None), assignments.c.kind == "primary", positions.c.removed_at.is_(None))
        )
        async with db.read() as conn:
            rows = (await conn.execute(q)).all()
        by_person: dict[int, tuple[int, str, str]] = {}
        for person_id, pos_id, role, code, _ in sorted(
            rows, key=lambda r: (r[2] != "township_head", r[2] != "grid_worker")
        ):
            by_person.setdefault(int(person_id), (int(pos_id), str(role), str(code)))
        chosen = sorted(by_person.items(), key=lambda kv: (kv[1][1] not in ("township_head", "grid_worker"), kv[0]))
        chosen = chosen[:connections]
        settings = make_settings(db_url)
        tokens = TokenService(
            settings.signing_keys(), issuer=settings.jwt_issuer, audience=settings.jwt_audience,
            ttl=timedelta(hours=3), leeway=settings.jwt_leeway, clock=SystemClock(),
        )  # fmt: skip
        sessions = SessionStore(db, SystemClock(), refresh_ttl=timedelta(days=1))
        people = []
        for pid, (pos, role, code) in chosen:
            sess = await sessions.open(pid)
            unit = code[:9] if role == "grid_worker" else code
            people.append(Person(pid, tokens.issue(pid, sess.session_id), unit, role, pos))
        return people
    finally:
        await db.dispose()


class LoadClient:
    """One socket: replies by ref, events with their arrival time; never blocks the schedule."""

    def __init__(self, person: Person, ws: websockets.ClientConnection, hello: dict[str, Any]) -> None:
        self.person, self.ws, self.hello = person, ws, hello
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.close_code: int | None = None
        self._ids = itertools.count(1)
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str, person: Person) -> LoadClient:
        # No client-side keepalive: the server pings every socket and closes the dead ones, which is
        # what the bar's "0 unexpected closes" is about. A client ping times out when the load
        # generator's own loop falls behind (it shares the two cores), and then it was the
        # generator, not the server, that closed the socket (1011).
        ws = await websockets.connect(url, max_size=2**20, open_timeout=60, ping_interval=None)
        await ws.send(json.dumps({"type": "hello", "id": "h", "v": 1, "token": person.token}))
        hello = json.loads(await asyncio.wait_for(ws.recv(), 60))
        assert hello["type"] == "ok", hello
        return cls(person, ws, hello["data"])

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame["type"] == "event":
                    self.events.append((loop.time(), frame))
                elif (fut := self.waiting.pop(str(frame.get("ref")), None)) is not None and not fut.done():
                    fut.set_result(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code if self.ws.close_code is not None else 1006

    async def request(self, frame: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        ref = f"r{next(self._ids)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[ref] = fut
        await self.ws.send(json.dumps({**frame, "id": ref}, ensure_ascii=False))
        return await asyncio.wait_for(fut, timeout)


@dataclass
class LoadResult:
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    acked: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failed: list[str] = field(default_factory=list)
    ack_lat: list[float] = field(default_factory=list)
    deliver_lat: list[float] = field(default_factory=list)
    cross_deliver_lat: list[float] = field(default_factory=list)
    #: Each cross-process delivery: (recipient, seq, kind, server id, arrival, due), times on ``time.time()``.
    cross_detail: list[tuple[int, int, str, int, float, float]] = field(default_factory=list)
    checks: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    violations: list[str] = field(default_factory=list)
    unexpected_closes: list[int] = field(default_factory=list)
    #: Event kinds of which some send went unanswered (``send-timeout``): such an item may still arrive.
    unanswered: set[str] = field(default_factory=set)
    seconds: float = 0.0
    #: The schedule's length (``seconds`` also counts waiting for the last answers).
    schedule: float = 0.0
    ack_by_kind: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    #: Each acknowledged item: (seconds from the schedule's start to its due time, send→ack latency).
    ack_times: list[tuple[float, float]] = field(default_factory=list)
    start: float = 0.0
    #: ``time.time()`` at the schedule's start, to line its seconds up with other logs (PostgreSQL's).
    wall_start: float = 0.0

    @staticmethod
    def pct(xs: list[float], q: float) -> float:
        return statistics.quantiles(xs, n=100)[q - 1] if len(xs) >= 2 else (xs[0] if xs else 0.0)

    def slowest_seconds(self, n: int = 5) -> str:
        """The ``n`` seconds of the schedule whose sends waited longest: is the tail spread or a few stalls?"""
        worst: dict[int, list[float]] = defaultdict(list)
        for due, lat in self.ack_times:
            worst[int(due)].append(lat)
        top = sorted(worst.items(), key=lambda kv: -max(kv[1]))[:n]
        slow = sum(1 for _, lat in self.ack_times if lat > 0.2)
        at = lambda sec: time.strftime("%H:%M:%S", time.gmtime(self.wall_start + sec))  # noqa: E731
        return (
            f"schedule started {at(0)}.{int(self.wall_start % 1 * 1000):03d} UTC; "
            f"acks over 200 ms: {slow} of {len(self.ack_times)}; slowest seconds of the schedule: "
            + ", ".join(
                f"s{sec} ({at(sec)}) max {max(lats) * 1000:.0f} ms ({len(lats)} acks)" for sec, lats in sorted(top)
            )
        )

    def summary(self) -> str:
        ms = lambda xs, q: f"{self.pct(xs, q) * 1000:.0f}"  # noqa: E731
        cross = f", cross-process deliver p99 {ms(self.cross_deliver_lat, 99)} ms" if self.cross_deliver_lat else ""
        sends = sum(n for k, n in self.sent.items() if k != "ack")
        return (
            f"{sum(self.sent.values())} items in {self.seconds:.0f} s ({dict(self.sent)}): "
            f"{sends} sends, {sends / max(self.schedule, 1e-9):.1f} sends/s over the schedule, "
            f"acked {sum(self.acked.values())}, "
            f"failed {len(self.failed)}; send→ack p50 {ms(self.ack_lat, 50)} / p99 {ms(self.ack_lat, 99)} ms "
            f"({', '.join(f'{k} p99 {ms(v, 99)}' for k, v in sorted(self.ack_by_kind.items()))}); "
            f"send→deliver p50 {ms(self.deliver_lat, 50)} / p99 {ms(self.deliver_lat, 99)} ms{cross}; "
            f"checks {dict(self.checks)}; violations {len(self.violations)}; unexpected closes "
            f"{len(self.unexpected_closes)} {dict(Counter(self.unexpected_closes))}"
        )


@dataclass
class _Item:
    kind: str
    due: float
    sender: int
    audience: set[int]
    key: str
    server_id: int | None = None


async def run_load(
    urls: list[str],
    people: list[Person],
    *,
    rate: float,
    seconds: float,
    bare: bool = False,
    on_connected: Callable[[], Awaitable[None] | None] | None = None,
    only: str | None = None,
    tag: str = "",
) -> LoadResult:
    """Connect everyone (round-robin over ``urls``), drive the mix, wait for deliveries, check I1–I5.

    ``rate``: sends a second (chat + notice + task, the bar's unit); acks are scheduled on top.

    ``bare``: the baseline run against ``bench/bare_relay.py``, which only relays ``send``; every
    item then travels as one WebSocket send to one member of its audience (same schedule, same
    sockets), and the invariants are not checked (a relay has no streams to check).
    ``on_connected`` runs once every socket is open, before the traffic (the
    benchmark reads the servers' RSS there: the bar's growth is counted after warm-up);
    an awaitable it returns is awaited before the schedule starts.
    ``only``: only this kind of send (``chat``, ``notice`` or ``task``, no acks), to
    measure what one kind costs the server; None for the mix.
    ``tag``: prefixed to every idempotency key, so that a second run by the same persons on the
    same database sends new items rather than repeating the first run's keys (and getting its ids).
    """
    loop = asyncio.get_running_loop()
    res = LoadResult()
    sem = asyncio.Semaphore(50)

    async def connect(i: int, p: Person) -> LoadClient:
        async with sem:
            return await LoadClient.connect(urls[i % len(urls)], p)

    clients = await asyncio.gather(*(connect(i, p) for i, p in enumerate(people)))
    if on_connected is not None and (before := on_connected()) is not None:
        await before  # e.g. the benchmark's CHECKPOINT: done before the schedule's clock starts
    by_pid = {c.person.pid: c for c in clients}
    node_of = {c.person.pid: i % len(urls) for i, c in enumerate(clients)}
    heads = [c for c in clients if c.person.role == "township_head"]
    workers: dict[str, list[LoadClient]] = defaultdict(list)
    for c in clients:
        if c.person.role == "grid_worker":
            workers[c.person.unit].append(c)
    heads = [h for h in heads if workers.get(h.person.unit)]
    # Many small pools, not one of 1,000 connections: httpcore's pool matches every queued
    # request against every connection each time one starts or ends, so once requests queued
    # (a slow server) the generator spent its CPU there (py-spy: AsyncConnectionPool.
    # _assign_requests_to_connections) while its sockets' reads, and the latencies, waited.
    limits = httpx.Limits(max_connections=HTTP_POOL, max_keepalive_connections=HTTP_POOL)
    http = [
        [
            httpx.AsyncClient(base_url=u.replace("ws://", "http://").removesuffix("/ws"), timeout=30, limits=limits)
            for _ in range(HTTP_POOLS)
        ]
        for u in urls
    ]
    pick = itertools.count()
    items: list[_Item] = []
    rng = random.Random(16)
    counter = itertools.count()

    async def one(
        item: _Item,
        frame: dict[str, Any],
        via: LoadClient | None,
        rest: tuple[int, str, dict[str, Any]] | None,
        attempt: int = 0,
    ) -> None:
        """Send one item; a retryable error is retried with the same idempotency key, as clients must."""
        if attempt == 0:
            res.sent[item.kind] += 1
        try:
            if via is not None:
                reply = await via.request(frame)
                ok = reply["type"] == "ok"
                data = reply.get("data", {}) if ok else reply  # an error frame: code, message, retryable
            else:
                assert rest is not None
                node, path, body = rest
                r = await http[node][next(pick) % HTTP_POOLS].post(
                    path, json=body, headers={"Authorization": f"Bearer {by_pid[item.sender].person.token}"}
                )
                ok, data = r.status_code in (200, 201), r.json()
        except httpx.TransportError as exc:
            # E.g. a keep-alive connection the server closed as the request left: the request
            # is idempotent by its client_msg_id, so a client sends it again.
            if attempt < 5:
                return await one(item, frame, via, rest, attempt + 1)
            res.failed.append(f"{item.kind}: {exc!r}")
            res.unanswered.add(EVENT_KIND.get(item.kind, item.kind))
            return
        except (TimeoutError, websockets.ConnectionClosed, httpx.HTTPError) as exc:
            res.failed.append(f"{item.kind}: {exc!r}")
            res.unanswered.add(EVENT_KIND.get(item.kind, item.kind))  # may have committed: I5 allows it
            return
        if not ok and attempt < 5 and isinstance(data, dict) and _retryable(data):
            await asyncio.sleep(0.2 * 2**attempt)  # the client's back-off before retrying the same request
            return await one(item, frame, via, rest, attempt + 1)
        if not ok:
            res.failed.append(f"{item.kind}: {data}")
            return
        res.ack_lat.append(loop.time() - item.due)
        res.ack_by_kind[item.kind].append(loop.time() - item.due)
        res.ack_times.append((item.due - res.start, loop.time() - item.due))
        res.acked[item.kind] += 1
        if item.kind == "chat" or bare:
            item.server_id = int(data["message_id"])
        elif item.kind == "notice":
            item.server_id = int(data["notice_id"])
        elif item.kind == "task":
            item.server_id = int(data["tasks"][0]["task_id"])
        if item.kind != "ack" and not bare:
            items.append(item)

    only_roll = {"chat": 0.0, "notice": 0.75, "task": 0.85}

    def next_item(due: float) -> asyncio.Task[None] | None:
        n = next(counter)
        roll = rng.random() if only is None else only_roll[only]
        if roll < 0.7 or not heads:
            a, b = rng.sample(clients, 2)
            if len(urls) > 1 and rng.random() < 0.5:  # half crossing processes
                others = [c for c in clients if node_of[c.person.pid] != node_of[a.person.pid]]
                b = rng.choice(others)
            item = _Item("chat", due, a.person.pid, {a.person.pid, b.person.pid}, f"{tag}c{n}")
            body = repr(due) if bare else f"负载 {n}"  # the relay's deliveries are timed from the body
            frame = {"type": "send", "to": b.person.pid, "client_msg_id": item.key, "body": body}
            return asyncio.create_task(one(item, frame, a, None))
        head = rng.choice(heads)
        ws_ = workers[head.person.unit]
        node = node_of[head.person.pid]
        if bare:  # the relay's only frame: one send from the head to one of its workers
            kind = "notice" if roll < 0.8 else "task" if roll < 0.9 else "ack"
            w = rng.choice(ws_)
            item = _Item(kind, due, head.person.pid, {w.person.pid}, f"{tag}b{n}")
            frame = {"type": "send", "to": w.person.pid, "client_msg_id": item.key, "body": repr(due)}
            return asyncio.create_task(one(item, frame, head, None))
        if roll < 0.8:
            audience = {w.person.pid for w in ws_}
            item = _Item("notice", due, head.person.pid, audience, f"{tag}n{n}")
            body = {"as_position": head.person.position, "selector": f"专职网格员@{head.person.unit}/**",
                    "client_msg_id": item.key, "title": f"通知 {n}", "ack_required": True}  # fmt: skip
            return asyncio.create_task(one(item, {}, None, (node, "/api/v1/notices", body)))
        if roll < 0.9:
            w = rng.choice(ws_)
            item = _Item("task", due, head.person.pid, {w.person.pid, head.person.pid}, f"{tag}t{n}")
            body = {"as_position": head.person.position, "selector": f"pos:{w.person.position}",
                    "title": f"任务 {n}", "client_msg_id": item.key}  # fmt: skip
            return asyncio.create_task(one(item, {}, None, (node, "/api/v1/tasks", body)))
        w = rng.choice(ws_)
        got = [f["data"]["notice_id"] for _, f in w.events if f["kind"] == "notice.new"]
        if not got:
            return None
        item = _Item("ack", due, w.person.pid, set(), f"{tag}a{n}")
        return asyncio.create_task(one(item, {"type": "notice_ack", "notice_id": rng.choice(got)}, w, None))

    # The generator keeps every frame it receives (hundreds of thousands of dicts at the bar's
    # rate) for the checks, so its own full collections grew with the run, to 1.1 s pauses of
    # its loop at 200 sends/s, each counted in every latency in flight as if the server were
    # slow. What it holds is frozen out of the collector and the collector is off until the
    # drain is over: the latencies are then the server's and the wire's.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        start = res.start = loop.time()
        res.wall_start = time.time()
        tasks: list[asyncio.Task[None]] = []
        n = 0
        item_rate = rate / SEND_SHARE if only is None else rate
        while (elapsed := loop.time() - start) < seconds:
            while n < elapsed * item_rate:
                if (t := next_item(start + n / item_rate)) is not None:
                    tasks.append(t)
                n += 1
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)
        res.seconds, res.schedule = loop.time() - start, seconds

        # Wait (bounded) until every acknowledged item has reached its connected audience.
        def missing() -> list[tuple[_Item, int]]:
            seen: dict[int, set[tuple[str, int]]] = defaultdict(set)
            for c in clients:
                for _, f in c.events:
                    kind, sid = _identify(f)
                    if kind is not None:
                        seen[c.person.pid].add((kind, sid))
            return [(i, p) for i in items for p in i.audience if (EVENT_KIND[i.kind], i.server_id) not in seen[p]]

        deadline = loop.time() + 30
        while not bare and missing() and loop.time() < deadline:
            await asyncio.sleep(0.2)  # polling for the drain with a deadline
    finally:
        gc.enable()
        gc.unfreeze()
    if bare:
        res.deliver_lat = [
            t - float(f["data"]["body"])
            for c in clients
            for t, f in c.events
            if f["data"]["sender"]["id"] != c.person.pid
        ]
    else:
        _check(res, items, clients, node_of, time.time() - loop.time())
    res.unexpected_closes = [c.close_code for c in clients if c.close_code is not None]
    for c in clients:
        await c.ws.close()
    for pools in http:
        for h in pools:
            await h.aclose()
    return res


def _retryable(data: dict[str, Any]) -> bool:
    err = data.get("error", data)
    return bool(err.get("retryable")) or err.get("code") in ("rate_limited", "unavailable")


def _identify(frame: dict[str, Any]) -> tuple[str | None, int]:
    kind, data = frame["kind"], frame["data"]
    if kind == "message.new":
        return kind, int(data["id"])
    if kind == "notice.new":
        return kind, int(data["notice_id"])
    if kind == "task.created":
        return kind, int(data["task"]["task_id"])
    return None, 0


def _check(
    res: LoadResult, items: list[_Item], clients: list[LoadClient], node_of: dict[int, int], wall: float = 0.0
) -> None:
    """I1–I5 over everything the clients saw (``wall``: ``time.time()`` minus the loop's clock)."""
    by_id = {(EVENT_KIND[i.kind], i.server_id): i for i in items}
    keys: dict[tuple[int, str], set[int | None]] = defaultdict(set)
    for i in items:
        keys[(i.sender, i.key)].add(i.server_id)
    expected: dict[int, list[_Item]] = defaultdict(list)
    for i in items:
        for p in i.audience:
            expected[p].append(i)
    for k, ids in keys.items():  # I2: one id per idempotency key
        res.checks["I2"] += 1
        if len(ids) != 1:
            res.violations.append(f"I2: {k} got {ids}")
    for c in clients:
        pid = c.person.pid
        seqs = [f["seq"] for _, f in c.events]
        start = c.hello["last_seq"]
        res.checks["I3"] += len(seqs)
        if seqs != list(range(start + 1, start + 1 + len(seqs))):  # I3: +1 each, from the hello's position
            res.violations.append(f"I3: {pid} seqs {seqs[:5]}… not consecutive from {start + 1}")
        seen: set[tuple[str, int]] = set()
        for t, f in c.events:
            kind, sid = _identify(f)
            if kind is None:
                continue
            res.checks["I2"] += 1
            if (kind, sid) in seen:
                res.violations.append(f"I2: {pid} got {kind} {sid} twice")
            seen.add((kind, sid))
            item = by_id.get((kind, sid))
            res.checks["I5"] += 1
            if item is None:
                if kind not in res.unanswered:
                    res.violations.append(f"I5: {pid} got {kind} {sid} that was never acknowledged")
                continue
            res.checks["I4"] += 1
            if pid not in item.audience and pid != item.sender:
                res.violations.append(f"I4: {pid} got {kind} {sid} outside its audience")
            if pid != item.sender:
                res.deliver_lat.append(t - item.due)
                if len(set(node_of.values())) > 1 and node_of[pid] != node_of[item.sender]:
                    res.cross_deliver_lat.append(t - item.due)
                    res.cross_detail.append((pid, f["seq"], kind, sid, t + wall, item.due + wall))
        for item in expected[pid]:  # I1: everything acknowledged for this person reached it
            res.checks["I1"] += 1
            if (EVENT_KIND[item.kind], item.server_id) not in seen:
                res.violations.append(f"I1: {pid} never got {item.kind} {item.server_id}")
