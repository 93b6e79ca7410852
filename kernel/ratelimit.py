"""A sliding-window counter shared by every server process, for the limits that answer 429.

Why the ``limits`` library: a sliding-window counter in Redis is a solved
problem (atomic Lua scripts, key expiry). The counts are kept in Redis when the
deployment has one (all processes share them) and in this process's memory on
the embedded default (one process). When Redis is unreachable a call falls
back to the memory counts (logged), never to "no limit". Used by the sign-in
throttle (``zzd/auth/throttle.py``) and the per-app request limit
(``apps/ratelimit.py``).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

logger = logging.getLogger(__name__)

__all__ = ["WindowCounter"]


class WindowCounter:
    """Sliding-window counts under ``<prefix>:<key>`` in Redis, or in memory.

    Args:
        key: names the counts in Redis (``throttle``, ``apprate``).
        what: names the limit in the log line when Redis is unreachable.
    """

    def __init__(self, key: str, what: str, *, redis_url: str | None = None, prefix: str = "zzd") -> None:
        self._what = what
        self._memory = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._shared: SlidingWindowCounterRateLimiter | None = None
        if redis_url is not None:
            storage: Storage = RedisStorage(
                "async+" + redis_url, implementation="redispy", key_prefix=f"{prefix}:{key}", wrap_exceptions=True
            )
            self._shared = SlidingWindowCounterRateLimiter(storage)

    async def call(self, op: str, item: RateLimitItem, *ids: str) -> Any:
        """The limiter's ``op`` (``hit``, ``test``, ``clear``, ``get_window_stats``): shared counts, else memory."""
        if self._shared is not None:
            try:
                return await getattr(self._shared, op)(item, *ids)
            except Exception as exc:  # Redis down: count locally rather than not at all
                logger.warning("%s storage unavailable (%r); counting in this process", self._what, exc)
        return await getattr(self._memory, op)(item, *ids)

    async def retry_after(self, item: RateLimitItem, *ids: str) -> int:
        """Whole seconds (at least 1) until the window of ``ids`` lets a request through again."""
        stats = await self.call("get_window_stats", item, *ids)
        reset = float(getattr(stats, "reset_time", time.time() + 1))
        return max(1, math.ceil(reset - time.time()))

    async def close(self) -> None:
        """Close the Redis connection pool, if there is one."""
        if self._shared is not None:
            bridge = getattr(self._shared.storage, "bridge", None)
            aclose = getattr(getattr(bridge, "storage", None), "aclose", None)
            if aclose is not None:
                await aclose()
