"""Publishes wake-ups to the broker off the acknowledgement path.

The sender is acknowledged as soon as the database commits; publishing
happens afterwards in a background task, with a timeout per publish, so a
hung or dead Redis never delays or fails a send (S4, S5). Wake-ups queued
while one publish is in flight are merged, then cut into messages of at most
``MAX_MESSAGE_BYTES``: Redis disconnects a subscriber whose output buffer
passes 32 MiB, which one province-wide notice would otherwise exceed. If the
queue overflows, the oldest hints are dropped: the database still has the
events and the subscribers' safety poll delivers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from messaging.broker.base import Broker
from messaging.wakeup import EventGroup, Wakeup

logger = logging.getLogger(__name__)

__all__ = ["EVENTS_CHANNEL", "MAX_MESSAGE_BYTES", "WakeupPublisher", "split_groups"]

EVENTS_CHANNEL = "events"
#: Upper bound of one published wake-up (approximate, before JSON overhead).
MAX_MESSAGE_BYTES = 256 * 1024


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
            while not self._queue.empty():
                groups.extend(self._queue.get_nowait())
            for chunk in split_groups(groups, MAX_MESSAGE_BYTES):
                try:
                    await self._broker.publish(EVENTS_CHANNEL, Wakeup(self._origin, chunk).encode())
                    self.published += 1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.failed += 1
                    if self.failed in (1, 10, 100) or self.failed % 1000 == 0:
                        logger.warning("wake-up publish failed (%d so far): %r", self.failed, exc)


def split_groups(groups: list[EventGroup], max_bytes: int) -> list[list[EventGroup]]:
    """Cut groups into messages of about ``max_bytes``; a group too big alone is split by recipients.

    Order is kept, so per-publisher ordering on the channel still holds.
    """
    out: list[list[EventGroup]] = []
    current: list[EventGroup] = []
    size = 0
    for g in groups:
        per_recipient = 24
        cost = len(g.payload) + len(g.kind) + 16 + per_recipient * len(g.recipients)
        if cost > max_bytes and len(g.recipients) > 1:
            # One payload to very many people: repeat the payload once per slice.
            step = max(1, (max_bytes - len(g.payload)) // per_recipient)
            parts = [
                EventGroup(g.kind, g.payload, g.recipients[i : i + step]) for i in range(0, len(g.recipients), step)
            ]
        else:
            parts = [g]
        for part in parts:
            part_cost = len(part.payload) + len(part.kind) + 16 + per_recipient * len(part.recipients)
            if current and size + part_cost > max_bytes:
                out.append(current)
                current, size = [], 0
            current.append(part)
            size += part_cost
    if current:
        out.append(current)
    return out
