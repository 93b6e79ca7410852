"""A served app over a small real division tree, with delivery settings fit for tests (fast retries,
loopback allowed as a webhook target, short timeouts)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from kernel.db.database import Database
from org_tree.importer import import_divisions
from org_tree.synthetic import generate_people
from tests.conftest import RunningServer, make_settings, start_server
from tests.notices.conftest import write_divisions

PLATFORM_SETTINGS: dict[str, object] = {
    "background_interval": 0.1,
    "send_rate_per_minute": 10_000,
    "webhook_allowed_networks": ["127.0.0.0/8"],
    "webhook_allow_public": False,
    "webhook_timeout": 1.0,
    "webhook_backoff_base": 0.2,
    "webhook_backoff_cap": 0.5,
    "webhook_max_attempts": 4,
    "webhook_disable_after": 6,
    "delivery_poll_interval": 0.05,
    "delivery_lease": 5.0,
}


async def populate(db_url: str, tmp_path: Path) -> None:
    db = Database(db_url)
    try:
        await import_divisions(db, write_divisions(tmp_path / "div", townships=2, villages=4), grids_per_village=2)
        await generate_people(db, seed=3)
    finally:
        await db.dispose()


@asynccontextmanager
async def platform(db_url: str, tmp_path: Path, **overrides: object) -> AsyncIterator[RunningServer]:
    """The populated tree served with ``PLATFORM_SETTINGS`` (``overrides`` on top)."""
    await populate(db_url, tmp_path)
    rs, task = await start_server(make_settings(db_url, **{**PLATFORM_SETTINGS, **overrides}))
    try:
        yield rs
    finally:
        rs.server.should_exit = True
        await task


@pytest.fixture
async def platform_server(own_db_url: str, tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with platform(own_db_url, tmp_path) as rs:
        yield rs
