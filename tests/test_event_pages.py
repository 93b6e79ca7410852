"""``EventLog.read_pages``: many sockets' catch-up pages in two statements, each exactly what ``read`` answers.

Why a test of its own: the reconnect storm (S9) now catches every resuming
socket up through this batched read, so any difference from ``read`` (a page
boundary, a refusal, two sockets of one person at different cursors) would be
a lost or repeated event on resume.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, insert, update

from kernel.db.database import Database
from kernel.errors import ResyncRequired
from kernel.schema import persons
from messaging.events import EventLog, NewEvent, SyncPage
from messaging.schema import person_events, person_streams

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    async with Database(db_url) as database:
        yield database


async def _person(db: Database) -> int:
    async with db.write() as conn:
        row = insert(persons).values(name=f"pg{secrets.token_hex(3)}", disabled=False, created_at=T0)
        res = await conn.execute(row.returning(persons.c.id))
        return int(res.scalar_one())


async def _read(log: EventLog, person: int, since: int, limit: int) -> SyncPage | tuple[str, object]:
    try:
        return await log.read(person, epoch=None, since=since, limit=limit)
    except ResyncRequired as err:
        return (err.message, err.data)


async def test_each_page_is_what_read_answers(db: Database) -> None:
    log = EventLog(db)
    a, b, c = await _person(db), await _person(db), await _person(db)
    async with db.write() as conn:
        for i in range(7):
            await log.append(conn, [NewEvent("message.new", f'{{"i":{i}}}', [a] + ([c] if i < 5 else []))], T0)
    await log.states([b])  # b's stream exists and is empty
    # c's first three events were pruned (retention moves min_seq, then deletes).
    async with db.write() as conn:
        await conn.execute(update(person_streams).where(person_streams.c.person_id == c).values(min_seq=4))
        await conn.execute(delete(person_events).where(person_events.c.person_id == c, person_events.c.seq < 4))

    requests = [(a, 0), (a, 2), (a, 5), (a, 7), (a, 9), (b, 0), (c, 1), (c, 3), (a, 2), (b, 1)]
    pages = await log.read_pages(requests, limit=3)

    assert len(pages) == len(requests)
    for (person, since), page in zip(requests, pages, strict=True):
        expected = await _read(log, person, since, 3)
        got = (page.message, page.data) if isinstance(page, ResyncRequired) else page
        assert got == expected, (person, since)
    # The cases the comparison covers, spelled out: a limited page, the last page, an empty one, refusals.
    first = pages[0]
    assert isinstance(first, SyncPage) and [s for s, *_ in first.events] == [1, 2, 3] and first.limited
    assert isinstance(pages[2], SyncPage) and [s for s, *_ in pages[2].events] == [6, 7] and not pages[2].limited
    assert isinstance(pages[3], SyncPage) and pages[3].events == [] and pages[3].next_since == 7
    assert isinstance(pages[4], ResyncRequired)  # cursor ahead of the stream
    assert isinstance(pages[6], ResyncRequired) and "pruned" in pages[6].message
    assert isinstance(pages[7], SyncPage) and [s for s, *_ in pages[7].events] == [4, 5]
    assert pages[8] == pages[1]  # one person's two sockets at the same cursor each get the page
    assert isinstance(pages[9], ResyncRequired)  # b's stream is empty: seq 1 is not in it


async def test_an_empty_batch_reads_nothing(db: Database) -> None:
    assert await EventLog(db).read_pages([]) == []
