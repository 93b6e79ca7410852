"""``zzd serve --workers N``: N server processes sharing one listening socket.

Why: one Python process uses one core; a machine with several cores needs
several processes, and clients should not have to know about them (one
address, one port). The parent binds the socket once and starts N workers
(``multiprocessing`` spawn, so no state is shared by accident); each inherits
the socket and runs the same :class:`~zzd.server.DrainingServer` a single
``zzd serve`` runs, and the kernel hands each new connection to whichever
worker accepts it first.

What makes this safe is what already makes separate ``zzd serve`` processes
safe: PostgreSQL holds the state, Redis carries wake-ups, socket slots and
sign-in throttling between processes, background work is claimed by lease.
So ``--workers`` above 1 needs both; the embedded SQLite default is one
process (SQLite allows one writer, and the in-process broker reaches only
its own process's sockets) and is refused with a clear message.

Each worker gets its own node id (``<node>-w<i>``, a replacement
``<node>-w<i>r<n>``): the broker uses it to skip a process's own wake-ups,
so two workers with one id would miss each other's. On SIGTERM or SIGINT the parent sends SIGTERM to every worker once,
and each drains as a single server does (RELIABILITY S10: running requests
answer, then sockets close with 1012); a worker that dies on its own is
replaced, unless it dies before its app started (a broken configuration
would only fail again), which stops the whole server.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event as EventType
from types import FrameType

from zzd.config import Settings

logger = logging.getLogger(__name__)

__all__ = ["WorkersRefused", "check_workers", "serve_workers"]

#: Seconds the parent waits for every worker to finish its drain after forwarding SIGTERM.
STOP_WAIT_S = 15.0


class WorkersRefused(ValueError):
    """``--workers`` above 1 with a configuration that cannot share state between processes."""


def check_workers(settings: Settings, workers: int) -> None:
    """Refuse N > 1 unless PostgreSQL and Redis carry the state between processes."""
    if workers < 1:
        raise WorkersRefused(f"--workers must be at least 1 (got {workers})")
    if workers == 1:
        return
    if not settings.database_url.startswith("postgresql"):
        raise WorkersRefused(
            "--workers above 1 needs PostgreSQL (ZZD_DATABASE_URL=postgresql+asyncpg://…): "
            "the embedded SQLite database is one process"
        )
    if not settings.broker_url.startswith("redis"):
        raise WorkersRefused(
            "--workers above 1 needs Redis (ZZD_REDIS_URL=redis://…): "
            "the in-process broker reaches only its own process's sockets"
        )


def _watch_parent(parent: int) -> None:
    """End this worker (by SIGTERM, so it drains) if the supervisor disappears without stopping it."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _worker(  # pragma: no cover - child
    settings: Settings, sock: socket.socket, parent: int, node_id: str, ready: EventType
) -> None:
    from zzd.logs import configure_logging
    from zzd.server import serve

    # Own session: a Ctrl-C at the terminal reaches the parent only, which forwards one SIGTERM;
    # a second signal would make uvicorn skip the drain.
    os.setsid()
    configure_logging(settings.log_level, settings.log_format)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="watch-parent").start()

    def started() -> None:
        ready.set()  # from here on, a death of this worker is a crash to replace, not a failed start
        logger.info("worker node %s serving", node_id)

    serve(settings.model_copy(update={"node_id": node_id}), sock, on_started=started)


class _Supervisor:
    def __init__(self, settings: Settings, sock: socket.socket, workers: int) -> None:
        self.settings = settings
        self.sock = sock
        self.count = workers
        self.ctx = multiprocessing.get_context("spawn")
        #: Each worker's process and the event it sets once its app has started.
        self.procs: list[tuple[SpawnProcess, EventType]] = []
        self.stopping = threading.Event()
        self.starts: dict[int, int] = {}

    def start(self, index: int) -> tuple[SpawnProcess, EventType]:
        # A replacement gets a node id of its own: socket ids (node:n) restart at 1 in a new
        # process, and must not meet the dead worker's entries still in Redis.
        self.starts[index] = self.starts.get(index, -1) + 1
        node_id = f"{self.settings.node_id}-w{index}" + (f"r{self.starts[index]}" if self.starts[index] else "")
        ready = self.ctx.Event()
        proc = self.ctx.Process(
            target=_worker, args=(self.settings, self.sock, os.getpid(), node_id, ready), name=f"zzd-worker-{index}"
        )
        proc.start()
        logger.info("worker %d started (pid %s, node %s)", index, proc.pid, node_id)
        return proc, ready

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s: draining %d workers", signal.Signals(signum).name, self.count)
        self.stopping.set()

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.on_signal)
        self.procs = [self.start(i) for i in range(self.count)]
        status = 0
        while not self.stopping.wait(0.5):
            for i, (proc, ready) in enumerate(self.procs):
                if proc.is_alive():
                    continue
                if not ready.is_set():
                    logger.error("worker %d exited with %s before it started serving: stopping", i, proc.exitcode)
                    status = 1
                    self.stopping.set()
                    break
                logger.warning("worker %d (pid %s) exited with %s: starting a new one", i, proc.pid, proc.exitcode)
                self.procs[i] = self.start(i)
        self.stop()
        return status

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        for proc, _ in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                logger.error("worker pid %s did not stop in %.0f s: killing it", proc.pid, STOP_WAIT_S)
                proc.kill()
                proc.join()
        logger.info("all workers stopped")


def serve_workers(settings: Settings, workers: int) -> int:
    """Bind once, run ``workers`` server processes on the socket until SIGTERM/SIGINT; the exit status."""
    from zzd.server import listening_socket

    check_workers(settings, workers)
    sock = listening_socket(settings.host, settings.port, settings.tcp_user_timeout_ms)
    logger.info("listening on %s:%d with %d workers", settings.host, settings.port, workers)
    try:
        return _Supervisor(settings, sock, workers).run()
    finally:
        sock.close()
