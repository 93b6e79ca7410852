"""Org commits wake the other processes over Redis; the poll stays the fallback (issue 17, zzd/org_wake.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kernel.clock import SystemClock
from kernel.db.database import Database
from messaging.broker.redis import RedisBroker
from org_tree.holder import OrgIndexHolder
from org_tree.importer import import_divisions
from org_tree.jurisdiction import SYSTEM
from org_tree.org_service import OrgService
from tests.services import redis_prefix
from tests.waiting import scaled, wait_until
from zzd.org_wake import ORG_CHANNEL, OrgWake

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def _service(db: Database) -> OrgService:
    holder = OrgIndexHolder(db)
    await holder.load()
    return OrgService(db, SystemClock(), holder)


async def test_a_commit_reaches_the_other_holder_without_its_poll(
    org_pg_url: str, redis_url: str, mini_divisions: Path
) -> None:
    db = Database(org_pg_url)
    prefix = redis_prefix()
    brokers = [RedisBroker(redis_url, prefix=prefix) for _ in range(2)]
    try:
        await import_divisions(db, mini_divisions, grids_per_village=1)
        a, b = await _service(db), await _service(db)
        wakes = [OrgWake(brokers[0], a._holder), OrgWake(brokers[1], b._holder)]
        for broker in brokers:
            await broker.start()
        before = b.index.version
        town = b.index.unit("990101001")
        made = await a.create_position(SYSTEM, "990101001001", "river_chief")
        # b never polls here: only the wake-up can bring it the new version
        await wait_until(lambda: b.index.version > before, scaled(2.0), "b to apply the wake-up", interval=0.01)
        assert b.index.find_slot(made.id) >= 0 and wakes[1].refreshes >= 1 and wakes[0].published >= 1
        await a.move_unit(SYSTEM, "990101001", "990102")
        await wait_until(
            lambda: b.index.parent(town) == b.index.unit("990102"), scaled(2.0), "b to apply the move", interval=0.01
        )
        # a burst: wake-ups arriving during a refresh are coalesced, every change still lands once
        for i in range(10):
            await a.rename_unit(SYSTEM, "990101001001", f"改名{i}")
        await wait_until(lambda: b.index.version == a.index.version, scaled(2.0), "b to catch up", interval=0.01)
        assert b.index.unit_name(b.index.unit("990101001001")) == "改名9"
        assert b._holder.rebuilds == 1  # patched in place, never rebuilt
        await brokers[0].publish(ORG_CHANNEL, b"not a version")  # ignored, and nothing breaks
        await a.rename_unit(SYSTEM, "990101001001", "金桂村")
        await wait_until(
            lambda: b.index.version == a.index.version, scaled(2.0), "b after a bad payload", interval=0.01
        )
        for wake in wakes:
            await wake.close()
    finally:
        for broker in brokers:
            await broker.close()
        await db.dispose()


class _DownBroker:
    """A broker whose publish always fails (Redis unreachable)."""

    def subscribe(self, channel: str, handler: object) -> None:
        del channel, handler

    async def publish(self, channel: str, data: bytes) -> None:
        raise ConnectionError("redis is down")


async def test_a_failed_publish_never_fails_the_write_and_the_poll_still_finds_it(
    org_pg_url: str, mini_divisions: Path
) -> None:
    db = Database(org_pg_url)
    try:
        await import_divisions(db, mini_divisions, grids_per_village=1)
        a, b = await _service(db), await _service(db)
        wake = OrgWake(_DownBroker(), a._holder)  # type: ignore[arg-type]
        made = await a.create_position(SYSTEM, "990101001001", "river_chief")
        assert a.index.find_slot(made.id) >= 0  # the write answered
        await wait_until(lambda: wake.failed == 1, scaled(2.0), "the publish to fail", interval=0.01)
        assert wake.published == 0
        assert await b._holder.refresh_if_changed()  # the poll: the fallback
        assert b.index.find_slot(made.id) >= 0
    finally:
        await db.dispose()


async def test_overlapping_refreshes_apply_each_change_once(org_pg_url: str, mini_divisions: Path) -> None:
    db = Database(org_pg_url)
    try:
        await import_divisions(db, mini_divisions, grids_per_village=1)
        a, b = await _service(db), await _service(db)
        town = b.index.unit("990101001")
        await a.move_unit(SYSTEM, "990101001", "990102")
        await a.create_position(SYSTEM, "990101001001", "river_chief")
        got = await asyncio.gather(*(b._holder.refresh_if_changed() for _ in range(3)))
        assert got.count(True) == 1 and b._holder.patches == 1 and b._holder.rebuilds == 1
        assert b.index.parent(town) == b.index.unit("990102") and b.index.version == a.index.version
    finally:
        await db.dispose()
