"""Revocation reaches live streams on every server process within a second (issue 13 item 1): two real
``zzd serve`` processes on PostgreSQL and Redis, an app streaming from each, its secret revoked by
another process (the registry's own write, no announcement): both streams close 4503 within a second
of the commit, found by each process's own re-check."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from apps.registry import AppRegistry, NewApp
from kernel.clock import SystemClock
from kernel.db.database import Database
from org_tree.index import OrgIndexHolder
from org_tree.jurisdiction import SYSTEM
from org_tree.org_service import OrgService
from org_tree.people import PersonDirectory
from tests.apps.conftest import populate
from tests.procs import zzd_processes
from tests.services import redis_prefix
from tests.waiting import scaled

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


def _registry(db: Database, holder: OrgIndexHolder) -> AppRegistry:
    clock = SystemClock()
    return AppRegistry(db, clock, OrgService(db, clock, holder), PersonDirectory(db, clock), lambda: holder.index)


async def _stream(http: str, tok: str) -> Any:
    ws = await websockets.connect(http.replace("http://", "ws://") + "/api/v1/bot/stream")
    await ws.send(json.dumps({"type": "hello", "id": "h", "v": 1, "token": tok}))
    assert json.loads(await asyncio.wait_for(ws.recv(), scaled(10)))["type"] == "ok"
    return ws


async def _closed(ws: Any) -> tuple[int, float]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, time.monotonic()


async def test_a_revoked_secret_closes_the_apps_streams_on_every_process_within_a_second(
    own_pg_database: str, tmp_path: Path, redis_url: str
) -> None:
    url = own_pg_database
    await populate(url, tmp_path)
    db = Database(url)
    try:
        holder = OrgIndexHolder(db)
        await holder.load()
        registry = _registry(db, holder)
        spec = NewApp("撤销两处平台", "990101", "990101", "*@990101", ["events:report.filed"])
        app, secret = await registry.create(SYSTEM, spec)
        prefix = redis_prefix()
        async with zzd_processes(url, redis_url, 2, prefixes=[prefix, prefix]) as procs:
            socks = []
            for p in procs:
                async with httpx.AsyncClient(base_url=p.http) as h:
                    r = await h.post("/api/v1/auth/token", json={"grant_type": "client_credentials",
                                     "client_id": app.client_id, "client_secret": secret.secret})  # fmt: skip
                assert r.status_code == 200, r.text
                socks.append(await _stream(p.http, r.json()["access_token"]))
            waiting = [asyncio.create_task(_closed(ws)) for ws in socks]
            await registry.revoke_secret(SYSTEM, app.id, secret.id)  # committed when this returns
            revoked_at = time.monotonic()
            for code, at in await asyncio.wait_for(asyncio.gather(*waiting), scaled(10)):
                assert code == 4503
                assert at - revoked_at < scaled(1.0)  # "within a second", widened on a loaded machine
    finally:
        await db.dispose()
