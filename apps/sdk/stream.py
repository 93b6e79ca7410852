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
    _ws: ClientConnection
    _ids: itertools.count[int]

    async def ack(self) -> None:
        """Tell ZZD the event is handled; unacknowledged events come again after a reconnect."""
        frame = {"type": "ack", "id": f"ack-{next(self._ids)}", "delivery_ids": [self.delivery_id]}
        await self._ws.send(json.dumps(frame))


async def consume(client: AppClient, *, reconnect: bool = True) -> AsyncIterator[StreamEvent]:
    url = client.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/api/v1/bot/stream"
    delay, fresh = 0.5, False
    ids = itertools.count(1)
    while True:
        try:
            async with websockets.connect(url, max_size=2**20) as ws:
                token = await client.token(fresh=fresh)
                await ws.send(json.dumps({"type": "hello", "id": "hello", "v": 1, "token": token}))
                delay, fresh = 0.5, False
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame.get("type") == "event":
                        yield StreamEvent(int(frame["delivery_id"]), int(frame["subscription_id"]),
                                          int(frame["attempt"]), frame["event"], ws, ids)  # fmt: skip
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
