"""Baseline for idle connections: a bare ``websockets`` server that only says hello.

Same transport settings as ``zzd serve`` (uvloop, 64 KiB max frame,
permessage-deflate off, 20 s pings) and the same first-frame handshake, so the
RSS difference against zzd is the cost of zzd's own per-connection state.
"""

from __future__ import annotations

import argparse
import json

import uvloop
from websockets.asyncio.server import ServerConnection, serve

MAX_SIZE = 65_536
PING_INTERVAL = 20.0


async def handler(ws: ServerConnection) -> None:
    """Answer the hello, then hold the connection until the client leaves."""
    hello = json.loads(await ws.recv())
    await ws.send(json.dumps({"type": "ok", "ref": hello.get("id"), "data": {}}))
    async for _ in ws:
        pass


async def main(port: int) -> None:
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(main(parser.parse_args().port))
