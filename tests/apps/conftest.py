"""A served app over a small real division tree, with delivery settings fit for tests (fast retries,
loopback allowed as a webhook target, short timeouts)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.conftest import RunningServer, make_settings, serving
from tests.org_server import populate

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


@asynccontextmanager
async def platform(db_url: str, tmp_path: Path, **overrides: object) -> AsyncIterator[RunningServer]:
    """The populated tree served with ``PLATFORM_SETTINGS`` (``overrides`` on top)."""
    await populate(db_url, tmp_path)
    async with serving(make_settings(db_url, **{**PLATFORM_SETTINGS, **overrides})) as rs:
        yield rs


@pytest.fixture
async def platform_server(own_db_url: str, tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with platform(own_db_url, tmp_path) as rs:
        yield rs
