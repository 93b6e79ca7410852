"""Waiting in tests: poll the state a test asserts, with a deadline scaled for a loaded machine.

One timeout scale for the whole suite: ``ZZD_TEST_TIMEOUT_SCALE`` (default 1)
multiplies every deadline given here (and the test client's), so a run on a
shared or slow machine widens them all at once instead of a test at a time
(websockets' ``tests/utils.py: MS``). A deadline only bounds how long a
broken run hangs: a passing test returns as soon as its condition holds, so
the scale costs a healthy run nothing. Never a fixed sleep standing in for
ordering.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

__all__ = ["SCALE", "scaled", "wait_until"]

T = TypeVar("T")

#: Multiplies every test deadline (``ZZD_TEST_TIMEOUT_SCALE``, e.g. 3 on a loaded CI machine).
SCALE = float(os.environ.get("ZZD_TEST_TIMEOUT_SCALE", "1") or "1")


def scaled(seconds: float) -> float:
    """A deadline of ``seconds`` on an idle machine, widened by ``ZZD_TEST_TIMEOUT_SCALE``."""
    return seconds * SCALE


@overload
async def wait_until(
    check: Callable[[], Awaitable[T]], timeout: float = ..., what: str = ..., *, interval: float = ...
) -> T: ...


@overload
async def wait_until(check: Callable[[], T], timeout: float = ..., what: str = ..., *, interval: float = ...) -> T: ...


async def wait_until(
    check: Callable[[], Any],
    timeout: float = 10.0,
    what: str = "condition",
    *,
    interval: float = 0.02,
) -> Any:
    """Call ``check`` (plain or async) until it returns something truthy, and return that.

    Args:
        check: reads the state the test is about to assert (a database row, a
            client's events, a Redis key) and returns it when it is what the test
            waits for, else something falsy.
        timeout: seconds on an idle machine (scaled by ``ZZD_TEST_TIMEOUT_SCALE``).
        what: names the condition in the failure message.
        interval: seconds between polls.

    Raises:
        AssertionError: the condition did not hold before the deadline; the message
            shows the last value ``check`` returned.
    """
    loop = asyncio.get_running_loop()
    limit = scaled(timeout)
    deadline = loop.time() + limit
    while True:
        got = check()
        value = await got if inspect.isawaitable(got) else got
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {limit:g}s waiting for {what} (last: {value!r})")
        await asyncio.sleep(interval)
