"""uvicorn's sans-I/O WebSocket protocol, able to write several text frames in one socket write.

Why: uvloop hands every ``transport.write`` to the kernel at once, one
``send()`` system call each, and those calls were a fifth of a chat
server's main thread (py-spy, issue 15). A direct message costs three: the
sender's acknowledgement, the sender's own copy of the event (the echo) and
the recipient's event. The acknowledgement and the echo go to the same
socket within the same millisecond; written together they cost one call.

The frames stay separate WebSocket frames, in the same order, so nothing
changes for a client.

Reading: uvicorn stops reading a socket after every message until the app
takes it. A chat socket's next message then waits on its previous send's
commit, and so does the client's pong: on a starved machine (acks seconds
late) uvicorn closed sockets 1011 for a "missed" pong that sat unread in the
kernel (``bench/chat_load.py``, issue 15), and every message cost a
stop/start of the read watcher. Here reading stops once the messages the
app has not taken reach ``ws_max_size`` bytes (the most one message may
hold: memory per socket stays within twice what one message could before),
and starts again when they drop below it. The server advertises the capability in the ASGI
scope's ``extensions`` under :data:`SEND_MANY`; only then does the app send
``{"type": "websocket.send", "text": <first>, SEND_MANY: [<every frame>]}``
(``zzd.gateway.connection``). Under any other server it sends one frame per
message as before.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import HeaderLineTooLong, InvalidState, RequestLineTooLong, TooManyHeaders
from websockets.http11 import Request

__all__ = ["SEND_MANY", "BatchingWebSocketProtocol"]

#: The ASGI scope extension (and the key of a ``websocket.send`` message) for several text frames.
SEND_MANY = "zzd.send_many"


class BatchingWebSocketProtocol(WebSocketsSansIOProtocol):
    """``websockets-sansio`` plus :data:`SEND_MANY` (several text frames, one ``transport.write``)
    and reading bounded by bytes waiting for the app rather than paused after every message."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Sizes of the received messages the app has not taken yet, and their sum.
        self._waiting: deque[int] = deque()
        self._waiting_bytes = 0

    def send_receive_event_to_app(self) -> None:
        size = sum(len(f) for f in self.frames)
        queued = self.queue.qsize()
        paused, self.read_paused = self.read_paused, True  # uvicorn's own pause: not per message
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = paused
        if self.queue.qsize() > queued:  # queued (not dropped after our close)
            self._waiting.append(size)
            self._waiting_bytes += size
            if not paused and self._waiting_bytes >= self.config.ws_max_size:
                self.read_paused = True
                self.transport.pause_reading()

    async def receive(self) -> Any:
        message = await self.queue.get()
        if message["type"] == "websocket.receive" and self._waiting:
            self._waiting_bytes -= self._waiting.popleft()
        if self.read_paused and self._waiting_bytes < self.config.ws_max_size:
            self.read_paused = False
            self.transport.resume_reading()
        return message

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            # The upgrade request could not be read: a header line over websockets' 8 KiB (an oversized
            # Authorization or Cookie), too many headers, a request line too long. websockets put a
            # text/plain 431/414 in its output buffer, but uvicorn writes that buffer only for a request
            # it parsed: the client waited for an answer that never came and the socket stayed open
            # (福建 audit). Answer with the usual JSON error body instead, and close.
            self.conn.data_to_send()  # websockets' own answer, replaced below
            self.transport.write(_unreadable_upgrade(self.conn.handshake_exc))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # websockets' sans-I/O protocol and its parser hold each other: the parser is a
        # generator suspended in a method of the protocol. Nothing reads this socket any
        # more, so close the generator and let reference counting free the connection now.
        # Left to the cyclic collector, the ~25 objects of every connection waited for a
        # young collection, a 7-12 ms pause every second under S16 (d)'s flood (and one the
        # collector's statistics do not count: a finalised generator frees its cycle itself).
        self.conn.parser.close()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)  # absent when the upgrade was refused
        if scope is not None:
            scope["extensions"][SEND_MANY] = {}

    async def send(self, message: Any) -> None:
        texts = message.get(SEND_MANY) if message["type"] == "websocket.send" else None
        if texts is None or not self.handshake_complete or self.close_sent or self.initial_response is not None:
            await super().send(message)  # one frame, or uvicorn's own answer to a send out of turn
            return
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        try:
            for text in texts:
                self.conn.send_text(text.encode())
        except InvalidState:
            raise ClientDisconnected() from None
        self.transport.write(b"".join(self.conn.data_to_send()))


def _unreadable_upgrade(exc: Exception) -> bytes:
    """The HTTP answer to an upgrade request websockets could not read (``exc``), as REST words errors."""
    if isinstance(exc, RequestLineTooLong):
        status, message = "414 URI Too Long", "request line too long"
    elif isinstance(exc, HeaderLineTooLong | TooManyHeaders):
        status, message = "431 Request Header Fields Too Large", "header fields too large (at most 8192 bytes a line)"
    else:
        status, message = "400 Bad Request", "not a valid HTTP request"
    body = orjson.dumps({"error": {"code": "bad_request", "message": message}})
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    head += "connection: close\r\n\r\n"
    return head.encode() + body
