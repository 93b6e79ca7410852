"""Password hashing with Argon2id (argon2-cffi), off the event loop, bounded in concurrency.

Hashing costs tens of milliseconds of CPU and (by default) 64 MiB of memory by
design, so it runs in worker threads of its own limiter: at most
``concurrency`` hashes at once, so memory stays bounded however many sign-ins
arrive (issue 10 item 4: 60 wrong attempts, 20 at a time, used to grow a
process by 1 GiB), and the event loop and the default thread pool stay free
for everyone else. At most ``max_waiting`` more wait their turn; beyond that a
sign-in is refused at once (429, retry shortly) instead of queueing without end.

A login for an unknown name still verifies against a dummy hash, so response
time does not reveal which names exist.
"""

from __future__ import annotations

import os

import anyio
import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from kernel.errors import RateLimited

__all__ = ["Passwords", "default_concurrency"]


def default_concurrency() -> int:
    """Half the cores (at least one): the other half keeps serving requests."""
    return max(1, (os.cpu_count() or 2) // 2)


class Passwords:
    def __init__(
        self, hasher: PasswordHasher | None = None, *, concurrency: int | None = None, max_waiting: int = 64
    ) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy = self._hasher.hash("not-a-real-password")
        self.concurrency = concurrency or default_concurrency()
        self._limiter: anyio.CapacityLimiter | None = None
        self._max_waiting = max_waiting
        self._waiting = 0

    @property
    def memory_cost_kib(self) -> int:
        return int(self._hasher.memory_cost)

    def hash_sync(self, password: str) -> str:
        return self._hasher.hash(password)

    def _bound(self) -> anyio.CapacityLimiter:
        if self._limiter is None:  # created on first use, inside the running event loop
            self._limiter = anyio.CapacityLimiter(self.concurrency)
        return self._limiter

    async def _run(self, fn: object, *args: str) -> object:
        if self._waiting >= self._max_waiting + self.concurrency:
            raise RateLimited("sign-in is busy; try again in a moment", data={"retry_after": 1, "limit": "hashing"})
        self._waiting += 1
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._bound())  # type: ignore[arg-type]
        finally:
            self._waiting -= 1

    async def hash(self, password: str) -> str:
        return str(await self._run(self._hasher.hash, password))

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        def check(pw: str) -> bool:
            try:
                return self._hasher.verify(stored_hash or self._dummy, pw) and stored_hash is not None
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return bool(await self._run(check, password))
