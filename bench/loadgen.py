"""Load-generator worker processes: many authenticated WebSocket clients per process.

Each worker is its own OS process (never the server's), holds a slice of the
clients (so no process nears the 20,000 open-files limit) and is driven by the
orchestrator over a pipe: ``connect`` → report → ``chat``/``close`` → report.

The chat sender is open-loop: sends are scheduled by the clock at the offered
rate and never wait for acks, and latencies are measured from the *scheduled*
send time, so a stalled server shows up as latency instead of silently
lowering the offered load (coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import multiprocessing as mp
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from typing import Any

import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from common import Client, raise_fd_limit

MAX_SIZE = 65_536
CONNECT_CONCURRENCY = 100


@dataclass
class WorkerSpec:
    """What one worker does: its clients, which server each uses, and the chat load."""

    index: int
    clients: list[Client]
    urls: list[str]  # client i connects to urls[i % len(urls)]
    all_person_ids: list[int] = field(default_factory=list)


@dataclass
class ChatStats:
    """Raw per-worker results; the orchestrator merges them."""

    sent: int = 0
    send_errors: int = 0
    error_replies: int = 0
    ack_lat: list[float] = field(default_factory=list)
    deliver_lat: list[float] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)
    delivered: set[str] = field(default_factory=set)
    duplicates: int = 0
    last_ack: float = 0.0
    last_delivery: float = 0.0
    closed: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)
    close_codes: dict[str, int] = field(default_factory=dict)


class Worker:
    """One process worth of clients."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.socks: list[tuple[int, ClientConnection]] = []
        self.stats = ChatStats()
        self.pending: dict[str, float] = {}
        self.last_frame = time.time()
        self.readers: list[asyncio.Task[None]] = []
        #: Recipient and scheduled time of every send (to explain a message counted lost).
        self.sent_to: dict[str, tuple[int, float]] = {}
        #: Deliveries that arrived after the chat report was sent: cmid → arrival time.
        self.late: dict[str, float] = {}
        self.reported = False
        self.phase = ""
        #: Highest event seq each held person's socket received.
        self.seq_of: dict[int, int] = {}

    async def _open(self, i: int, client: Client, gate: asyncio.Semaphore) -> tuple[int, ClientConnection] | None:
        """Connect and authenticate one client; None (counted) if it fails."""
        url = self.spec.urls[i % len(self.spec.urls)]
        async with gate:
            try:
                ws = await connect(url, max_size=MAX_SIZE, compression=None, ping_interval=None, open_timeout=120)
                await ws.send(json.dumps({"type": "hello", "id": "h", "v": 1, "token": client.token}))
                reply = json.loads(await asyncio.wait_for(ws.recv(), 120))
            except (OSError, ConnectionClosed, TimeoutError):
                return None
            if reply.get("type") != "ok":
                await ws.close()
                return None
            return client.person_id, ws

    async def connect_all(self) -> dict[str, Any]:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        t0 = time.monotonic()
        opened = await asyncio.gather(*(self._open(i, c, gate) for i, c in enumerate(self.spec.clients)))
        self.socks = [s for s in opened if s is not None]
        return {"connected": len(self.socks), "failed": len(opened) - len(self.socks), "seconds": time.monotonic() - t0}

    async def close_all(self) -> None:
        for t in self.readers:
            t.cancel()
        await asyncio.gather(*(ws.close() for _, ws in self.socks), return_exceptions=True)

    # --- chat ---------------------------------------------------------------------

    def _on_frame(self, me: int, now: float, msg: dict[str, Any], raw: str | bytes) -> None:
        """One parsed frame ``msg`` (as it came: ``raw``) that ``me``'s socket received at ``now``."""
        kind = msg.get("type")
        if kind == "ok":
            sched = self.pending.pop(msg.get("ref"), None)
            if sched is not None:
                self.stats.ack_lat.append(now - sched)
                self.stats.acked.add(msg["ref"])
                self.stats.last_ack = now
        elif kind == "event" and msg.get("kind") == "message.new":
            self.seq_of[me] = max(self.seq_of.get(me, 0), int(msg.get("seq", 0)))
            data = msg["data"]
            if data.get("recipient_id") != me:
                return  # the echo to the sender's own socket
            cmid = data["client_msg_id"]
            if self.reported and cmid not in self.stats.delivered:
                self.late.setdefault(cmid, now)
            if cmid in self.stats.delivered:
                self.stats.duplicates += 1
                return
            self.stats.delivered.add(cmid)
            self.stats.deliver_lat.append(now - float(data["body"]))
            self.stats.last_delivery = now
        elif kind == "error":
            self.stats.error_replies += 1
            code = str(msg.get("data", msg).get("code", "?")) if isinstance(msg.get("data", msg), dict) else "?"
            self.stats.error_codes[code] = self.stats.error_codes.get(code, 0) + 1
            self.pending.pop(msg.get("ref"), None)

    async def _read(self, me: int, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                now = time.time()
                self.last_frame = now
                self._on_frame(me, now, json.loads(raw), raw)
        except ConnectionClosed as exc:
            code = str(exc.rcvd.code) if exc.rcvd is not None else "none"
            self.stats.close_codes[code] = self.stats.close_codes.get(code, 0) + 1
        self.stats.closed += 1

    async def _send_one(self, n: int, sched: float) -> None:
        me, ws = random.choice(self.socks)
        to = me
        while to == me:
            to = random.choice(self.spec.all_person_ids)
        # Unique per chat phase: a repeated (sender, client_msg_id) is an idempotent retry, acked
        # with the first message and delivered no second time (a later phase on the same database).
        cmid = f"{self.phase}w{self.spec.index}-{n}"
        self.pending[cmid] = sched
        self.sent_to[cmid] = (to, sched)
        frame = {"type": "send", "id": cmid, "to": to, "client_msg_id": cmid, "body": f"{sched:.6f}"}
        try:
            await ws.send(json.dumps(frame))
            self.stats.sent += 1
        except ConnectionClosed:
            self.pending.pop(cmid, None)
            self.stats.send_errors += 1

    def listen(self) -> dict[str, Any]:
        """Start reading every socket (each frame goes to ``_on_frame``)."""
        self.readers = [asyncio.create_task(self._read(me, ws)) for me, ws in self.socks]
        return {"listening": len(self.readers)}

    async def chat(self, start: float, rate: float, duration: float, drain: float) -> None:
        """Open-loop: the n-th send is due at ``start + n / rate`` whatever the replies do."""
        self.listen()
        self.phase = f"{start:.3f}:"
        total = int(rate * duration)
        await asyncio.sleep(max(0.0, start - time.time()))
        n = 0
        while n < total:
            due = min(total, int((time.time() - start) * rate) + 1)
            while n < due:
                await self._send_one(n, start + n / rate)
                n += 1
            await asyncio.sleep(0.002)
        await self._drain(start + duration + drain)

    async def _drain(self, deadline: float) -> None:
        """Wait for outstanding acks and for the deliveries to this worker's own sockets, then for quiet.

        Why not quiet alone: on an overloaded machine two silent seconds do not mean every
        acked message has arrived, and one still on its way was counted lost.
        """
        while time.time() < deadline:
            if not self.pending and not self.lost_here() and time.time() - self.last_frame > 2.0:
                return
            await asyncio.sleep(0.1)

    def lost_here(self) -> dict[str, tuple[int, float]]:
        """Acked sends to a person whose socket this worker holds, not delivered (yet)."""
        mine = {p for p, _ in self.socks}
        return {
            c: self.sent_to[c]
            for c in self.stats.acked - self.stats.delivered
            if c in self.sent_to and self.sent_to[c][0] in mine
        }

    async def linger(self, wait: float) -> dict[str, Any]:
        """After the report: keep the sockets open up to ``wait`` s for the messages counted lost.

        Tells a late live delivery (e.g. a catch-up or the safety poll) from a message that never comes.
        """
        lost = self.lost_here()
        t0 = time.time()
        while time.time() - t0 < wait and any(c not in self.late for c in lost):
            await asyncio.sleep(0.1)
        return {
            "lost": {c: [to, sched, self.late.get(c), self.seq_of.get(to)] for c, (to, sched) in lost.items()},
            "since_report": t0,
        }

    def report(self) -> dict[str, Any]:
        s = self.stats
        self.reported = True
        return {
            "sent": s.sent,
            "send_errors": s.send_errors,
            "error_replies": s.error_replies,
            "ack_lat": s.ack_lat,
            "deliver_lat": s.deliver_lat,
            "acked": list(s.acked),
            "delivered": list(s.delivered),
            "duplicates": s.duplicates,
            "last_ack": s.last_ack,
            "last_delivery": s.last_delivery,
            "closed": s.closed,
            "unacked": len(self.pending),
            "error_codes": s.error_codes,
            "close_codes": s.close_codes,
        }


async def obey(pipe: Pipe, worker: Any, commands: dict[str, Callable[..., Any]]) -> None:
    """Answer the orchestrator's ``(command, args)`` messages until ``close``.

    Each answer is what ``commands[command](**args)`` returns (awaited when it is
    a coroutine); ``close`` closes the worker's sockets and says so. Every
    scenario's load process runs this loop with its own command table.
    """
    loop = asyncio.get_running_loop()
    while True:
        cmd, args = await loop.run_in_executor(None, pipe.recv)
        if cmd == "close":
            await worker.close_all()
            pipe.send({"closed": True})
            return
        got = commands[cmd](**args)
        pipe.send(await got if inspect.isawaitable(got) else got)


def run_load_process(serve: Coroutine[Any, Any, None], seed: int | None) -> None:
    """A load process's body: a high descriptor limit, its own random seed (when given), ``serve`` on uvloop."""
    raise_fd_limit()
    if seed is not None:
        random.seed(seed)
    uvloop.run(serve)


def seed_of(spec: WorkerSpec) -> int:
    """Each load process its own random stream, different from run to run."""
    return spec.index * 7919 + int(time.time())


async def _serve(spec: WorkerSpec, pipe: Pipe) -> None:
    worker = Worker(spec)

    async def chat(**args: Any) -> dict[str, Any]:
        await worker.chat(**args)
        return worker.report()

    await obey(pipe, worker, {"connect": worker.connect_all, "chat": chat, "linger": worker.linger})


def _worker_entry(spec: WorkerSpec, pipe: Pipe) -> None:
    run_load_process(_serve(spec, pipe), seed_of(spec))


class WorkerPool:
    """The orchestrator's handle on N worker processes.

    Scenario pools (notice, group, report load) pass their own ``entry`` and
    specs; the spawning, calling and shutdown stay here.
    """

    def __init__(
        self,
        clients: list[Client],
        urls: list[str],
        processes: int,
        *,
        entry: Callable[[Any, Any], None] | None = None,
        first_index: int = 0,
        with_ids: bool = True,
    ) -> None:
        ids = [c.person_id for c in clients] if with_ids else []
        specs = []
        for i in range(processes):
            # Interleave so client k keeps the server k % len(urls) whichever worker holds it.
            part = [(k, c) for k, c in enumerate(clients) if k % processes == i]
            mine = [c for _, c in part]
            my_urls = [urls[k % len(urls)] for k, _ in part]
            specs.append(WorkerSpec(first_index + i, mine, my_urls, ids))
        self.spawn(specs, entry or _worker_entry)

    def spawn(self, specs: Sequence[Any], entry: Callable[[Any, Any], None]) -> None:
        """One process per spec running ``entry(spec, pipe)``."""
        ctx = mp.get_context("spawn")
        self.pipes: list[Pipe] = []
        self.procs: list[mp.process.BaseProcess] = []
        for spec in specs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=entry, args=(spec, child), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def call(self, cmd: str, **args: Any) -> list[dict[str, Any]]:
        """Send one command to every worker and collect their replies."""
        for p in self.pipes:
            p.send((cmd, args))
        return [p.recv() for p in self.pipes]

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def shutdown(self) -> None:
        with contextlib.suppress(OSError, EOFError, BrokenPipeError):
            self.call("close")
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
