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

import json

from websockets.asyncio.server import ServerConnection, broadcast

from bare_server import run

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


if __name__ == "__main__":
    run(handler, __doc__)
