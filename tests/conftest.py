"""Shared fixtures: databases of both kinds, brokers of both kinds, a served app."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import shutil
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx._transports.default as httpx_transports
import pytest
import uvicorn
from argon2 import PasswordHasher

import tests.profiles  # noqa: F401 - loads the Hypothesis profile (ZZD_TEST_PROFILE) before any test module
from kernel.db.database import Database
from tests.examples_recorder import maybe_record
from tests.pg_databases import pg_session_finish, temp_pg_database
from tests.services import REDIS_URL, pg_url, redis_prefix, require
from tests.waiting import wait_until
from zzd.auth.passwords import Passwords
from zzd.config import Settings
from zzd.migrate import upgrade

pytest_plugins = ["tests.org_server"]  # the org_server fixture


def _share_tls_contexts() -> None:
    """Every httpx client of the tests shares one TLS context per kind instead of building its own.

    httpx builds a context for each client it makes (the test helpers make
    one per sign-in and request), and each parses certifi's whole CA bundle:
    py-spy put two fifths of the quick lane's CPU there. The tests speak plain
    HTTP to 127.0.0.1, and httpx never changes a context once built, so one
    per (verify, trust_env) answers the same. Only the default arguments are
    cached; a caller's own context or certificate goes through untouched.
    """
    build = httpx_transports.create_ssl_context

    @functools.cache
    def shared(verify: bool, trust_env: bool) -> ssl.SSLContext:
        return build(verify=verify, trust_env=trust_env)

    def create(verify: object = True, cert: object = None, trust_env: bool = True) -> ssl.SSLContext:
        if isinstance(verify, bool) and cert is None:
            return shared(verify, trust_env)
        return build(verify=verify, cert=cert, trust_env=trust_env)  # type: ignore[arg-type]

    httpx_transports.create_ssl_context = create  # type: ignore[assignment]


_share_tls_contexts()

FAST_PASSWORDS = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
TEST_KEYS = "t1:" + "k" * 40
#: The audit chain's key for every test process (servers, CLI runs, writers): the environment carries it so that
#: in-process servers, ``zzd`` invocations and subprocesses agree, and no key file is made in the working tree.
TEST_AUDIT_KEY = "test-audit-key-" + "a" * 32
os.environ.setdefault("ZZD_AUDIT_KEY", TEST_AUDIT_KEY)
AUDIT_KEY = os.environ["ZZD_AUDIT_KEY"].encode()


# --- databases ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test (migrating is the slow part)."""
    path = tmp_path_factory.mktemp("tpl") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


