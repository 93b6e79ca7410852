"""Retention (issue 15 item 6): old events, published outbox rows and receipts go; a pruned cursor must resync."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, insert, select, update

from apps.dispatch import prune_published
from kernel.clock import FakeClock
from kernel.db.database import Database
from kernel.errors import ResyncRequired
from kernel.schema import persons
from messaging.events import EventLog, NewEvent
from messaging.notices.schema import notice_receipts, notices
from messaging.outbox import record
from messaging.retention import Retention, prune_streams
from messaging.schema import outbox_events, person_events, person_streams
from tests.client import Client, connect_as, login, new_people
from tests.conftest import RunningServer

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
async def own_db(own_db_url: str) -> AsyncIterator[Database]:
    """A database of this test's own: a retention pass deletes across every stream in it."""
    async with Database(own_db_url) as database:
        yield database


async def _people(db: Database, n: int) -> list[int]:
    async with db.write() as conn:
        return [
            int(
                (
                    await conn.execute(
                        insert(persons)
                        .values(name=f"ret{i}-{secrets.token_hex(3)}", disabled=False, created_at=T0)
                        .returning(persons.c.id)
                    )
                ).scalar_one()
            )
            for i in range(n)
        ]


async def _append(db: Database, log: EventLog, people: list[int], at: datetime, n: int) -> None:
    async with db.write() as conn:
        for i in range(n):
            await log.append(conn, [NewEvent("message.new", f'{{"i":{i}}}', people)], at)


def _job(db: Database, clock: FakeClock, **kw: object) -> Retention:
    args: dict[str, object] = {"node_id": "t", "event_days": 30, "outbox_days": 30, "outbox_sweep": prune_published}
    args.update(kw)
    return Retention(db, clock, **args)  # type: ignore[arg-type]


async def test_old_events_go_the_floor_rises_and_a_cursor_below_it_must_resync(own_db: Database) -> None:
    log = EventLog(own_db)
    a, b = await _people(own_db, 2)
    await _append(own_db, log, [a, b], T0, 5)  # seqs 1-5 for both, 40 days before "now"
    await _append(own_db, log, [a], T0 + timedelta(days=35), 3)  # a: 6-8, 5 days before "now"
    clock = FakeClock(T0 + timedelta(days=40))

    done = await _job(own_db, clock).run_until_complete()

    assert (done.events, done.streams, done.complete) == (10, 2, True)
    sa, sb = await log.state(a), await log.state(b)
    assert (sa.min_seq, sa.last_seq) == (6, 8)
    assert (sb.min_seq, sb.last_seq) == (6, 5)  # b keeps nothing; its next event is 6
    page = await log.read(a, epoch=sa.epoch, since=5)
    assert [s for s, _, _ in page.events] == [6, 7, 8]
    for since in (0, 3, 4):
        with pytest.raises(ResyncRequired, match="pruned") as err:
            await log.read(a, epoch=sa.epoch, since=since)
        assert err.value.data == {"epoch": sa.epoch, "last_seq": 8}
    assert (await log.read(b, epoch=sb.epoch, since=5)).events == []


async def test_a_prune_between_the_state_read_and_the_page_read_is_a_resync_not_a_short_page(
    own_db: Database,
) -> None:
    log = EventLog(own_db)
    (a,) = await _people(own_db, 1)
    await _append(own_db, log, [a], T0, 6)
    async with own_db.write() as conn:  # the events went, the floor is not raised yet (its transaction is later)
        await conn.execute(delete(person_events).where(person_events.c.person_id == a, person_events.c.seq <= 3))
    st = await log.state(a)
    assert st.min_seq == 1
    with pytest.raises(ResyncRequired, match="pruned"):
        await log.read(a, epoch=st.epoch, since=1)
    async with own_db.write() as conn:
        await conn.execute(delete(person_events).where(person_events.c.person_id == a))
    with pytest.raises(ResyncRequired, match="pruned"):
        await log.read(a, epoch=st.epoch, since=4)


async def test_one_process_at_a_time_and_a_pass_resumes_where_it_stopped(own_db: Database) -> None:
    log = EventLog(own_db)
    people = await _people(own_db, 5)
    await _append(own_db, log, people, T0, 2)
    clock = FakeClock(T0 + timedelta(days=31))
    first = _job(own_db, clock, node_id="one", chunk=2, max_chunks=1)
    second = _job(own_db, clock, node_id="two", chunk=2, max_chunks=1)

    step = await first.run()
    assert (step.ran, step.events, step.complete) == (True, 4, False)
    assert (await second.run()).ran is False  # first holds the lease
    clock.advance(300)  # first's lease (2 min) has run out: second continues from the stored cursor
    step = await second.run()
    assert (step.ran, step.events) == (True, 4)
    clock.advance(300)
    step = await first.run()
    assert (step.events, step.complete) == (2, False)
    step = await first.run()  # nobody left after the last person: the pass is complete
    assert step.complete is True
    assert [(await log.state(p)).min_seq for p in people] == [3] * 5
    await _append(own_db, log, people, clock.now() - timedelta(days=31), 1)
    assert (await first.run()).events == 0  # a new pass waits an hour after the last one
    clock.advance(3601)
    assert (await first.run_until_complete()).events == 5


