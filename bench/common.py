"""Shared plumbing for the benchmark scenarios: servers, seed data, tokens, stats.

Everything here runs in the *orchestrating* process; servers and load
generators are always separate processes so that the measured server never
shares an interpreter (or a GIL) with the code that loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable
ZZD = str(Path(PYTHON).with_name("zzd"))
JWT_KID = "k1"
JWT_SECRET = "bench-secret-" + "x" * 40
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
FD_LIMIT = 20_000


def raise_fd_limit() -> None:
    """Lift the soft open-files limit to the hard limit (20,000 on this machine)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def http_exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a kept-alive connection: status and body (Content-Length framed).

    The upload benchmarks write requests by hand so that the client costs next to nothing.
    """
    writer.write(request)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


def free_port() -> int:
    """Ask the kernel for an unused TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- statistics -----------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN for an empty sample (so gaps are visible)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[idx]


def ratio(a: float, b: float) -> float:
    """a / b, NaN when b is zero."""
    return a / b if b else float("nan")


# --- tokens and seed data -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Client:
    """One simulated person: id and a ready-to-use access token."""

    person_id: int
    token: str


def mint_token(person_id: int, session_id: str, ttl: int = 3600) -> str:
    """Mint an access token exactly as ``zzd.auth.tokens.TokenService.issue`` does."""
    now = int(time.time())
    claims = {
        "sub": str(person_id),
        "sid": session_id,
        "iss": "zzd",
        "aud": "zzd-clients",
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": secrets.token_hex(12),
    }
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256", headers={"kid": JWT_KID})


def _seed_rows(n: int, run: str) -> tuple[list[tuple[int, str, str]], list[tuple[str, int]]]:
    persons = [(i, f"bench-{run}-{i}", f"Bench {i}") for i in range(1, n + 1)]
    sessions = [(uuid.uuid4().hex, i) for i in range(1, n + 1)]
    return persons, sessions


def seed_sqlite(path: Path, n: int) -> list[Client]:
    """Bulk-insert ``n`` persons and login sessions into a migrated SQLite file."""
    persons, sessions = _seed_rows(n, uuid.uuid4().hex[:6])
    now = "2026-01-01 00:00:00.000000"
    later = "2099-01-01 00:00:00.000000"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executemany(
            "INSERT INTO persons (id, login, name, password_hash, disabled, created_at) VALUES (?, ?, ?, NULL, 0, ?)",
            [(*p, now) for p in persons],
        )
        db.executemany(
            "INSERT INTO auth_sessions (id, person_id, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, NULL)",
            [(sid, pid, now, later) for sid, pid in sessions],
        )
        db.commit()
    return [Client(pid, mint_token(pid, sid)) for sid, pid in sessions]


async def _seed_postgres(dsn: str, n: int) -> list[Client]:
    from datetime import UTC, datetime

    import asyncpg

    persons, sessions = _seed_rows(n, uuid.uuid4().hex[:6])
    now = datetime.now(UTC)
    later = datetime(2099, 1, 1, tzinfo=UTC)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "persons",
            records=[(pid, login, name, None, False, now) for pid, login, name in persons],
            columns=["id", "login", "name", "password_hash", "disabled", "created_at"],
        )
        await conn.copy_records_to_table(
            "auth_sessions",
            records=[(sid, pid, now, later, None) for sid, pid in sessions],
            columns=["id", "person_id", "created_at", "expires_at", "revoked_at"],
        )
        # Persons got explicit ids: move the identity past them for later inserts.
        await conn.execute("SELECT setval(pg_get_serial_sequence('persons', 'id'), $1)", n)
    finally:
        await conn.close()
    return [Client(pid, mint_token(pid, sid)) for sid, pid in sessions]


def seed_postgres(dsn: str, n: int) -> list[Client]:
    """Bulk-insert ``n`` persons and sessions into a migrated PostgreSQL database (COPY)."""
    return asyncio.run(_seed_postgres(dsn, n))


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one run, dropped afterwards."""
    name = f"zzd_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """The plain libpq DSN behind a SQLAlchemy ``postgresql+asyncpg://`` URL."""
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


# --- server processes -----------------------------------------------------------


def _child_setup() -> None:
    raise_fd_limit()
    os.setpgrp()


@dataclass
class Server:
    """A server subprocess we started (and therefore may stop)."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def stop(self) -> None:
        """SIGTERM our own process (by pid), then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def zzd_env(database_url: str, broker_url: str = "memory://", prefix: str = "") -> dict[str, str]:
    """Environment for ``zzd serve``/``zzd migrate`` tuned for load tests (rate limit off)."""
    env = dict(os.environ)
    env.update(
        ZZD_DATABASE_URL=database_url,
        ZZD_BROKER_URL=broker_url,
        ZZD_REDIS_PREFIX=prefix or f"bench{uuid.uuid4().hex[:8]}",
        ZZD_JWT_KEYS=f"{JWT_KID}:{JWT_SECRET}",
        ZZD_SEND_RATE_PER_MINUTE="100000",
        ZZD_LOG_LEVEL="warning",
        ZZD_LIMIT_CONCURRENCY="30000",
    )
    return env


def migrate(env: dict[str, str]) -> None:
    """Build the schema before seeding (``zzd serve`` would do it, but too late for us)."""
    subprocess.run([ZZD, "migrate"], env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def start_process(name: str, argv: list[str], env: dict[str, str], port: int, logdir: Path) -> Server:
    """Start a server subprocess in its own process group with the fd limit raised."""
    log = logdir / f"{name}.log"
    fh = log.open("wb")
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, preexec_fn=_child_setup)
    return Server(name, port, proc, log)


def start_zzd(name: str, env: dict[str, str], logdir: Path) -> Server:
    port = free_port()
    return start_process(name, [ZZD, "serve", "--host", "127.0.0.1", "--port", str(port)], env, port, logdir)


def start_bare(script: str, name: str, logdir: Path) -> Server:
    port = free_port()
    return start_process(name, [PYTHON, str(BENCH / script), "--port", str(port)], dict(os.environ), port, logdir)


def wait_ready(server: Server, path: str = "/readyz", timeout: float = 60.0) -> None:
    """Poll until the server answers 200 (zzd) or accepts TCP (bare servers, path='')."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited early; see {server.log}:\n{server.log.read_text()[-2000:]}")
        with contextlib.suppress(OSError, httpx.HTTPError):
            if not path:
                with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                    return
            elif httpx.get(f"http://127.0.0.1:{server.port}{path}", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{server.name} not ready after {timeout}s")
