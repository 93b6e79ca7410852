"""Engines and transaction scopes for SQLite (embedded) and PostgreSQL.

Why two scopes: SQLite allows one writer at a time, and a deferred
transaction that reads and then writes can fail with SQLITE_BUSY without
waiting for ``busy_timeout``. So on SQLite writes go through a single pooled
connection that starts with ``BEGIN IMMEDIATE`` (writers queue in-process,
and across processes wait on the busy timeout), while reads use their own
pool. On PostgreSQL both scopes share one engine.

Durability (docs/reliability.md decision 2): SQLite runs ``journal_mode=WAL``
with ``synchronous=FULL``; a commit returned means it survives a crash.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, PoolResetState
from sqlalchemy.util import await_

T = TypeVar("T")

logger = logging.getLogger(__name__)

__all__ = ["Database", "after_commit", "in_sqlite_thread"]

#: Callbacks to run once a ``Database.write`` transaction has committed, by its connection.
_after_commit: weakref.WeakKeyDictionary[AsyncConnection, list[Callable[[], None]]] = weakref.WeakKeyDictionary()


def after_commit(conn: AsyncConnection, hook: Callable[[], None]) -> None:
    """Call ``hook`` (once) after the commit of ``conn``'s :meth:`Database.write` transaction.

    Dropped if the transaction fails; never called for a connection that did
    not come from ``Database.write`` (a one-shot tool's engine). For wake-ups
    that must not come before the data is visible (e.g. the audit sealer,
    kernel/audit.py), which a hook inside the transaction would.
    """
    hooks = _after_commit.setdefault(conn, [])
    if hook not in hooks:
        hooks.append(hook)


SQLITE_BUSY_TIMEOUT_MS = 10_000

#: WAL frames after which a commit checkpoints them into the database file (SQLite's default: 1,000).
#:
#: Why more: a checkpoint copies every distinct page the WAL holds back into the
#: database file and fsyncs it, in the committing writer's thread. The hot pages
#: of chat (every person's stream head, the tails of the message and event tables
#: and their indexes) are rewritten by nearly every commit, so between two
#: checkpoints the WAL holds many copies of few pages: ten times the frames per
#: checkpoint copies the same hot pages a tenth as often. Under the chat load
#: that took 15 % off SQLite's own CPU per message (``bench/chat_store_cpu.py``,
#: issue 15). Durability is unchanged: every commit still fsyncs the WAL first
#: (``synchronous=FULL``), and a crash replays the WAL whatever its length. The
#: cost is disk: the WAL file grows to about 40 MB (10,000 pages of 4 KiB) and
#: is reused from its start after each checkpoint; opening after a crash reads it.
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 10_000

#: A pooled PostgreSQL connection idle longer than this is pinged before it is handed out (s).
PING_AFTER_IDLE = 1.0


def _ping_if_idle(engine: AsyncEngine, idle: float = PING_AFTER_IDLE) -> None:
    """Ping a pooled connection on checkout only when it has been idle more than ``idle`` seconds.

    Why not ``pool_pre_ping``: on asyncpg it costs three round trips (BEGIN,
    ``;``, ROLLBACK) on every checkout, i.e. on every transaction, which at the
    bar's S1 rate was several hundred microseconds of server CPU per read and
    as many extra statements for PostgreSQL. Under load a connection comes back
    to the pool and out again within milliseconds, and a connection the server
    has dropped then fails its first statement: SQLAlchemy sees the disconnect
    and invalidates the whole pool, and the request gets the retryable
    ``unavailable`` (``messaging/db_errors.py``), as during any outage (S6).
    A connection that sat idle (after a quiet spell, where a database restart
    would otherwise go unnoticed) is still pinged first, and replaced if dead
    (raising ``DisconnectionError`` in ``checkout`` makes the pool reconnect).
    """
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _checkin(_dbapi: Any, record: Any) -> None:
        record.info["zzd_idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checkout(dbapi: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("zzd_idle_since")
        if since is None or time.monotonic() - since <= idle:
            return  # new, or back from a transaction a moment ago
        try:
            dbapi.ping()
        except Exception as exc:
            raise DisconnectionError("idle connection failed its ping") from exc


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Autocommit at the driver level so SQLAlchemy's "begin" event decides how
    # transactions start (the documented pysqlite/aiosqlite recipe).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _rollback_if_open(dbapi_conn: Any, _record: Any, state: PoolResetState) -> None:
    """The pool's reset of a SQLite connection coming back: a rollback only if a transaction is open.

    Why: every transaction here ends in its own commit or rollback (``Database.write`` and
    ``read`` are ``engine.begin()`` blocks), yet the pool's default reset sent one more
    ``rollback()`` through aiosqlite after each, a thread hand-off of ~30 µs of CPU for a
    call that then does nothing (``sqlite3`` rolls back only when a transaction is open),
    on every chat send batch and every read (issue 15). Asking the connection whether a
    transaction is open reads SQLite's autocommit flag on this thread, without a hand-off;
    a connection returned mid-transaction (a failed commit, a cancelled block) is still
    rolled back. A connection being discarded (``terminate_only``) or returned outside the
    event loop (not ``asyncio_safe``) is closed by the pool, not reset.
    """
    if state.terminate_only or not state.asyncio_safe:
        return
    driver = dbapi_conn.driver_connection
    if driver is None or driver._connection is None or driver.in_transaction:
        dbapi_conn.rollback()


def _begin(statement: str) -> Callable[[Connection], None]:
    """A "begin" listener sending ``statement`` straight to aiosqlite: one trip to its thread.

    Why: through SQLAlchemy's adapter the same statement takes three (cursor,
    execute, close), each a thread handoff of ~30 µs of CPU; every write and
    every read transaction begins here, a chat send batch among them (issue 15).
    """

    def begin(conn: Connection) -> None:
        try:
            await_(conn.connection.driver_connection.execute(statement))  # type: ignore[union-attr]
        except sqlite3.Error as exc:
            # Raised in an event hook, the driver's error is not wrapped as SQLAlchemy wraps a
            # statement's: wrap it here, so that "database is locked" (another writer past the
            # busy timeout) is the retryable 503 every other outage is, not a 500.
            raise OperationalError(statement, None, exc) from exc

    return begin


async def in_sqlite_thread(driver: Any, fn: Callable[..., T], *args: Any) -> T:
    """``fn(sqlite3_connection, *args)`` on the aiosqlite connection's own thread, in one trip.

    For a run of statements whose results feed each other (``EventLog.append``):
    each ``await`` on an aiosqlite statement is a handoff to its thread and
    back (~30 µs of CPU, more than a small statement itself). This uses
    aiosqlite's internal ``_execute``, the one way it runs a function on that
    thread; the version is pinned (requirements.lock) and every chat test goes
    through here.
    """
    return await driver._execute(fn, driver._conn, *args)  # type: ignore[no-any-return]


def _in_immediate(db: sqlite3.Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """``Database.sqlite_write``'s transaction, on the writer's thread."""
    try:
        db.execute("BEGIN IMMEDIATE")
        result = fn(db, *args)
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        _rollback(db)
        raise DBAPIError.instance(getattr(fn, "__name__", "sqlite_write"), None, exc, sqlite3.Error) from exc
    except BaseException:
        _rollback(db)
        raise
    return result


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        db.rollback()


class Database:
    """Owns the engines for one database URL.

    Args:
        url: ``sqlite+aiosqlite:///path.db`` or ``postgresql+asyncpg://…``.
        pool_size: connections kept for PostgreSQL (readers on SQLite).
        statement_timeout_ms: PostgreSQL statement timeout, so a stuck query
            turns into a retryable error instead of a hang (S6).
        ping_after_idle: a pooled PostgreSQL connection idle longer than this
            (seconds) is pinged before use (``_ping_if_idle``).
        server_settings: more PostgreSQL settings for every connection of this
            pool (e.g. the direct chat's planner settings, ``messaging.chat_storage``).
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        pool_timeout: float = 10.0,
        statement_timeout_ms: int = 10_000,
        echo: bool = False,
        ping_after_idle: float = PING_AFTER_IDLE,
        server_settings: Mapping[str, str] | None = None,
    ) -> None:
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        if self.dialect == "sqlite":
            self.writer = create_async_engine(
                url, echo=echo, pool_size=1, max_overflow=0, pool_timeout=60, pool_reset_on_return=None
            )
            self.reader = create_async_engine(
                url, echo=echo, pool_size=pool_size, max_overflow=0, pool_reset_on_return=None
            )
            for eng in (self.writer, self.reader):
                event.listen(eng.sync_engine, "connect", _sqlite_pragmas)
                event.listen(eng.sync_engine.pool, "reset", _rollback_if_open)
            event.listen(self.writer.sync_engine, "begin", _begin("BEGIN IMMEDIATE"))
            event.listen(self.reader.sync_engine, "begin", _begin("BEGIN"))
        elif self.dialect == "postgresql":
            self.writer = create_async_engine(
                url,
                echo=echo,
                pool_size=pool_size,
                # A little headroom only: overflow connections are closed on
                # return, and reopening them under load costs more than waiting.
                max_overflow=max(2, pool_size // 4),
                pool_timeout=pool_timeout,
                connect_args={
                    "server_settings": {"statement_timeout": str(statement_timeout_ms), **(server_settings or {})},
                    "timeout": 5,
                },
            )
            _ping_if_idle(self.writer, ping_after_idle)
            self.reader = self.writer
        else:
            raise ValueError(f"unsupported database backend {self.dialect!r}")

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A read-write transaction, committed when the block exits without error.

        Hooks registered with :func:`after_commit` run once the commit returned.
        """
        conn: AsyncConnection | None = None
        try:
            async with self.writer.begin() as conn:
                yield conn
        except BaseException:
            if conn is not None:
                _after_commit.pop(conn, None)
            raise
        for hook in _after_commit.pop(conn, ()):
            hook()

    async def sqlite_write(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(sqlite3_connection, *args)`` as one write transaction, whole on the writer's thread: one trip.

        ``BEGIN IMMEDIATE``, ``fn``, ``COMMIT`` (a rollback if ``fn`` raises) run in one hand-off to
        aiosqlite's thread, without SQLAlchemy's transaction around them (SQLite only).

        Why: through :meth:`write` a transaction is at least its ``BEGIN IMMEDIATE``, its statements'
        trips and its ``COMMIT``, each a hand-off to the thread and back (~30 µs of CPU), plus
        SQLAlchemy's begin and commit on the event loop; the direct chat's send batch, the hot
        path, paid four trips where one does (issue 15). The durability is the same: ``COMMIT``
        fsyncs the WAL (``synchronous=FULL``) before this returns. A driver error comes back as
        SQLAlchemy would raise it (``DBAPIError``: "database is locked" is then the retryable
        outage every other path reports, ``messaging/db_errors.py``). Hooks of :func:`after_commit`
        do not apply: ``fn`` has no ``AsyncConnection``.
        """
        if not self.is_sqlite:
            raise TypeError("sqlite_write is for SQLite")
        async with self.writer.connect() as conn:  # the one writer connection, checked out without a BEGIN
            driver = (await conn.get_raw_connection()).driver_connection
            return await in_sqlite_thread(driver, _in_immediate, fn, args)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (consistent snapshot on both backends)."""
        async with self.reader.begin() as conn:
            yield conn

    async def ping(self) -> None:
        async with self.reader.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def pragmas(self) -> dict[str, Any]:
        """The durability settings in force (asserted at start-up on SQLite, S7)."""
        if not self.is_sqlite:
            return {}
        async with self.writer.connect() as conn:
            jm = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            sync = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar()
            busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
            checkpoint = (await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar()
        return {"journal_mode": jm, "synchronous": sync, "busy_timeout": busy, "wal_autocheckpoint": checkpoint}

    async def dispose(self) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc: object) -> None:
        """``async with Database(url) as db:`` disposes the engines however the block ends."""
        await self.dispose()


def unpooled_engine(url: str) -> AsyncEngine:
    """An engine without a pool, for one-shot tools (migrations, imports)."""
    eng = create_async_engine(url, poolclass=NullPool)
    if make_url(url).get_backend_name() == "sqlite":
        event.listen(eng.sync_engine, "connect", _sqlite_pragmas)
    return eng
