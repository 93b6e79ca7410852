"""``kernel.db.held.HeldConnection``: the chat's send batches on one connection kept between them.

What the pool did for each batch must still hold with the connection held: a connection the server
dropped while it sat idle is replaced without the caller seeing it; one that breaks mid-batch is the
retryable ``unavailable`` once, and the next batch runs on a new one; a batch that fails writes
nothing and leaves the connection usable; the connection is the same one from batch to batch (the
point of holding it), and it goes back to the pool at close.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from kernel.db.database import Database
from kernel.db.held import HeldConnection
from kernel.errors import Unavailable
from messaging.db_errors import with_db_retry

pytestmark = pytest.mark.postgres


async def _pid(driver: Any) -> int:
    return int(await driver.fetchval("SELECT pg_backend_pid()"))


async def _terminate(url: str, pid: int) -> None:
    async with Database(url) as admin, admin.write() as conn:
        await conn.execute(text("SELECT pg_terminate_backend(:p, 5000)"), {"p": pid})


async def _in_transaction(driver: Any) -> bool:
    return bool(driver.is_in_transaction())


async def test_one_connection_is_kept_between_transactions_and_given_back_at_close(pg_database: str) -> None:
    async with Database(pg_database, pool_size=1) as db:
        held = HeldConnection(db, ping_after_idle=3600.0)
        first = await held.run(_pid)
        assert [await held.run(_pid) for _ in range(3)] == [first] * 3
        assert await held.run(_in_transaction)  # fn runs inside BEGIN … COMMIT
        pool = db.writer.sync_engine.pool
        assert pool.checkedout() == 1  # type: ignore[attr-defined]
        await held.close()
        assert pool.checkedout() == 0  # type: ignore[attr-defined]
        async with db.write() as conn:  # the pool's one connection is the one the held writer gave back
            assert int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()) == first


async def test_a_failing_transaction_writes_nothing_and_the_connection_stays(pg_database: str) -> None:
    async with Database(pg_database, pool_size=1) as db:
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE held_probe (v int)"))
        held = HeldConnection(db, ping_after_idle=3600.0)
        first = await held.run(_pid)

        async def insert_then_fail(driver: Any) -> None:
            await driver.execute("INSERT INTO held_probe VALUES (1)")
            raise ValueError("the batch's own error")

        with pytest.raises(ValueError, match="the batch's own error"):
            await held.run(insert_then_fail)
        with pytest.raises(Exception, match="held_probe_nope"):  # a statement's error: not an outage
            await held.run(lambda d: d.execute("INSERT INTO held_probe_nope VALUES (1)"))
        assert await held.run(lambda d: d.fetchval("SELECT count(*) FROM held_probe")) == 0
        assert await held.run(_pid) == first
        await held.close()


async def test_an_idle_held_connection_the_server_dropped_is_replaced_unseen(pg_database: str) -> None:
    async with Database(pg_database, pool_size=1) as db:
        held = HeldConnection(db, ping_after_idle=0.0)  # every run after the first pings first
        first = await held.run(_pid)
        # a live connection passes its ping and is kept (asyncpg's simple query failed on the empty statement)
        assert [await held.run(_pid) for _ in range(3)] == [first] * 3
        await _terminate(pg_database, first)
        assert await held.run(_pid) != first  # no error reached the caller
        await held.close()


async def test_a_busy_held_connection_that_broke_is_unavailable_once_then_replaced(pg_database: str) -> None:
    async with Database(pg_database, pool_size=1) as db:
        held = HeldConnection(db, ping_after_idle=3600.0)  # no ping: the break is met by the batch itself
        first = await held.run(_pid)
        await _terminate(pg_database, first)
        with pytest.raises(Unavailable):
            await with_db_retry(lambda: held.run(_pid))
        second = await with_db_retry(lambda: held.run(_pid))
        assert second != first
        assert db.writer.sync_engine.pool.checkedout() == 1  # type: ignore[attr-defined]  # the broken one went
        await held.close()


async def test_a_connection_whose_protocol_is_stuck_is_unavailable_once_then_replaced(pg_database: str) -> None:
    """A pooled connection handed out while asyncpg's protocol is still in another operation (S6: a
    read met the server's shutdown) refuses every statement with ``InternalClientError``: that is the
    retryable outage for the batch, and the next one runs on a new connection (it was a 500)."""
    async with Database(pg_database, pool_size=1) as db:
        held = HeldConnection(db, ping_after_idle=3600.0)
        first = await held.run(_pid)

        async def stuck(driver: Any) -> None:
            raise asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress")

        with pytest.raises(Unavailable):
            await with_db_retry(lambda: held.run(stuck))
        assert await held.run(_pid) != first
        await held.close()
