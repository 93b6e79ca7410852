"""Row leases: a due row is claimed by one run only, an expired claim is taken over, a lost lease is fenced."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

from kernel.db.base import UTCDateTime
from kernel.db.database import Database
from kernel.db.types import ID
from messaging.leases import LeaseLost, Leases, run_token

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


@asynccontextmanager
async def _lease_table(db: Database) -> AsyncIterator[Leases]:
    """A table of its own (the PostgreSQL database is shared by the session), six rows due at T0."""
    table = Table(
        f"lease_test_{secrets.token_hex(4)}",
        MetaData(),
        Column("id", ID, primary_key=True),
        Column("due_at", UTCDateTime, nullable=False),
        Column("claimed_by", String(64)),
        Column("claimed_until", UTCDateTime),
        Column("done_at", UTCDateTime),
        Column("attempts", Integer, nullable=False, default=0),
    )
    async with db.write() as conn:
        await conn.run_sync(table.create)
        await conn.execute(insert(table), [{"id": i, "due_at": T0, "attempts": 0} for i in range(1, 7)])
    try:
        c = table.c
        yield Leases(table, c.claimed_by, c.claimed_until, c.done_at.is_(None), LEASE, attempts=c.attempts)
    finally:
        async with db.write() as conn:
            await conn.run_sync(table.drop)


@pytest.fixture
async def leases(db: Database) -> AsyncIterator[Leases]:
    async with _lease_table(db) as made:
        yield made


async def _claim(db: Database, leases: Leases, token: str, now: datetime, limit: int = 4) -> list[int]:
    c = leases.table.c
    async with db.write() as conn:
        rows = await leases.claim_due(
            conn, token, now, where=[c.due_at <= now], order_by=[c.id], limit=limit, returning=[c.id, c.attempts]
        )
    return [int(r["id"]) for r in rows]


async def test_each_due_row_goes_to_one_claimer(db: Database, leases: Leases) -> None:
    a, b, c = run_token("a"), run_token("b"), run_token("c")
    assert await _claim(db, leases, a, T0) == [1, 2, 3, 4]
    assert await _claim(db, leases, b, T0) == [5, 6]
    assert await _claim(db, leases, c, T0 + LEASE / 2) == []  # everything still leased


async def test_an_expired_claim_is_taken_over_and_the_old_holder_is_fenced(db: Database, leases: Leases) -> None:
    stalled, successor = run_token("stalled"), run_token("successor")
    assert await _claim(db, leases, stalled, T0, limit=2) == [1, 2]
    later = T0 + LEASE + timedelta(seconds=1)
    assert await _claim(db, leases, successor, later, limit=2) == [1, 2]

    with pytest.raises(LeaseLost):
        async with db.write() as conn:
            await leases.finish(conn, stalled, [1, 2], {"done_at": later})
    async with db.write() as conn:
        assert await leases.finish(conn, successor, [1, 2], {"done_at": later, "claimed_until": None}) == 2
    async with db.read() as conn:
        t = leases.table.c
        rows = (await conn.execute(select(t.id, t.claimed_by, t.attempts, t.done_at).where(t.id <= 2))).all()
    assert [(r.claimed_by, r.attempts, r.done_at) for r in rows] == [(successor, 2, later)] * 2
    assert await _claim(db, leases, run_token("third"), later + LEASE * 3) == [3, 4, 5, 6]  # done rows never again


async def test_take_renew_and_finish_one_row(db: Database, leases: Leases) -> None:
    mine, other = run_token("mine"), run_token("other")
    async with db.write() as conn:
        assert await leases.take(conn, 3, mine, T0)
        assert not await leases.take(conn, 3, other, T0 + LEASE / 2)
        assert await leases.take(conn, 3, mine, T0 + LEASE / 2)  # ours: renewed
        assert not await leases.renew(conn, 3, other, T0 + LEASE / 2)
        assert await leases.renew(conn, 3, mine, T0 + LEASE)
        assert not await leases.take(conn, 3, other, T0 + LEASE + LEASE / 2)  # the renewal holds
        assert await leases.finish(conn, other, [3], {"done_at": T0}, fenced=False) == 0
        assert await leases.finish(conn, mine, [3], {"done_at": T0}, fenced=False) == 1
        assert not await leases.take(conn, 3, other, T0 + LEASE * 10)  # finished: nobody takes it


@pytest.mark.postgres
async def test_a_claimer_skips_rows_another_is_claiming_instead_of_waiting(pg_database: str) -> None:
    db = Database(pg_database)
    try:
        async with _lease_table(db) as leases:
            c = leases.table.c
            async with db.write() as first:
                held = await leases.claim_due(  # not committed yet: the rows stay locked
                    first, run_token("first"), T0, where=[c.due_at <= T0], order_by=[c.id], limit=3, returning=[c.id]
                )
                second = await asyncio.wait_for(_claim(db, leases, run_token("second"), T0, limit=3), timeout=5)
            assert [int(r["id"]) for r in held] == [1, 2, 3]
            assert second == [4, 5, 6]
    finally:
        await db.dispose()
