"""Load-generator workers for the notice fan-out benchmark (bench/notice_fanout.py).

Built on ``loadgen.Worker`` (connect/authenticate/close, one reader task per
socket) and the same spawn-a-process-per-slice scheme as ``loadgen.WorkerPool``.
A worker records, per socket, when the first ``notice.new`` arrived; sends
``notice_read`` frames open-loop on a clock schedule and records each reply;
and (for the sender's socket) every ``notice.progress`` event with its time.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

from websockets.exceptions import ConnectionClosed

from common import Client
from loadgen import Worker, WorkerPool, WorkerSpec, obey, run_load_process, seed_of


class NoticeWorker(Worker):
    """One process worth of recipients (or the sender alone)."""

    def __init__(self, spec: WorkerSpec) -> None:
        super().__init__(spec)
        self.new_at: dict[int, float] = {}  # person → first notice.new
        self.notice_id: int | None = None
        self.frame_len = 0
        self.read_sent: dict[str, float] = {}  # ref → scheduled send time
        self.read_ok: dict[str, float] = {}  # ref → reply time
        self.read_err: dict[str, int] = {}
        self.progress: list[tuple[float, dict[str, Any]]] = []
        self.other_events: dict[str, int] = {}

    def _on_frame(self, me: int, now: float, msg: dict[str, Any], raw: str | bytes) -> None:
        kind = msg.get("type")
        if kind == "event":
            ek = msg.get("kind")
            if ek == "notice.new":
                if me not in self.new_at:
                    self.new_at[me] = now
                    self.notice_id = msg.get("data", {}).get("notice_id")
                    self.frame_len = len(raw)
            elif ek == "notice.progress":
                self.progress.append((now, msg.get("data", {})))
            else:
                self.other_events[ek] = self.other_events.get(ek, 0) + 1
        elif kind == "ok":
            ref = msg.get("ref")
            if ref in self.read_sent and ref not in self.read_ok:
                self.read_ok[ref] = now
        elif kind == "error":
            err = msg.get("error") if isinstance(msg.get("error"), dict) else msg
            code = str(err.get("code", "?"))
            self.read_err[code] = self.read_err.get(code, 0) + 1

    async def await_new(self, timeout: float, quiet: float = 10.0) -> dict[str, Any]:
        """Until every socket has its notice.new, ``timeout`` s pass, or none came for ``quiet`` s."""
        t0 = time.time()
        deadline = t0 + timeout
        while len(self.new_at) < len(self.socks) and time.time() < deadline:
            last = max(self.new_at.values(), default=t0)
            if time.time() - last > quiet:
                break
            await asyncio.sleep(0.02)
        return {
            "times": list(self.new_at.values()),
            "persons": list(self.new_at),
            "missing": len(self.socks) - len(self.new_at),
            "notice_id": self.notice_id,
            "frame_len": self.frame_len,
            "closed": self.stats.closed,
            "close_codes": self.stats.close_codes,
        }

    async def read_all(self, notice_id: int, start: float, spread: float, drain: float) -> dict[str, Any]:
        """Send one ``notice_read`` per socket, evenly over ``spread`` s from ``start`` (open loop)."""
        order = list(self.socks)
        random.shuffle(order)
        n = len(order)
        await asyncio.sleep(max(0.0, start - time.time()))
        for i, (me, ws) in enumerate(order):
            due = start + spread * i / max(1, n)
            delay = due - time.time()
            if delay > 0.002:
                await asyncio.sleep(delay)
            ref = f"r{me}"
            self.read_sent[ref] = due
            try:
                await ws.send(json.dumps({"type": "notice_read", "id": ref, "notice_id": notice_id}))
            except ConnectionClosed:
                self.read_err["send_closed"] = self.read_err.get("send_closed", 0) + 1
        deadline = start + spread + drain
        while len(self.read_ok) + sum(self.read_err.values()) < n and time.time() < deadline:
            await asyncio.sleep(0.02)
        lat = [self.read_ok[r] - self.read_sent[r] for r in self.read_ok]
        return {"sent": n, "ok_times": list(self.read_ok.values()), "lat": lat, "errors": self.read_err}

    async def await_progress(self, expected_read: int, timeout: float) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.progress and self.progress[-1][1].get("read", 0) >= expected_read:
                break
            await asyncio.sleep(0.02)
        return {"progress": self.progress, "other": self.other_events}


async def _serve(spec: WorkerSpec, pipe: Any) -> None:
    w = NoticeWorker(spec)
    commands = {"connect": w.connect_all, "listen": w.listen, "await_new": w.await_new, "read": w.read_all,
                "await_progress": w.await_progress}  # fmt: skip
    await obey(pipe, w, commands)


def _entry(spec: WorkerSpec, pipe: Any) -> None:
    run_load_process(_serve(spec, pipe), seed_of(spec))


class NoticePool(WorkerPool):
    """``loadgen.WorkerPool`` with notice workers; ``send``/``collect`` split ``call`` for overlap."""

    def __init__(self, clients: list[Client], urls: list[str], processes: int, first_index: int = 0) -> None:  # noqa: D107
        super().__init__(clients, urls, processes, entry=_entry, first_index=first_index, with_ids=False)

    def send(self, cmd: str, **args: Any) -> None:
        for p in self.pipes:
            p.send((cmd, args))

    def collect(self) -> list[dict[str, Any]]:
        return [p.recv() for p in self.pipes]
