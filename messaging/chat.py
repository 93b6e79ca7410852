"""Direct chat between two persons: send (idempotent, group-committed).

Send path (docs/style.md lesson 4, persist then publish): the message, the
conversation and one event per recipient stream are written in one
transaction; only after it commits is the sender acknowledged and the
wake-up handed to ``notify`` for real-time delivery.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.held import HeldConnection
from kernel.errors import Forbidden, NotFound
from kernel.text import check_text
from kernel.wire import check_message_client_id, dumps
from messaging.batching import Batcher
from messaging.chat_storage import (
    ChatStore,
    EventTail,
    Muted,
    NewMessage,
    batch_on_sqlite_thread,
    sqlite_existing,
    sqlite_people_and_chats,
    sqlite_store,
)
from messaging.db_errors import with_db_retry
from messaging.events import pg_append, sqlite_time
from messaging.ports import Notify
from messaging.schema import conversations
from messaging.shapes import MessageNew, MessageSent, Sender
from messaging.unit_of_work import UnitOfWork
from messaging.wakeup import EventGroup

logger = logging.getLogger(__name__)

__all__ = ["ChatService", "Notify", "SendRequest", "SendResult"]

MAX_BODY_CHARS = 5_000


@dataclass(frozen=True, slots=True)
class SendRequest:
    sender_id: int
    recipient_id: int
    client_msg_id: str
    body: str


#: The answer to a direct send (one shape with a conversation post's).
SendResult = MessageSent


def direct_key(a: int, b: int) -> str:
    return f"{a}:{b}" if a <= b else f"{b}:{a}"


def validate_send(req: SendRequest) -> SendRequest:
    """Reject bad input before anything touches the database."""
    check_message_client_id(req.client_msg_id)
    check_text(req.body, field="body", max_chars=MAX_BODY_CHARS)
    if req.recipient_id <= 0:
        raise NotFound("no such person", data={"person_id": req.recipient_id})
    return req


#: ``MessageNew(...).model_dump()`` of a direct message; each message fills in its own fields.
_DIRECT = MessageNew(
    id=0,
    conversation_id=0,
    conversation_kind="direct",
    sender=Sender(id=0, name=""),
    recipient_id=0,
    client_msg_id="0",
    body="",
    created_at=datetime(2000, 1, 1, tzinfo=UTC),
).model_dump()


def direct_message_text(
    message_id: int, conversation_id: int, req: SendRequest, sender_name: str, at: datetime, *, muted: bool = False
) -> str:
    """``MessageNew(...).text()`` of a direct message, without building and validating a model per message.

    Why: the model's validation and dump were a tenth of a chat message's server
    time, for values this module has just written itself. The template is the
    model's own dump, so every field (and any field added later) is present
    and in order; ``tests/test_chat_payload.py`` checks the two stay equal.
    """
    d = dict(_DIRECT)
    d["id"] = message_id
    d["conversation_id"] = conversation_id
    d["sender"] = {**_DIRECT["sender"], "id": req.sender_id, "name": sender_name}
    d["recipient_id"] = req.recipient_id
    d["client_msg_id"] = req.client_msg_id
    d["body"] = req.body
    d["created_at"] = at
    d["muted"] = muted
    return dumps(d)


#: The text of every direct message's payload before its id (``id`` is the model's first field).
_PAYLOAD_HEAD = '{"id":'


def direct_message_tail(
    conversation_id: int, req: SendRequest, sender_name: str, at: datetime, *, muted: bool = False
) -> str:
    """The payload of ``req``'s message after its id: ``_PAYLOAD_HEAD``, the id, then this is
    :func:`direct_message_text`. Why: on PostgreSQL the message and its events are written in one
    statement, before this process knows the id (``ChatStore.store_messages``).
    """
    text = direct_message_text(0, conversation_id, req, sender_name, at, muted=muted)
    if not text.startswith(_PAYLOAD_HEAD + "0,"):
        raise AssertionError(f"a direct message's payload must start with its id: {text[:40]!r}")
    return text[len(_PAYLOAD_HEAD) + 1 :]


class ChatService:
    def __init__(self, uow: UnitOfWork, *, max_batch: int = 256) -> None:
        self._db = uow.db
        self._uow = uow
        self._held: HeldConnection | None = None
        if batch_on_sqlite_thread(uow.db):
            # The whole batch in one trip to aiosqlite's thread (``_sqlite_batch``).
            self._batcher: Batcher[SendRequest, SendResult] = Batcher(
                self._write_batch_sqlite, max_batch=max_batch, name="chat-send"
            )
        else:
            # One connection held for the batches, on asyncpg's own transaction (``_pg_batch``).
            self._held = HeldConnection(uow.db)
            self._batcher = Batcher(self._write_batch_pg, max_batch=max_batch, name="chat-send")

    async def send(self, req: SendRequest) -> SendResult:
        """Store a direct message and return once it is committed.

        Raises:
            BadRequest: invalid body or client_msg_id.
            NotFound: the recipient does not exist (or is disabled).
            Unavailable: the database is down; retry with the same client_msg_id.
        """
        return await self._batcher.submit(validate_send(req))

    async def close(self) -> None:
        await self._batcher.close()
        if self._held is not None:
            await self._held.close()

    async def _write_batch_pg(self, reqs: Sequence[SendRequest]) -> list[SendResult | BaseException]:
        """A send batch on PostgreSQL: one transaction on the held connection (``kernel.db.held``).

        Why not ``UnitOfWork.run``: its SQLAlchemy transaction (pool checkout and check-in, the
        adapter's lazy ``BEGIN``, the commit through greenlet hops) cost about twice the client CPU of
        asyncpg's own ``BEGIN``/``COMMIT`` on a connection kept between batches (issue 15 item 1);
        a send batch needs none of what it adds (outbox rows, audit entries, callbacks). The
        statements are the same (``ChatStore``); the wake-ups go out after the commit.
        """
        assert self._held is not None
        held = self._held
        now = self._uow.clock.now()
        answers, groups = await with_db_retry(lambda: held.run(_pg_batch, reqs, now))
        self._uow.announce_groups(groups)
        return answers

    async def _write_batch_sqlite(self, reqs: Sequence[SendRequest]) -> list[SendResult | BaseException]:
        """A send batch on SQLite: one transaction, whole on aiosqlite's thread (``Database.sqlite_write``).

        Why: through ``UnitOfWork.run`` a batch was four trips to that thread (``BEGIN IMMEDIATE``,
        the reads with the new chats, the messages with their events, ``COMMIT``), each a hand-off
        and back (~30 µs of CPU), and SQLAlchemy's transaction around them on the event loop
        (issue 15). The checks and answers are the PostgreSQL path's own (``_checked``, ``_rows``,
        ``_answer``), run on the thread between the statements; the wake-ups go out after the commit.
        """
        now = self._uow.clock.now()
        answers, groups = await with_db_retry(lambda: self._db.sqlite_write(_sqlite_batch, reqs, now))
        self._uow.announce_groups(groups)
        return answers

    @staticmethod
    async def _direct_conversations(store: ChatStore, reqs: list[SendRequest], known: dict[str, int]) -> dict[str, int]:
        """direct_key → conversation id for ``reqs``, creating the chats ``known`` lacks.

        ``known`` comes from ``ChatStore.people_and_chats``, which creates the batch's new chats
        itself: what it lacks is a chat another process created meanwhile (PostgreSQL), which
        ``create_direct`` reads and locks.
        """
        pairs = {direct_key(r.sender_id, r.recipient_id): (r.sender_id, r.recipient_id) for r in reqs}
        found = {k: known[k] for k in pairs if k in known}
        missing = {k: pairs[k] for k in pairs if k not in found}
        if missing:
            found.update(await store.create_direct(missing))
        return found

    @staticmethod
    async def _conv_ids(conn: AsyncConnection, keys: list[str]) -> dict[str, int]:
        res = await conn.execute(
            select(conversations.c.direct_key, conversations.c.id).where(conversations.c.direct_key.in_(keys))
        )
        return {k: int(i) for k, i in res}

    # --- reads -------------------------------------------------------------
    # History, read markers and the inbox of every conversation kind, direct
    # chats included, are served by messaging.conversations behind its one
    # membership check (docs/reliability.md decision 6).

    async def direct_conversation_id(self, actor_id: int, peer_id: int) -> int | None:
        async with self._db.read() as conn:
            ids = await self._conv_ids(conn, [direct_key(actor_id, peer_id)])
        return ids.get(direct_key(actor_id, peer_id))


#: A send's identity: (sender_id, client_msg_id).
_Key = tuple[int, str]
_Out = list[SendResult | BaseException | None]


def _persons(reqs: Sequence[SendRequest]) -> list[int]:
    return sorted({r.sender_id for r in reqs} | {r.recipient_id for r in reqs})


def _pairs(reqs: Sequence[SendRequest]) -> dict[str, tuple[int, int]]:
    return {direct_key(r.sender_id, r.recipient_id): (r.sender_id, r.recipient_id) for r in reqs}


def _checked(reqs: Sequence[SendRequest], people: dict[int, tuple[str, bool]]) -> tuple[_Out, dict[_Key, SendRequest]]:
    """The refusals (a disabled sender, a missing or disabled recipient), and the sends to store, by key.

    A retry of an already-stored message is found by the conflict-ignoring insert and answered
    from the database (``_answer``'s ``existing``).
    """
    out: _Out = [None] * len(reqs)
    todo: dict[_Key, SendRequest] = {}
    for i, r in enumerate(reqs):
        if r.sender_id not in people or people[r.sender_id][1]:
            out[i] = Forbidden("sender is disabled")
        elif r.recipient_id not in people or people[r.recipient_id][1]:
            out[i] = NotFound("no such person", data={"person_id": r.recipient_id})
        else:
            todo.setdefault((r.sender_id, r.client_msg_id), r)
    return out, todo


def _rows(
    todo: dict[_Key, SendRequest],
    conv_ids: dict[str, int],
    people: dict[int, tuple[str, bool]],
    muted: Muted,
    now: datetime,
) -> tuple[list[NewMessage], list[EventTail]]:
    """The messages to insert and their events' tails: each payload is the head, its id, then the
    tail (known before the id is); each reader's says whether they muted the chat."""
    rows = [
        (conv_ids[direct_key(r.sender_id, r.recipient_id)], r.sender_id, r.client_msg_id, r.body) for r in todo.values()
    ]
    tails = [
        _tails(conv, r, people[r.sender_id][0], now, muted) for (conv, *_), r in zip(rows, todo.values(), strict=True)
    ]
    return rows, tails


def _tails(conv: int, r: SendRequest, name: str, now: datetime, muted: Muted) -> EventTail:
    """The recipient's payload tail, and the sender's own when their ``muted`` differs."""
    theirs, mine = (conv, r.recipient_id) in muted, (conv, r.sender_id) in muted
    tail = direct_message_tail(conv, r, name, now, muted=theirs)
    own = None if mine == theirs else direct_message_tail(conv, r, name, now, muted=mine)
    return tail, r.recipient_id, own


def _answer(
    reqs: Sequence[SendRequest],
    out: _Out,
    todo: dict[_Key, SendRequest],
    conv_ids: dict[str, int],
    tails: Sequence[EventTail],
    inserted: dict[_Key, int],
    groups: Sequence[EventGroup],
    existing: dict[_Key, SendResult],
    now: datetime,
) -> None:
    """Fill ``out`` for the sends stored now (the first of a key with its sender's seq, a repeat
    within the batch as a duplicate) and those stored before (``existing``)."""
    # The sender's seq goes into the answer. The events are in message id order, one per
    # message, or two (the sender's first) when the two persons' ``muted`` differ.
    split = {k for k, (_, rcpt, own) in zip(todo, tails, strict=True) if own is not None and rcpt != k[0]}
    sender_seq: dict[_Key, int] = {}
    each = iter(groups)
    for k in sorted(inserted, key=inserted.__getitem__):
        sender_seq[k] = next(seq for pid, seq in next(each).recipients if pid == k[0])
        if k in split:
            next(each)
    answered: set[_Key] = set()
    for i, r in enumerate(reqs):
        if out[i] is not None:
            continue
        k = (r.sender_id, r.client_msg_id)
        if k in inserted:
            cid = conv_ids[direct_key(r.sender_id, r.recipient_id)]
            first = k not in answered
            answered.add(k)
            out[i] = SendResult(inserted[k], cid, now, not first, sender_seq.get(k) if first else None)
        else:
            out[i] = existing[k]


def _answers(out: _Out) -> list[SendResult | BaseException]:
    return [o if o is not None else NotFound("no such person") for o in out]


async def _pg_batch(
    driver: Any, reqs: Sequence[SendRequest], now: datetime
) -> tuple[list[SendResult | BaseException], list[EventGroup]]:
    """A send batch on PostgreSQL inside ``HeldConnection.run``'s transaction: the reads (the chats
    locked as read, the new ones created), checks, the messages with their events, a retried
    message read back, the answers. Every statement goes straight to asyncpg (``ChatStore``)."""
    store = ChatStore(driver, now=now)
    people, chats, muted = await store.people_and_chats(_persons(reqs), _pairs(reqs))
    out, todo = _checked(reqs, people)
    groups: list[EventGroup] = []
    if todo:
        conv_ids = await ChatService._direct_conversations(store, list(todo.values()), chats)
        rows, tails = _rows(todo, conv_ids, people, muted, now)
        # Conversation rows (locked as they were read) before stream rows, in id order, like every
        # other writer of messages (messaging/conversations): one lock order, and ids commit in order.
        inserted, new_events, new_groups = await store.store_messages(rows, tails, _PAYLOAD_HEAD)
        # A recipient without a stream row: no event was written; this creates the stream and writes them.
        groups = new_groups if new_groups is not None else await pg_append(driver, new_events, now)
        # Lost a race with another process for the same key, or a retry: the stored message stands.
        existing = await store.existing([k for k in todo if k not in inserted])
        _answer(reqs, out, todo, conv_ids, tails, inserted, groups, existing, now)
    return _answers(out), groups


def _sqlite_batch(
    db: sqlite3.Connection, reqs: Sequence[SendRequest], now: datetime
) -> tuple[list[SendResult | BaseException], list[EventGroup]]:
    """``_pg_batch`` on SQLite, on aiosqlite's thread inside ``Database.sqlite_write``'s
    transaction: the same reads, checks, writes and answers, with no trip back to the event loop
    between them (one writer: nothing else can create a chat or store a message meanwhile)."""
    at = sqlite_time(now)
    people, chats, muted = sqlite_people_and_chats(db, _persons(reqs), _pairs(reqs), at)
    out, todo = _checked(reqs, people)
    groups: list[EventGroup] = []
    if todo:
        # The reads created every chat whose two persons exist and are enabled: those of ``todo``.
        rows, tails = _rows(todo, chats, people, muted, now)
        inserted, _events, groups = sqlite_store(db, rows, tails, _PAYLOAD_HEAD, at)
        existing = sqlite_existing(db, [k for k in todo if k not in inserted])
        _answer(reqs, out, todo, chats, tails, inserted, groups, existing, now)
    return _answers(out), groups
