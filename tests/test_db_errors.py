"""Database overload and outage errors reach clients as the retryable ``unavailable``, never a 500."""

from __future__ import annotations

import secrets
from contextlib import AsyncExitStack

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from kernel.db.database import Database
from kernel.errors import Unavailable
from messaging.db_errors import as_unavailable, with_db_retry

pytestmark = pytest.mark.postgres


async def test_an_exhausted_pool_is_unavailable_not_internal(pg_database: str) -> None:
    db = Database(pg_database, pool_size=1, pool_timeout=0.2)  # 1 pooled + 2 overflow connections
    try:
        async with AsyncExitStack() as held:
            for _ in range(3):
                _ = await held.enter_async_context(db.read())

            async def one_more() -> int:
                async with db.read() as conn:
                    return int((await conn.execute(text("SELECT 1"))).scalar_one())

            with pytest.raises(Unavailable):
                await with_db_retry(one_more)
        assert await with_db_retry(one_more) == 1  # connections back: served again
    finally:
        await db.dispose()


async def test_a_full_server_is_unavailable_not_internal(pg_database: str) -> None:
    """ "too many clients" (SQLSTATE class 53) is the database being full: the retryable 503 (S9)."""
    role = f"zzd_lim_{secrets.token_hex(4)}"
    admin = Database(pg_database)
    async with admin.write() as conn:
        await conn.execute(text(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 1"))
    limited_url = pg_database.replace("postgres@", f"{role}@", 1)
    holder, db = Database(limited_url), Database(limited_url)
    try:
        async with holder.read():  # the role's only connection
            with pytest.raises(DBAPIError) as caught:
                async with db.read() as conn:
                    await conn.execute(text("SELECT 1"))
            busy = as_unavailable(caught.value)
            assert isinstance(busy, Unavailable) and busy.http_status == 503
    finally:
        await holder.dispose()
        await db.dispose()
        async with admin.write() as conn:
            await conn.execute(text(f"DROP ROLE {role}"))
        await admin.dispose()


def test_a_constraint_violation_is_not_an_outage() -> None:
    err = IntegrityError("INSERT", {}, Exception("duplicate key value violates unique constraint"))
    assert as_unavailable(err) is None
    assert as_unavailable(ValueError("bad")) is None


async def _backend_pid(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(url: str, pid: int) -> None:
    async with Database(url) as admin, admin.write() as conn:
        await conn.execute(text("SELECT pg_terminate_backend(:p, 5000)"), {"p": pid})


async def test_an_idle_pooled_connection_the_server_dropped_is_replaced_unseen(pg_database: str) -> None:
    """Past ``ping_after_idle`` a connection is pinged on checkout, and a dead one is swapped for a new one."""
    async with Database(pg_database, pool_size=1, ping_after_idle=0.0) as db:
        first = await _backend_pid(db)
        await _terminate(pg_database, first)
        assert await _backend_pid(db) != first  # no error reached the caller


async def test_a_busy_pooled_connection_is_not_pinged_and_a_dead_one_fails_once_retryably(pg_database: str) -> None:
    """Within ``ping_after_idle`` no ping (no extra round trips); the dead connection's statement is the
    retryable ``unavailable``, and SQLAlchemy's invalidation of the pool serves the next call afresh."""
    async with Database(pg_database, pool_size=1, ping_after_idle=3600.0) as db:
        first = await _backend_pid(db)
        await _terminate(pg_database, first)
        with pytest.raises(Unavailable):
            await with_db_retry(lambda: _backend_pid(db))
        assert await with_db_retry(lambda: _backend_pid(db)) != first


class _LockConflict(Exception):
    sqlstate = "40P01"  # deadlock_detected, as the driver reports it on the bulk paths


async def test_lock_conflicts_are_retried_up_to_four_attempts_in_all() -> None:
    """The first attempt runs outside tenacity (no retry objects for the common case); the count is unchanged."""
    calls: list[int] = []

    async def conflicts_three_times() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise _LockConflict("deadlock detected")
        return "committed"

    assert await with_db_retry(conflicts_three_times) == "committed"
    assert len(calls) == 4

    calls.clear()

    async def always_conflicts() -> str:
        calls.append(1)
        raise _LockConflict("deadlock detected")

    with pytest.raises(_LockConflict):
        await with_db_retry(always_conflicts)
    assert len(calls) == 4


async def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    async def fails() -> None:
        calls.append(1)
        raise ValueError("a bug, not a conflict")

    with pytest.raises(ValueError):
        await with_db_retry(fails)
    assert calls == [1]
