"""One contract, run against every broker implementation (memory and Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from messaging.broker import Broker, create_broker
from tests.services import REDIS_URL, redis_prefix, require


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def broker_pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Broker, Broker]]:
    """Two brokers that see each other (two "processes"); memory shares one instance."""
    prefix = redis_prefix()
    if request.param == "memory":
        b = create_broker("memory://", prefix=prefix)
        yield b, b
        await b.close()
        return
    require("redis")
    a, b = create_broker(REDIS_URL, prefix=prefix), create_broker(REDIS_URL, prefix=prefix)
    yield a, b
    await a.close()
    await b.close()


async def test_published_messages_arrive_in_order_in_other_process(broker_pair: tuple[Broker, Broker]) -> None:
    pub, sub = broker_pair
    got: list[bytes] = []
    done = asyncio.Event()

    def handler(data: bytes) -> None:
        got.append(data)
        if len(got) == 50:
            done.set()

    sub.subscribe("events", handler)
    await sub.start()
    if pub is not sub:
        await pub.start()
    for i in range(50):
        await pub.publish("events", f"m{i}".encode())
    await asyncio.wait_for(done.wait(), 5)
    assert got == [f"m{i}".encode() for i in range(50)]


async def test_channels_are_separate_and_reconnect_handler_runs(broker_pair: tuple[Broker, Broker]) -> None:
    pub, sub = broker_pair
    a: list[bytes] = []
    b: list[bytes] = []
    got_b = asyncio.Event()
    ran = asyncio.Event()

    def on_b(data: bytes) -> None:
        b.append(data)
        got_b.set()

    async def on_reconnect() -> None:
        ran.set()

    sub.subscribe("a", a.append)
    sub.subscribe("b", on_b)
    sub.on_reconnect(on_reconnect)
    await sub.start()
    if pub is not sub:
        await pub.start()
    await asyncio.wait_for(ran.wait(), 5)
    await pub.publish("b", b"only-b")
    await asyncio.wait_for(got_b.wait(), 5)
    # A message on "a" published after "b" would have arrived by now if misrouted.
    await pub.publish("b", b"marker")
    while len(b) < 2:
        got_b.clear()
        await asyncio.wait_for(got_b.wait(), 5)
    assert b == [b"only-b", b"marker"] and a == []
    await pub.ping()
