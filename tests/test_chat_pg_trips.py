"""How many statements a direct chat send batch sends to PostgreSQL, counted at asyncpg's protocol.

Why count: under the S1 load (200 sends/s) the server process was ~73 % of a
core busy, and each statement cost it ~75–100 µs (asyncpg's encoding, the
socket's system calls), so the number of statements per batch is what a
chat message costs the server. A batch of one message into a new chat sent
14 (``BEGIN`` and ``COMMIT`` included), one into an existing chat 10. Now
``messaging.chat_storage`` folds its reads with the chats' locks and the new
chats with their memberships into one statement, and the messages with
``last_message_id`` and their events into another: 4 and 4 (5 and 4 while
the new chat had a statement of its own, 7 and 6 before the events and the
locks were folded in; each trip also waits for a turn of the event loop,
which other traffic lengthens: issue 13). Counted here on the chat pool's
own connections, warm (every statement prepared by an earlier batch), so
that a statement added back to the path fails this test. Also here: the
extra reads a batch needs when another process created the same chat
meanwhile.
"""

from __future__ import annotations

import asyncio

import pytest

from messaging import chat_storage
from messaging.chat import SendRequest, SendResult, direct_key
from messaging.chat_storage import ChatStore
from messaging.events import driver_in_transaction
from tests.client import new_person
from tests.conftest import FAST_PASSWORDS, make_settings
from tests.pg_trips import count_trips
from tests.waiting import scaled, wait_until
from zzd.services import Services

pytestmark = pytest.mark.postgres


async def _counting_services(url: str, log: list[tuple[str, str]]) -> Services:
    s = Services.build(make_settings(url, db_chat_pool_size=1), passwords=FAST_PASSWORDS)
    assert s.chat_db is not None and s.chat_db is not s.db
    count_trips(s.chat_db.writer, log)
    await s.start()
    return s


def _chat_statements(trips: list[tuple[str, str]]) -> list[str]:
    """The names of ``messaging.chat_storage``'s statements executed among ``trips``, in order."""
    names = {
        " ".join(getattr(chat_storage, n).split()): n
        for n in (
            "_PG_PEOPLE_AND_CHATS",
            "_PG_DIRECT",
            "_PG_NEW_DIRECT",
            "_PG_LOCK",
            "_PG_MESSAGES_AND_EVENTS",
            "_PG_EXISTING",
        )  # fmt: skip
    }
    return [names[sql] for call, sql in trips if call != "prepare" and sql in names]


def _others(trips: list[tuple[str, str]]) -> list[str]:
    """The statements among ``trips`` that are neither the chat's, nor the event log's, nor BEGIN/COMMIT."""
    chat = {" ".join(getattr(chat_storage, n).split()) for n in dir(chat_storage) if n.startswith("_PG_")}
    return [
        sql
        for _, sql in trips
        if sql not in chat
        and sql not in ("BEGIN;", "COMMIT;")
        and "person_streams" not in sql
        and "person_events" not in sql
    ]


async def _members(s: Services, conversation_id: int) -> list[int]:
    async with s.db.read() as conn:
        res = await conn.exec_driver_sql(
            "SELECT person_id FROM conversation_members WHERE conversation_id = $1 ORDER BY person_id",
            (conversation_id,),
        )
        return [int(p) for (p,) in res]


async def _last_message(s: Services, conversation_id: int) -> int:
    async with s.db.read() as conn:
        res = await conn.exec_driver_sql("SELECT last_message_id FROM conversations WHERE id = $1", (conversation_id,))
        return int(res.scalar_one())


async def test_statements_per_send_batch(pg_database: str) -> None:
    log: list[tuple[str, str]] = []
    s = await _counting_services(pg_database, log)
    try:
        a, b, c = [(await new_person(s))[0] for _ in range(3)]
        await s.events.ensure_streams([a, b, c])

        async def batch(sender: int, to: int, cmid: str) -> tuple[SendResult, list[tuple[str, str]]]:
            log.clear()
            res = await s.chat.send(SendRequest(sender, to, cmid, "statements"))
            return res, list(log)

        await batch(a, b, "warm-new")  # prepares the statements of a new chat
        await batch(a, b, "warm-old")  # and of an existing one
        await batch(a, b, "warm-old")  # and of a retry
        first, new_chat = await batch(a, c, "new")
        second, old_chat = await batch(c, a, "old")
        retry, again = await batch(c, a, "old")
    finally:
        await s.stop()

    # BEGIN, the reads (the chats locked as read) with the new chat and its members, the messages
    # with their events, COMMIT.
    assert _chat_statements(new_chat) == ["_PG_PEOPLE_AND_CHATS", "_PG_MESSAGES_AND_EVENTS"]
    assert _others(new_chat) == [], new_chat
    assert len(new_chat) <= 4, new_chat
    assert _chat_statements(old_chat) == ["_PG_PEOPLE_AND_CHATS", "_PG_MESSAGES_AND_EVENTS"]
    assert _others(old_chat) == [], old_chat
    assert len(old_chat) <= 4, old_chat
    # A retry: no event, its stored message read back by its key and answered as a duplicate.
    assert _chat_statements(again) == ["_PG_PEOPLE_AND_CHATS", "_PG_MESSAGES_AND_EVENTS", "_PG_EXISTING"]
    assert _others(again) == [], again
    assert len(again) == 5, again
    # BEGIN and COMMIT are asyncpg's own (kernel.db.held): no SQLAlchemy transaction, no pool round trip.
    for trips in (new_chat, old_chat, again):
        assert (trips[0][1], trips[-1][1]) == ("BEGIN;", "COMMIT;"), trips
    assert (retry.message_id, retry.duplicate) == (second.message_id, True)

    assert second.conversation_id == first.conversation_id
    assert await _members(s, first.conversation_id) == sorted([a, c])
    assert await _last_message(s, first.conversation_id) == second.message_id


