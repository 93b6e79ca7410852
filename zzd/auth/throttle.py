"""Sign-in throttling per login and per client address, shared by every process.

Why: each password check costs an Argon2 hash (64 MiB, tens of ms of CPU) on
purpose, so unthrottled guessing was both a brute-force channel and a way to
starve the server (issue 10 item 4). The counting is the ``limits`` library's
sliding-window counter, kept in Redis when the deployment has a Redis broker
(all processes share the counts) and in process memory on the embedded
default (one process).

Two limits:

- **per login**, counting *attempts* (hit before the hash, so concurrent
  guesses cannot all slip under the limit), cleared by a successful sign-in;
- **per client address**, counting *failures* only, so an office behind one
  NAT address is not locked out by its own successful sign-ins.

When Redis is unreachable the check falls back to this process's memory
counts (logged), never to "no limit".
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from kernel.errors import RateLimited

logger = logging.getLogger(__name__)

__all__ = ["LoginThrottle"]


class LoginThrottle:
    """Checks and counts sign-in attempts (also used by account activation)."""

    def __init__(self, *, per_login: str, per_address: str, redis_url: str | None = None, prefix: str = "zzd") -> None:
        self.per_login: RateLimitItem = parse(per_login)
        self.per_address: RateLimitItem = parse(per_address)
        self._memory = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._shared: SlidingWindowCounterRateLimiter | None = None
        if redis_url is not None:
            storage: Storage = RedisStorage(
                "async+" + redis_url, implementation="redispy", key_prefix=f"{prefix}:throttle", wrap_exceptions=True
            )
            self._shared = SlidingWindowCounterRateLimiter(storage)

    async def _call(self, op: str, item: RateLimitItem, *ids: str) -> object:
        if self._shared is not None:
            try:
                return await getattr(self._shared, op)(item, *ids)
            except Exception as exc:  # Redis down: count locally rather than not at all
                logger.warning("login throttle storage unavailable (%r); counting in this process", exc)
        return await getattr(self._memory, op)(item, *ids)

    async def _refuse(self, item: RateLimitItem, scope: str, key: str) -> None:
        stats = await self._call("get_window_stats", item, scope, key)
        reset = float(getattr(stats, "reset_time", time.time() + 1))
        retry = max(1, math.ceil(reset - time.time()))
        raise RateLimited(
            "too many sign-in attempts; try again later",
            data={"retry_after": retry, "limit": scope},
        )

    async def attempt(self, login: str, address: str) -> None:
        """Before checking a password: refuse (429) if either limit is spent; count the attempt for the login."""
        if not await self._call("test", self.per_address, "address", address):
            await self._refuse(self.per_address, "address", address)
        if not await self._call("hit", self.per_login, "login", login):
            await self._refuse(self.per_login, "login", login)

    async def check_address(self, address: str) -> None:
        """Refuse (429) when the address has spent its failures (checked again where attempts are serialised)."""
        if not await self._call("test", self.per_address, "address", address):
            await self._refuse(self.per_address, "address", address)

    async def failed(self, address: str) -> None:
        """After a wrong password: count the failure for the address."""
        await self._call("hit", self.per_address, "address", address)

    async def succeeded(self, login: str) -> None:
        """After a good password: the login's attempts start over."""
        await self._call("clear", self.per_login, "login", login)

    async def close(self) -> None:
        if self._shared is not None:
            storage = self._shared.storage
            bridge = getattr(storage, "bridge", None)
            client = getattr(bridge, "storage", None)
            aclose = getattr(client, "aclose", None)
            if aclose is not None:
                await aclose()
