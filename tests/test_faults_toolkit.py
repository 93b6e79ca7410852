"""The fault toolkit does what the scenarios rely on (``tests/faults.py``).

Behind the proxy is a plain echo server, so each fault's effect is seen by a
client directly: data held and then delivered intact, a reset, a silent
half-open connection, the kernel's socket table.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faults import frozen, private_redis, tcp_proxy, tcp_sockets

pytestmark = pytest.mark.redis


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(4096):
            w.write(data)
            await w.drain()
        w.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def test_proxy_forwards_then_holds_in_a_black_hole_and_delivers_intact_after(echo_port: int) -> None:
    async with tcp_proxy("127.0.0.1", echo_port) as proxy:
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        w.write(b"one\n")
        assert await asyncio.wait_for(r.readline(), 5) == b"one\n"
        proxy.black_hole()
        w.write(b"two\n")
        with pytest.raises(TimeoutError):  # nothing flows while the hole is open
            await asyncio.wait_for(r.readline(), 0.5)
        proxy.restore()
        assert await asyncio.wait_for(r.readline(), 5) == b"two\n"
        w.close()


async def test_proxy_latency_delays_each_direction(echo_port: int) -> None:
    async with tcp_proxy("127.0.0.1", echo_port) as proxy:
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        proxy.latency = 0.3
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        w.write(b"slow\n")
        assert await asyncio.wait_for(r.readline(), 5) == b"slow\n"
        assert loop.time() - t0 >= 0.6  # 0.3 s out and 0.3 s back
        w.close()


async def _echoing(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection through the proxy on ``port`` that has carried a line to the echo server and back."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"x\n")
    await asyncio.wait_for(r.readline(), 5)
    return r, w


async def test_proxy_reset_gives_the_client_a_connection_reset(echo_port: int) -> None:
    async with tcp_proxy("127.0.0.1", echo_port) as proxy:
        r, w = await _echoing(proxy.port)
        proxy.reset(refuse_new=True)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(r.read(10), 5)
        r2, _ = await asyncio.open_connection("127.0.0.1", proxy.port)
        with pytest.raises(ConnectionResetError):  # refused while the fault lasts
            await asyncio.wait_for(r2.read(10), 5)
        proxy.restore()
        r3, w3 = await asyncio.open_connection("127.0.0.1", proxy.port)
        w3.write(b"back\n")
        assert await asyncio.wait_for(r3.readline(), 5) == b"back\n"
        w3.close()


async def test_proxy_half_open_leaves_the_client_established_and_unanswered(echo_port: int) -> None:
    async with tcp_proxy("127.0.0.1", echo_port) as proxy:
        r, w = await _echoing(proxy.port)
        local_port = w.get_extra_info("sockname")[1]
        proxy.half_open()
        w.write(b"anyone?\n")
        with pytest.raises(TimeoutError):  # no data, and no EOF either
            await asyncio.wait_for(r.read(10), 0.5)
        assert any(state == "ESTABLISHED" and remote == proxy.port for state, _, remote in tcp_sockets(local_port))
        w.close()


async def test_private_redis_can_be_frozen_killed_and_restarted(tmp_path: Path) -> None:
    import redis.asyncio as aioredis

    async with private_redis(tmp_path) as redis:
        client = aioredis.Redis.from_url(redis.url, socket_timeout=0.5)
        assert await client.ping()
        assert redis.proc is not None
        with frozen(redis.proc):
            with pytest.raises(Exception, match="[Tt]imeout"):
                await client.ping()
        assert await client.ping()
        await redis.kill()
        with pytest.raises(Exception, match="[Cc]onnect"):
            await client.ping()
        await redis.start()
        assert await client.ping()
        await client.aclose()