async def test_published_outbox_rows_past_retention_go_unpublished_and_recent_ones_stay(own_db: Database) -> None:
    ids = {}
    async with own_db.write() as conn:
        for name, at in (("old", T0), ("old-unpublished", T0), ("recent", T0 + timedelta(days=25))):
            await record(conn, type="task.created", aggregate="task", aggregate_id=1, payload={"n": name}, now=at)
            newest = select(outbox_events.c.id).order_by(outbox_events.c.id.desc()).limit(1)
            ids[name] = int((await conn.execute(newest)).scalar_one())
        for name in ("old", "recent"):
            at = T0 + timedelta(days=25 if name == "recent" else 0)
            await conn.execute(update(outbox_events).where(outbox_events.c.id == ids[name]).values(published_at=at))
    clock = FakeClock(T0 + timedelta(days=40))

    done = await _job(own_db, clock).run_until_complete()

    assert done.outbox == 1
    async with own_db.read() as conn:
        left = set((await conn.execute(select(outbox_events.c.id))).scalars())
    assert left == {ids["old-unpublished"], ids["recent"]}


async def test_streams_stay_gap_free_and_writable_after_a_prune(own_db: Database) -> None:
    log = EventLog(own_db)
    (a,) = await _people(own_db, 1)
    await _append(own_db, log, [a], T0, 4)
    await _job(own_db, FakeClock(T0 + timedelta(days=31))).run_until_complete()
    await _append(own_db, log, [a], T0 + timedelta(days=31), 2)
    st = await log.state(a)
    assert (st.min_seq, st.last_seq) == (5, 6)
    assert [s for s, _, _ in (await log.read(a, epoch=st.epoch, since=4)).events] == [5, 6]
    async with own_db.read() as conn:
        floor = (await conn.execute(select(person_streams.c.min_seq).where(person_streams.c.person_id == a))).scalar()
    assert floor == 5


async def test_a_client_resuming_below_the_pruned_floor_is_told_to_resync(server: RunningServer) -> None:
    s = server.services_obj  # type: ignore[attr-defined]
    (a_id, a_login), (b_id, b_login) = await new_people(s, 2)
    a = await connect_as(server, a_login)
    for i in range(3):
        await a.send_message(b_id, f"old {i}")
    async with s.db.write() as conn:  # b's stream alone, as the retention pass would prune it
        assert await prune_streams(conn, b_id - 1, 1, datetime.now(UTC) + timedelta(seconds=1)) == (b_id, 3, 1)
    await a.send_message(b_id, "after the prune")
    tok = (await login(server.http, b_login))["access_token"]
    epoch = (await s.events.state(b_id)).epoch
    b = await Client.connect(server.ws, tok, resume={"epoch": epoch, "since": 1})
    assert b.hello["resumed"] is False
    assert b.hello["resync_required"] == "cannot resume: events after the cursor were pruned"
    r = await b.request({"type": "sync", "epoch": b.hello["epoch"], "since": 1})
    assert r["type"] == "error" and r["code"] == "resync_required"
    assert r["data"] == {"epoch": b.hello["epoch"], "last_seq": 4}
    ok = await b.request({"type": "sync", "epoch": b.hello["epoch"], "since": 3})
    assert [e["seq"] for e in ok["data"]["events"]] == [4]
    await a.close()
    await b.close()


async def _notice(db: Database, sender: int, recipients: list[int], at: datetime) -> int:
    async with db.write() as conn:
        nid = int(
            (
                await conn.execute(
                    insert(notices)
                    .values(
                        sender_person_id=sender, sender_position_id=1, client_msg_id=secrets.token_hex(6),
                        title="通知", body="正文", attachments="[]", selector="{}", priority="normal",
                        ack_required=False, created_at=at, audience_positions=len(recipients),
                        audience_persons=len(recipients), receipt_count=len(recipients), org_version=1,
                        fanout_done_at=at,
                    )
                    .returning(notices.c.id)
                )
            ).scalar_one()
        )  # fmt: skip
        await conn.execute(
            insert(notice_receipts),
            [
                {"notice_id": nid, "person_id": p, "position_id": i + 1, "via_position_id": i + 1,
                 "reason": "holder", "unit_id": 1, "fanned_out": True}
                for i, p in enumerate(recipients)
            ],
        )  # fmt: skip
    return nid


