"""Runs the app under uvicorn with the socket settings RELIABILITY.md requires.

The listening socket is created here so ``TCP_USER_TIMEOUT`` can be set on
it (accepted sockets inherit it): the kernel then drops a client that stops
reading (zero window) which no WebSocket keepalive would ever notice.
"""

from __future__ import annotations

import logging
import socket

import uvicorn

from zzd.app import create_app
from zzd.config import Settings

logger = logging.getLogger(__name__)

__all__ = ["listening_socket", "serve"]


def listening_socket(host: str, port: int, tcp_user_timeout_ms: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, tcp_user_timeout_ms)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings),
        ws="websockets-sansio",
        ws_max_size=settings.ws_max_size,
        ws_per_message_deflate=False,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_interval,
        limit_concurrency=settings.limit_concurrency,
        backlog=2048,
        timeout_graceful_shutdown=8,
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
    )


def serve(settings: Settings) -> None:
    sock = listening_socket(settings.host, settings.port, settings.tcp_user_timeout_ms)
    server = uvicorn.Server(uvicorn_config(settings))
    logger.info("listening on %s:%d", settings.host, settings.port)
    server.run(sockets=[sock])
