"""How many trips a SQLite write transaction takes to aiosqlite's thread, and that it stays safe.

Why count: every ``await`` on an aiosqlite call is a hand-off to its worker thread
and back (a queue put, a thread wake-up, a self-pipe write to wake the event loop:
~30 µs of server CPU, more than a small statement), and a chat message's CPU on
SQLite was 2.4-2.7x the bare relay's (issue 15). Every transaction ended with one
trip too many: the pool's ``rollback()`` of a connection whose transaction had
just committed. Now the pool rolls back only a connection that comes back with a
transaction open (``kernel.db.database``). Counted on the writer's own
connection, so that a trip added back to the path fails this test.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite.core
import pytest

from kernel.db.database import Database


@pytest.fixture
async def sqlite_db(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "trips.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        yield db
    finally:
        await db.dispose()


async def _writer_driver(db: Database) -> Any:
    async with db.writer.connect() as conn:  # the writer pool holds one connection: always this one
        return (await conn.get_raw_connection()).driver_connection


def _count_trips(monkeypatch: pytest.MonkeyPatch, driver: Any, log: list[str]) -> None:
    """Log the function each trip to ``driver``'s thread runs (aiosqlite's one way there)."""
    real: Any = aiosqlite.core.Connection._execute

    async def counting(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self is driver:
            log.append(getattr(fn, "__name__", type(fn).__name__))
        return await real(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.core.Connection, "_execute", counting)


async def test_a_write_transaction_is_its_begin_its_statements_and_its_commit(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = sqlite_db
    async with db.write() as conn:
        await conn.exec_driver_sql("CREATE TABLE scratch (v TEXT)")
    log: list[str] = []
    _count_trips(monkeypatch, await _writer_driver(db), log)
    async with db.write() as conn:
        driver: Any = (await conn.get_raw_connection()).driver_connection
        await driver.execute("INSERT INTO scratch (v) VALUES ('one')")
    assert log == ["execute", "execute", "commit"], log  # BEGIN IMMEDIATE, the insert, COMMIT: no rollback


async def test_a_connection_back_with_a_transaction_open_is_rolled_back(sqlite_db: Database) -> None:
    """The pool no longer rolls back every connection that comes back (``_rollback_if_open``):
    one returned in the middle of a transaction must still be, or its writes would commit with
    the next user's and its lock block every other writer."""
    db = sqlite_db
    async with db.write() as conn:
        await conn.exec_driver_sql("CREATE TABLE scratch (v TEXT)")
    async with db.writer.connect() as conn:
        driver: Any = (await conn.get_raw_connection()).driver_connection
        await driver.execute("BEGIN IMMEDIATE")
        await driver.execute("INSERT INTO scratch (v) VALUES ('left open')")
        assert driver.in_transaction
    async with db.write() as conn:  # BEGIN IMMEDIATE again on the same connection: fails if still open
        await conn.exec_driver_sql("INSERT INTO scratch (v) VALUES ('committed')")
    async with db.read() as conn:
        rows = await conn.exec_driver_sql("SELECT v FROM scratch")
        assert [v for (v,) in rows] == ["committed"]
