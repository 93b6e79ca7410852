"""``zzd delivery``: webhook delivery in processes of its own, beside servers run with ``ZZD_DELIVERY_IN_SERVER=false``.

Why a separate process kind: a webhook attempt is an HTTP request from the
server's event loop (aiohttp, signing, the outcome's group commit). In the
server that loop also answers chat; at the issue-13 rate (200 attempts/s) the
attempts took the loop and the CPU from chat sends (chat p99 72 ms alone, 6.5 s
beside a fifth of that traffic, BENCHMARKS.md). In a process of its own the
attempts queue behind each other, not behind chat, and ``--nice`` lets the
operating system serve the servers first when the machine is short of CPU.

What stays in the servers: the dispatcher (outbox → delivery rows, woken by
the commit in the same process) and the stream connections. The dispatcher
rings this module's bell on the broker after it records deliveries; every
delivery process claims at once (``FOR UPDATE SKIP LOCKED``, leases: any
number of them may run), and polls every ``delivery_poll_interval`` as well,
since pub/sub may lose a ring. The embedded default is unchanged: one
``zzd serve`` sends its own webhooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

from messaging.broker.base import Broker
from zzd.config import Settings

logger = logging.getLogger(__name__)

__all__ = ["DELIVERY_CHANNEL", "DeliveryBell", "DeliveryRefused", "check_delivery", "run_delivery", "serve_delivery"]

#: Broker channel on which servers announce new deliveries to delivery processes.
DELIVERY_CHANNEL = "deliveries"


class DeliveryRefused(ValueError):
    """Delivery processes asked for where nothing could wake them, or servers that would send nothing."""


def check_delivery(settings: Settings, *, process: bool) -> None:
    """Refuse delivery processes (``process``) or servers without webhooks when the broker is in-process.

    The in-process broker reaches no other process: a ``zzd delivery`` process would only poll, and
    servers with ``ZZD_DELIVERY_IN_SERVER=false`` are only correct beside delivery processes.
    """
    if settings.broker_url.startswith("memory"):
        if process:
            raise DeliveryRefused("zzd delivery needs Redis (ZZD_REDIS_URL=redis://…), on which the servers wake it")
        if not settings.delivery_in_server:
            raise DeliveryRefused(
                "ZZD_DELIVERY_IN_SERVER=false needs Redis (ZZD_REDIS_URL=redis://…) and `zzd delivery` processes"
            )


class DeliveryBell:
    """Tells the delivery processes that deliveries were recorded (one publish at a time; rings coalesce)."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def ring(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True  # the publish in flight is followed by one more, not one per ring
            return
        self._task = asyncio.get_running_loop().create_task(self._publish())

    async def _publish(self) -> None:
        while True:
            self._again = False
            try:
                await self._broker.publish(DELIVERY_CHANNEL, b"1")
            except Exception as exc:  # a lost ring costs one poll interval, nothing more
                logger.warning("delivery wake-up not published: %r", exc)
            if not self._again:
                return


async def run_delivery(settings: Settings, stop: asyncio.Event) -> None:
    """Send webhooks until ``stop`` is set (the process's SIGTERM/SIGINT sets it)."""
    from zzd.services import Services

    s = Services.build(settings)
    s.broker.subscribe(DELIVERY_CHANNEL, lambda _data: s.delivery.kick())

    async def look_now() -> None:  # after a broker reconnect a ring may have been lost
        s.delivery.kick()

    s.broker.on_reconnect(look_now)
    try:
        await s.org_index.load()  # the disabled-endpoint message is written through the org tree
        await s.broker.start()
        s.publisher.start()  # that message wakes its readers' processes
        s.delivery.start()
        logger.info("delivery process %s sending webhooks (pid %d)", settings.node_id, os.getpid())
        await stop.wait()
    finally:
        await s.delivery.close()
        await s.webhook_sender.close()
        await s.publisher.close()
        await s.broker.close()
        await s.db.dispose()


def serve_delivery(settings: Settings, nice: int = 0) -> None:
    """The ``zzd delivery`` process: lower its priority by ``nice``, run until SIGTERM or SIGINT."""
    if nice:
        os.nice(nice)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_delivery(settings, stop)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
