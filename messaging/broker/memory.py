"""In-process broker: the embedded default for a single server process.

A real implementation, not a mock: handlers are called on the next loop
iteration, in publish order, exactly like a remote broker's subscriber.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import TYPE_CHECKING

from messaging.broker.base import MessageHandler, ReconnectHandler

logger = logging.getLogger(__name__)

__all__ = ["MemoryBroker"]


class MemoryBroker:
    def __init__(self) -> None:
        self._handlers: dict[str, list[MessageHandler]] = defaultdict(list)
        self._reconnect: list[ReconnectHandler] = []

    def subscribe(self, channel: str, handler: MessageHandler) -> None:
        self._handlers[channel].append(handler)

    def on_reconnect(self, handler: ReconnectHandler) -> None:
        self._reconnect.append(handler)

    async def start(self) -> None:
        for h in self._reconnect:
            await h()

    async def publish(self, channel: str, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        for handler in self._handlers.get(channel, ()):
            loop.call_soon(_safe_call, handler, data)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._handlers.clear()


def _safe_call(handler: MessageHandler, data: bytes) -> None:
    try:
        handler(data)
    except Exception:
        logger.exception("broker handler failed")


if TYPE_CHECKING:
    from messaging.broker.base import Broker

    _: type[Broker] = MemoryBroker
