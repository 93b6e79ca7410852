"""One PostgreSQL connection held by one serial writer, its transactions on asyncpg's own BEGIN/COMMIT.

Why: the direct chat's send batches are written one at a time (group commit,
``messaging.batching``), each a transaction of two or three statements sent
straight to asyncpg. Through ``Database.write`` each batch also paid SQLAlchemy's
transaction around them — a pool checkout and check-in, the adapter's lazy
``BEGIN``, the commit, each through a greenlet hop — measured at 420–510 µs of
client CPU a batch against 90–157 µs for the same ``BEGIN``/``COMMIT`` on a
connection already held (BENCHMARKS.md, issue 15 item 1): at the eight or so
messages a batch carries at 3,000 msg/s, ~40 µs of a ~200 µs message. A writer
that never runs two transactions at once needs no pool between its batches.

What the pool gave and this keeps: a connection idle longer than
``ping_after_idle`` is pinged first and replaced if the server dropped it
(``kernel.db.database._ping_if_idle``); a connection that fails mid-transaction
(the server restarted, S6) is invalidated and the error comes back as
SQLAlchemy's ``DBAPIError(connection_invalidated=True)``, the retryable outage
``messaging.db_errors.with_db_retry`` turns into ``unavailable``; the next
transaction checks out a new one. A lock conflict comes back as asyncpg raised
it (its ``sqlstate`` is what ``with_db_retry`` retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.database import PING_AFTER_IDLE, Database

logger = logging.getLogger(__name__)

__all__ = ["OUTAGE_SQLSTATE_CLASSES", "HeldConnection"]

T = TypeVar("T")

#: SQLSTATE classes of a server going away or refusing (08 connection, 53 resources, 57 operator intervention).
#: One list for the held connection and ``messaging.db_errors`` (the pool's path): what one takes for an
#: outage (retryable ``unavailable``) the other must too.
OUTAGE_SQLSTATE_CLASSES = ("08", "53", "57")


def _is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection (or the server) is gone or unusable, not that the statement failed.

    ``InternalClientError`` is asyncpg's protocol refusing a statement while it is still in another
    state, e.g. a pooled connection that met the server's shutdown in the middle of a read and was
    handed out again ("cannot switch to state 15; another operation (2) is in progress", seen in S6
    with PostgreSQL shutting down): the connection cannot be used again, the database is not wrong.
    """
    if isinstance(
        exc,
        (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError, asyncpg.InternalClientError),
    ):
        return True
    state = getattr(exc, "sqlstate", None)
    return isinstance(state, str) and state[:2] in OUTAGE_SQLSTATE_CLASSES


class HeldConnection:
    """Transactions one after another on one connection of ``db``'s PostgreSQL pool, kept between them
    (PostgreSQL only; SQLite's one-trip transaction is ``Database.sqlite_write``).

    Not for concurrent use: callers serialise (the chat's ``Batcher`` runs one batch at a time).
    """

    def __init__(self, db: Database, *, ping_after_idle: float = PING_AFTER_IDLE) -> None:
        self._db = db
        self._idle = ping_after_idle
        self._conn: AsyncConnection | None = None
        self._driver: Any = None
        self._last = 0.0

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``fn(asyncpg_connection, *args)`` between ``BEGIN`` and ``COMMIT`` (a rollback if it raises).

        Raises:
            DBAPIError: with ``connection_invalidated=True`` when the connection broke (nothing committed
                that the caller was told of; a retry with the same keys is safe).
            Exception: what ``fn`` raised, after the rollback.
        """
        driver = await self._connection()
        try:
            async with driver.transaction():
                result = await fn(driver, *args)
        except asyncio.CancelledError:
            # Cancelled mid-transaction (a stop that did not wait): the connection's state is unknown.
            self._abandon()
            raise
        except Exception as exc:
            if not _is_outage(exc):
                self._last = time.monotonic()
                raise
            await self._drop(exc)
            raise DBAPIError(
                getattr(fn, "__name__", "held transaction"), None, exc, connection_invalidated=True
            ) from exc
        self._last = time.monotonic()
        return result

    async def close(self) -> None:
        """Give the connection back to the pool (at shutdown, after the writer stopped)."""
        conn, self._conn, self._driver = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _connection(self) -> Any:
        if self._conn is not None and time.monotonic() - self._last > self._idle:
            try:
                # Idle a while: the server may have dropped it meanwhile. The empty statement, prepared (as
                # SQLAlchemy's ping sends it): asyncpg's simple-query path fails on its empty answer.
                await self._driver.fetchrow(";")
            except Exception as exc:
                if not _is_outage(exc):
                    raise
                logger.info("held connection failed its ping; replacing it: %r", exc)
                await self._drop(exc)
        if self._conn is None:
            conn = await self._db.writer.connect()
            self._driver = (await conn.get_raw_connection()).driver_connection
            self._conn = conn
            self._last = time.monotonic()
        return self._driver

    async def _drop(self, exc: BaseException) -> None:
        """Invalidate the broken connection (the pool opens a new one) and forget it."""
        conn, self._conn, self._driver = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate(exc)
            with contextlib.suppress(Exception):
                await conn.close()

    def _abandon(self) -> None:
        """Close the socket of a connection left mid-transaction, without awaiting (during a cancellation).

        Its pool slot stays checked out until the pool is disposed: a cancellation reaches a batch only
        when the process stops without waiting for it (``Jobs.stop``'s grace ran out).
        """
        driver = self._driver
        self._conn, self._driver = None, None
        if driver is not None:
            driver.terminate()
