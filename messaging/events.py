"""Per-person event streams: gap-free sequence numbers and paged sync.

Every event a person receives gets the next number of that person's stream.
Numbers are allocated inside the writing transaction while holding the
stream rows locked in ascending ``person_id`` order, so on PostgreSQL a
higher number can never commit before a lower one (the trap docs/style.md lesson 5
warns about) and concurrent writers cannot deadlock on each other's rows.
"""

from __future__ import annotations

import gc
import json
import logging
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.database import Database, in_sqlite_thread
from kernel.db.dialect import chunks, driver_fetch, insert_ignore, is_postgres
from kernel.errors import ErrorCode, ResyncRequired
from messaging.db_errors import with_db_retry
from messaging.schema import person_events, person_streams
from messaging.wakeup import EventGroup
from org_tree.bulk import SMALL_ROWS, bulk_insert

logger = logging.getLogger(__name__)

__all__ = [
    "EventLog", "NewEvent", "StreamState", "SyncPage", "driver_in_transaction", "number_events", "paused_gc",
    "pg_append", "sqlite_time",
]  # fmt: skip

MAX_PAGE = 500
_CHUNK = 5_000
_EVENT_COLUMNS = ("person_id", "seq", "kind", "payload", "created_at")

# Bulk path, PostgreSQL. The locking subselect takes the row locks in
# ascending person_id order (LockRows sits above the Sort), the same order
# ``append`` locks in, so a bulk append and a chat message cannot deadlock.
_PG_BUMP = """
WITH locked AS MATERIALIZED (
    SELECT person_id FROM person_streams
    WHERE person_id = ANY($1::bigint[]) ORDER BY person_id FOR UPDATE
)
UPDATE person_streams AS s SET last_seq = s.last_seq + 1
FROM locked WHERE s.person_id = locked.person_id
RETURNING s.person_id, s.last_seq
"""
_PG_CREATE = """
INSERT INTO person_streams (person_id, epoch, last_seq, min_seq)
SELECT p, substr(md5(random()::text || p::text), 1, 8), 0, 1 FROM unnest($1::bigint[]) AS p ORDER BY p
ON CONFLICT (person_id) DO NOTHING
"""
_PG_MISSING = """
SELECT p FROM unnest($1::bigint[]) AS p
WHERE NOT EXISTS (SELECT 1 FROM person_streams s WHERE s.person_id = p)
"""
# Created already holding their first event (seq 1); RETURNING lists only the rows
# inserted, not those another transaction created first.
_PG_CREATE_AT_ONE = """
INSERT INTO person_streams (person_id, epoch, last_seq, min_seq)
SELECT p, substr(md5(random()::text || p::text), 1, 8), 1, 1 FROM unnest($1::bigint[]) AS p ORDER BY p
ON CONFLICT (person_id) DO NOTHING
RETURNING person_id
"""
_PG_STATES = "SELECT person_id, epoch, last_seq, min_seq FROM person_streams WHERE person_id = ANY($1::bigint[])"
_SQLITE_STATES = (
    "SELECT person_id, epoch, last_seq, min_seq FROM person_streams WHERE person_id IN (SELECT value FROM json_each(?))"
)
# Catch-up pages of many sockets at once: request i reads seqs (lo, hi] of its person. Streams are
# gap-free, so that range is exactly the page after the cursor (and one more, to tell "limited").
_PG_PAGES = (
    "SELECT r.i, e.seq, e.kind, e.payload"
    " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) WITH ORDINALITY AS r(pid, lo, hi, i)"
    " JOIN person_events e ON e.person_id = r.pid AND e.seq > r.lo AND e.seq <= r.hi ORDER BY r.i, e.seq"
)
_SQLITE_PAGES = (
    "SELECT r.key, e.seq, e.kind, e.payload FROM json_each(?) AS r"
    " JOIN person_events e ON e.person_id = json_extract(r.value, '$[0]')"
    " AND e.seq > json_extract(r.value, '$[1]') AND e.seq <= json_extract(r.value, '$[2]') ORDER BY r.key, e.seq"
)
# Append (every unit of work): lock in ascending person_id order, set the heads, insert the events.
_PG_LOCK_HEADS = (
    "SELECT person_id, last_seq FROM person_streams WHERE person_id = ANY($1::bigint[]) ORDER BY person_id FOR UPDATE"
)
_PG_SET_HEADS = """
UPDATE person_streams AS s SET last_seq = v.seq
FROM unnest($1::bigint[], $2::bigint[]) AS v(pid, seq) WHERE s.person_id = v.pid
"""
_PG_INSERT_EVENTS = """
INSERT INTO person_events (person_id, seq, kind, payload, created_at)
SELECT p, q, k, d, $7 FROM unnest($3::bigint[], $4::bigint[], $5::text[], $6::text[]) AS v(p, q, k, d)
"""
# Both writes of an append in one round trip (a data-modifying WITH runs to completion
# whether or not it is read): each statement costs the server ~0.1 ms of CPU, and an
# append runs for every chat batch, notice fan-out and task.
_PG_APPEND = f"WITH heads AS ({_PG_SET_HEADS}) {_PG_INSERT_EVENTS}"  # noqa: S608
_SQLITE_SELECT_HEADS = (
    "SELECT person_id, last_seq FROM person_streams WHERE person_id IN (SELECT value FROM json_each(?))"
)
# The safety poll's read: every connected person's head, nothing else (no lock).
_PG_HEADS = "SELECT person_id, last_seq FROM person_streams WHERE person_id = ANY($1::bigint[])"
_SQLITE_SET_HEAD = "UPDATE person_streams SET last_seq = ? WHERE person_id = ?"
_SQLITE_INSERT_EVENT = "INSERT INTO person_events (person_id, seq, kind, payload, created_at) VALUES (?, ?, ?, ?, ?)"
# Bulk path, SQLite (one writer at a time, so no lock order to keep).
_SQLITE_CREATE = "INSERT OR IGNORE INTO person_streams (person_id, epoch, last_seq, min_seq) VALUES (?, ?, 0, 1)"
_SQLITE_CREATE_AT_ONE = "INSERT INTO person_streams (person_id, epoch, last_seq, min_seq) VALUES (?, ?, 1, 1)"
_SQLITE_MISSING = (
    "SELECT value FROM json_each(?) WHERE NOT EXISTS (SELECT 1 FROM person_streams WHERE person_id = value)"
)
_SQLITE_BUMP = (
    "UPDATE person_streams SET last_seq = last_seq + 1"
    " WHERE person_id IN (SELECT value FROM json_each(?)) RETURNING person_id, last_seq"
)


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


