"""EventLog.append_bulk (the notice fan-out path) keeps every stream gap-free and in commit order.

The bulk path allocates seqs with one set-based statement (PostgreSQL) or a
RETURNING update (SQLite) instead of ``append``'s chunked locking reads, so
these tests check it against the same invariants, alone and interleaved with
chat-style ``append`` transactions on overlapping people, on both backends.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select

from kernel.db.database import Database
from kernel.schema import persons
from messaging.db_errors import with_db_retry
from messaging.events import EventLog, NewEvent
from messaging.schema import person_events, person_streams

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


async def _people(db: Database, n: int) -> list[int]:
    """``n`` fresh persons, ids from the table's own sequence (the PostgreSQL database is shared
    by the session, and other tests allocate ids after the current maximum)."""
    ids: list[int] = []
    async with db.write() as conn:
        for i in range(n):
            res = await conn.execute(
                insert(persons)
                .values(name=f"bulk{i}-{secrets.token_hex(3)}", disabled=False, created_at=NOW)
                .returning(persons.c.id)
            )
            ids.append(int(res.scalar_one()))
    return ids


async def _streams(db: Database, ids: list[int]) -> dict[int, list[tuple[int, str, str]]]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(person_events.c.person_id, person_events.c.seq, person_events.c.kind, person_events.c.payload)
            .where(person_events.c.person_id.in_(ids))
            .order_by(person_events.c.person_id, person_events.c.seq)
        )
        out: dict[int, list[tuple[int, str, str]]] = {p: [] for p in ids}
        for pid, seq, kind, payload in rows:
            out[int(pid)].append((int(seq), kind, payload))
        heads = dict(
            (int(p), int(s))
            for p, s in await conn.execute(
                select(person_streams.c.person_id, person_streams.c.last_seq).where(person_streams.c.person_id.in_(ids))
            )
        )
    for pid, evs in out.items():
        assert [s for s, _, _ in evs] == list(range(1, len(evs) + 1)), f"gap or repeat in {pid}'s stream"
        assert heads.get(pid, 0) == len(evs), f"last_seq of {pid} is not its last event"
    return out


async def test_bulk_append_continues_each_stream_and_groups_equal_payloads(db: Database) -> None:
    log = EventLog(db)
    a, b, c, d = await _people(db, 4)
    async with db.write() as conn:  # a and b already have events; c and d have no stream yet
        await log.append(conn, [NewEvent("message.new", '{"m":1}', [a, b])], NOW)
        await log.append(conn, [NewEvent("message.new", '{"m":2}', [a])], NOW)
    assert (await log.state(c)).last_seq == 0  # c connected once: an empty stream
    async with db.write() as conn:
        groups = await log.append_bulk(
            conn, "notice.new", [(d, '{"n":"x"}'), (a, '{"n":"x"}'), (b, '{"n":"y"}'), (c, '{"n":"x"}')], NOW
        )
    by_payload = {g.payload: (g.kind, g.recipients) for g in groups}
    assert by_payload == {
        '{"n":"x"}': ("notice.new", [(a, 3), (c, 1), (d, 1)]),
        '{"n":"y"}': ("notice.new", [(b, 2)]),
    }
    streams = await _streams(db, [a, b, c, d])
    assert streams[a][-1] == (3, "notice.new", '{"n":"x"}')
    assert streams[d] == [(1, "notice.new", '{"n":"x"}')]
    state = await log.state(d)
    assert (state.last_seq, state.min_seq) == (1, 1) and state.epoch


async def test_bulk_append_refuses_a_person_twice_and_writes_nothing(db: Database) -> None:
    log = EventLog(db)
    (a,) = await _people(db, 1)
    with pytest.raises(ValueError, match="one event per person"):
        async with db.write() as conn:
            await log.append_bulk(conn, "notice.new", [(a, "{}"), (a, "{}")], NOW)
    assert (await _streams(db, [a]))[a] == []
    async with db.write() as conn:
        assert await log.append_bulk(conn, "notice.new", [], NOW) == []


async def test_bulk_append_first_in_a_transaction_that_rolls_back_leaves_nothing(db: Database) -> None:
    """The raw-driver statements run inside the caller's transaction, not in autocommit
    (SQLAlchemy's asyncpg adapter only sends BEGIN with its own first statement)."""
    log = EventLog(db)
    a, b = await _people(db, 2)
    await log.state(a)  # a has a stream (bumped), b not (created)

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with db.write() as conn:
            await log.append_bulk(conn, "notice.new", [(a, "{}"), (b, "{}")], NOW)
            raise Abort
    assert await _streams(db, [a, b]) == {a: [], b: []}
    assert (await log.state(a)).last_seq == 0


async def test_bulk_and_chat_appends_interleaved_stay_gap_free_and_in_one_order(db: Database) -> None:
    """Concurrent notices (bulk) and chat messages (append) on overlapping people, most
    of whom have no stream yet (so both paths race to create them).

    Every stream must be 1..n without gaps, hold exactly the events addressed to
    its person, and any two transactions must appear in the same relative order
    in every stream they share (what holding the stream locks to commit gives).
    """
    log = EventLog(db)
    people = await _people(db, 120)
    rng = random.Random(11)
    expected: dict[int, set[str]] = {p: set() for p in people}

    async def notice(t: int) -> None:
        audience = rng.sample(people, 80)
        payload = json.dumps({"t": f"n{t}"})
        for p in audience:
            expected[p].add(f"n{t}")
        if t % 2:  # as the fan-out relay does (retried on a lock conflict); the others create streams inside
            await log.prepare_bulk(audience)

        async def txn() -> None:
            async with db.write() as conn:
                await log.append_bulk(conn, "notice.new", [(p, payload) for p in audience], NOW)

        await with_db_retry(txn)

    async def chat(t: int) -> None:
        pair = rng.sample(people, 2 if t % 3 else 3)
        for p in pair:
            expected[p].add(f"c{t}")

        async def txn() -> None:
            async with db.write() as conn:
                await log.append(conn, [NewEvent("message.new", json.dumps({"t": f"c{t}"}), pair)], NOW)

        await with_db_retry(txn)

    jobs = [notice(t) for t in range(8)] + [chat(t) for t in range(80)]
    rng.shuffle(jobs)
    await asyncio.gather(*jobs)

    streams = await _streams(db, people)
    position: dict[str, dict[int, int]] = {}
    for pid, evs in streams.items():
        tags = [json.loads(payload)["t"] for _, _, payload in evs]
        assert len(tags) == len(set(tags)) and set(tags) == expected[pid]
        for i, tag in enumerate(tags):
            position.setdefault(tag, {})[pid] = i
    tags = sorted(position)
    for i, u in enumerate(tags):
        for v in tags[i + 1 :]:
            shared = position[u].keys() & position[v].keys()
            orders = {position[u][p] < position[v][p] for p in shared}
            assert len(orders) <= 1, f"{u} and {v} are in different orders in different streams"
