"""Load processes for bench/report_loop.py: grid workers filing reports, assignees listening.

Each worker process (spawned, never a server) holds a slice of the people:
*reporters* (grid workers: a WebSocket, and per report one HTTP/1.1
connection for the photo upload and the ``POST /api/v1/reports``) and
*listeners* (every connected person's WebSocket, assignees and reporters
alike), and is driven by the orchestrator over a pipe:
``connect`` → ``run`` → ``close``.

Open loop: report ``n`` is due at ``t0 + n * duration / total`` whatever the
server does, and its latencies start at that scheduled time (upload) or at the
moment the POST starts (report, notification). All timestamps are
``time.time()`` so the orchestrator can join a report filed in one process with
the task event that reached its assignee in another (one machine, one clock).

The same code drives zzd and the bare baseline (bench/report_bare.py); for the
bare server the report body carries the assignee and a task id, since a bare
relay does not route.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from common import http_exchange
from loadgen import WorkerPool, obey, run_load_process

JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
CONNECT_CONCURRENCY = 100
HTTP_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class Job:
    """One report to file: who files it, as which position, at which server, and for whom it is meant."""

    n: int
    person_id: int
    token: str
    position_id: int
    port: int
    assignee: int  # person expected to be notified (the bare server routes to this id)
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Listener:
    """One person connected over WebSocket to one server."""

    person_id: int
    token: str
    port: int


@dataclass
class Spec:
    index: int
    jobs: list[Job]
    listeners: list[Listener]
    mode: str  # "zzd" | "bare"
    size: int
    category: str = "river_litter"


@dataclass
class Record:
    """What happened to one report (all times ``time.time()``)."""

    n: int
    sched: float
    up_end: float = 0.0
    up_status: int = 0
    post_start: float = 0.0
    post_end: float = 0.0
    post_status: int = 0
    task_id: int = 0
    report_id: int = 0
    error: str = ""


@dataclass
class Worker:
    spec: Spec
    socks: list[tuple[int, ClientConnection]] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    #: (person_id, task_id, kind, time received, owner_position_id, frame length)
    seen: list[tuple[int, int, str, float, int, int]] = field(default_factory=list)
    closed: dict[str, int] = field(default_factory=dict)
    last_frame: float = 0.0
    photos: list[tuple[bytes, str]] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)
    base: bytes = b""

    # --- WebSockets -----------------------------------------------------------------

    async def _open(self, lst: Listener, gate: asyncio.Semaphore) -> tuple[int, ClientConnection] | None:
        """Connect and say hello, retrying twice as a phone would; the last failure is kept for the report."""
        async with gate:
            for _attempt in range(3):
                try:
                    ws = await connect(
                        f"ws://127.0.0.1:{lst.port}/ws", max_size=1 << 20, compression=None, open_timeout=120
                    )
                    await ws.send(json.dumps({"type": "hello", "id": "h", "v": 1, "token": lst.token}))
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 120))
                except (OSError, ConnectionClosed, TimeoutError) as exc:
                    self.failures[lst.person_id] = f"{type(exc).__name__}: {exc}"[:120]
                    continue
                if reply.get("type") == "ok":
                    self.failures.pop(lst.person_id, None)
                    return lst.person_id, ws
                self.failures[lst.person_id] = f"hello refused: {json.dumps(reply)[:100]}"
                await ws.close()
            return None

    async def _read(self, me: int, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                now = time.time()
                self.last_frame = now
                msg = json.loads(raw)
                if msg.get("type") != "event" or not str(msg.get("kind", "")).startswith("task."):
                    continue
                task = msg["data"]["task"]
                self.seen.append(
                    (me, int(task["task_id"]), str(msg["kind"]), now, int(task.get("owner_position_id") or 0), len(raw))
                )
        except ConnectionClosed as exc:
            code = str(exc.rcvd.code) if exc.rcvd is not None else "none"
            self.closed[code] = self.closed.get(code, 0) + 1

    async def connect_all(self) -> dict[str, Any]:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        t0 = time.monotonic()
        opened = await asyncio.gather(*(self._open(lst, gate) for lst in self.spec.listeners))
        self.socks = [s for s in opened if s is not None]
        self.readers = [asyncio.create_task(self._read(me, ws)) for me, ws in self.socks]
        # Photos: unique bytes per report (magic, a random tag, shared random filler), hashed now so
        # the timed window only concatenates.
        nonce = secrets.token_bytes(8)
        self.base = os.urandom(self.spec.size - len(JPEG_HEAD) - 16)
        for job in self.spec.jobs:
            tag = nonce + job.n.to_bytes(8, "big")
            self.photos.append((tag, hashlib.sha256(JPEG_HEAD + tag + self.base).hexdigest()))
        return {
            "connected": len(self.socks),
            "failed": self.failures,
            "persons": [p for p, _ in self.socks],
            "seconds": time.monotonic() - t0,
        }

    async def close_all(self) -> None:
        for t in self.readers:
            t.cancel()
        await asyncio.gather(*(ws.close() for _, ws in self.socks), return_exceptions=True)

    # --- one report -----------------------------------------------------------------

    async def _file(self, job: Job, tag: bytes, digest: str, sched: float) -> Record:
        rec = Record(job.n, sched)
        await asyncio.sleep(max(0.0, sched - time.time()))
        auth = f"Authorization: Bearer {job.token}\r\n"
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", job.port)
        except OSError as exc:
            rec.error = f"connect: {exc}"
            return rec
        try:
            photo = JPEG_HEAD + tag + self.base
            head = (
                f"POST /api/v1/uploads HTTP/1.1\r\nHost: bench\r\n{auth}Content-Type: image/jpeg\r\n"
                f"Content-Length: {len(photo)}\r\nX-Content-SHA256: {digest}\r\n\r\n"
            )
            exchange = http_exchange(reader, writer, head.encode() + photo)
            rec.up_status, _ = await asyncio.wait_for(exchange, HTTP_TIMEOUT)
            rec.up_end = time.time()
            if rec.up_status not in (200, 201):
                rec.error = f"upload {rec.up_status}"
                return rec
            body: dict[str, Any] = {
                "as_position": job.position_id,
                "client_msg_id": f"bench-{job.n}-{secrets.token_hex(4)}",
                "category": self.spec.category,
                "text": f"河道里漂着一片垃圾 (bench report {job.n})",
                "location": {"lat": job.lat, "lon": job.lon},
                "photos": [digest],
            }
            if self.spec.mode == "bare":
                body.update(to=job.assignee, task_id=job.n + 1)
            data = json.dumps(body).encode()
            head = (
                f"POST /api/v1/reports HTTP/1.1\r\nHost: bench\r\n{auth}Content-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n"
            )
            rec.post_start = time.time()
            rec.post_status, reply = await asyncio.wait_for(
                http_exchange(reader, writer, head.encode() + data), HTTP_TIMEOUT
            )
            rec.post_end = time.time()
            if rec.post_status in (200, 201):
                out = json.loads(reply)
                rec.task_id, rec.report_id = int(out["task_id"]), int(out["report_id"])
            else:
                rec.error = f"report {rec.post_status}: {reply[:200]!r}"
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError, TimeoutError) as exc:
            rec.error = f"{type(exc).__name__}: {exc}"
        finally:
            writer.close()
        return rec

    async def warm(self, t0: float, duration: float, count: int) -> dict[str, Any]:
        """Warm the servers up (connections, statement caches) with ``count`` unmeasured reports of my first
        reporters, other photos; then forget what the listeners saw so the measured run starts clean."""
        nonce = secrets.token_bytes(8)
        jobs = self.spec.jobs[:count]
        tags = [nonce + job.n.to_bytes(8, "big") for job in jobs]
        digests = [hashlib.sha256(JPEG_HEAD + tag + self.base).hexdigest() for tag in tags]
        step = duration / max(1, len(jobs))
        recs = await asyncio.gather(
            *(self._file(job, tags[i], digests[i], t0 + i * step) for i, job in enumerate(jobs))
        )
        await asyncio.sleep(1.5)
        self.seen.clear()
        return {
            "reports": len(recs),
            "ok": sum(1 for r in recs if r.post_status in (200, 201)),
            "uploads_ok": sum(1 for r in recs if r.up_status in (200, 201)),
            "errors": [r.error for r in recs if r.error],
        }

    async def run(self, t0: float, duration: float, total: int, expect: int, drain: float) -> dict[str, Any]:
        """File my reports open-loop, then wait until my listeners saw ``expect`` assignee events (or drain)."""
        step = duration / max(1, total)
        recs = await asyncio.gather(
            *(
                self._file(job, tag, digest, t0 + job.n * step)
                for job, (tag, digest) in zip(self.spec.jobs, self.photos, strict=True)
            )
        )
        deadline = time.time() + drain
        while time.time() < deadline:
            if (
                len({s[1] for s in self.seen if s[2] == "task.created"}) >= expect
                and time.time() - self.last_frame > 1.0
            ):
                break
            await asyncio.sleep(0.1)
        return {"records": [r.__dict__ for r in recs], "seen": self.seen, "closed": self.closed}


async def _serve(spec: Spec, pipe: Pipe) -> None:
    worker = Worker(spec)
    await obey(pipe, worker, {"connect": worker.connect_all, "run": worker.run, "warm": worker.warm})


def _entry(spec: Spec, pipe: Pipe) -> None:
    run_load_process(_serve(spec, pipe), None)


class ReportPool(WorkerPool):
    """The orchestrator's handle on the load processes (one per ``Spec``)."""

    def __init__(self, specs: list[Spec]) -> None:  # noqa: D107
        self.spawn(specs, _entry)

    def call(self, cmd: str, per_worker: list[dict[str, Any]] | None = None, **args: Any) -> list[dict[str, Any]]:
        for i, p in enumerate(self.pipes):
            p.send((cmd, {**args, **(per_worker[i] if per_worker else {})}))
        return [p.recv() for p in self.pipes]