async def driver_in_transaction(conn: AsyncConnection) -> Any:
    """The raw driver connection (asyncpg / aiosqlite), inside the caller's open transaction.

    Why the extra statement: SQLAlchemy's asyncpg adapter sends BEGIN lazily,
    with its first statement. A statement sent straight to the driver before
    that runs in autocommit, outside the caller's transaction: its row locks
    are released at once and its writes survive a rollback. On SQLite the
    writer's ``BEGIN IMMEDIATE`` is already sent when the transaction opens.
    When the adapter shows its BEGIN has gone out (an earlier statement of the
    transaction), the extra round trip is skipped: every unit of work ends
    with ``EventLog.append`` here, most after statements of their own. When it
    has not, the adapter is asked to send its BEGIN alone (a task's first
    statement is sent here: ``SELECT 1`` through SQLAlchemy cost a round trip
    and ~5 % of the server's CPU in task creation); an adapter that shows
    neither gets the statement.
    """
    raw = await conn.get_raw_connection()
    adapter = raw.dbapi_connection
    if is_postgres(conn) and getattr(adapter, "_transaction", None) is None:
        start = getattr(adapter, "_start_transaction", None)
        try:
            if start is None:
                raise LookupError("no BEGIN of its own")
            await start()  # the adapter's own BEGIN, without a statement to carry it
        except Exception:  # noqa: BLE001 - SQLAlchemy's path below raises it as SQLAlchemy would
            # Through SQLAlchemy a failure is translated (and a dead connection invalidated) the usual way.
            await conn.exec_driver_sql("SELECT 1")
    return raw.driver_connection


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection inside a synchronous bulk build (never across an ``await``).

    Why: building ~200,000 rows, payloads and wake-up groups for one notice
    triggers collection after collection, each walking the whole heap of a
    process that holds a 1.2-million-person org index; it cost about a third
    of the build. Nothing else runs during a block without ``await``, so
    pausing collection there delays no one else's garbage.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


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
        # Fixed statements straight to the driver, one array parameter each: this runs
        # for every chat message batch, and building the SQLAlchemy statements and
        # their per-row parameter dicts was about a fifth of its cost.
        driver = await driver_in_transaction(conn)
        if not is_postgres(conn):
            # One trip to aiosqlite's thread for the whole append instead of three or four.
            return await in_sqlite_thread(driver, sqlite_append, persons, events, sqlite_time(now))
        return await _pg_append(driver, persons, events, now)

    async def ensure_streams(self, person_ids: Sequence[int]) -> int:
        """Create the missing streams of ``person_ids`` (empty, seq 0) in a short transaction of their own.

        Why before, not inside, a big append (PostgreSQL): created inside the
        send transaction, ~200,000 new stream rows would be held while other
        rows are locked, and a chat ``append`` that locks in person_id order
        and then creates its own missing streams could deadlock with it. An
        empty stream is what a person's first connection creates anyway, so
        creating it early changes nothing a client can see. Returns how many
        were created.
        """
        persons = sorted(set(person_ids))
        if not persons:
            return 0
        async with self._db.write() as conn:
            driver = await driver_in_transaction(conn)
            if is_postgres(conn):
                await driver.execute("SET LOCAL statement_timeout = 0")
                missing = [int(r[0]) for r in await driver.fetch(_PG_MISSING, persons)]
                if missing:
                    await driver.execute(_PG_CREATE, missing)
                return len(missing)
            missing = await _sqlite_missing(driver, persons)
            if missing:
                await driver.executemany(_SQLITE_CREATE, [(p, _new_epoch()) for p in missing])
            return len(missing)

    async def prepare_bulk(self, person_ids: Sequence[int]) -> int:
        """Get ready for an :meth:`append_bulk` to ``person_ids``, before its transaction opens.

        On PostgreSQL that is :meth:`ensure_streams` (retried on lock conflicts);
        SQLite's single writer has no lock order to protect, so nothing is done.
        Returns how many streams were created.
        """
        if self._db.is_sqlite:
            return 0
        return await with_db_retry(lambda: self.ensure_streams(person_ids))

    async def append_bulk(
        self, conn: AsyncConnection, kind: str, events: Sequence[tuple[int, str]], now: datetime
    ) -> list[EventGroup]:
        """Append one ``kind`` event per person, ``(person_id, payload)``, inside the caller's transaction.

        The fan-out path for one event to very many people (a province-wide
        notice), with the guarantees of :meth:`append` (gap-free, in-order
        seqs; stream locks held to commit) at a fraction of the cost: every
        stream's next seq comes from one set-based UPDATE whose locking
        subselect takes the locks in ascending person_id order (the order
        ``append`` uses), and the events go in with COPY (PostgreSQL) or one
        executemany (SQLite) instead of a parameter dict per row. Events
        sharing a payload share a wake-up group.

        On PostgreSQL call :meth:`ensure_streams` first, outside this
        transaction: a stream still missing here is created inside it, after
        the ordered locks, which can deadlock with a concurrent ``append``
        (retried by ``with_db_retry``, but slow). SQLite has one writer, so
        there missing streams are simply created here, already at seq 1.

        Raises:
            ValueError: a person appears twice in ``events``.
        """
        payloads = dict(events)
        if len(payloads) != len(events):
            raise ValueError("append_bulk takes at most one event per person")
        if not payloads:
            return []
        persons = sorted(payloads)
        driver = await driver_in_transaction(conn)
        seqs: dict[int, int] = {}
        if is_postgres(conn):
            if len(persons) > SMALL_ROWS:  # a few rows cannot outlast the timeout (one round trip less)
                await driver.execute("SET LOCAL statement_timeout = 0")  # type: ignore[union-attr]
            seqs.update((int(p), int(s)) for p, s in await driver.fetch(_PG_BUMP, persons))  # type: ignore[union-attr]
            missing = [p for p in persons if p not in seqs]
            if missing:  # ensure_streams skipped, or a person's first event raced with it
                created = await driver.fetch(_PG_CREATE_AT_ONE, missing)  # type: ignore[union-attr]
                seqs.update((int(r[0]), 1) for r in created)
                raced = [p for p in missing if p not in seqs]  # created by another transaction meanwhile
                if raced:
                    seqs.update((int(p), int(s)) for p, s in await driver.fetch(_PG_BUMP, raced))  # type: ignore[union-attr]
        else:  # one writer at a time: nothing can create a stream between these statements
            missing = await _sqlite_missing(driver, persons)
            if missing:
                await driver.executemany(_SQLITE_CREATE_AT_ONE, [(p, _new_epoch()) for p in missing])  # type: ignore[union-attr]
                seqs.update((p, 1) for p in missing)
            existing = [p for p in persons if p not in seqs]
            for part in chunks(existing, 100_000):
                rows = await driver.execute_fetchall(_SQLITE_BUMP, (json.dumps(part),))  # type: ignore[union-attr]
                seqs.update((int(p), int(s)) for p, s in rows)
        if len(seqs) != len(persons):  # cannot happen while persons exist (FK); never write a gap
            raise ValueError(f"no event stream for persons {sorted(set(persons) - set(seqs))[:10]}")
        by_payload: dict[str, EventGroup] = {}
        rows_out: list[tuple[object, ...]] = []
        # SQLite stores the time as text: format it once, not once per row in bulk_insert.
        at: object = now if is_postgres(conn) else sqlite_time(now)
        with paused_gc():
            for pid in persons:
                payload = payloads[pid]
                seq = seqs[pid]
                group = by_payload.get(payload)
                if group is None:
                    group = by_payload[payload] = EventGroup(kind, payload)
                group.recipients.append((pid, seq))
                rows_out.append((pid, seq, kind, payload, at))
        await bulk_insert(conn, person_events, _EVENT_COLUMNS, rows_out)
        return list(by_payload.values())

    async def state(self, person_id: int) -> StreamState:
        """The stream's position, creating the stream on a person's very first connection.

        Creating it here (once per person, ever) gives the client the epoch it
        will keep; handing out a placeholder would force a resync later.
        """
        async with self._db.read() as conn:
            state = await _stream_state(conn, person_id)
        return state if state is not None else await self._create_stream(person_id)

    async def _create_stream(self, person_id: int) -> StreamState:
        async with self._db.write() as conn:
            await conn.execute(
                insert_ignore(conn, person_streams, ["person_id"]),
                [{"person_id": person_id, "epoch": _new_epoch(), "last_seq": 0, "min_seq": 1}],
            )
            state = await _stream_state(conn, person_id)
        assert state is not None  # inserted above, or by a concurrent first connection
        return state

    async def states(self, person_ids: Sequence[int]) -> dict[int, StreamState]:
        """The positions of many streams in one read, creating the missing ones in one short write.

        For a burst of hellos (a reconnect storm, a server start): one
        statement for hundreds of persons instead of one read (and, for a
        person's very first connection, one write transaction) each.
        """
        persons = sorted(set(person_ids))
        out = await self._read_states(persons)
        missing = [p for p in persons if p not in out]
        if missing:
            await with_db_retry(lambda: self.ensure_streams(missing))
            out.update(await self._read_states(missing))
        return out

    async def _read_states(self, persons: list[int]) -> dict[int, StreamState]:
        rows = await self._per_person(_PG_STATES, _SQLITE_STATES, persons)
        return {int(p): StreamState(str(e), int(s), int(m)) for p, e, s, m in rows}

    async def _per_person(self, pg_sql: str, sqlite_sql: str, persons: list[int]) -> list[Any]:
        """The rows of a read whose one parameter is the array of ``persons``."""
        rows: list[Any] = []
        if not persons:
            return rows
        async with self._db.read() as conn:
            # Raw driver, one array parameter: expanding 5,000 bind parameters per
            # statement through SQLAlchemy was ~9 % of a server's CPU with 5,000 sockets.
            driver = (await conn.get_raw_connection()).driver_connection
            for part in chunks(persons, 100_000):
                rows += await driver_fetch(conn, driver, pg_sql, sqlite_sql, part)
        return rows

    async def read_pages(
        self, requests: Sequence[tuple[int, int]], limit: int = MAX_PAGE
    ) -> list[SyncPage | ResyncRequired]:
        """:meth:`read` without an epoch, for many ``(person, since)`` at once: one answer per request, in order.

        Why: every socket of a reconnect storm catches up from its cursor as
        soon as its hello is answered (S9), and one :meth:`read` each is two
        read transactions per socket; here a whole batch costs two statements
        (the stream positions, then every page through one driver-level
        statement), with exactly :meth:`read`'s answers and refusals.
        """
        limit = max(1, min(limit, MAX_PAGE))
        states = await self.states([p for p, _ in requests])
        out: list[SyncPage | ResyncRequired | None] = []
        wanted: list[tuple[int, int, int, int]] = []  # (request index, person, lo, hi)
        for i, (person, since) in enumerate(requests):
            try:
                self.check_cursor(states[person], epoch=None, since=since)
            except ResyncRequired as err:
                out.append(err)
                continue
            out.append(None)
            wanted.append((i, person, since, since + limit + 1))
        rows: dict[int, list[tuple[int, str, str]]] = {i: [] for i, *_ in wanted}
        if wanted:
            async with self._db.read() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                if is_postgres(conn):
                    cols = [[w[k] for w in wanted] for k in (1, 2, 3)]
                    found = await driver.fetch(_PG_PAGES, *cols)  # type: ignore[union-attr]
                    index = [w[0] for w in wanted]  # ORDINALITY counts from 1
                    for n, seq, kind, payload in found:
                        rows[index[int(n) - 1]].append((int(seq), str(kind), str(payload)))
                else:
                    arg = json.dumps([[p, lo, hi] for _, p, lo, hi in wanted])
                    found = await driver.execute_fetchall(_SQLITE_PAGES, (arg,))  # type: ignore[union-attr]
                    for n, seq, kind, payload in found:
                        rows[wanted[int(n)][0]].append((int(seq), str(kind), str(payload)))
        for i, person, since, _ in wanted:
            st, got = states[person], rows[i]
            if (got[0][0] if got else st.last_seq + 1) != since + 1 and since < st.last_seq:
                out[i] = _resync(st, "events after the cursor were pruned")  # between the two reads, as in :meth:`read`
                continue
            page = got[:limit]
            out[i] = SyncPage(st.epoch, page, page[-1][0] if page else since, len(got) > limit, st.last_seq)
        return [p for p in out if p is not None]

    @staticmethod
    def check_cursor(st: StreamState, *, epoch: str | None, since: int) -> None:
        """Refuse a cursor this stream cannot resume from (see :meth:`read`), without reading events.

        Raises:
            ResyncRequired: saying why, with the stream's epoch and last seq.
        """
        reason = None
        if epoch is not None and epoch != st.epoch and (since > 0 or st.min_seq > 1):
            reason = "epoch changed"
        elif since < 0 or since > st.last_seq:
            reason = "cursor is not in this stream"
        elif since + 1 < st.min_seq:
            reason = "events after the cursor were pruned"
        if reason is not None:
            raise _resync(st, reason)

    async def heads(self, person_ids: Sequence[int]) -> dict[int, int]:
        """Last committed seq of each given person (persons without a stream are left out), for the safety poll.

        Only the two columns, straight into the dict: the poll reads every
        connected person's head every few seconds, and building a
        ``StreamState`` per row (``_read_states``) was ~4 % of a chat
        server's time with 5,000 sockets (py-spy, issue 15).
        """
        # (person_id, last_seq): integers from both drivers.
        return dict(await self._per_person(_PG_HEADS, _SQLITE_SELECT_HEADS, sorted(set(person_ids))))

    async def read(self, person_id: int, *, epoch: str | None, since: int, limit: int = MAX_PAGE) -> SyncPage:
        """Events after ``since``, oldest first.

        Raises:
            ResyncRequired: the epoch is not the stream's, the cursor is ahead
                of the stream, or events after it were pruned. The client must
                reload state; it is never silently told "nothing new".
        """
        limit = max(1, min(limit, MAX_PAGE))
        st = await self.state(person_id)
        self.check_cursor(st, epoch=epoch, since=since)
        async with self._db.read() as conn:
            res = await conn.execute(
                select(person_events.c.seq, person_events.c.kind, person_events.c.payload)
                .where(and_(person_events.c.person_id == person_id, person_events.c.seq > since))
                .order_by(person_events.c.seq)
                .limit(limit + 1)
            )
            rows = [(int(s), k, p) for s, k, p in res]
        if (rows[0][0] if rows else st.last_seq + 1) != since + 1 and since < st.last_seq:
            # Streams are gap-free, so the next event is since + 1 unless retention
            # deleted it between the state read above and this one.
            raise _resync(st, "events after the cursor were pruned")
        limited = len(rows) > limit
        rows = rows[:limit]
        next_since = rows[-1][0] if rows else since
        return SyncPage(st.epoch, rows, next_since, limited, st.last_seq)


