"""What every bare baseline server shares: the same limits as zzd and one entry point.

The baselines differ only in their handler; keeping the socket settings in
one place keeps the comparison with zzd fair (64 KiB frames, no compression,
20 s pings, the same backlog, uvloop).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable

import uvloop
from websockets.asyncio.server import ServerConnection, serve

MAX_SIZE = 65_536
PING_INTERVAL = 20.0

Handler = Callable[[ServerConnection], Awaitable[None]]


async def _serve(handler: Handler, port: int) -> None:
    async with serve(
        handler,
        "127.0.0.1",
        port,
        max_size=MAX_SIZE,
        compression=None,
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_INTERVAL,
        backlog=2048,
    ) as server:
        await server.serve_forever()


def run(handler: Handler, description: str | None) -> None:
    """Parse ``--port`` and serve ``handler`` until killed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(_serve(handler, parser.parse_args().port))
