"""Publishes wake-ups to the broker off the acknowledgement path.

The sender is acknowledged as soon as the database commits; publishing
happens afterwards in a background task, with a timeout per publish, so a
hung or dead Redis never delays or fails a send (S4, S5). Wake-ups queued
while one publish is in flight are merged into the next one. If the queue
overflows, the oldest hints are dropped: the database still has the events
and the subscribers' safety poll delivers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from messaging.broker.base import Broker
from messaging.wakeup import EventGroup, Wakeup

logger = logging.getLogger(__name__)

__all__ = ["EVENTS_CHANNEL", "WakeupPublisher"]

EVENTS_CHANNEL = "events"
MAX_GROUPS_PER_PUBLISH = 2_000


class WakeupPublisher:
    def __init__(self, broker: Broker, origin: str, *, max_queued: int = 10_000) -> None:
        self._broker = broker
        self._origin = origin
        self._queue: asyncio.Queue[list[EventGroup]] = asyncio.Queue(maxsize=max_queued)
        self._task: asyncio.Task[None] | None = None
        #: Counters for metrics and tests.
        self.published = 0
        self.failed = 0
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="wakeup-publisher")

    def publish_soon(self, groups: list[EventGroup]) -> None:
        try:
            self._queue.put_nowait(groups)
        except asyncio.QueueFull:
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
            self.dropped += 1
            self._queue.put_nowait(groups)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            groups = list(await self._queue.get())
            while not self._queue.empty() and len(groups) < MAX_GROUPS_PER_PUBLISH:
                groups.extend(self._queue.get_nowait())
            try:
                await self._broker.publish(EVENTS_CHANNEL, Wakeup(self._origin, groups).encode())
                self.published += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failed += 1
                if self.failed in (1, 10, 100) or self.failed % 1000 == 0:
                    logger.warning("wake-up publish failed (%d so far): %r", self.failed, exc)
