"""Org changes reach every process within tens of milliseconds: a broker wake-up per committed org write.

Why (issue 17): each process polls ``org_version`` every
``ZZD_INDEX_REFRESH_INTERVAL`` (0.5 s), so a change became visible elsewhere
only at the next poll — half a second on average, the whole interval at
worst. The process that commits an org write now publishes its version on
the broker's ``org`` channel; every process (itself included) that is behind
refreshes at once. The message is only a hint (at most once, like every
broker message, docs/reliability.md): the poll stays the fallback, and the
refresh reads the change log itself, never the message's content.

Wake-ups arriving while a refresh runs are coalesced into one more refresh
after it, so a burst of 100 changes costs a few refreshes, not 100.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from messaging.broker.base import Broker
from org_tree.holder import OrgIndexHolder

logger = logging.getLogger(__name__)

__all__ = ["ORG_CHANNEL", "OrgWake"]

ORG_CHANNEL = "org"


class OrgWake:
    """Publishes this process's org commits; refreshes the index when another process's arrive."""

    def __init__(self, broker: Broker, holder: OrgIndexHolder) -> None:
        self._broker = broker
        self._holder = holder
        self._wanted = 0  # the highest version announced and not yet applied here
        self._task: asyncio.Task[None] | None = None
        self._to_send = 0  # the highest version committed here and not yet published
        self._sent = 0
        self._sender: asyncio.Task[None] | None = None
        self.published = 0
        self.failed = 0
        self.refreshes = 0
        broker.subscribe(ORG_CHANNEL, self._on_message)
        holder.on_commit(self._publish)

    async def _publish(self, version: int) -> None:
        """Off the write's path: one sender publishes the latest version (a hung broker delays nobody)."""
        self._to_send = max(self._to_send, version)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send(), name="org-wake-publish")

    async def _send(self) -> None:
        while self._to_send > self._sent:
            version = self._to_send
            try:
                await self._broker.publish(ORG_CHANNEL, str(version).encode())
            except Exception as exc:  # the others' poll finds the change
                self.failed += 1
                logger.warning("org wake-up not published: %r", exc)
                return
            self._sent = version
            self.published += 1

    def _on_message(self, data: bytes) -> None:
        try:
            version = int(data)
        except ValueError:
            logger.warning("org wake-up with a bad payload %r ignored", data[:40])
            return
        self._wanted = max(self._wanted, version)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._catch_up(), name="org-wake")

    async def _catch_up(self) -> None:
        while self._wanted > self._holder.index.version:
            before = self._holder.index.version
            try:
                await self._holder.refresh_if_changed()
            except Exception:  # the poll retries; a hint must not kill anything
                logger.warning("org refresh after a wake-up failed", exc_info=True)
                return
            self.refreshes += 1
            if self._holder.index.version == before:
                return  # not visible to this reader yet (or never committed): the poll catches up

    async def close(self) -> None:
        for task in (self._task, self._sender):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
