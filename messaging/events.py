"""Per-person event streams: gap-free sequence numbers and paged sync.

Every event a person receives gets the next number of that person's stream.
Numbers are allocated inside the writing transaction while holding the
stream rows locked in ascending ``person_id`` order, so on PostgreSQL a
higher number can never commit before a lower one (the trap STYLE.md lesson 5
warns about) and concurrent writers cannot deadlock on each other's rows.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from messaging.schema import person_events, person_streams
from messaging.wakeup import EventGroup
from org_tree.db.database import Database
from org_tree.db.dialect import chunks, insert_ignore
from org_tree.errors import ErrorCode, ResyncRequired

logger = logging.getLogger(__name__)

__all__ = ["EventLog", "NewEvent", "SyncPage", "StreamState"]

MAX_PAGE = 500
_CHUNK = 5_000


@dataclass(slots=True)
class NewEvent:
    """An event to append to the streams of ``recipients``; ``payload`` is JSON text."""

    kind: str
    payload: str
    recipients: Sequence[int]


@dataclass(frozen=True, slots=True)
class StreamState:
    epoch: str
    last_seq: int
    min_seq: int


@dataclass(frozen=True, slots=True)
class SyncPage:
    epoch: str
    #: (seq, kind, payload) in increasing seq order, without gaps.
    events: list[tuple[int, str, str]]
    #: Cursor to pass as ``since`` for the next page.
    next_since: int
    #: True when more events exist after this page.
    limited: bool
    last_seq: int


def _new_epoch() -> str:
    return secrets.token_hex(4)


class EventLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, conn: AsyncConnection, events: Sequence[NewEvent], now: datetime) -> list[EventGroup]:
        """Append ``events`` inside the caller's transaction; returns wake-up groups.

        Must be called once per transaction, after the other writes, so the
        stream locks are held for as short a time as possible.
        """
        persons = sorted({p for e in events for p in e.recipients})
        if not persons:
            return []
        last = await self._lock_streams(conn, persons)
        groups: list[EventGroup] = []
        rows: list[dict[str, object]] = []
        for ev in events:
            group = EventGroup(ev.kind, ev.payload)
            for pid in dict.fromkeys(ev.recipients):
                seq = last[pid] + 1
                last[pid] = seq
                group.recipients.append((pid, seq))
                rows.append({"person_id": pid, "seq": seq, "kind": ev.kind, "payload": ev.payload, "created_at": now})
            groups.append(group)
        stmt = (
            update(person_streams)
            .where(person_streams.c.person_id == bindparam("pid"))
            .values(last_seq=bindparam("seq"))
        )
        for part in chunks([{"pid": p, "seq": s} for p, s in last.items()], _CHUNK):
            await conn.execute(stmt, part)
        for part in chunks(rows, _CHUNK):
            await conn.execute(insert(person_events), part)
        return groups

    async def _lock_streams(self, conn: AsyncConnection, persons: list[int]) -> dict[int, int]:
        last: dict[int, int] = {}
        for part in chunks(persons, _CHUNK):
            locked = await self._select_for_update(conn, part)
            missing = [p for p in part if p not in locked]
            if missing:
                # A person's first event creates the stream row (then it is locked like the rest).
                await conn.execute(
                    insert_ignore(conn, person_streams, ["person_id"]),
                    [{"person_id": p, "epoch": _new_epoch(), "last_seq": 0, "min_seq": 1} for p in missing],
                )
                locked.update(await self._select_for_update(conn, missing))
            last.update(locked)
        return last

    @staticmethod
    async def _select_for_update(conn: AsyncConnection, persons: list[int]) -> dict[int, int]:
        res = await conn.execute(
            select(person_streams.c.person_id, person_streams.c.last_seq)
            .where(person_streams.c.person_id.in_(persons))
            .order_by(person_streams.c.person_id)
            .with_for_update()
        )
        return {int(p): int(s) for p, s in res}

    async def state(self, person_id: int) -> StreamState:
        """The stream's position, creating the stream on a person's very first connection.

        Creating it here (once per person, ever) gives the client the epoch it
        will keep; handing out a placeholder would force a resync later.
        """
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    select(person_streams.c.epoch, person_streams.c.last_seq, person_streams.c.min_seq).where(
                        person_streams.c.person_id == person_id
                    )
                )
            ).first()
        if row is None:
            return await self._create_stream(person_id)
        return StreamState(row[0], int(row[1]), int(row[2]))

    async def _create_stream(self, person_id: int) -> StreamState:
        async with self._db.write() as conn:
            await conn.execute(
                insert_ignore(conn, person_streams, ["person_id"]),
                [{"person_id": person_id, "epoch": _new_epoch(), "last_seq": 0, "min_seq": 1}],
            )
            row = (
                await conn.execute(
                    select(person_streams.c.epoch, person_streams.c.last_seq, person_streams.c.min_seq).where(
                        person_streams.c.person_id == person_id
                    )
                )
            ).one()
        return StreamState(row[0], int(row[1]), int(row[2]))

    async def heads(self, person_ids: Sequence[int]) -> dict[int, int]:
        """Last committed seq of each given person (one query per 5,000), for the safety poll."""
        out: dict[int, int] = {}
        async with self._db.read() as conn:
            for part in chunks(sorted(set(person_ids)), _CHUNK):
                res = await conn.execute(
                    select(person_streams.c.person_id, person_streams.c.last_seq).where(
                        person_streams.c.person_id.in_(part)
                    )
                )
                out.update({int(p): int(s) for p, s in res})
        return out

    async def read(self, person_id: int, *, epoch: str | None, since: int, limit: int = MAX_PAGE) -> SyncPage:
        """Events after ``since``, oldest first.

        Raises:
            ResyncRequired: the epoch is not the stream's, the cursor is ahead
                of the stream, or events after it were pruned. The client must
                reload state; it is never silently told "nothing new".
        """
        limit = max(1, min(limit, MAX_PAGE))
        st = await self.state(person_id)
        reason = None
        if epoch is not None and epoch != st.epoch and (since > 0 or st.min_seq > 1):
            reason = "epoch changed"
        elif since < 0 or since > st.last_seq:
            reason = "cursor is not in this stream"
        elif since + 1 < st.min_seq:
            reason = "events after the cursor were pruned"
        if reason is not None:
            raise ResyncRequired(
                f"cannot resume: {reason}",
                code=ErrorCode.RESYNC_REQUIRED,
                data={"epoch": st.epoch, "last_seq": st.last_seq},
            )
        async with self._db.read() as conn:
            res = await conn.execute(
                select(person_events.c.seq, person_events.c.kind, person_events.c.payload)
                .where(and_(person_events.c.person_id == person_id, person_events.c.seq > since))
                .order_by(person_events.c.seq)
                .limit(limit + 1)
            )
            rows = [(int(s), k, p) for s, k, p in res]
        limited = len(rows) > limit
        rows = rows[:limit]
        next_since = rows[-1][0] if rows else since
        return SyncPage(st.epoch, rows, next_since, limited, st.last_seq)

    async def prune_before(self, cutoff: datetime) -> int:
        """Drop events older than ``cutoff`` (retention) and raise each stream's floor."""
        async with self._db.write() as conn:
            res = await conn.execute(
                select(person_events.c.person_id, person_events.c.seq)
                .where(person_events.c.created_at < cutoff)
                .order_by(person_events.c.person_id, person_events.c.seq.desc())
            )
            floors: dict[int, int] = {}
            for pid, seq in res:
                floors.setdefault(int(pid), int(seq) + 1)
            if not floors:
                return 0
            deleted = 0
            for pid, floor in floors.items():
                r = await conn.execute(
                    delete(person_events).where(person_events.c.person_id == pid, person_events.c.seq < floor)
                )
                deleted += r.rowcount
                await conn.execute(
                    update(person_streams).where(person_streams.c.person_id == pid).values(min_seq=floor)
                )
        return deleted
