"""How many trips a direct chat send batch takes to aiosqlite's thread on SQLite.

Why count: every ``await`` on an aiosqlite call is a hand-off to its worker thread
and back (a queue put, a thread wake-up, a self-pipe write to wake the event loop:
~30 µs of server CPU, more than a small statement), and a chat message's CPU on
SQLite was 2.4-2.9x the bare relay's (issue 15). A batch into a new chat took 8:
``BEGIN IMMEDIATE``, the reads, the chat's three statements (insert, read back,
memberships), the messages with their events, ``COMMIT``, and the pool's
``rollback()`` after the commit. Then 4: the chats created in the reads' trip and
the pool's rollback only for a connection that comes back with a transaction open
(``kernel.db.database``). Now 1: the whole batch, ``BEGIN IMMEDIATE`` to ``COMMIT``,
runs on the thread (``Database.sqlite_write``, ``messaging.chat._sqlite_batch``),
into a new chat or an existing one, a retry included. Counted on the writer's own
connection, so that a trip added back to the path fails this test.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite.core
import pytest

from kernel.clock import SystemClock
from kernel.db.database import Database
from kernel.errors import Forbidden, NotFound
from messaging.chat import ChatService, SendRequest
from messaging.events import EventLog
from messaging.unit_of_work import UnitOfWork
from messaging.wakeup import EventGroup


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


async def _people(db: Database, n: int) -> list[int]:
    async with db.write() as conn:
        ids = []
        for _ in range(n):
            res = await conn.exec_driver_sql(
                "INSERT INTO persons (login, name, password_hash, disabled, created_at)"
                " VALUES (?, ?, NULL, 0, '2026-01-01 00:00:00.000000') RETURNING id",
                (f"u{secrets.token_hex(5)}", "某人"),
            )
            ids.append(int(res.scalar_one()))
    return ids


async def test_trips_per_send_batch(sqlite_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    db = sqlite_db
    a, b, c = await _people(db, 3)
    woken: list[list[EventGroup]] = []
    chat = ChatService(UnitOfWork(db, EventLog(db), SystemClock(), woken.append))
    await chat.send(SendRequest(a, b, "warm", "first contact: creates the streams"))
    log: list[str] = []
    _count_trips(monkeypatch, await _writer_driver(db), log)

    first = await chat.send(SendRequest(a, c, "new", "a new chat"))
    new_chat, log[:] = list(log), []
    second = await chat.send(SendRequest(c, a, "old", "the same chat"))
    old_chat, log[:] = list(log), []
    retry = await chat.send(SendRequest(c, a, "old", "the same chat"))
    retried, log[:] = list(log), []
    await chat.close()

    # BEGIN IMMEDIATE, the reads with the new chat and its members, the messages with their events, COMMIT.
    assert new_chat == ["_in_immediate"], new_chat
    assert old_chat == ["_in_immediate"], old_chat
    assert retried == ["_in_immediate"], retried  # the stored message is read back on the same trip
    assert second.conversation_id == first.conversation_id
    assert (retry.message_id, retry.conversation_id, retry.duplicate) == (
        second.message_id,
        first.conversation_id,
        True,
    )
    assert retry.created_at == second.created_at and retry.created_at.tzinfo is not None
    async with db.read() as conn:
        members = await conn.exec_driver_sql(
            "SELECT person_id FROM conversation_members WHERE conversation_id = ? ORDER BY person_id",
            (first.conversation_id,),
        )
        assert [int(p) for (p,) in members] == sorted([a, c])
        last = await conn.exec_driver_sql(
            "SELECT last_message_id FROM conversations WHERE id = ?", (first.conversation_id,)
        )
        assert last.scalar_one() == second.message_id
    # Each message's two events went out after its commit: the sender's echo and the recipient's.
    assert [[p for p, _ in g.recipients] for groups in woken[1:] for g in groups] == [[a, c], [c, a]]


async def test_a_send_batch_does_not_create_a_chat_with_a_disabled_person(sqlite_db: Database) -> None:
    """The chats are created in the reads' trip, before the batch's checks run on the event loop:
    only for a pair whose two persons exist and are enabled, as before."""
    db = sqlite_db
    a, b, c = await _people(db, 3)
    async with db.write() as conn:
        await conn.exec_driver_sql("UPDATE persons SET disabled = 1 WHERE id = ?", (b,))
    chat = ChatService(UnitOfWork(db, EventLog(db), SystemClock(), lambda _groups: None))
    try:
        with pytest.raises(NotFound):
            await chat.send(SendRequest(a, b, "to-disabled", "x"))
        with pytest.raises(NotFound):
            await chat.send(SendRequest(a, a + b + c + 1000, "to-nobody", "x"))
        with pytest.raises(Forbidden):
            await chat.send(SendRequest(b, c, "from-disabled", "x"))
    finally:
        await chat.close()
    async with db.read() as conn:
        chats = await conn.exec_driver_sql("SELECT count(*) FROM conversations WHERE kind = 'direct'")
        assert chats.scalar_one() == 0


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


async def test_sqlite_write_rolls_back_when_its_function_fails(sqlite_db: Database) -> None:
    """``Database.sqlite_write`` ends its own transaction: a failing function leaves nothing
    written and the connection free for the next writer; a driver error comes back as
    SQLAlchemy's (a "database is locked" is then the retryable outage, ``messaging/db_errors.py``)."""
    import sqlite3

    from sqlalchemy.exc import IntegrityError

    db = sqlite_db
    async with db.write() as conn:
        await conn.exec_driver_sql("CREATE TABLE scratch (v TEXT UNIQUE)")

    def insert_then(db3: sqlite3.Connection, v: str, fail: BaseException | None) -> int:
        db3.execute("INSERT INTO scratch (v) VALUES (?)", (v,))
        if fail is not None:
            raise fail
        return int(db3.execute("SELECT count(*) FROM scratch").fetchone()[0])

    with pytest.raises(LookupError):
        await db.sqlite_write(insert_then, "gone", LookupError("the change failed"))
    assert await db.sqlite_write(insert_then, "kept", None) == 1
    with pytest.raises(IntegrityError):
        await db.sqlite_write(insert_then, "kept", None)
    async with db.write() as conn:  # BEGIN IMMEDIATE on the same connection: fails if left open
        await conn.exec_driver_sql("INSERT INTO scratch (v) VALUES ('after')")
    async with db.read() as conn:
        rows = await conn.exec_driver_sql("SELECT v FROM scratch ORDER BY v")
        assert [v for (v,) in rows] == ["after", "kept"]
