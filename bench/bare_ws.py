"""Baseline for idle connections: a bare ``websockets`` server that only says hello.

Same transport settings as ``zzd serve`` (uvloop, 64 KiB max frame,
permessage-deflate off, 20 s pings) and the same first-frame handshake, so the
RSS difference against zzd is the cost of zzd's own per-connection state.
"""

from __future__ import annotations

import json

from websockets.asyncio.server import ServerConnection

from bare_server import run


async def handler(ws: ServerConnection) -> None:
    """Answer the hello, then hold the connection until the client leaves."""
    hello = json.loads(await ws.recv())
    await ws.send(json.dumps({"type": "ok", "ref": hello.get("id"), "data": {}}))
    async for _ in ws:
        pass


if __name__ == "__main__":
    run(handler, __doc__)
