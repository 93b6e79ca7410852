"""Start real ``zzd serve`` processes for multi-process tests."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from tests.conftest import TEST_KEYS, free_port
from tests.services import redis_prefix
from tests.waiting import scaled


@dataclass
class ServerProcess:
    proc: asyncio.subprocess.Process
    port: int
    log: list[str]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


async def _pump(
    stream: asyncio.StreamReader,
    log: list[str],
    ready: asyncio.Event,
    workers: int = 1,
    marker: str = "Application startup complete",
) -> None:
    started = 0
    while line := await stream.readline():
        text = line.decode(errors="replace").rstrip()
        log.append(text)
        if marker in text:
            started += 1
            if started >= workers:
                ready.set()


@asynccontextmanager
async def delivery_processes(
    db_url: str, broker_url: str, prefix: str, count: int = 1, **extra: str
) -> AsyncIterator[list[ServerProcess]]:
    """``count`` ``zzd delivery`` processes (``port`` 0: they listen on nothing), stopped afterwards."""
    procs: list[ServerProcess] = []
    pumps: list[asyncio.Task[None]] = []
    env = {**os.environ, "ZZD_DATABASE_URL": db_url, "ZZD_BROKER_URL": broker_url, "ZZD_REDIS_PREFIX": prefix,
           "ZZD_JWT_KEYS": TEST_KEYS, "ZZD_LOG_LEVEL": "info", **extra}  # fmt: skip
    try:
        for _ in range(count):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "zzd", "delivery", env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            procs.append(await _started(proc, 0, pumps, 1, "sending webhooks"))
        yield procs
    finally:
        await _stop(procs, pumps)


@asynccontextmanager
async def zzd_processes(
    db_url: str,
    broker_url: str,
    count: int = 2,
    *,
    prefixes: list[str] | None = None,
    workers: int = 1,
    **env: str,
) -> AsyncIterator[list[ServerProcess]]:
    """``count`` server processes (each ``--workers``); each logs to memory and is stopped afterwards."""
    prefix = redis_prefix()
    procs: list[ServerProcess] = []
    pumps: list[asyncio.Task[None]] = []
    try:
        for i in range(count):
            port = free_port()
            penv = {
                **os.environ,
                "ZZD_DATABASE_URL": db_url,
                "ZZD_BROKER_URL": broker_url,
                "ZZD_REDIS_PREFIX": prefixes[i] if prefixes else prefix,
                "ZZD_JWT_KEYS": TEST_KEYS,
                "ZZD_LOG_LEVEL": "info",
                **env,
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "zzd",
                "serve",
                "--no-migrate",
                "--port",
                str(port),
                "--workers",
                str(workers),
                env=penv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            procs.append(await _started(proc, port, pumps, workers, "Application startup complete"))
        yield procs
    finally:
        await _stop(procs, pumps)


async def _started(
    proc: asyncio.subprocess.Process, port: int, pumps: list[asyncio.Task[None]], workers: int, marker: str
) -> ServerProcess:
    """Wait until ``proc`` has logged ``marker`` (``workers`` times); its log is kept in memory."""
    sp = ServerProcess(proc, port, [])
    ready = asyncio.Event()
    assert proc.stdout is not None
    pumps.append(asyncio.create_task(_pump(proc.stdout, sp.log, ready, workers, marker)))
    try:
        await asyncio.wait_for(ready.wait(), scaled(30))
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"process did not start (no {marker!r}):\n" + "\n".join(sp.log[-30:])) from exc
    return sp


async def _stop(procs: list[ServerProcess], pumps: list[asyncio.Task[None]]) -> None:
    for sp in procs:
        if sp.proc.returncode is None:
            sp.proc.send_signal(signal.SIGTERM)
    for sp in procs:
        try:
            await asyncio.wait_for(sp.proc.wait(), 15)
        except TimeoutError:
            sp.proc.kill()
            await sp.proc.wait()
    for t in pumps:
        t.cancel()
