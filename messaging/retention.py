"""Retention: old per-person events, published outbox rows and (when asked) notice receipts are deleted.

Why: every send leaves one event row per recipient, every change an outbox
row. Kept forever the tables only grow; reads stay index lookups (a stream is
read by ``(person_id, seq)``), but storage, vacuum and backups grow with them
(issue 15 item 6). What a retention pass removes is by age, under settings:

- **events** older than ``event_days``: each stream's ``min_seq`` is raised past
  the newest deleted event, so a client whose cursor is below it gets
  ``resync_required`` (docs/protocol.md), never a silently shortened page;
- **outbox rows** published more than ``outbox_days`` ago (those still needed
  by a pending app delivery are kept: the predicate comes from the caller, the
  apps layer, see :data:`OutboxSweep`);
- **notice receipts** of notices sent more than ``receipt_days`` ago, only when
  that is set: receipts are the record of who read and acknowledged, which an
  office may have to keep; the notice row stays, its progress becomes empty.

Every process runs the job; one of them does a pass at a time, holding the
lease of a row in ``maintenance_leases`` (:class:`~messaging.leases.Leases`).
Work goes in short transactions of at most ``chunk`` persons (or rows), with
the cursor stored in the lease row and written fenced by the claim, so a
process that stalls and loses the lease changes nothing, and a killed
process's pass is continued by the next holder from where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, exists, func, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.clock import Clock
from kernel.db.database import Database
from kernel.db.dialect import insert_ignore
from messaging.leases import LeaseLost, Leases, run_token
from messaging.notices.schema import notice_receipts, notices
from messaging.schema import maintenance_leases, person_events, person_streams

logger = logging.getLogger(__name__)

__all__ = ["OutboxSweep", "Retention", "RetentionPass", "prune_streams"]

#: Deletes up to ``limit`` outbox rows published before the cutoff; returns how many.
OutboxSweep = Callable[[AsyncConnection, datetime, int], Awaitable[int]]

_LEASE = "retention"
_LEASES = Leases(
    maintenance_leases,
    by=maintenance_leases.c.claimed_by,
    until=maintenance_leases.c.leased_until,
    unfinished=true(),  # a housekeeping job is never finished
    duration=timedelta(minutes=2),
)


@dataclass(frozen=True, slots=True)
class RetentionPass:
    """What one call of :meth:`Retention.run` deleted (``ran`` false: another process holds the lease)."""

    ran: bool
    events: int = 0
    streams: int = 0
    outbox: int = 0
    receipts: int = 0
    complete: bool = False


#: Events of one stream one chunk looks at, from its floor up; a longer backlog goes in later passes.
WINDOW = 1000
#: Most event rows one statement reads to find the streams' new floors. Why: ``created_at`` is read
#: from the table (it has no index), so a chunk of 1,000 streams each with a full window read up to
#: a million rows in one statement; on a 50-million-row table that did not fit the 10 s statement
#: timeout, and the pass failed on every attempt (bench/event_growth.py --large 50000000).
ROWS_PER_STATEMENT = 100_000


async def prune_streams(
    conn: AsyncConnection,
    after_person: int,
    limit: int,
    cutoff: datetime,
    *,
    window: int = WINDOW,
    rows_per_statement: int = ROWS_PER_STATEMENT,
) -> tuple[int | None, int, int]:
    """Prune the streams of the next ``limit`` persons after ``after_person``.

    Returns the last person looked at (None when there were none: the pass is
    complete), the events deleted and the streams whose floor moved. Each
    stream loses its events up to the newest one older than ``cutoff`` among
    the ``window`` above its floor, so what stays is gap-free above the raised
    ``min_seq``; stream rows are locked in ascending person order, the order
    appends lock them in.

    Why the two steps: ``created_at`` has no index (it would cost every append
    one more index entry). A stream's oldest retained event is found by its
    primary key (``seq = min_seq``); only streams whose oldest event is past
    the cutoff are read further, and only ``window`` rows of each, in statements
    of at most ``rows_per_statement`` rows. A pass over every stream then costs
    one key lookup per person, not a read of the table.
    """
    s, e = person_streams, person_events
    persons = [
        int(pid)
        for pid in (
            await conn.execute(
                select(s.c.person_id).where(s.c.person_id > after_person).order_by(s.c.person_id).limit(limit)
            )
        ).scalars()
    ]
    if not persons:
        return None, 0, 0
    old = (
        select(s.c.person_id, s.c.min_seq)
        .join(e, (e.c.person_id == s.c.person_id) & (e.c.seq == s.c.min_seq))
        .where(s.c.person_id.in_(persons), e.c.created_at < cutoff)
    )
    floor_of = {int(pid): int(floor) for pid, floor in await conn.execute(old)}
    if not floor_of:
        return persons[-1], 0, 0
    floors: list[dict[str, int]] = []
    old_streams = sorted(floor_of)
    step = max(1, rows_per_statement // window)
    for at in range(0, len(old_streams), step):
        floors += [
            {"pid": int(pid), "top": int(top)}
            for pid, top in await conn.execute(
                select(e.c.person_id, func.max(e.c.seq))
                .join(s, s.c.person_id == e.c.person_id)
                .where(
                    e.c.person_id.in_(old_streams[at : at + step]),
                    e.c.seq >= s.c.min_seq,
                    e.c.seq < s.c.min_seq + window,
                    e.c.created_at < cutoff,
                )
                .group_by(e.c.person_id)
                .order_by(e.c.person_id)
            )
        ]
    await conn.execute(delete(e).where(e.c.person_id == bindparam("pid"), e.c.seq <= bindparam("top")), floors)
    # Streams are gap-free from min_seq up (executemany reports no row count on every driver).
    deleted = sum(f["top"] - floor_of[f["pid"]] + 1 for f in floors)
    await conn.execute(
        update(s)
        .where(s.c.person_id == bindparam("pid"), s.c.min_seq <= bindparam("top"))
        .values(min_seq=bindparam("top") + 1),
        floors,
    )
    return persons[-1], deleted, len(floors)


class Retention:
    """The leased retention pass (one process at a time, resumable from its stored cursor)."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        node_id: str,
        event_days: int,
        outbox_days: int,
        receipt_days: int | None = None,
        outbox_sweep: OutboxSweep | None = None,
        chunk: int = 1000,
        max_chunks: int = 50,
        pass_every: timedelta = timedelta(hours=1),
    ) -> None:
        self._db = db
        self._clock = clock
        self._token = run_token(node_id)
        self.event_days = event_days
        self.outbox_days = outbox_days
        self.receipt_days = receipt_days
        self._outbox_sweep = outbox_sweep
        self._chunk = chunk
        self._max_chunks = max_chunks
        self.pass_every = pass_every

    async def run(self) -> RetentionPass:
        """Continue the current pass for at most ``max_chunks`` chunks while holding the lease."""
        now = self._clock.now()
        async with self._db.write() as conn:
            await conn.execute(insert_ignore(conn, maintenance_leases, ["name"]).values(name=_LEASE, cursor=0, id=1))
            if not await _LEASES.take(conn, 1, self._token, now):
                return RetentionPass(ran=False)
            m = maintenance_leases
            cursor, passed_at = (await conn.execute(select(m.c.cursor, m.c.passed_at).where(m.c.id == 1))).one()
            cursor = int(cursor)
            if cursor == 0 and passed_at is not None and passed_at > now - self.pass_every:
                return RetentionPass(ran=True, complete=True)  # the last pass is recent enough
        events = streams = outbox = receipts = 0
        complete = False
        cutoff = now - timedelta(days=self.event_days)
        for _ in range(self._max_chunks):
            try:
                async with self._db.write() as conn:
                    last, n, moved = await prune_streams(conn, cursor, self._chunk, cutoff)
                    cursor = 0 if last is None else last
                    done = {"cursor": cursor, **({"passed_at": self._clock.now()} if last is None else {})}
                    await _LEASES.finish(conn, self._token, [1], done)
                    await _LEASES.renew(conn, 1, self._token, self._clock.now())
            except LeaseLost:
                logger.warning("retention lease lost to another process; it continues the pass")
                return RetentionPass(True, events, streams, outbox, receipts, False)
            events += n
            streams += moved
            if last is None:
                complete = True
                break
        if complete:
            outbox = await self._sweep_outbox(now)
            receipts = await self._sweep_receipts(now)
        if events or outbox or receipts:
            logger.info("retention: %d events (%d streams), %d outbox rows, %d receipts deleted",
                        events, streams, outbox, receipts)  # fmt: skip
        return RetentionPass(True, events, streams, outbox, receipts, complete)

    async def run_until_complete(self) -> RetentionPass:
        """Passes until every stream was looked at once (the CLI's ``zzd maintenance prune``)."""
        total = RetentionPass(ran=False)
        while True:
            step = await self.run()
            if not step.ran:
                return total
            total = RetentionPass(
                True,
                total.events + step.events,
                total.streams + step.streams,
                total.outbox + step.outbox,
                total.receipts + step.receipts,
                step.complete,
            )
            if step.complete:
                return total

    async def _sweep_outbox(self, now: datetime) -> int:
        if self._outbox_sweep is None:
            return 0
        cutoff, deleted = now - timedelta(days=self.outbox_days), 0
        for _ in range(self._max_chunks):
            async with self._db.write() as conn:
                n = await self._outbox_sweep(conn, cutoff, self._chunk)
            deleted += n
            if n < self._chunk:
                break
        return deleted

    async def _sweep_receipts(self, now: datetime) -> int:
        if self.receipt_days is None:
            return 0
        cutoff, deleted = now - timedelta(days=self.receipt_days), 0
        n, r = notices, notice_receipts
        for _ in range(self._max_chunks):
            async with self._db.write() as conn:
                ids = [
                    int(i)
                    for i in (
                        await conn.execute(
                            select(n.c.id)
                            .where(n.c.created_at < cutoff, exists().where(r.c.notice_id == n.c.id))
                            .order_by(n.c.id)
                            .limit(10)
                        )
                    ).scalars()
                ]
                if not ids:
                    break
                deleted += int((await conn.execute(delete(r).where(r.c.notice_id.in_(ids)))).rowcount)
        return deleted
