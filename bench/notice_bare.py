"""Baseline for notice fan-out: a bare ``websockets`` server that broadcasts one frame to everyone.

Same transport settings as ``zzd serve`` (uvloop, 64 KiB max frame,
permessage-deflate off, 20 s pings) and the same hello/ok handshake. A
``{"type": "broadcast", "frame": "..."}`` frame from any connection makes the
server write ``frame`` to every *other* connection with
``websockets.asyncio.server.broadcast`` (one write per socket, no task per
socket, no storage, no broker): the floor for pushing one notice to N sockets
from one process.
"""

from __future__ import annotations

import argparse
import json

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

MAX_SIZE = 65_536
PING_INTERVAL = 20.0

clients: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    hello = json.loads(await ws.recv())
    await ws.send(json.dumps({"type": "ok", "ref": hello.get("id"), "data": {}}))
    clients.add(ws)
    try:
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("type") == "broadcast":
                broadcast([c for c in clients if c is not ws], frame["frame"])
    finally:
        clients.discard(ws)


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
