"""S4/S5: Redis killed or hung under two server processes; the database path carries on.

A private redis-server on a free port (never the shared one) is killed with
SIGKILL, restarted, and frozen with SIGSTOP. Sends must keep being
acknowledged promptly (publishing is off the acknowledgement path, with a
timeout) and every message must still reach its recipient on the other
process: through the database safety poll while Redis is away, through
wake-ups again once the subscriber has reconnected.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.client import connect_as
from tests.faults import private_redis
from tests.procs import zzd_processes
from tests.test_two_processes import _people

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


async def test_sends_and_deliveries_survive_redis_kill_and_hang(pg_database: str, tmp_path: Path) -> None:
    (a_id, a_lg), (b_id, b_lg) = await _people(pg_database, 2)
    async with (
        private_redis(tmp_path) as redis,
        zzd_processes(pg_database, redis.url, 2, ZZD_SAFETY_POLL_INTERVAL="1") as (p1, p2),
    ):
        a = await connect_as(p1, a_lg)
        b = await connect_as(p2, b_lg)
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
