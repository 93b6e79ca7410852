"""Runs the app under uvicorn with the socket settings docs/reliability.md requires.

The listening socket is created here so ``TCP_USER_TIMEOUT`` can be set on
it (accepted sockets inherit it): the kernel then drops a client that stops
reading (zero window) which no WebSocket keepalive would ever notice.

On SIGTERM the server drains (RELIABILITY S10, rolling restart): it stops
accepting, lets every running request finish and answer (a send waiting for
its commit gets its ack), then closes each socket with 1012 so clients
reconnect elsewhere and resume; uvicorn's own shutdown would close the
sockets first and leave a committed send unacknowledged.
"""

from __future__ import annotations

import gc
import logging
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette

from zzd.app import create_app
from zzd.config import Settings
from zzd.gateway.closecodes import Close
from zzd.gateway.httpproto import UpgradeReleasingHttpProtocol
from zzd.gateway.wsproto import BatchingWebSocketProtocol

logger = logging.getLogger(__name__)

__all__ = [
    "GC_THRESHOLDS",
    "CannotListen",
    "DrainingServer",
    "freeze_start_up_heap",
    "listening_socket",
    "serve",
    "uvicorn_config",
]

#: Cyclic-GC thresholds for a server process (CPython's default is 700, 10, 10).
#: Why: a process holding 5,000 sockets has a heap whose full collection took
#: 450-820 ms in bench/notice_fanout.py (measured with ``gc.callbacks``), and the
#: defaults ran one every 2-5 s under load: 10,000 notice reads arriving within a
#: second waited behind one such pause in each process. Young collections every
#: 20,000 net allocations and a full one at most every 20,000 x 10 x 10 keep the
#: amortised cost bounded (CPython still needs 25 % heap growth for a full pass)
#: while cutting the number of whole-heap walks by ~30x; cyclic garbage waits
#: longer, which costs memory, not correctness.
GC_THRESHOLDS = (20_000, 10, 10)


def freeze_start_up_heap() -> None:
    """Move everything start-up built (the org index, the app, imported modules) out of the collector.

    Why: those objects live as long as the process, yet every full collection
    walked them again, and the event loop waits through the whole walk: at
    S1's heap one took 263 ms and put 131 acks over 200 ms; with the start-up
    heap frozen the same collection took 150 ms (BENCHMARKS.md, issue 16). A
    short run never reaches one; a server running for hours does. Frozen objects
    are still freed by reference counting; a cycle among them that becomes
    garbage later is never collected, so the most this can keep is the
    start-up heap itself (the org index, replaced on a rebuild, holds no
    cycles: tests/test_gc_freeze.py). Each later full collection walks only
    what the process built while serving. Called by :func:`serve` once the
    app has started (not by in-process test servers, whose heap is the test
    runner's).
    """
    gc.collect()
    gc.freeze()


class CannotListen(Exception):
    """The listening socket could not be opened; the message names the address and the settings."""


def listening_socket(host: str, port: int, tcp_user_timeout_ms: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, tcp_user_timeout_ms)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:  # a port in use, an address not of this machine, a name that does not resolve
        sock.close()
        raise CannotListen(f"cannot listen on {host}:{port} (ZZD_HOST / ZZD_PORT): {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def proxy_options(settings: Settings) -> dict[str, Any]:
    """Believe X-Forwarded-For only from the configured proxies.

    uvicorn's own default believes it from 127.0.0.1, which would let anyone
    on the host pick the address that sign-in throttling and the audit log see.
    """
    trusted = settings.forwarded_allow_ips.strip()
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or None}


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose shutdown drains WebSockets before uvicorn closes them."""

    def __init__(
        self,
        config: uvicorn.Config,
        app: Starlette,
        drain_timeout: float,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self._app = app
        self._drain_timeout = drain_timeout
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_started is not None:
            self._on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:  # stop accepting first
            server.close()
        for sock in sockets or []:
            sock.close()
        services = getattr(self._app.state, "services", None)
        if services is not None:
            logger.info("draining %d WebSockets", services.hub.count())
            left = await services.hub.drain(
                Close.SERVICE_RESTART, "server restarting: reconnect and resume", self._drain_timeout
            )
            logger.info("drained WebSockets (%d still open at the deadline)", left)
        await super().shutdown(sockets)


def uvicorn_config(settings: Settings, app: Starlette | None = None) -> uvicorn.Config:
    return uvicorn.Config(
        app or create_app(settings),
        # uvicorn's "websockets-sansio", plus several frames in one socket write (zzd.gateway.wsproto).
        ws=BatchingWebSocketProtocol,
        # httptools, letting go of an upgraded connection at once (zzd.gateway.httpproto).
        http=UpgradeReleasingHttpProtocol,
        ws_max_size=settings.ws_max_size,
        ws_per_message_deflate=False,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_interval,
        limit_concurrency=settings.limit_concurrency,
        backlog=2048,
        # The drain above has had its ``shutdown_drain_timeout``; with this the process exits within 10 s.
        timeout_graceful_shutdown=max(1, int(9 - settings.shutdown_drain_timeout)),
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
        **proxy_options(settings),
    )


def serve(settings: Settings, sock: socket.socket | None = None, on_started: Callable[[], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT.

    ``sock`` is the listening socket a ``--workers`` parent shares; ``on_started``
    runs once the app has started (the parent tells a crash from a failed start by it).
    """
    if sock is None:
        sock = listening_socket(settings.host, settings.port, settings.tcp_user_timeout_ms)
        logger.info("listening on %s:%d", settings.host, settings.port)
    gc.set_threshold(*GC_THRESHOLDS)
    app = create_app(settings)

    def started() -> None:
        freeze_start_up_heap()
        if on_started is not None:
            on_started()

    server = DrainingServer(uvicorn_config(settings, app), app, settings.shutdown_drain_timeout, started)
    server.run(sockets=[sock])
