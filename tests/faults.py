"""The fault toolkit the reliability scenarios share (docs/reliability.md).

- :class:`PrivateRedis`: a ``redis-server`` of the test's own on a free port in
  a temp dir, to kill (-9), freeze (SIGSTOP) and restart; never the
  machine's shared one.
- :class:`TcpProxy`: an asyncio TCP proxy put between a server and Redis or
  PostgreSQL that adds latency, black-holes traffic (holds it, as dropped
  packets would), resets connections (RST) and holds them half-open.
- :func:`frozen`, :func:`kill9`: signals to processes the test started, with
  the fault reverted in a ``finally``.
- :func:`tcp_sockets`, :func:`rss_bytes`: what the kernel says about a process
  (the socket table, as ``ss`` would show it; resident memory).

Everything waits for state with a deadline; nothing sleeps to stand in for ordering.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = [
    "PrivateRedis",
    "TcpProxy",
    "frozen",
    "kill9",
    "private_redis",
    "rss_bytes",
    "tcp_proxy",
    "tcp_sockets",
]


async def _wait_accepting(host: str, port: int, timeout: float = 10.0) -> None:
    """Until ``host:port`` accepts a TCP connection (a bounded readiness check)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            _, w = await asyncio.open_connection(host, port)
            w.close()
            return
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of our own on ``port``; :meth:`start` also restarts it after a kill."""

    def __init__(self, port: int, workdir: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server binary not found")
        self.exe, self.port, self.workdir = exe, port, workdir
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.workdir), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await _wait_accepting("127.0.0.1", self.port)

    async def kill(self) -> None:
        """``kill -9`` and reap it."""
        assert self.proc is not None
        await kill9(self.proc)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            await self.proc.wait()


@asynccontextmanager
async def private_redis(workdir: Path, port: int | None = None) -> AsyncIterator[PrivateRedis]:
    """A private redis-server for the block; killed afterwards whatever happened."""
    redis = PrivateRedis(port or _free_port(), workdir)
    await redis.start()
    try:
        yield redis
    finally:
        await redis.stop()


async def kill9(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL a process this test started and wait for it to be reaped."""
    if proc.returncode is None:
        proc.kill()
    await proc.wait()


@contextmanager
def frozen(proc: asyncio.subprocess.Process) -> Iterator[None]:
    """SIGSTOP for the block (the process keeps its sockets and answers nothing), SIGCONT after."""
    proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGCONT)


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client side and the upstream side."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; faults are switched on and off while it runs.

    - ``latency``: seconds added to every chunk, each direction (order is kept).
    - :meth:`black_hole`: nothing flows either way and new connections get no
      upstream; held bytes flow again on :meth:`restore`, as after a partition
      where TCP retransmits (nothing is corrupted).
    - :meth:`reset`: every open connection is reset (RST) on both sides.
    - :meth:`half_open`: upstream sides are dropped silently while client sides
      stay ESTABLISHED with no FIN: the client waits for answers that never come.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.latency = 0.0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refuse = False
        #: Connections accepted so far (the server's reconnects show up here).
        self.accepted = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.restore()
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            self._drop(link)
        if self._server is not None:
            await self._server.wait_closed()

    # --- faults -----------------------------------------------------------------

    def black_hole(self) -> None:
        self._flowing.clear()

    def restore(self) -> None:
        self.latency = 0.0
        self._refuse = False
        self._flowing.set()

    def reset(self, *, refuse_new: bool = False) -> None:
        """RST every open connection; with ``refuse_new`` new ones are reset too until :meth:`restore`."""
        self._refuse = refuse_new
        for link in list(self._links):
            _rst(link.client)
            if link.upstream is not None:
                _rst(link.upstream)
            self._drop(link)

    def half_open(self) -> None:
        """Abort the upstream sides and stop forwarding; client sides get neither data nor FIN."""
        self._flowing.clear()
        for link in list(self._links):
            if link.upstream is not None:
                link.upstream.transport.abort()

    @property
    def open_links(self) -> int:
        return len(self._links)

    # --- plumbing ---------------------------------------------------------------

    def _drop(self, link: _Link) -> None:
        for t in link.tasks:
            t.cancel()
        link.client.transport.abort()
        if link.upstream is not None:
            link.upstream.transport.abort()
        self._links.discard(link)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refuse:
            _rst(writer)
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            await self._flowing.wait()  # a black hole also swallows the SYN's follow-up
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except (OSError, asyncio.CancelledError):
            self._drop(link)
            return
        link.upstream = up_writer
        link.tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, link)),
            asyncio.create_task(self._pipe(up_reader, writer, link)),
        ]

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, link: _Link) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await src.read(65536):
                due = loop.time() + self.latency
                await self._flowing.wait()
                if (delay := due - loop.time()) > 0:
                    await asyncio.sleep(delay)  # the injected latency itself, not synchronisation
                await self._flowing.wait()
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            if self._flowing.is_set() and link in self._links:
                self._drop(link)


@asynccontextmanager
async def tcp_proxy(target_host: str, target_port: int) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(target_host, target_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


# --- what the kernel says ----------------------------------------------------------

_TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
               "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN",
               "0B": "CLOSING"}  # fmt: skip


def tcp_sockets(local_port: int) -> list[tuple[str, int, int]]:
    """Sockets bound to ``local_port`` other than the listener: (state, send queue, remote port).

    Read from ``/proc/net/tcp{,6}``, the table ``ss -tn`` prints: a connection
    the server has only forgotten in Python still shows up here.
    """
    out = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(path) as f:
            next(f)
            for line in f:
                cols = line.split()
                local, remote, state, queues = cols[1], cols[2], cols[3], cols[4]
                if int(local.rsplit(":", 1)[1], 16) != local_port or state == "0A":
                    continue
                tx = int(queues.split(":")[0], 16)
                out.append((_TCP_STATES.get(state, state), tx, int(remote.rsplit(":", 1)[1], 16)))
    return out


def rss_bytes(pid: int | None = None) -> int:
    """Resident memory of ``pid`` (default: this process) from ``/proc``."""
    with open(f"/proc/{pid or os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")
