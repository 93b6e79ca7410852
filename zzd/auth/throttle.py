"""Sign-in throttling per login and per client address, shared by every process.

Why: each password check costs an Argon2 hash (64 MiB, tens of ms of CPU) on
purpose, so unthrottled guessing was both a brute-force channel and a way to
starve the server (issue 10 item 4). The counting is ``kernel.ratelimit.WindowCounter``,
kept in Redis when the deployment has a Redis broker (all processes share the
counts) and in process memory on the embedded default (one process).

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

from limits import RateLimitItem, parse

from kernel.errors import RateLimited
from kernel.ratelimit import WindowCounter

logger = logging.getLogger(__name__)

__all__ = ["LoginThrottle"]


class LoginThrottle:
    """Checks and counts sign-in attempts (also used by account activation)."""

    def __init__(self, *, per_login: str, per_address: str, redis_url: str | None = None, prefix: str = "zzd") -> None:
        self.per_login: RateLimitItem = parse(per_login)
        self.per_address: RateLimitItem = parse(per_address)
        self._counts = WindowCounter("throttle", "login throttle", redis_url=redis_url, prefix=prefix)

    async def _call(self, op: str, item: RateLimitItem, *ids: str) -> object:
        return await self._counts.call(op, item, *ids)

    async def _refuse(self, item: RateLimitItem, scope: str, key: str) -> None:
        raise RateLimited(
            "too many sign-in attempts; try again later",
            data={"retry_after": await self._counts.retry_after(item, scope, key), "limit": scope},
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
        await self._counts.close()