async def pg_append(driver: Any, events: Sequence[NewEvent], now: datetime) -> list[EventGroup]:
    """:meth:`EventLog.append` on an asyncpg connection inside its transaction (PostgreSQL): the
    streams locked in ascending person_id (missing ones created), the heads set, the events
    inserted. For a writer that runs on asyncpg's own transaction (``kernel.db.held``)."""
    persons = sorted({p for e in events for p in e.recipients})
    return await _pg_append(driver, persons, events, now) if persons else []


async def _pg_append(driver: Any, persons: list[int], events: Sequence[NewEvent], now: datetime) -> list[EventGroup]:
    """:func:`pg_append` for ``persons``, the events' recipients in ascending order (the caller has them)."""
    last = await _lock_streams(driver, persons)
    groups, (pids, seqs, kinds, payloads) = _numbered(events, last)
    await driver.execute(_PG_APPEND, list(last), list(last.values()), pids, seqs, kinds, payloads, now)
    return groups


def _resync(st: StreamState, reason: str) -> ResyncRequired:
    """The refusal of a cursor this stream cannot resume from, with where the stream stands."""
    return ResyncRequired(
        f"cannot resume: {reason}", code=ErrorCode.RESYNC_REQUIRED, data={"epoch": st.epoch, "last_seq": st.last_seq}
    )


