"""Per-app request limits shared by every server process (Redis), answered with 429 and ``Retry-After``.

The counting is ``kernel.ratelimit.WindowCounter`` (the sign-in throttle's too):
in Redis when the deployment has one, else (and while Redis is unreachable) in
this process's memory, never "no limit".
"""

from __future__ import annotations

import logging

from limits import RateLimitItemPerMinute

from kernel.errors import RateLimited
from kernel.ratelimit import WindowCounter

logger = logging.getLogger(__name__)

__all__ = ["AppRateLimiter"]


class AppRateLimiter:
    """``hit(app_id, per_minute)``: count one request, or raise ``RateLimited`` with ``retry_after``."""

    def __init__(self, *, redis_url: str | None = None, prefix: str = "zzd") -> None:
        self._counts = WindowCounter("apprate", "app rate limit", redis_url=redis_url, prefix=prefix)

    async def hit(self, app_id: int, per_minute: int) -> None:
        item = RateLimitItemPerMinute(per_minute)
        if await self._counts.call("hit", item, "app", str(app_id)):
            return
        try:
            retry = await self._counts.retry_after(item, "app", str(app_id))
        except Exception:
            retry = 60
        raise RateLimited(
            f"the app's limit of {per_minute} requests per minute is spent",
            data={"retry_after": retry, "limit_per_minute": per_minute},
        )

    async def close(self) -> None:
        await self._counts.close()
