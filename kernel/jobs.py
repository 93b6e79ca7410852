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

from kernel.waiting import wait_event

logger = logging.getLogger(__name__)

__all__ = ["Jobs", "Spawn"]


class Spawn(Protocol):
    """Where a domain object starts one-off background work (``Jobs`` in a server)."""

    def soon(self, job: Awaitable[object], name: str) -> None: ...


class Jobs:
    """The background tasks of one process (owned by the composition root)."""

    #: Seconds :meth:`stop` lets a job that is in the middle of a pass finish it before cancelling it.
    STOP_GRACE = 3.0

    def __init__(self) -> None:
        self._periodic: list[asyncio.Task[None]] = []
        self._oneoff: set[asyncio.Task[None]] = set()
        #: Periodic tasks in the middle of a pass (not waiting for their next turn).
        self._busy: set[asyncio.Task[None]] = set()
        self._stopping = False

    def every(
        self,
        interval: float,
        job: Callable[[], Awaitable[object]],
        name: str,
        *,
        wake: asyncio.Event | None = None,
        wake_gap: float = 0.0,
    ) -> None:
        """Run ``job`` every ``interval`` seconds; a failure is logged and retried next time, never fatal.

        ``wake``: also run as soon as it is set (new work arrived), rather than
        at the next interval; the interval stays the safety net.

        ``wake_gap``: a woken pass starts no sooner than this many seconds after
        the previous pass started; the wakes that arrive meanwhile are served by
        that one pass. Why: a job woken after every commit (the audit sealer, the
        app dispatcher) otherwise makes one pass, i.e. one or two transactions,
        per commit under load, although one pass can take everything that came
        in; the gap bounds its passes to 1/gap a second and costs a woken job at
        most ``wake_gap`` of latency (none when it was idle longer than that).
        """

        async def loop() -> None:
            me = asyncio.current_task()
            assert me is not None
            loop_ = asyncio.get_running_loop()
            last = -wake_gap
            while not self._stopping:
                if wake is None:
                    await asyncio.sleep(interval)
                else:
                    await wait_event(wake, interval)
                    if wake.is_set() and (pause := last + wake_gap - loop_.time()) > 0:
                        await asyncio.sleep(pause)
                    wake.clear()
                if self._stopping:
                    return
                last = loop_.time()
                self._busy.add(me)
                try:
                    await job()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.warning("%s failed: %r", name, exc)
                finally:
                    self._busy.discard(me)

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
        """Stop every job and wait for them to end.

        A periodic job waiting for its turn is cancelled at once; one in the middle of a pass,
        and a one-off job, gets up to ``STOP_GRACE`` seconds to finish before it is cancelled.
        Why: a job cancelled inside a database write could leave its connection checked out
        with the transaction open, and on SQLite that keeps the file locked for every other
        process (a server started on a database a stopped tool had just seeded found it locked).
        """
        self._stopping = True
        for t in self._periodic:
            if t not in self._busy:
                t.cancel()
        tasks = [*self._periodic, *self._oneoff]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.STOP_GRACE)
            for t in late:
                t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._periodic.clear()
