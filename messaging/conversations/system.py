"""System messages (joined, left, renamed) written inside a membership change's transaction.

Why keyed like a client message: ``client_msg_id`` is unique per sender, so a
key derived from the change (``sys:<conversation>:v<org version>:j``) makes the
note exactly-once even when two processes reconcile the same change.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from sqlalchemy import select, update

from kernel.db.dialect import insert_ignore
from kernel.schema import persons
from messaging.conversations.fanout import GROUP_KINDS, flush
from messaging.events import NewEvent
from messaging.schema import conversations, messages
from messaging.shapes import Mentions, MessageNew, Sender
from messaging.unit_of_work import Txn

logger = logging.getLogger(__name__)

__all__ = ["system_message"]


async def system_message(
    tx: Txn,
    *,
    conversation_id: int,
    conversation_kind: str,
    actor_id: int,
    key: str,
    detail: dict[str, object],
    about: Iterable[int],
    text: str,
    recipients: Iterable[int],
    extra_events: Iterable[NewEvent] = (),
) -> int | None:
    """Store the note and emit it to ``recipients``' streams; None when the key was already used.

    ``detail`` (e.g. ``{"event": "members", "joined": [...], "left": [...]}``) goes
    into the event as ``system``; ``about`` is stored as the note's person mentions.
    ``extra_events`` are emitted with the note, and only when the note is new: a
    change another process already noted has had its events too.
    """
    conn, now = tx.conn, tx.now
    about_ids = sorted(set(about))
    row = (
        await conn.execute(
            insert_ignore(conn, messages, ["sender_id", "client_msg_id"]).returning(messages.c.id),
            [
                {
                    "conversation_id": conversation_id,
                    "sender_id": actor_id,
                    "client_msg_id": key,
                    "body": text,
                    "created_at": now,
                    "kind": "system",
                    "mentions": json.dumps({"persons": about_ids, "positions": []}),
                    "system": json.dumps(detail, ensure_ascii=False),
                }
            ],
        )
    ).first()
    if row is None:
        return None
    mid = int(row[0])
    name = (await conn.execute(select(persons.c.name).where(persons.c.id == actor_id))).scalar_one()
    sides: dict[str, int | None] = {}
    if conversation_kind == "position":  # a thread's note names its sides, as every message of it does
        c = conversations.c
        row = (
            await conn.execute(
                select(c.position_id, c.peer_position_id, c.peer_person_id).where(c.id == conversation_id)
            )
        ).one()
        sides = {k: None if v is None else int(v) for k, v in row._mapping.items()}
    payload = MessageNew(
        id=mid,
        conversation_id=conversation_id,
        conversation_kind=conversation_kind,
        kind="system",
        sender=Sender(id=actor_id, name=name),
        client_msg_id=key,
        body=text,
        created_at=now,
        mentions=Mentions(persons=list(about_ids)),
        system=detail,
        **sides,
    )
    to = sorted(set(recipients))
    if conversation_kind in GROUP_KINDS:  # a member still owed an earlier message gets it first
        await flush(tx, conversation_id, to, mid)
    tx.emit(NewEvent("message.new", payload.text(), to), *extra_events)
    await conn.execute(update(conversations).where(conversations.c.id == conversation_id).values(last_message_id=mid))
    return mid