async def _lock_streams(driver: Any, persons: list[int]) -> dict[int, int]:
    """PostgreSQL: each stream's last seq, its row locked in ascending person_id; missing streams created first."""
    last: dict[int, int] = {}
    for part in chunks(persons, _CHUNK):
        locked = await _lock_heads(driver, part)
        missing = [p for p in part if p not in locked]
        if missing:
            # A person's first event creates the stream row (then it is locked like the rest).
            await driver.execute(_PG_CREATE, missing)
            locked.update(await _lock_heads(driver, missing))
        last.update(locked)
    return last


async def _lock_heads(driver: Any, persons: list[int]) -> dict[int, int]:
    return {int(p): int(s) for p, s in await driver.fetch(_PG_LOCK_HEADS, persons)}


def number_events(events: Sequence[NewEvent], last: dict[int, int]) -> list[EventGroup]:
    """The wake-up groups of ``events`` appended after each stream's ``last`` seq (as ``append`` numbers them)."""
    return _numbered(events, dict(last))[0]


def _numbered(
    events: Sequence[NewEvent], last: dict[int, int]
) -> tuple[list[EventGroup], tuple[list[int], list[int], list[str], list[str]]]:
    """Give each recipient of each event the next seq of its stream (``last`` moves along).

    Returns the wake-up groups and the rows' columns: person, seq, kind, payload.
    """
    groups: list[EventGroup] = []
    pids: list[int] = []
    seqs: list[int] = []
    kinds: list[str] = []
    payloads: list[str] = []
    for ev in events:
        group = EventGroup(ev.kind, ev.payload)
        for pid in dict.fromkeys(ev.recipients):
            seq = last[pid] + 1
            last[pid] = seq
            group.recipients.append((pid, seq))
            pids.append(pid)
            seqs.append(seq)
            kinds.append(ev.kind)
            payloads.append(ev.payload)
        groups.append(group)
    return groups, (pids, seqs, kinds, payloads)


