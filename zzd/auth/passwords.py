"""Password hashing with Argon2id (argon2-cffi): bounded in concurrency, at a lower CPU priority.

Hashing costs tens to hundreds of milliseconds of CPU and (by default) 64 MiB
of memory by design. Unbounded, a burst of sign-ins grew one process by a GiB
and starved everyone else (issue 10 item 4: 60 wrong attempts, 20 at a time,
215 MiB → 1.25 GiB, and another user's ``GET /me`` took seconds). So:

- hashes run on a pool of ``concurrency`` threads of their own (default: half
  the cores), so at most that many 64 MiB buffers exist at once and the
  default thread pool stays free for everything else;
- those threads lower their own scheduling priority (``nice`` 10, Linux
  per-thread), so when the cores are busy the event loop serving other
  users' requests runs first and a hash waits, not the other way round;
- at most ``max_waiting`` more sign-ins wait for a slot (``slot()``); beyond
  that one is refused at once (429, retry shortly) instead of queueing
  without end.

The cost is OWASP's Argon2id minimum (19 MiB, two passes, one lane), not the
library's default (64 MiB, three passes, four lanes): one lane keeps a hash on
one core, so with half the cores hashing the other half still serve requests,
and it is about a fifth of the CPU and a third of the memory of the default.
Under a flood of wrong passwords that is what decides other users' latency
(issue 10: 5.1× p99 with the default cost on a busy 2-core host). Hashes made
with another cost still verify, and are re-hashed at the next good sign-in.

A login for an unknown name still verifies against a dummy hash, so response
time does not reveal which names exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from kernel.errors import RateLimited

logger = logging.getLogger(__name__)

__all__ = ["HASH_NICE", "Passwords", "default_concurrency", "default_hasher"]

#: Niceness of the hashing threads (0 is normal; higher runs only when the cores are otherwise idle-ish).
HASH_NICE = 10
T = TypeVar("T")


def default_hasher() -> PasswordHasher:
    """Argon2id at OWASP's minimum cost (m = 19 MiB, t = 2, p = 1); see the module docstring."""
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def default_concurrency() -> int:
    """Half the cores (at least one): the other half keeps serving requests."""
    return max(1, (os.cpu_count() or 2) // 2)


def _lower_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or not permitted: run at normal priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_NICE)


class Passwords:
    def __init__(
        self, hasher: PasswordHasher | None = None, *, concurrency: int | None = None, max_waiting: int = 64
    ) -> None:
        self._hasher = hasher or default_hasher()
        self._dummy = self._hasher.hash("not-a-real-password")
        self.concurrency = concurrency or default_concurrency()
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="argon2", initializer=_lower_priority)
        self._max_waiting = max_waiting
        # One semaphore per event loop (tests share one hasher between servers on different loops).
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._queued = 0

    def hash_sync(self, password: str) -> str:
        return self._hasher.hash(password)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of ``concurrency`` sign-in slots; what runs inside (throttle check, hash) is serialised per slot.

        Raises:
            RateLimited: more than ``max_waiting`` sign-ins already wait.
        """
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(self.concurrency)
        if self._queued >= self._max_waiting + self.concurrency:
            raise RateLimited("sign-in is busy; try again in a moment", data={"retry_after": 1, "limit": "hashing"})
        self._queued += 1
        try:
            async with slots:
                yield
        finally:
            self._queued -= 1

    async def _run(self, fn: Callable[..., T], *args: str) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        def check(pw: str) -> bool:
            try:
                return self._hasher.verify(stored_hash or self._dummy, pw) and stored_hash is not None
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await self._run(check, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        """True for a hash made with another cost (an older default): re-hash it at the next good sign-in."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError):
            return False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
