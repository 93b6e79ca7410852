"""uvicorn's httptools HTTP protocol, without the reference cycle an upgrade leaves behind.

Why: uvicorn's ``HttpToolsProtocol`` and its ``httptools`` parser hold each
other (the parser keeps the protocol's bound callbacks). For a plain HTTP
connection uvicorn breaks that cycle in ``connection_lost``; but once the
connection upgrades to a WebSocket the transport talks to the WebSocket
protocol, the HTTP protocol never hears ``connection_lost``, and the pair,
with the transport, its flow control and ~25 smaller objects, lives until
the cyclic collector finds it. Under S16 (d)'s flood of 500 bad-token
handshakes a second that was ~10,700 objects for every young collection of
the server (``GC_THRESHOLDS``), each a 7-12 ms pause every 0.8 s that every
bystander's round trip in flight waited through: the flood's whole p99
(measured with ``gc.callbacks``). The HTTP protocol is done with the
connection once it has handed it over, so it lets go of its parser there and
everything is freed by reference counting when the socket closes.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["UpgradeReleasingHttpProtocol"]


class UpgradeReleasingHttpProtocol(HttpToolsProtocol):
    """``httptools`` HTTP/1.1 that drops its parser once a connection is upgraded."""

    def handle_websocket_upgrade(self) -> None:
        super().handle_websocket_upgrade()
        # Called from ``data_received`` as the parser's upgrade exception is handled; nothing
        # reads the parser after it, and the transport now belongs to the WebSocket protocol.
        self.parser = None  # type: ignore[assignment]
