"""The broker contract, with the semantics both implementations keep.

Delivery is **at most once** (Redis pub/sub loses messages on disconnect):
nothing correct may depend on a message arriving. Messages published by one
process on one channel arrive in publish order. Handlers run on the event
loop and must not block; they are called synchronously for each message.

After every (re)subscription the ``on_reconnect`` handlers run, so callers
can backfill from the database what they may have missed meanwhile
(docs/reliability.md decision 1 and 7: subscribe first, then read, then merge).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

__all__ = ["Broker", "MessageHandler", "ReconnectHandler", "create_broker"]

MessageHandler = Callable[[bytes], None]
ReconnectHandler = Callable[[], Awaitable[None]]


@runtime_checkable
class Broker(Protocol):
    def subscribe(self, channel: str, handler: MessageHandler) -> None:
        """Register ``handler`` for ``channel``; call before :meth:`start`."""
        ...

    def on_reconnect(self, handler: ReconnectHandler) -> None:
        """Run ``handler`` after every successful (re)subscription."""
        ...

    async def start(self) -> None:
        """Connect and begin dispatching; returns once subscribed or retrying in the background."""
        ...

    async def publish(self, channel: str, data: bytes) -> None:
        """Send ``data`` to every subscriber of ``channel`` in every process.

        Raises:
            Exception: on timeout or connection failure. Callers publish off the
                acknowledgement path and treat failure as a lost hint.
        """
        ...

    async def ping(self) -> None:
        """Raise if the broker is unreachable (readiness probe)."""
        ...

    async def close(self) -> None: ...


def create_broker(url: str, *, prefix: str, publish_timeout: float = 1.0) -> Broker:
    """Pick the implementation by URL scheme, importing Redis only when asked for."""
    if url.startswith("memory://"):
        from messaging.broker.memory import MemoryBroker

        return MemoryBroker()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from messaging.broker.redis import RedisBroker

        return RedisBroker(url, prefix=prefix, publish_timeout=publish_timeout)
    raise ValueError(f"unsupported broker URL scheme in {url!r}")
