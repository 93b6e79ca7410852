"""Load-generator workers for the group fan-out benchmark (bench/group_fanout.py).

Built on ``loadgen.Worker`` (connect/authenticate/close) and spawned one
process per slice of the clients like ``loadgen.WorkerPool``. A worker
records, per socket, when the ``message.new`` event carrying a given
``client_msg_id`` arrived (zzd and the bare broadcast send the same shape).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from common import Client
from loadgen import Worker, WorkerPool, WorkerSpec, obey, run_load_process, seed_of


class GroupWorker(Worker):
    def __init__(self, spec: WorkerSpec) -> None:
        super().__init__(spec)
        self.arrived: dict[str, dict[int, float]] = {}  # client_msg_id → person → time
        self.frame_len = 0

    def _on_frame(self, me: int, now: float, msg: dict[str, Any], raw: str | bytes) -> None:
        if msg.get("type") == "event" and msg.get("kind") == "message.new":
            key = str(msg["data"].get("client_msg_id"))
            self.arrived.setdefault(key, {}).setdefault(me, now)
            self.frame_len = len(raw)

    async def await_key(self, key: str, timeout: float) -> dict[str, Any]:
        deadline = time.time() + timeout
        while len(self.arrived.get(key, {})) < len(self.socks) and time.time() < deadline:
            await asyncio.sleep(0.01)
        got = self.arrived.get(key, {})
        return {"times": list(got.values()), "missing": len(self.socks) - len(got), "frame_len": self.frame_len}


async def _serve(spec: WorkerSpec, pipe: Any) -> None:
    w = GroupWorker(spec)
    await obey(pipe, w, {"connect": w.connect_all, "listen": w.listen, "await_key": w.await_key})


def _entry(spec: WorkerSpec, pipe: Any) -> None:
    run_load_process(_serve(spec, pipe), seed_of(spec))


class GroupPool(WorkerPool):
    """``loadgen.WorkerPool`` with group workers."""

    def __init__(self, clients: list[Client], urls: list[str], processes: int) -> None:  # noqa: D107
        super().__init__(clients, urls, processes, entry=_entry, with_ids=False)
