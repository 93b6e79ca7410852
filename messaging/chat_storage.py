"""The direct chat's hot statements, written once per driver: a send batch's reads and writes.

Why fixed driver-level SQL: every chat message batch ran six to nine
SQLAlchemy statements, and building, compiling and binding them (a
parameter dict per row) was the largest share of a message's server time
after the socket itself (issue 15, py-spy). Here each statement is a constant
string with one array parameter per column (PostgreSQL ``unnest``, SQLite
``json_each``), so the drivers reuse their prepared statements and a batch of
any size costs the same few round trips.

On PostgreSQL :class:`ChatStore` sends them from the event loop, inside the caller's write
transaction (``driver_in_transaction``); on SQLite the ``sqlite_*`` functions run on aiosqlite's
thread, inside ``Database.sqlite_write``'s transaction (``messaging.chat._sqlite_batch``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from kernel.db.database import Database
from messaging.events import NewEvent, number_events, sqlite_append
from messaging.shapes import MessageSent
from messaging.txn_end import APPEND_EV
from messaging.wakeup import EventGroup

__all__ = [
    "PG_KEY_LOOKUPS",
    "ChatStore",
    "EventTail",
    "Muted",
    "NewMessage",
    "batch_on_sqlite_thread",
    "sqlite_existing",
    "sqlite_people_and_chats",
    "sqlite_store",
]

#: PostgreSQL settings of the direct chat's own connections (``ZZD_DB_CHAT_POOL_SIZE``).
#:
#: Why: every statement of a send batch finds rows by key, a few hundred keys
#: at a time (``= ANY($1)``, ``unnest`` joins), and the plan PostgreSQL keeps for
#: each of them (a prepared statement's generic plan, built on the 6th use and
#: kept until the table's statistics change) was a sequential scan whenever
#: it was first built on a table that was still small or never analysed: a
#: fresh database, or one without autovacuum. Then every batch read all of
#: ``conversations`` three to five times and all of ``person_streams`` twice,
#: and a chat message cost 1.2 ms of PostgreSQL CPU on 5,000 users (issue 15;
#: ``bench/chat_load.py --backend postgres``) instead of ~0.2 ms. With
#: sequential scans, hash and merge joins priced out, the only plans left
#: are index probes per key, which is what these statements want at any
#: table size. Only the chat's own pool gets them: the shared pool also runs
#: reports and bulk notices, which need those plans.
PG_KEY_LOOKUPS = {"enable_seqscan": "off", "enable_hashjoin": "off", "enable_mergejoin": "off"}

# The memberships of the chats a statement's ``created`` CTE inserted: the persons of the key at
# place i of the keys array are the two persons arrays' i-th (one row for a chat with oneself).
_PG_MEMBERS = """members AS (
    INSERT INTO conversation_members (conversation_id, person_id, last_read_message_id, joined_at)
    SELECT DISTINCT c.id, m.p, 0, {now}::timestamptz
    FROM created AS c, array_position({keys}::text[], c.direct_key::text) AS i,
         LATERAL (VALUES (({a}::bigint[])[i]), (({b}::bigint[])[i])) AS m(p)
)"""
# The batch's two reads in one statement, with the chats it lacks created: persons (tag true: id,
# name, disabled), direct chats (tag false: id, direct_key) and who muted an existing one (tag NULL:
# conversation id, person id as text; a chat created now has no mute), the existing chats' rows locked in
# id order as they are read (conversation rows before stream rows, in id order, like every other
# writer of messages). The key at place i of $2 (ascending) joins persons $3[i] and $4[i]; a
# missing chat is created, with its memberships, when both persons exist and are enabled (the
# sends the batch then stores), after every existing row is locked (the count, an InitPlan, reads
# all of ``chats`` before the first insert) and in key order, as ``_PG_NEW_DIRECT`` does alone.
# Both checks probe the tables' unique indexes (same snapshot as the CTEs: the same answers;
# a scan of the CTEs per key would grow with the square of the batch). A key another
# transaction created meanwhile is left out (that row is not in this statement's snapshot):
# the caller reads and locks it with ``create_direct``.
_PG_PEOPLE_AND_CHATS = """
WITH chats AS MATERIALIZED (
    SELECT id, direct_key FROM conversations WHERE direct_key = ANY($2::text[]) ORDER BY id FOR UPDATE
),
people AS MATERIALIZED (
    SELECT id, name, disabled FROM persons WHERE id = ANY($1::bigint[])
),
created AS (
    INSERT INTO conversations (kind, direct_key, created_at)
    SELECT 'direct', v.k, $5 FROM unnest($2::text[], $3::bigint[], $4::bigint[]) WITH ORDINALITY AS v(k, a, b, o)
    WHERE (SELECT count(*) FROM chats) >= 0
      AND NOT EXISTS (SELECT 1 FROM conversations AS c WHERE c.direct_key = v.k)
      AND EXISTS (SELECT 1 FROM persons AS p WHERE p.id = v.a AND NOT p.disabled)
      AND EXISTS (SELECT 1 FROM persons AS p WHERE p.id = v.b AND NOT p.disabled)
    ORDER BY o
    ON CONFLICT (direct_key) DO NOTHING
    RETURNING id, direct_key
),
{members}
SELECT true, id, name, disabled FROM people
UNION ALL
SELECT false, id, direct_key, false FROM chats
UNION ALL
SELECT false, id, direct_key, false FROM created
UNION ALL
SELECT NULL, m.conversation_id, m.person_id::text, true FROM conversation_members AS m
WHERE m.conversation_id IN (SELECT id FROM chats) AND m.muted
""".format(members=_PG_MEMBERS.format(now="$5", keys="$2", a="$3", b="$4"))  # noqa: S608 - constant parts only
_SQLITE_PEOPLE = "SELECT id, name, disabled FROM persons WHERE id IN (SELECT value FROM json_each(?))"
_SQLITE_MUTED = (
    "SELECT conversation_id, person_id FROM conversation_members"
    " WHERE conversation_id IN (SELECT value FROM json_each(?)) AND muted"
)
_PG_DIRECT = "SELECT direct_key, id FROM conversations WHERE direct_key = ANY($1::text[])"
_SQLITE_EXISTING = """
SELECT m.id, m.conversation_id, m.sender_id, m.client_msg_id, m.created_at
FROM json_each(?) AS k JOIN messages AS m
  ON m.sender_id = json_extract(k.value, '$[0]') AND m.client_msg_id = json_extract(k.value, '$[1]')
