"""Waiting on an event with a timeout, in a loop that must stop when it is cancelled."""

from __future__ import annotations

import asyncio

__all__ = ["wait_event"]


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass; True if it was set. Stays cancellable throughout.

    Why not ``asyncio.wait_for(event.wait(), seconds)``: before Python 3.12 it swallows a
    cancellation that arrives in the loop turn where the event was set (it returns the result
    instead of raising). Every background loop here is woken by an event many times a second
    under load and stopped by cancelling it, so a stop that met a wake-up went unnoticed: a loop
    with nothing else to stop it (the webhook worker) ran on and its ``close()`` waited for it
    forever; the app stream's pump outlived its socket. ``asyncio.timeout`` does not lose it.
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
