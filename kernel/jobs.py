"""Background work of one process: periodic jobs and one-off jobs, logged on failure, stopped together.

Why one place: the server runs a dozen periodic jobs (the org index refresh,
DING steps, task timers, the notice sweep…) and one-off jobs started by a
request (a notice's fan-out after its commit). Each must survive its own
failure (logged, retried at the next interval or repaired by a periodic
sweep), and all must stop at shutdown. Domain objects that start one-off work
take a ``Jobs`` in their constructor instead of creating tasks of their own,
so tests can wait for that work (:meth:`Jobs.idle`) rather than sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

logger = logging.getLogger(__name__)

__all__ = ["Jobs", "Spawn"]


class Spawn(Protocol):
    """Where a domain object starts one-off background work (``Jobs`` in a server)."""

    def soon(self, job: Awaitable[object], name: str) -> None: ...


class Jobs:
    """The background tasks of one process (owned by the composition root)."""

    def __init__(self) -> None:
        self._periodic: list[asyncio.Task[None]] = []
        self._oneoff: set[asyncio.Task[None]] = set()

    def every(
        self, interval: float, job: Callable[[], Awaitable[object]], name: str, *, wake: asyncio.Event | None = None
    ) -> None:
        """Run ``job`` every ``interval`` seconds; a failure is logged and retried next time, never fatal.

        ``wake``: also run as soon as it is set (new work arrived), rather than
        at the next interval; the interval stays the safety net.
        """

        async def loop() -> None:
            while True:
                if wake is None:
                    await asyncio.sleep(interval)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), interval)
                    wake.clear()
                try:
                    await job()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.warning("%s failed: %r", name, exc)

        self._periodic.append(asyncio.create_task(loop(), name=name))

    def soon(self, job: Awaitable[object], name: str) -> None:
        """Run a one-off job now, in the background; a failure is logged (a periodic job repairs what it missed)."""

        async def run() -> None:
            try:
                await job
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("%s failed: %r", name, exc)

        task = asyncio.create_task(run(), name=name)
        self._oneoff.add(task)
        task.add_done_callback(self._oneoff.discard)

    async def idle(self) -> None:
        """Return once no one-off job is running (including those the running ones start)."""
        while self._oneoff:
            await asyncio.wait(list(self._oneoff))

    async def stop(self) -> None:
        """Cancel every job and wait for them to end."""
        tasks = [*self._periodic, *self._oneoff]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._periodic.clear()
