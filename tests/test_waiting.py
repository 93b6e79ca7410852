"""A background loop woken by an event stops when cancelled, even in the turn it was woken.

Python 3.11's ``asyncio.wait_for(event.wait(), t)`` loses a cancellation that arrives in the
loop turn where the event was set; the webhook worker's loop, which nothing else stops, then
ran on and ``DeliveryWorker.close()`` never returned (a process hanging at shutdown).
"""

from __future__ import annotations

import asyncio

from apps.delivery import DeliveryPolicy, DeliveryWorker, Outcome
from kernel.clock import SystemClock
from kernel.db.database import Database
from kernel.waiting import wait_event


async def test_wait_event_tells_set_from_timeout() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 10) is True


async def test_a_cancellation_in_the_turn_of_the_wake_up_is_not_lost() -> None:
    event = asyncio.Event()

    async def loop() -> None:
        while True:
            await wait_event(event, 60)
            event.clear()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)  # the loop is waiting
    event.set()
    await asyncio.sleep(0)  # the event's waiter is woken: wait_for's inner wait is done here
    task.cancel()
    async with asyncio.timeout(5):
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


class _NoSender:
    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Outcome:
        raise AssertionError("nothing is due")


async def _any_url(url: str) -> None:
    return None


async def test_the_webhook_worker_closes_when_kicked_at_that_moment(db: Database) -> None:
    worker = DeliveryWorker(db, SystemClock(), _NoSender(), _any_url, node_id="t", policy=DeliveryPolicy(poll=60))
    worker.start()
    await asyncio.sleep(0)  # its loop waits for a kick
    worker.kick()  # deliveries were recorded ...
    await asyncio.sleep(0)
    async with asyncio.timeout(5):  # ... as the process stops: close() used to wait for ever
        await worker.close()