def pytest_sessionfinish(session: pytest.Session) -> None:
    pg_session_finish(session)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head, dropped after."""
    with temp_pg_database("zzd_test") as name:
        yield pg_url(name)


def _backend_url(request: pytest.FixtureRequest, tmp_path: Path, pg_fixture: str) -> str:
    """A copy of the migrated SQLite template for this test, or the PostgreSQL database ``pg_fixture`` gives."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        dest = tmp_path / "zzd.db"
        shutil.copy(template, dest)
        return f"sqlite+aiosqlite:///{dest}"
    return str(request.getfixturevalue(pg_fixture))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs once per backend (on PostgreSQL in the session's shared database)."""
    return _backend_url(request, tmp_path, "pg_database")


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A ``Database`` on ``db_url`` (each backend), disposed after the test."""
    async with Database(db_url) as database:
        yield database


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database to clone (``CREATE DATABASE … TEMPLATE`` beats migrating)."""
    with temp_pg_database("zzd_tpl") as name:
        yield name


@pytest.fixture
def own_pg_database(pg_template: str) -> Iterator[str]:
    """A PostgreSQL database of this test's own, dropped after it.

    For tests that import org trees or leave background work behind: in the
    shared database one test's import would upsert (and remove) another's
    units, and a notice fan-out still being swept would reach the next test's
    sockets.
    """
    with temp_pg_database("zzd_own", template=pg_template) as name:
        yield pg_url(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def own_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Like ``db_url``, but the PostgreSQL database is this test's own (``own_pg_database``)."""
    return _backend_url(request, tmp_path, "own_pg_database")


@pytest.fixture
def no_collector() -> Iterator[None]:
    """Only reference counting frees anything while the test runs (tests that a path leaves no cycles)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
def redis_url() -> str:
    require("redis")
    return REDIS_URL


def make_settings(db_url: str, broker_url: str = "memory://", **extra: object) -> Settings:
    """Settings for a test server: a unique Redis prefix isolates concurrent tests."""
    return Settings(
        database_url=db_url,
        broker_url=broker_url,
        redis_prefix=redis_prefix(),
        jwt_keys=TEST_KEYS,  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- a served app ------------------------------------------------------------------


class RunningServer:
    def __init__(self, server: uvicorn.Server, port: int) -> None:
        self.server = server
        self.port = port
        self.http = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}/ws"

    @property
    def services(self):  # type: ignore[no-untyped-def]
        app = self.server.config.loaded_app
        while not hasattr(app, "state"):  # uvicorn's wrappers (proxy headers, when trusted) around the app
            app = app.app  # type: ignore[union-attr]
        return app.state.services  # type: ignore[union-attr]


async def start_server(settings: Settings, services: object | None = None) -> tuple[RunningServer, asyncio.Task[None]]:
    from zzd.app import create_app
    from zzd.gateway.httpproto import UpgradeReleasingHttpProtocol
    from zzd.gateway.wsproto import BatchingWebSocketProtocol
    from zzd.server import DrainingServer, listening_socket, proxy_options
    from zzd.services import Services

    svc = services or Services.build(settings, passwords=FAST_PASSWORDS)
    app = create_app(settings, services=svc)  # type: ignore[arg-type]
    served = maybe_record(app, app.routes)  # docs examples, only with ZZD_RECORD_EXAMPLES (tests/examples_recorder.py)
    port = free_port()
    sock = listening_socket("127.0.0.1", port, settings.tcp_user_timeout_ms)
    config = uvicorn.Config(
        served,
        ws=BatchingWebSocketProtocol,  # as zzd.server.uvicorn_config
        http=UpgradeReleasingHttpProtocol,
        ws_max_size=settings.ws_max_size,
        ws_per_message_deflate=False,
        log_level="warning",
        lifespan="on",
        **proxy_options(settings),
    )
    server = DrainingServer(config, app, settings.shutdown_drain_timeout)
    task = asyncio.create_task(server.serve(sockets=[sock]))

    def started() -> bool:
        if task.done():
            task.result()  # the server failed to start: raise its error
        return bool(server.started)

    await wait_until(started, 30, "the test server to start", interval=0.01)
    rs = RunningServer(server, port)
    rs.services_obj = svc  # type: ignore[attr-defined]
    return rs, task


@asynccontextmanager
async def serving(settings: Settings, *, stop_within: float | None = None) -> AsyncIterator[RunningServer]:
    """``start_server`` for the length of a block; stopped (gracefully) however the block ends.

    ``stop_within``: a shutdown that takes longer (WebSocket handlers stuck) fails the test instead of hanging it.
    """
    rs, task = await start_server(settings)
    try:
        yield rs
    finally:
        rs.server.should_exit = True
        done, _ = await asyncio.wait({task}, timeout=stop_within)
        if not done:
            rs.server.force_exit = True
            await asyncio.wait_for(task, 10)
            raise AssertionError(f"server did not shut down in {stop_within} s: WebSocket handlers are stuck")
        task.result()  # a server that failed while serving or stopping fails the test


@pytest.fixture
async def server(db_url: str) -> AsyncIterator[RunningServer]:
    """The app served by uvicorn on a free port, embedded broker."""
    async with serving(make_settings(db_url)) as rs:
        yield rs


# --- the server's log ------------------------------------------------------------


class LogRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def errors(self) -> list[str]:
        return [
            f"{r.name}: {r.getMessage()}" for r in self.records if r.levelno >= logging.ERROR or r.exc_info is not None
        ]


@pytest.fixture
def server_log() -> Iterator[LogRecords]:
    """Every record of the server's loggers (uvicorn's do not propagate to the root, so caplog misses them)."""
    handler = LogRecords()
    loggers = [logging.getLogger(n) for n in ("", "uvicorn", "uvicorn.error")]
    for lg in loggers:
        lg.addHandler(handler)
    yield handler
    for lg in loggers:
        lg.removeHandler(handler)
