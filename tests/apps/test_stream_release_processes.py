"""A closed stream gives its unacknowledged events back at once (docs/webhooks.md, stream mode), against a
real ``zzd serve`` process on PostgreSQL and Redis: an app that reads an event and closes, many times over,
finds each event released ("not acknowledged: the connection closed") within a fraction of a second.

Before, the connection's pump sometimes outlived its socket: ``asyncio.wait_for`` (before Python 3.12)
swallows a cancellation that arrives just as the awaited event is set, and the pump is woken by every
dispatch (twice with Redis: the local kick and the broker's echo). The events stayed leased to the gone
socket for the whole lease (60 s), or until the ghost pump failed to send the next one; in one run of 60
closes against a live server, 9 took from 3 to 60 s. Only a separate process with the Redis broker showed
it (the in-process test server did not, in 80 tries)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
import websockets
from sqlalchemy import select

from apps.schema import app_delivery_attempts
from apps.stream import AWAITING
from kernel.db.database import Database
from tests.apps.helpers import VILLAGE
from tests.apps.test_delivery_kill import tree_with_app
from tests.procs import zzd_processes
from tests.waiting import scaled

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

CLOSES = 40


async def test_a_closed_stream_releases_its_events_at_once_every_time(
    own_pg_database: str, tmp_path: Path, redis_url: str
) -> None:
    url = own_pg_database
    client_id, client_secret = await tree_with_app(url, tmp_path, "释放平台", ("task:create", "events:task.*"))
    db = Database(url)
    try:
        async with zzd_processes(url, redis_url, 1) as procs, httpx.AsyncClient(base_url=procs[0].http) as h:
            r = await h.post("/api/v1/auth/token", json={"grant_type": "client_credentials",
                             "client_id": client_id, "client_secret": client_secret})  # fmt: skip
            tok = r.json()["access_token"]
            bot = {"Authorization": f"Bearer {tok}"}
            r = await h.post("/api/v1/bot/subscriptions", json={"mode": "stream", "event_types": ["task.created"]},
                             headers=bot)  # fmt: skip
            assert r.status_code == 201, r.text
            stream_url = procs[0].http.replace("http://", "ws://") + "/api/v1/bot/stream"
            slow: list[tuple[int, float]] = []
            for i in range(CLOSES):
                ws = await websockets.connect(stream_url)
                await ws.send(json.dumps({"type": "hello", "id": "h", "v": 1, "token": tok}))
                assert json.loads(await asyncio.wait_for(ws.recv(), scaled(10)))["type"] == "ok"
                body = {"selector": f"village_secretary@{VILLAGE}", "title": f"第{i}件"}
                r = await h.post("/api/v1/bot/tasks", json=body, headers={**bot, "Idempotency-Key": uuid.uuid4().hex})
                task_id = r.json()["tasks"][0]["task_id"]
                while True:  # earlier events, released by earlier closes, come first
                    frame = json.loads(await asyncio.wait_for(ws.recv(), scaled(10)))
                    if frame["type"] == "event" and frame["event"]["data"]["task"]["task_id"] == task_id:
                        break
                await ws.close()
                closed_at = time.monotonic()
                a = app_delivery_attempts
                while True:
                    async with db.read() as conn:
                        last = (await conn.execute(select(a.c.error).where(a.c.delivery_id == frame["delivery_id"])
                                                   .order_by(a.c.id.desc()).limit(1))).scalar_one()  # fmt: skip
                    took = time.monotonic() - closed_at
                    if last != AWAITING or took > scaled(5):
                        break
                    await asyncio.sleep(0.02)
                if took > scaled(0.5):
                    slow.append((i, round(took, 2)))
            assert not slow, f"events released late after {len(slow)} of {CLOSES} closes: {slow}"
    finally:
        await db.dispose()
