"""Direct chat writes through connections of its own on PostgreSQL (``ZZD_DB_CHAT_POOL_SIZE``).

Why: under the issue-13 app traffic, report filings, stream claims and the
dispatcher held every connection of a server's shared pool while the event
loop was short of CPU, and a chat send queued up to 5 s for one
(BENCHMARKS.md, issue 13). Here every shared connection is held open in a
transaction, as that traffic did, and a chat send must still commit at once;
with the lane turned off the same send waits for the shared pool (the
control, so this test can fail).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from messaging.chat import SendRequest
from tests.client import new_person
from tests.conftest import FAST_PASSWORDS, make_settings
from zzd.services import Services

pytestmark = pytest.mark.postgres


@contextlib.asynccontextmanager
async def _shared_pool_held(s: Services) -> AsyncIterator[list[AsyncConnection]]:
    """Every connection the shared pool may give (pool and overflow), each inside an open transaction."""
    held = contextlib.AsyncExitStack()
    async with held:
        pool = s.db.writer.pool
        conns = [await held.enter_async_context(s.db.write()) for _ in range(pool.size() + pool._max_overflow)]  # type: ignore[attr-defined]
        yield conns


@contextlib.asynccontextmanager
async def _two_people(url: str, lane: int) -> AsyncIterator[tuple[Services, int, int]]:
    """Started services with a one-connection shared pool and a chat lane of ``lane``, and two people."""
    s = Services.build(make_settings(url, db_pool_size=1, db_chat_pool_size=lane), passwords=FAST_PASSWORDS)
    await s.start()
    try:
        a, _ = await new_person(s)
        b, _ = await new_person(s)
        yield s, a, b
    finally:
        await s.stop()


async def test_a_chat_send_commits_while_the_shared_pool_is_held(pg_database: str) -> None:
    async with _two_people(pg_database, lane=2) as (s, a, b):
        async with _shared_pool_held(s):
            res = await asyncio.wait_for(s.chat.send(SendRequest(a, b, "lane-1", "先到")), 5)
        assert res.duplicate is False
        page = await s.events.read(b, epoch=None, since=0)
        assert [k for _, k, _ in page.events] == ["message.new"]


async def test_without_the_lane_a_chat_send_waits_for_the_shared_pool(pg_database: str) -> None:
    async with _two_people(pg_database, lane=0) as (s, a, b):
        async with _shared_pool_held(s):
            send = asyncio.ensure_future(s.chat.send(SendRequest(a, b, "lane-0", "后到")))
            done, _ = await asyncio.wait([send], timeout=1.0)
            assert not done  # queued behind the held connections
        res = await asyncio.wait_for(send, 10)  # and answered once they are given back
        assert res.duplicate is False