async def _receipts(db: Database, nid: int) -> int:
    async with db.read() as conn:
        q = select(func.count()).select_from(notice_receipts).where(notice_receipts.c.notice_id == nid)
        return int((await conn.execute(q)).scalar_one())


@pytest.mark.parametrize("receipt_days", [None, 90])
async def test_receipts_of_old_notices_go_only_when_their_retention_is_set(
    own_db: Database, receipt_days: int | None
) -> None:
    sender, *readers = await _people(own_db, 4)
    old = await _notice(own_db, sender, readers, T0)
    recent = await _notice(own_db, sender, readers, T0 + timedelta(days=80))
    clock = FakeClock(T0 + timedelta(days=100))

    done = await _job(own_db, clock, receipt_days=receipt_days).run_until_complete()

    if receipt_days is None:  # the default keeps the record of who read for ever
        assert done.receipts == 0
        assert (await _receipts(own_db, old), await _receipts(own_db, recent)) == (3, 3)
    else:
        assert done.receipts == 3
        assert (await _receipts(own_db, old), await _receipts(own_db, recent)) == (0, 3)
        async with own_db.read() as conn:  # the notice itself stays
            assert (await conn.execute(select(notices.c.id).where(notices.c.id == old))).scalar() == old


async def test_a_long_backlog_goes_a_window_at_a_time_and_new_streams_are_only_looked_up(own_db: Database) -> None:
    log = EventLog(own_db)
    a, b = await _people(own_db, 2)
    await _append(own_db, log, [a], T0, 7)  # a: 7 old events
    await _append(own_db, log, [b], T0 + timedelta(days=39), 2)  # b: nothing old
    cutoff = T0 + timedelta(days=10)
    seen = []
    for _ in range(4):
        async with own_db.write() as conn:
            seen.append(await prune_streams(conn, a - 1, 2, cutoff, window=3))
    # a's floor moves 3 events per call (the window), b is looked up and left alone.
    assert [(n, moved) for _, n, moved in seen] == [(3, 1), (3, 1), (1, 1), (0, 0)]
    assert {last for last, _, _ in seen} == {b}
    assert ((await log.state(a)).min_seq, (await log.state(b)).min_seq) == (8, 1)


async def test_streams_of_one_chunk_are_read_in_statements_of_bounded_rows_with_the_same_outcome(
    own_db: Database,
) -> None:
    """A chunk of many old streams is split so that no statement reads more than its row budget.

    Why it matters: on a 50-million-row table one statement over 1,000 full windows outran the
    statement timeout, so the pass failed every time; split, each statement stays small and the
    chunk deletes exactly what one statement would have.
    """
    log = EventLog(own_db)
    people = await _people(own_db, 5)
    for i, p in enumerate(people):
        await _append(own_db, log, [p], T0, 2 + i)  # 2..6 old events each
        await _append(own_db, log, [p], T0 + timedelta(days=39), 1)  # one recent each
    cutoff = T0 + timedelta(days=10)
    async with own_db.write() as conn:
        # window 4, at most 8 rows a statement: two streams a statement, three statements.
        last, deleted, moved = await prune_streams(conn, people[0] - 1, 5, cutoff, window=4, rows_per_statement=8)
    assert (last, deleted, moved) == (people[-1], 2 + 3 + 4 + 4 + 4, 5)
    assert [(await log.state(p)).min_seq for p in people] == [3, 4, 5, 5, 5]
    async with own_db.write() as conn:  # the rest of the two longest backlogs, then nothing
        assert (await prune_streams(conn, people[0] - 1, 5, cutoff, window=4, rows_per_statement=8))[1:] == (3, 2)
        assert (await prune_streams(conn, people[0] - 1, 5, cutoff, window=4, rows_per_statement=8))[1:] == (0, 0)


def test_a_prune_asked_to_keep_no_days_is_a_usage_error_naming_the_flag() -> None:
    """``--event-days 0`` failed with a configuration error naming ``ZZD_EVENT_RETENTION_DAYS``,
    which the operator had not set; it is a usage error naming the flag, before any database is opened."""
    from click.testing import CliRunner

    from zzd.cli import main

    res = CliRunner().invoke(
        main, ["maintenance", "prune", "--event-days", "0"], env={"ZZD_DATABASE_URL": "sqlite+aiosqlite:///"}
    )
    assert res.exit_code == 2, res.output
    assert "--event-days" in res.output and "ZZD_EVENT_RETENTION_DAYS" not in res.output
