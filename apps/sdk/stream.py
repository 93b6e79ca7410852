"""The stream consumer: hello with the app token, events with ``ack()``, reconnects with back-off."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, WebSocketException

from apps.sdk.client import ZzdApiError

if TYPE_CHECKING:
    from apps.sdk.client import AppClient

__all__ = ["StreamEvent", "consume"]

#: Close codes after which reconnecting cannot help (credentials revoked, a broken client).
_TERMINAL = {4400, 4503}


@dataclass
class StreamEvent:
    """One delivered event; ``event`` is the webhook body (``id``, ``type``, ``timestamp``, ``data``)."""

    delivery_id: int
    subscription_id: int
    attempt: int
    event: dict[str, Any]

    _acks: _Acks

    async def ack(self) -> None:
        """Tell ZZD the event is handled; unacknowledged events come again after a reconnect.

        Acknowledgements made within ``ACK_GATHER`` seconds leave together in one
        ``ack`` frame (one write on the server, not one per event); one that has
        not left when the connection drops is lost, and the event comes again.
        """
        self._acks.add(self.delivery_id)


#: Seconds acknowledgements wait for others to share their frame.
ACK_GATHER = 0.02


class _Acks:
    """The acknowledgements of one connection, sent in frames of up to 1000 ids."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: list[int] = []
        self._flusher: asyncio.Task[None] | None = None

    def add(self, delivery_id: int) -> None:
        self._pending.append(delivery_id)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(ACK_GATHER)
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            frame = {"type": "ack", "id": f"ack-{next(self._ids)}", "delivery_ids": batch}
            try:
                await self._ws.send(json.dumps(frame))
            except ConnectionClosed:
                return  # not acknowledged: sent again after the reconnect


async def consume(client: AppClient, *, reconnect: bool = True) -> AsyncIterator[StreamEvent]:
    url = client.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/api/v1/bot/stream"
    delay, fresh = 0.5, False
    while True:
        try:
            async with websockets.connect(url, max_size=2**20) as ws:
                acks = _Acks(ws)
                token = await client.token(fresh=fresh)
                await ws.send(json.dumps({"type": "hello", "id": "hello", "v": 1, "token": token}))
                delay, fresh = 0.5, False
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame.get("type") == "event":
                        yield StreamEvent(int(frame["delivery_id"]), int(frame["subscription_id"]),
                                          int(frame["attempt"]), frame["event"], acks)  # fmt: skip
                    elif frame.get("type") == "error" and frame.get("ref") == "hello":
                        fresh = True
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            if code in _TERMINAL or not reconnect:
                return
            fresh = fresh or code == 4401
        except (OSError, WebSocketException, httpx.TransportError):
            # refused, timed out, an upgrade answered 5xx by a busy or restarting server: try again
            if not reconnect:
                return
        except ZzdApiError as exc:
            if exc.status < 500 and exc.status != 429:
                raise  # the token endpoint refused the credentials: reconnecting cannot help
            if not reconnect:
                return
        if not reconnect:
            return
        await asyncio.sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not a secret
        delay = min(delay * 2, 30.0)
