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

import asyncio
import json
import time

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


async def trigger(urls: list[str], frame: str) -> float:
    """Ask each bare server (one control socket each) to broadcast ``frame``; returns the trigger time.

    Shared by the notice and group benchmarks, whose clients time the arrival.
    """
    from websockets.asyncio.client import connect

    socks = [await connect(u, compression=None, max_size=65_536) for u in urls]
    for ws in socks:
        await ws.send(json.dumps({"type": "hello", "id": "h", "token": "x"}))
        await ws.recv()
    t0 = time.time()
    for ws in socks:
        await ws.send(json.dumps({"type": "broadcast", "frame": frame}))
    await asyncio.sleep(0.5)  # let the broadcasts leave before the control sockets close
    for ws in socks:
        await ws.close()
    return t0


if __name__ == "__main__":
    run(handler, __doc__)
