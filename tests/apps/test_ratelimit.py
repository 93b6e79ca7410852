"""Per-app limits are shared by every server process through real Redis, and refuse with retry_after."""

from __future__ import annotations

import pytest

from apps.ratelimit import AppRateLimiter
from kernel.errors import RateLimited
from tests.services import redis_prefix


@pytest.mark.redis
async def test_two_processes_share_one_apps_limit(redis_url: str) -> None:
    prefix = redis_prefix()
    a, b = AppRateLimiter(redis_url=redis_url, prefix=prefix), AppRateLimiter(redis_url=redis_url, prefix=prefix)
    try:
        await a.hit(7, 4)
        await b.hit(7, 4)
        await a.hit(7, 4)
        await b.hit(7, 4)
        with pytest.raises(RateLimited) as refused:
            await a.hit(7, 4)
        assert refused.value.data["retry_after"] in range(1, 61)
        await b.hit(8, 4)  # another app's budget is its own
    finally:
        await a.close()
        await b.close()


async def test_the_embedded_default_counts_in_memory() -> None:
    limiter = AppRateLimiter()
    for _ in range(2):
        await limiter.hit(1, 2)
    with pytest.raises(RateLimited):
        await limiter.hit(1, 2)
