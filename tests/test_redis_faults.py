"""S4/S5: Redis killed or hung under two server processes; the database path carries on.

A private redis-server on a free port (never the shared one) is killed with
SIGKILL, restarted, and frozen with SIGSTOP. Sends must keep being
acknowledged promptly (publishing is off the acknowledgement path, with a
timeout) and every message must still reach its recipient on the other
process: through the database safety poll while Redis is away, through
wake-ups again once the subscriber has reconnected.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.client import Client, login
from tests.conftest import free_port
from tests.procs import zzd_processes
from tests.test_two_processes import _people

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


class PrivateRedis:
    """A redis-server of our own on ``port``; :meth:`start` also restarts it after a kill."""

    def __init__(self, port: int, workdir: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server binary not found")
        self.exe, self.port, self.workdir = exe, port, workdir
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.workdir), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:  # wait until it accepts connections (a bounded readiness check)
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            await self.proc.wait()


@asynccontextmanager
async def private_redis(port: int, workdir: Path) -> AsyncIterator[PrivateRedis]:
    redis = PrivateRedis(port, workdir)
    await redis.start()
    try:
        yield redis
    finally:
        await redis.stop()


async def test_sends_and_deliveries_survive_redis_kill_and_hang(pg_database: str, tmp_path: Path) -> None:
    (a_id, a_lg), (b_id, b_lg) = await _people(pg_database, 2)
    port = free_port()
    async with (
        private_redis(port, tmp_path) as redis,
        zzd_processes(pg_database, f"redis://127.0.0.1:{port}/0", 2, ZZD_SAFETY_POLL_INTERVAL="1") as (p1, p2),
    ):
        a = await Client.connect(p1.ws, (await login(p1.http, a_lg))["access_token"])
        b = await Client.connect(p2.ws, (await login(p2.http, b_lg))["access_token"])
        sent: list[int] = []

        async def send_some(n: int, tag: str) -> float:
            worst = 0.0
            for i in range(n):
                t0 = time.monotonic()
                r = await a.send_message(b_id, f"{tag}-{i}", client_msg_id=f"{tag}-{i}")
                worst = max(worst, time.monotonic() - t0)
                assert r["type"] == "ok", r  # no send fails because of Redis
                sent.append(r["data"]["message_id"])
            return worst

        await send_some(5, "before")
        await b.wait_events(len(sent))

        # S4: Redis killed. Acks keep coming; deliveries arrive through the safety poll.
        assert redis.proc is not None
        redis.proc.kill()
        await redis.proc.wait()
        assert await send_some(5, "dead") < 2.0
        await b.wait_events(len(sent), timeout=10)

        # Redis back (same port): the subscriber reconnects, wake-ups flow again.
        await redis.start()
        await send_some(5, "back")
        await b.wait_events(len(sent), timeout=15)

        # S5: Redis hung (accepts TCP, never answers). No send blocks on it.
        assert redis.proc is not None
        redis.proc.send_signal(signal.SIGSTOP)
        try:
            assert await send_some(5, "hung") < 2.0
            await b.wait_events(len(sent), timeout=10)
        finally:
            redis.proc.send_signal(signal.SIGCONT)

        got = [e["data"]["id"] for e in b.events if e["kind"] == "message.new"]
        assert got == sent, "every acknowledged message reached the other process, in order"
        assert [e["seq"] for e in b.events] == list(range(1, len(b.events) + 1))
        await a.close()
        await b.close()