def sqlite_append(db: sqlite3.Connection, persons: list[int], events: Sequence[NewEvent], at: str) -> list[EventGroup]:
    """``EventLog.append`` on SQLite, run on the connection's own thread (SQLite has one writer: no lock order).

    Also called by the direct chat's storage on the same thread trip as its messages' insert.
    """
    heads = json.dumps(persons)
    last = dict(db.execute(_SQLITE_SELECT_HEADS, (heads,)).fetchall())
    missing = [p for p in persons if p not in last]
    if missing:
        # A person's first event creates the stream row.
        db.executemany(_SQLITE_CREATE, [(p, _new_epoch()) for p in missing])
        last.update(db.execute(_SQLITE_SELECT_HEADS, (json.dumps(missing),)).fetchall())
    groups, (pids, seqs, kinds, payloads) = _numbered(events, last)
    db.executemany(_SQLITE_SET_HEAD, [(s, p) for p, s in last.items()])
    rows = [(p, q, k, d, at) for p, q, k, d in zip(pids, seqs, kinds, payloads, strict=True)]
    db.executemany(_SQLITE_INSERT_EVENT, rows)
    return groups


def sqlite_time(at: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime (and org_tree.bulk) writes for ``at``."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


async def _sqlite_missing(driver: object, persons: list[int]) -> list[int]:
    """Persons of ``persons`` without a stream row (SQLite, raw driver: one statement per 100,000)."""
    out: list[int] = []
    for part in chunks(persons, 100_000):
        rows = await driver.execute_fetchall(_SQLITE_MISSING, (json.dumps(part),))  # type: ignore[attr-defined]
        out.extend(int(r[0]) for r in rows)
    return out


async def _stream_state(conn: AsyncConnection, person_id: int) -> StreamState | None:
    """One person's stream position as stored, or None before their first connection created it."""
    row = (
        await conn.execute(
            select(person_streams.c.epoch, person_streams.c.last_seq, person_streams.c.min_seq).where(
                person_streams.c.person_id == person_id
            )
        )
    ).first()
    return None if row is None else StreamState(row[0], int(row[1]), int(row[2]))
