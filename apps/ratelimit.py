"""Per-app request limits shared by every server process (Redis), answered with 429 and ``Retry-After``.

Why the ``limits`` library: a sliding-window counter in Redis is a solved
problem (atomic Lua scripts, key expiry), and the sign-in throttle already
uses it. On the embedded default (one process) the counts live in memory.
When Redis is unreachable the count falls back to this process's memory,
never to "no limit".
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from kernel.errors import RateLimited

logger = logging.getLogger(__name__)

__all__ = ["AppRateLimiter"]


class AppRateLimiter:
    """``hit(app_id, per_minute)``: count one request, or raise ``RateLimited`` with ``retry_after``."""

    def __init__(self, *, redis_url: str | None = None, prefix: str = "zzd") -> None:
        self._memory = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._shared: SlidingWindowCounterRateLimiter | None = None
        if redis_url is not None:
            storage: Storage = RedisStorage(
                "async+" + redis_url, implementation="redispy", key_prefix=f"{prefix}:apprate", wrap_exceptions=True
            )
            self._shared = SlidingWindowCounterRateLimiter(storage)

    async def hit(self, app_id: int, per_minute: int) -> None:
        item = RateLimitItemPerMinute(per_minute)
        limiter = self._memory
        if self._shared is not None:
            try:
                if await self._shared.hit(item, "app", str(app_id)):
                    return
                limiter = self._shared
            except Exception as exc:  # Redis down: count locally rather than not at all
                logger.warning("app rate limit storage unavailable (%r); counting in this process", exc)
                limiter = self._memory
                if await limiter.hit(item, "app", str(app_id)):
                    return
        elif await limiter.hit(item, "app", str(app_id)):
            return
        try:
            stats = await limiter.get_window_stats(item, "app", str(app_id))
            retry = max(1, math.ceil(stats.reset_time - time.time()))
        except Exception:
            retry = 60
        raise RateLimited(
            f"the app's limit of {per_minute} requests per minute is spent",
            data={"retry_after": retry, "limit_per_minute": per_minute},
        )

    async def close(self) -> None:
        if self._shared is not None:
            bridge = getattr(self._shared.storage, "bridge", None)
            aclose = getattr(getattr(bridge, "storage", None), "aclose", None)
            if aclose is not None:
                await aclose()
