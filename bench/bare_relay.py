"""Baseline for chat: a bare ``websockets`` relay with zzd's frame shapes but no storage.

It does the minimum a chat server must do per message (parse, ack the sender,
forward to the recipient, echo to the sender like zzd does for the sender's
other devices) and nothing else: no auth check, no database, no broker. The
person id is read from the unverified token so clients are identical for both
servers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from bare_server import run

clients: dict[int, ServerConnection] = {}
ids = itertools.count(1)
inflight: set[asyncio.Future[None]] = set()


def person_of(token: str) -> int:
    """``sub`` of a JWT without verifying it (the baseline measures transport only)."""
    payload = token.split(".")[1]
    return int(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"])


def _send(ws: ServerConnection | None, frame: str) -> None:
    """Fire-and-forget send: a relay must never wait on one slow socket."""
    if ws is not None:
        task = asyncio.ensure_future(_quiet(ws.send(frame)))
        # The loop keeps only weak references to tasks: hold one until done.
        inflight.add(task)
        task.add_done_callback(inflight.discard)


async def _quiet(coro: object) -> None:
    with contextlib.suppress(ConnectionClosed):
        await coro  # type: ignore[misc]


def relay(sender: int, ws: ServerConnection, frame: dict[str, object]) -> None:
    """Ack, forward and echo one ``send`` frame."""
    mid = next(ids)
    to = int(frame["to"])  # type: ignore[call-overload]
    _send(ws, json.dumps({"type": "ok", "ref": frame.get("id"), "data": {"message_id": mid, "seq": mid}}))
    data = {
        "id": mid,
        "body": frame.get("body"),
        "sender": {"id": sender},
        "recipient_id": to,
        "client_msg_id": frame.get("client_msg_id"),
    }
    event = json.dumps({"type": "event", "seq": mid, "kind": "message.new", "data": data})
    _send(clients.get(to), event)
    _send(ws, event)


async def handler(ws: ServerConnection) -> None:
    hello = json.loads(await ws.recv())
    me = person_of(hello["token"])
    clients[me] = ws
    await ws.send(json.dumps({"type": "ok", "ref": hello.get("id"), "data": {"person_id": me}}))
    try:
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("type") == "send":
                relay(me, ws, frame)
    finally:
        if clients.get(me) is ws:
            del clients[me]


if __name__ == "__main__":
    run(handler, __doc__)
