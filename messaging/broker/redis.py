"""Redis pub/sub broker for several server processes.

Publishing has a timeout so a hung Redis never blocks a caller for long
(S5). The subscriber reconnects with capped exponential backoff (at most
about one attempt a second, S4) and runs the reconnect handlers after every
subscription so callers backfill from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from messaging.broker.base import MessageHandler, ReconnectHandler

logger = logging.getLogger(__name__)

__all__ = ["RedisBroker"]


class RedisBroker:
    def __init__(self, url: str, *, prefix: str, publish_timeout: float = 1.0) -> None:
        self._url = url
        self._prefix = prefix
        self._timeout = publish_timeout
        self._handlers: dict[str, list[MessageHandler]] = defaultdict(list)
        self._reconnect: list[ReconnectHandler] = []
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=publish_timeout, socket_connect_timeout=publish_timeout, health_check_interval=10
        )
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        #: How many times the subscriber had to reconnect (S2 expects 0 in steady state).
        self.reconnects = 0

    def _key(self, channel: str) -> str:
        return f"{self._prefix}:{channel}"

    def subscribe(self, channel: str, handler: MessageHandler) -> None:
        self._handlers[self._key(channel)].append(handler)

    def on_reconnect(self, handler: ReconnectHandler) -> None:
        self._reconnect.append(handler)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="redis-subscriber")
        # Wait briefly for the first subscription; if Redis is down we run on
        # the database alone and the subscriber keeps retrying.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout=5)

    async def publish(self, channel: str, data: bytes) -> None:
        await asyncio.wait_for(self._client.publish(self._key(channel), data), timeout=self._timeout)

    async def ping(self) -> None:
        await asyncio.wait_for(self._client.ping(), timeout=self._timeout)  # type: ignore[misc]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._client.aclose()

    async def _run(self) -> None:
        delay = 1.0
        first = True
        while True:
            client: Any = aioredis.Redis.from_url(self._url, socket_connect_timeout=2, socket_keepalive=True)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*self._handlers.keys())
                if not first:
                    self.reconnects += 1
                first = False
                delay = 1.0
                for h in self._reconnect:
                    try:
                        await h()
                    except Exception:
                        logger.exception("reconnect handler failed")
                self._subscribed.set()
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._subscribed.clear()
                logger.warning("redis subscriber lost (%s); retrying in %.1fs", exc, delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(delay * (0.75 + random.random() / 2))  # noqa: S311 - jitter, not crypto
            delay = min(delay * 2, 8.0)

    async def _listen(self, pubsub: Any) -> None:
        idle = 0.0
        while True:
            msg = await pubsub.get_message(timeout=1.0)
            if msg is None:
                idle += 1.0
                if idle >= 5.0:
                    # Detect a hung or vanished server even when no traffic flows.
                    await asyncio.wait_for(pubsub.ping(), timeout=2)
                    idle = 0.0
                continue
            idle = 0.0
            if msg.get("type") != "message":
                continue
            channel = msg["channel"].decode() if isinstance(msg["channel"], bytes) else msg["channel"]
            for handler in self._handlers.get(channel, ()):
                try:
                    handler(msg["data"])
                except Exception:
                    logger.exception("broker handler failed")


if TYPE_CHECKING:
    from messaging.broker.base import Broker

    _: type[Broker] = RedisBroker
