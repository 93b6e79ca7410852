"""Leases on rows: claim due work exactly once across processes, renew, fence, take over an expired claim.

Background work that every server process runs at once (DING steps, task
DING timers, finishing a notice's fan-out, the apps platform's webhook and
stream deliveries) claims its rows by writing a token and an expiry into
them. While the lease holds nobody else takes the row; the holder's later
writes are *fenced* (``WHERE claimed_by = token``), so a holder that
stalled past its lease and lost the row to another process changes nothing
(:class:`LeaseLost`); and once the lease expires anyone may take the row
over, which is how work left by a killed process is finished.

Claiming a batch of due rows is one short transaction: on PostgreSQL the
candidates are read ``FOR UPDATE SKIP LOCKED`` so concurrent claimers never
wait on or take each other's rows; on SQLite the single writer
(``BEGIN IMMEDIATE``) already serialises select-then-update.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.database import Database
from kernel.db.dialect import for_update

logger = logging.getLogger(__name__)

__all__ = ["LeaseLost", "Leases", "run_token"]


class LeaseLost(Exception):
    """Our claim expired and another process took the row: undo this transaction."""


def run_token(node_id: str) -> str:
    """A claim token naming this process and one run of it (fits the 64-character columns)."""
    return f"{node_id[:40]}:{secrets.token_hex(6)}"


@dataclass(frozen=True, slots=True)
class Leases:
    """The lease columns of one table and how long a claim lasts.

    Attributes:
        table: the table whose rows are claimed (its primary key column is ``id``).
        by: the claimer's token (NULL when unclaimed).
        until: when the claim expires (NULL when unclaimed); an expired claim is free.
        unfinished: true of rows whose work is not finished (``done_at IS NULL``,
            ``state = 'pending'``); finished rows are never claimed.
        duration: how long a claim is exclusive: longer than one run of the work takes.
        attempts: counts claims, when the table keeps a try count.
    """

    table: Table
    by: Any
    until: Any
    unfinished: ColumnElement[bool]
    duration: timedelta
    attempts: Any | None = None

    def free(self, now: datetime) -> ColumnElement[bool]:
        """Unclaimed, or claimed by someone whose lease has expired."""
        return or_(self.until.is_(None), self.until < now)

    async def abandoned(self, conn: AsyncConnection, now: datetime, limit: int = 20) -> list[int]:
        """Ids of unfinished rows nobody holds (their holder died or never was): work to take over, oldest first."""
        t = self.table
        q = select(t.c.id).where(self.unfinished, self.free(now)).order_by(t.c.id).limit(limit)
        return [int(r[0]) for r in await conn.execute(q)]

    async def finish_abandoned(self, db: Database, now: datetime, finish: Callable[[int], Awaitable[int]]) -> int:
        """Run ``finish`` on each abandoned row (a sweep that takes the lease itself); the sum of what it returns."""
        async with db.read() as conn:
            ids = await self.abandoned(conn, now)
        done = 0
        for row_id in ids:
            done += await finish(row_id)
        return done

    async def claim_due(
        self,
        conn: AsyncConnection,
        token: str,
        now: datetime,
        *,
        where: Sequence[ColumnElement[bool]],
        order_by: Sequence[Any],
        limit: int,
        returning: Sequence[Any],
    ) -> list[dict[str, Any]]:
        """Lease up to ``limit`` unfinished, free rows matching ``where`` to ``token``; returns ``returning`` of each.

        Counts an attempt on each claimed row when the table has ``attempts``.
        Call in a short transaction of its own: the lease, not the transaction, is the claim.
        """
        t = self.table
        free = self.free(now)
        q = select(t.c.id).where(self.unfinished, free, *where).order_by(*order_by).limit(limit)
        ids = [int(r[0]) for r in await conn.execute(for_update(conn, q, skip_locked=True))]
        if not ids:
            return []
        await self.lease(conn, ids, token, now)
        rows = await conn.execute(select(*returning).where(t.c.id.in_(ids), self.by == token).order_by(t.c.id))
        return [dict(r._mapping) for r in rows]

    async def lease(self, conn: AsyncConnection, ids: Sequence[int], token: str, now: datetime) -> None:
        """Lease these rows, picked by the caller's own query (locked ``FOR UPDATE``), to ``token``.

        For a claim whose choice of rows is more than ``where`` and ``limit`` (the apps
        platform's per-endpoint cap); counts an attempt when the table has ``attempts``.
        """
        t = self.table
        values: dict[str, Any] = {self.by.key: token, self.until.key: now + self.duration}
        if self.attempts is not None:
            values[self.attempts.key] = self.attempts + 1
        await conn.execute(update(t).where(t.c.id.in_(list(ids)), self.unfinished, self.free(now)).values(values))

    async def take(self, conn: AsyncConnection, row_id: int, token: str, now: datetime) -> bool:
        """Lease one unfinished row to ``token`` if it is free or already ours (which renews it)."""
        t = self.table
        res = await conn.execute(
            update(t)
            .where(t.c.id == row_id, self.unfinished, or_(self.by == token, self.free(now)))
            .values({self.by.key: token, self.until.key: now + self.duration})
        )
        return bool(res.rowcount)

    async def renew(self, conn: AsyncConnection, row_id: int, token: str, now: datetime) -> bool:
        """Extend our lease on one row; False when it is no longer ours."""
        t = self.table
        res = await conn.execute(
            update(t).where(t.c.id == row_id, self.by == token).values({self.until.key: now + self.duration})
        )
        return bool(res.rowcount)

    async def finish(
        self, conn: AsyncConnection, token: str, ids: Sequence[int], values: dict[str, Any], *, fenced: bool = True
    ) -> int:
        """Write ``values`` to our unfinished rows of ``ids`` (fenced by the token); returns how many.

        Raises:
            LeaseLost: with ``fenced``, when any of ``ids`` is no longer ours; the
                caller's transaction must roll back so the work is not recorded twice.
        """
        t = self.table
        res = await conn.execute(
            update(t).where(t.c.id.in_(list(ids)), self.by == token, self.unfinished).values(values)
        )
        if fenced and res.rowcount != len(ids):
            raise LeaseLost
        return int(res.rowcount)

    async def release(self, conn: AsyncConnection, token: str) -> int:
        """Give back every unfinished row ``token`` holds, free at once for the next claimer; returns how many."""
        t = self.table
        res = await conn.execute(
            update(t).where(self.by == token, self.unfinished).values({self.by.key: None, self.until.key: None})
        )
        return int(res.rowcount)