"""
_SQLITE_DIRECT = "SELECT direct_key, id FROM conversations WHERE direct_key IN (SELECT value FROM json_each(?))"
# The chats this statement creates, their memberships, and their ids. The persons of the key
# at place i of $1 are $2[i] and $3[i] (one row for a chat with oneself: DISTINCT). A key
# another transaction created (committed before, or while this one waited for its row) is
# left out: that row is not in this statement's snapshot, and its creator wrote the memberships.
_PG_NEW_DIRECT = """
WITH created AS (
    INSERT INTO conversations (kind, direct_key, created_at)
    SELECT 'direct', k, $4 FROM unnest($1::text[]) WITH ORDINALITY AS v(k, o) ORDER BY o
    ON CONFLICT (direct_key) DO NOTHING
    RETURNING id, direct_key
),
{members}
SELECT direct_key, id FROM created
""".format(members=_PG_MEMBERS.format(now="$4", keys="$1", a="$2", b="$3"))  # noqa: S608 - constant parts only
_SQLITE_NEW_DIRECT = """
INSERT INTO conversations (kind, direct_key, created_at) VALUES ('direct', ?, ?)
ON CONFLICT (direct_key) DO NOTHING
"""
_SQLITE_MEMBER = (
    "INSERT INTO conversation_members (conversation_id, person_id, last_read_message_id, joined_at)"
    " VALUES (?, ?, 0, ?) ON CONFLICT (conversation_id, person_id) DO NOTHING"
)
# Conversation rows before stream rows, in id order, like every other writer of messages.
_PG_LOCK = "SELECT id FROM conversations WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE"
# A retried send's stored message, by its key (the unique index on (sender_id, client_msg_id)).
_PG_EXISTING = """
SELECT m.id, m.conversation_id, m.sender_id, m.client_msg_id, m.created_at
FROM unnest($1::bigint[], $2::text[]) AS k(sender, cmid)
JOIN messages AS m ON m.sender_id = k.sender AND m.client_msg_id = k.cmid
"""
# ``WHERE true``: SQLite's parser needs it between INSERT … SELECT and ON CONFLICT.
_SQLITE_MESSAGES = """
INSERT INTO messages (conversation_id, sender_id, client_msg_id, body, created_at)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), ?
FROM json_each(?) WHERE true
ON CONFLICT (sender_id, client_msg_id) DO NOTHING
RETURNING id, sender_id, client_msg_id
"""
_SQLITE_LAST = "UPDATE conversations SET last_message_id = ? WHERE id = ?"
# The messages not stored yet, each conversation's ``last_message_id`` set to the newest of them
# (a retry the conflict ignores returns no row and moves nothing), and their ``message.new``
# events, in one statement. Each inserted message's payload is ``$9 || id || its tail`` (``$7``,
# the text after the id; the sender's own is ``$10`` where not NULL: the two differ in ``muted``);
# one event to its sender and one to its recipient (``$6``; one for a
# chat with oneself), numbered in message id order onto the streams of ``$8`` (every sender and
# recipient, ascending). Returns the inserted messages (tag true: id, sender_id, client_msg_id)
# and the locked streams' heads before the append (tag false: person_id, last_seq); no event is
# written when a stream row is missing (``APPEND_EV``).
_PG_MESSAGES_ROWS = """
WITH inserted AS (
    INSERT INTO messages (conversation_id, sender_id, client_msg_id, body, created_at)
    SELECT c, s, m, b, $5 FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) AS v(c, s, m, b)
    ON CONFLICT (sender_id, client_msg_id) DO NOTHING
    RETURNING id, conversation_id, sender_id, client_msg_id
),
last AS (
    UPDATE conversations AS c SET last_message_id = n.m
    FROM (SELECT conversation_id AS id, max(id) AS m FROM inserted GROUP BY conversation_id) AS n
    WHERE c.id = n.id
),
ev AS (
    SELECT r.p, 'message.new'::text AS k,
           $9::text || i.id::text || CASE WHEN r.n = 1 THEN coalesce(t.own, t.tail) ELSE t.tail END AS d,
           row_number() OVER (ORDER BY i.id, r.n) AS o
    FROM inserted AS i
    JOIN unnest($2::bigint[], $3::text[], $6::bigint[], $7::text[], $10::text[]) AS t(s, m, rcpt, tail, own)
        ON t.s = i.sender_id AND t.m = i.client_msg_id
    CROSS JOIN LATERAL (VALUES (i.sender_id, 1), (t.rcpt, 2)) AS r(p, n)
    WHERE r.n = 1 OR r.p <> i.sender_id
),
"""
_PG_MESSAGES_ANSWER = """
SELECT true, id, sender_id, client_msg_id FROM inserted
UNION ALL
SELECT false, person_id, last_seq, NULL FROM locked
"""
_PG_MESSAGES_AND_EVENTS = "".join((_PG_MESSAGES_ROWS, APPEND_EV.format(persons="$8", now="$5"), _PG_MESSAGES_ANSWER))

#: (conversation_id, sender_id, client_msg_id, body) of one message to store.
NewMessage = tuple[int, int, str, str]
#: A stored message's event: ``(sender_id, client_msg_id)``'s message → its ``message.new`` payload's
#: text after the id, its recipient, and the sender's own text after the id when it differs (``muted``:
#: each reader's own flag), else None (``messaging.chat``).
EventTail = tuple[str, int, str | None]
#: Direct chats muted by one of their two persons: (conversation id, person id).
Muted = set[tuple[int, int]]


def batch_on_sqlite_thread(db: Database) -> bool:
    """Whether a send batch runs whole on aiosqlite's thread (SQLite: ``messaging.chat._sqlite_batch``
    with the ``sqlite_*`` functions below) rather than statement by statement from the event loop
    (PostgreSQL: :class:`ChatStore`)."""
    return db.is_sqlite


class ChatStore:
    """The statements of one send batch on one asyncpg connection (PostgreSQL), inside its transaction
    (``kernel.db.held.HeldConnection``). SQLite's batch runs whole on aiosqlite's thread instead (the
    ``sqlite_*`` functions below)."""

    __slots__ = ("_driver", "_now")

    def __init__(self, driver: Any, *, now: datetime) -> None:
        self._driver = driver
        self._now = now

    async def people_and_chats(
        self, ids: Sequence[int], pairs: dict[str, tuple[int, int]]
    ) -> tuple[dict[int, tuple[str, bool]], dict[str, int], Muted]:
        """The batch's two reads, with the chats it lacks created: id → (name, disabled) of
        the persons among ``ids`` that exist, and direct_key → conversation id of the direct
        chats of ``pairs`` (``direct_key`` → its two persons), those that existed and those
        created now: a missing chat whose two persons exist and are enabled (the only ones a
        send stores into) is created with its memberships; and which of the existing chats'
        persons muted them (``message.new`` says so to each, as in every other conversation).

        One statement; a chat another transaction created meanwhile is left out (see
        ``_PG_PEOPLE_AND_CHATS``), and :meth:`create_direct` reads it. Why with the reads: under
        the chat load nearly every batch creates a chat, and a statement of its own was one more
        round trip (issue 15).
        """
        keys = sorted(pairs)  # one insert order: two batches creating common chats wait in turn, never in a cycle
        firsts, seconds = [pairs[k][0] for k in keys], [pairs[k][1] for k in keys]
        found: tuple[dict[int, tuple[str, bool]], dict[str, int], Muted] = ({}, {}, set())
        rows = await self._driver.fetch(_PG_PEOPLE_AND_CHATS, list(ids), keys, firsts, seconds, self._now)
        for person, i, text, disabled in rows:
            if person is None:
                found[2].add((int(i), int(text)))
            elif person:
                found[0][int(i)] = (str(text), bool(disabled))
            else:
                found[1][str(text)] = int(i)
        return found

    async def direct_ids(self, keys: Sequence[str]) -> dict[str, int]:
        """direct_key → conversation id of the direct chats that exist."""
        rows = await self._driver.fetch(_PG_DIRECT, list(keys))
        return {str(k): int(i) for k, i in rows}

    async def create_direct(self, pairs: dict[str, tuple[int, int]]) -> dict[str, int]:
        """Create these direct chats (``direct_key`` → its two persons) and their memberships, if
        missing; returns direct_key → conversation id of each.

        One statement creates them; only when another transaction created one of the keys
        first (it is not in that statement's snapshot) does a second read it.
        """
        keys = sorted(pairs)  # one insert order: two batches creating common chats wait in turn, never in a cycle
        firsts, seconds = [pairs[k][0] for k in keys], [pairs[k][1] for k in keys]
        rows = await self._driver.fetch(_PG_NEW_DIRECT, keys, firsts, seconds, self._now)
        ids = {str(k): int(i) for k, i in rows}
        raced = [k for k in keys if k not in ids]
        if raced:  # created by another transaction meanwhile: read, and locked like the chats read first
            theirs = await self.direct_ids(raced)
            await self._driver.fetch(_PG_LOCK, sorted(theirs.values()))
            ids.update(theirs)
        return ids

    async def existing(self, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], MessageSent]:
        """The messages already stored under these (sender_id, client_msg_id) keys, answered as duplicates
        (a retry of a send whose first attempt committed, or one another process stored meanwhile)."""
        if not keys:
            return {}
        rows = await self._driver.fetch(_PG_EXISTING, [s for s, _ in keys], [c for _, c in keys])
        return {
            (int(s), str(c)): MessageSent(int(i), int(cv), t.astimezone(UTC), True, None) for i, cv, s, c, t in rows
        }

    async def store_messages(
        self, rows: Sequence[NewMessage], tails: Sequence[EventTail], head: str
    ) -> tuple[dict[tuple[int, str], int], list[NewEvent], list[EventGroup] | None]:
        """Store the messages not stored yet, move their conversations' ``last_message_id`` and
        append the inserted messages' ``message.new`` events, in one statement.

        ``tails[i]`` is the event of ``rows[i]``'s message: its payload is ``head``, the id, then
        the tail. Returns (sender_id, client_msg_id) → id of the messages inserted now, their
        events in id order, and the events' wake-up groups — or ``None`` when a stream row was
        missing and no event was written: the caller then appends the events
        through ``Txn.append``, which creates the stream.

        Why the events with the messages: each statement of a send batch is a round trip that
        waits for a turn of this process's event loop and of a database backend (SQLite: a hand-off
        to its thread and back); with other traffic on the machine those waits were most of a
        chat message's tail (issue 13).
        """
        cols = list(zip(*rows, strict=True))
        persons = sorted({sender for _, sender, _, _ in rows} | {r for _, r, _ in tails})
        found = await self._driver.fetch(
            _PG_MESSAGES_AND_EVENTS,
            *(list(c) for c in cols),
            self._now,
            [r for _, r, _ in tails],
            [t for t, _, _ in tails],
            persons,
            head,
            [own for _, _, own in tails],
        )
        inserted: dict[tuple[int, str], int] = {}
        last: dict[int, int] = {}
        for message, i, sender_or_seq, c in found:
            if message:
                inserted[(int(sender_or_seq), str(c))] = int(i)
            else:
                last[int(i)] = int(sender_or_seq)
        events = _events_of(rows, tails, head, inserted)
        return inserted, events, (number_events(events, last) if len(last) == len(persons) else None)


def _last_messages(rows: Sequence[NewMessage], inserted: dict[tuple[int, str], int]) -> dict[int, int]:
    """conversation id → the newest of the messages inserted now."""
    last: dict[int, int] = {}
    for conv, sender, cmid, _ in rows:
        mid = inserted.get((sender, cmid))
        if mid is not None and mid > last.get(conv, 0):
            last[conv] = mid
    return last


def _events_of(
    rows: Sequence[NewMessage], tails: Sequence[EventTail], head: str, inserted: dict[tuple[int, str], int]
) -> list[NewEvent]:
    """The ``message.new`` of each message inserted now, in id order (as the statement numbers them):
    one event to the sender and the recipient, or, when the sender's own text differs (``muted``),
    the sender's then the recipient's."""
    out: list[tuple[int, NewEvent]] = []
    for (_, sender, cmid, _), (tail, recipient, own) in zip(rows, tails, strict=True):
        mid = inserted.get((sender, cmid))
        if mid is None:
            continue
        if own is None:
            out.append((mid, NewEvent("message.new", f"{head}{mid}{tail}", [sender, recipient])))
            continue
        out.append((mid, NewEvent("message.new", f"{head}{mid}{own}", [sender])))
        if recipient != sender:
            out.append((mid, NewEvent("message.new", f"{head}{mid}{tail}", [recipient])))
    out.sort(key=lambda pair: pair[0])  # stable: a message's two events stay sender first
    return [e for _, e in out]


def sqlite_store(
    db: sqlite3.Connection, rows: Sequence[NewMessage], tails: Sequence[EventTail], head: str, at: str
) -> tuple[dict[tuple[int, str], int], list[NewEvent], list[EventGroup]]:
    """:meth:`ChatStore.store_messages` on SQLite (a stream row missing is created: ``sqlite_append``)."""
    inserted = _sqlite_insert_messages(db, rows, at)
    events = _events_of(rows, tails, head, inserted)
    persons = sorted({p for e in events for p in e.recipients})
    return inserted, events, (sqlite_append(db, persons, events, at) if events else [])


def sqlite_people_and_chats(
    db: sqlite3.Connection, ids: list[int], pairs: dict[str, tuple[int, int]], at: str
) -> tuple[dict[int, tuple[str, bool]], dict[str, int], Muted]:
    """:meth:`ChatStore.people_and_chats` on SQLite: one writer, so no other can create a chat meanwhile."""
    people = {int(i): (str(n), bool(d)) for i, n, d in db.execute(_SQLITE_PEOPLE, (json.dumps(ids),))}
    chats = {str(k): int(i) for k, i in db.execute(_SQLITE_DIRECT, (json.dumps(list(pairs)),))}
    muted = {(int(c), int(p)) for c, p in db.execute(_SQLITE_MUTED, (json.dumps(list(chats.values())),))}
    missing = {
        k: pair for k, pair in pairs.items() if k not in chats and all(p in people and not people[p][1] for p in pair)
    }
    if missing:
        chats.update(_sqlite_create_direct(db, missing, at))
    return people, chats, muted


def _sqlite_create_direct(db: sqlite3.Connection, pairs: dict[str, tuple[int, int]], at: str) -> dict[str, int]:
    keys = list(pairs)
    db.executemany(_SQLITE_NEW_DIRECT, [(k, at) for k in keys])
    ids = {str(k): int(i) for k, i in db.execute(_SQLITE_DIRECT, (json.dumps(keys),))}
    db.executemany(_SQLITE_MEMBER, [(ids[k], p, at) for k in keys for p in dict.fromkeys(pairs[k])])
    return ids


def _sqlite_insert_messages(db: sqlite3.Connection, rows: Sequence[NewMessage], at: str) -> dict[tuple[int, str], int]:
    found = db.execute(_SQLITE_MESSAGES, (at, json.dumps(rows))).fetchall()
    inserted = {(int(s), str(c)): int(i) for i, s, c in found}
    db.executemany(_SQLITE_LAST, [(m, c) for c, m in _last_messages(rows, inserted).items()])
    return inserted


def sqlite_existing(db: sqlite3.Connection, keys: list[tuple[int, str]]) -> dict[tuple[int, str], MessageSent]:
    """The messages already stored under these (sender_id, client_msg_id) keys, answered as duplicates."""
    if not keys:
        return {}
    found = db.execute(_SQLITE_EXISTING, (json.dumps(keys),)).fetchall()
    return {(int(s), str(c)): MessageSent(int(i), int(cv), _sqlite_instant(t), True, None) for i, cv, s, c, t in found}


def _sqlite_instant(text: str) -> datetime:
    """A stored instant as ``UTCDateTime`` reads it back (SQLite keeps UTC text without a zone)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