async def test_a_chat_with_oneself_has_one_membership(pg_database: str) -> None:
    s = Services.build(make_settings(pg_database, db_chat_pool_size=1), passwords=FAST_PASSWORDS)
    await s.start()
    try:
        a, _ = await new_person(s)
        res = await s.chat.send(SendRequest(a, a, "self", "备忘"))
        assert await _members(s, res.conversation_id) == [a]
        assert await _last_message(s, res.conversation_id) == res.message_id
    finally:
        await s.stop()


async def test_a_chat_created_meanwhile_by_another_transaction_is_read_and_joined_once(pg_database: str) -> None:
    """Another process creates the same direct chat while this batch's insert waits for its row.

    The batch's insert then skips the key, and the committed row is not in that
    statement's snapshot: the batch must read it in a statement of its own and
    write no memberships (the creator wrote them).
    """
    log: list[tuple[str, str]] = []
    s = await _counting_services(pg_database, log)
    try:
        a, b = [(await new_person(s))[0] for _ in range(2)]
        async with s.db.write() as other:  # the other process's batch, on a connection of its own
            store = ChatStore(await driver_in_transaction(other), now=s.clock.now())
            theirs = (await store.create_direct({direct_key(a, b): (a, b)}))[direct_key(a, b)]
            log.clear()
            send = asyncio.ensure_future(s.chat.send(SendRequest(a, b, "raced", "同时")))

            async def waiting_for_their_row() -> bool:
                async with s.db.read() as conn:
                    res = await conn.exec_driver_sql(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                        " AND query LIKE '%INSERT INTO conversations%'"
                    )
                    return int(res.scalar_one()) > 0

            await wait_until(waiting_for_their_row, what="the batch's insert waits for the other transaction's row")
            assert not send.done()
        res = await asyncio.wait_for(send, scaled(10))
    finally:
        await s.stop()
    assert _chat_statements(log) == [
        "_PG_PEOPLE_AND_CHATS",
        "_PG_NEW_DIRECT",
        "_PG_DIRECT",
        "_PG_LOCK",
        "_PG_MESSAGES_AND_EVENTS",
    ]
    assert res.conversation_id == theirs and res.duplicate is False
    assert await _members(s, theirs) == sorted([a, b])
    assert await _last_message(s, theirs) == res.message_id


async def _events(s: Services, person_id: int) -> list[tuple[int, str, str]]:
    async with s.db.read() as conn:
        res = await conn.exec_driver_sql(
            "SELECT seq, kind, payload FROM person_events WHERE person_id = $1 ORDER BY seq", (person_id,)
        )
        return [(int(q), str(k), str(d)) for q, k, d in res]


async def test_the_one_statement_writes_each_messages_event_as_the_model_would(pg_database: str) -> None:
    """A batch's messages and events in one statement: numbered per stream in id order, payloads exact.

    The first send goes to a person with no stream row yet, so the statement writes no event and the
    batch appends them through ``pg_append`` (which creates the stream); the next batch of three, one
    of them to oneself, is written by the statement alone. Every stream must then read 1, 2, 3, …
    with each payload equal to ``direct_message_text`` of its message.
    """
    from messaging.chat import direct_message_text

    s = Services.build(make_settings(pg_database, db_chat_pool_size=1), passwords=FAST_PASSWORDS)
    await s.start()
    try:
        (a, _), (b, _) = await new_person(s, "甲"), await new_person(s, "乙")
        await s.events.ensure_streams([a])
        first = await s.chat.send(SendRequest(a, b, "one", "第一"))  # b has no stream row
        reqs = [
            SendRequest(a, b, "two", "第二"),
            SendRequest(b, a, "three", '"引号"\n'),
            SendRequest(a, a, "me", "备忘"),
        ]
        results = await asyncio.gather(*(s.chat.send(r) for r in reqs))
        sent = [(SendRequest(a, b, "one", "第一"), first), *zip(reqs, results, strict=True)]
        names = {a: "甲", b: "乙"}
        want: dict[int, list[str]] = {a: [], b: []}
        for req, res in sorted(sent, key=lambda p: p[1].message_id):
            text = direct_message_text(res.message_id, res.conversation_id, req, names[req.sender_id], res.created_at)
            for p in dict.fromkeys([req.sender_id, req.recipient_id]):
                want[p].append(text)
        for p in (a, b):
            got = await _events(s, p)
            assert [q for q, _, _ in got] == list(range(1, len(want[p]) + 1))
            assert {k for _, k, _ in got} == {"message.new"}
            assert [d for _, _, d in got] == want[p]
        # each answer's seq is the sender's own event of that message
        for req, res in sent:
            assert res.sender_seq is not None
            seq, _, payload = (await _events(s, req.sender_id))[res.sender_seq - 1]
            assert (seq, payload.startswith(f'{{"id":{res.message_id},')) == (res.sender_seq, True)
    finally:
        await s.stop()
