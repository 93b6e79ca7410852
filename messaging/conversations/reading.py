"""Reading a conversation: history, read markers, read lists, the inbox, mute, and who its readers are.

Why a module of its own: these serve a member reading (and their own state in a conversation:
the read marker, mute), while ``service.py`` writes messages (threads, post, edit, recall).
Both sides ask ``readers`` who reads a message. ``ConversationService`` inherits
``ConversationReading``, so callers keep calling the service.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.dialect import insert_ignore
from kernel.errors import BadRequest, Forbidden, NotFound
from kernel.schema import persons
from messaging.conversations.access import (
    Access,
    ConversationRow,
    access,
    current_holders,
    former_holders_at,
    held_positions,
)
from messaging.conversations.inbox import inbox
from messaging.conversations.model import (
    MAX_HISTORY_PAGE,
    ConversationConfig,
    message_dict,
    names_reader,
    snippet,
)
from messaging.conversations.storage import stored_members
from messaging.events import NewEvent
from messaging.schema import conversation_members, conversations, messages
from messaging.shapes import ConversationMuted, ConversationRead, PeerRead
from messaging.unit_of_work import Txn, UnitOfWork

__all__ = ["ConversationReading", "readers"]


async def readers(conn: AsyncConnection, conv: ConversationRow, created_at: datetime | None = None) -> set[int]:
    """Everyone who reads a message of ``conv`` created at ``created_at`` (None: a new message, now)."""
    if conv.kind != "position":
        return (await stored_members(conn, conv.id))[0]
    out: set[int] = set()
    for holders in (await current_holders(conn, conv.side_positions)).values():
        out |= holders
    if conv.peer_person_id is not None:
        out.add(conv.peer_person_id)
    if created_at is not None:
        out |= await former_holders_at(conn, conv.side_positions, created_at)
    return out


class ConversationReading:
    """History, read markers, read lists, the inbox and mute of one person in a conversation."""

    def __init__(self, uow: UnitOfWork, config: ConversationConfig | None = None) -> None:
        self.db = uow.db
        #: Every write of conversations (service.py, here, groups.py, members.py, handover.py) is one of its
        #: units of work.
        self.uow = uow
        self.config = config or ConversationConfig()

    async def history(
        self, person_id: int, conversation_id: int, *, before: int | None = None, limit: int = 50
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Messages the person may read, newest first; returns (messages, next ``before`` or None)."""
        limit = max(1, min(limit, MAX_HISTORY_PAGE))
        async with self.db.read() as conn:
            acc = await access(conn, person_id, conversation_id)
            q = (
                select(messages, persons.c.name)
                .join(persons, persons.c.id == messages.c.sender_id)
                .where(acc.visible())
                .order_by(messages.c.id.desc())
                .limit(limit + 1)
            )
            if before is not None:
                q = q.where(messages.c.id < before)
            rows = (await conn.execute(q)).all()
            more = len(rows) > limit
            rows = rows[:limit]
            replies = await self._snippets(conn, acc, [int(r.reply_to) for r in rows if r.reply_to is not None])
            pair = await _direct_pair(conn, acc.conversation) if rows else None
            held = set(await held_positions(conn, person_id)) if any(r.mentions for r in rows) else set()
        items = []
        for r in rows:
            item = message_dict(
                r, r.name, replies.get(int(r.reply_to)) if r.reply_to is not None else None, acc.conversation, pair
            )
            # A system note stores the persons it is about as mentions: it names nobody.
            plain = r.recalled_at is None and r.kind != "system"
            item["mentioned"] = plain and names_reader(r.mentions, int(r.sender_id), person_id, held)
            items.append(item)
        return items, (items[-1]["id"] if more and items else None)

    @staticmethod
    async def _snippets(conn: AsyncConnection, acc: Access, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        rows = await conn.execute(
            select(messages.c.id, messages.c.body, messages.c.created_at, messages.c.recalled_at).where(
                messages.c.id.in_(wanted), messages.c.conversation_id == acc.conversation.id
            )
        )
        return {
            int(i): {"id": int(i), "snippet": snippet(b, r is not None) if acc.sees(t) else ""} for i, b, t, r in rows
        }

    async def _visible_message(self, conn: AsyncConnection, acc: Access, message_id: int) -> Any:
        row = (
            await conn.execute(
                select(messages.c.id, messages.c.sender_id, messages.c.created_at).where(
                    messages.c.id == message_id, messages.c.conversation_id == acc.conversation.id
                )
            )
        ).first()
        if row is None or not acc.sees(row.created_at):
            raise NotFound("no such message in this conversation", data={"message_id": message_id})
        return row

    async def mark_read(self, person_id: int, conversation_id: int, message_id: int) -> int:
        """Move the person's read marker forward; their other devices get ``conversation.read``.

        In a direct chat the peer also gets ``peer.read`` (as before issue 5).
        """

        async def change(tx: Txn) -> int:
            conn, now = tx.conn, tx.now
            acc = await access(conn, person_id, conversation_id)
            await self._visible_message(conn, acc, message_id)
            if message_id <= acc.last_read_message_id:
                return acc.last_read_message_id
            cm = conversation_members
            await _own_row(conn, conversation_id, person_id, now)
            await conn.execute(
                update(cm)
                .where(
                    cm.c.conversation_id == conversation_id,
                    cm.c.person_id == person_id,
                    cm.c.last_read_message_id < message_id,
                )
                .values(last_read_message_id=message_id)
            )
            read = ConversationRead(conversation_id=conversation_id, last_read_message_id=message_id)
            evs = [NewEvent("conversation.read", read.text(), [person_id])]
            if acc.conversation.kind == "direct":
                others = sorted((await readers(conn, acc.conversation)) - {person_id})
                if others:
                    peer = PeerRead(**dict(read), person_id=person_id)
                    evs.append(NewEvent("peer.read", peer.text(), others))
            tx.emit(*evs)
            return message_id

        return await self.uow.run(change)

    async def read_by(self, person_id: int, conversation_id: int, message_id: int) -> dict[str, Any]:
        """Who has read a message (the sender excluded), for conversations up to ``read_list_max`` readers."""
        async with self.db.read() as conn:
            acc = await access(conn, person_id, conversation_id)
            msg = await self._visible_message(conn, acc, message_id)
            audience = await readers(conn, acc.conversation, msg.created_at)
            audience.discard(int(msg.sender_id))
            if len(audience) > self.config.read_list_max:
                raise BadRequest(
                    f"read lists are kept for conversations of up to {self.config.read_list_max} readers",
                    data={"readers": len(audience), "limit": self.config.read_list_max},
                )
            rows = await conn.execute(
                select(conversation_members.c.person_id).where(
                    conversation_members.c.conversation_id == conversation_id,
                    conversation_members.c.last_read_message_id >= message_id,
                )
            )
            read = {int(r[0]) for r in rows} & audience
        return {"message_id": message_id, "read": sorted(read), "unread": sorted(audience - read)}

    async def inbox(self, person_id: int, *, cursor: str | None = None, limit: int = 50) -> dict[str, Any]:
        """The person's conversation list (messaging/conversations/inbox.py)."""
        async with self.db.read() as conn:
            return await inbox(conn, person_id, cursor=cursor, limit=limit)

    async def set_muted(self, person_id: int, conversation_id: int, muted: bool) -> dict[str, Any]:
        """Mute or unmute a conversation for oneself (events carry ``muted`` so devices stay quiet)."""

        async def change(tx: Txn) -> dict[str, Any]:
            conn, now = tx.conn, tx.now
            acc = await access(conn, person_id, conversation_id)
            if not acc.full:
                raise Forbidden("you no longer hold this position", data={"conversation_id": conversation_id})
            cm = conversation_members
            await _own_row(conn, conversation_id, person_id, now)
            await conn.execute(
                update(cm)
                .where(cm.c.conversation_id == conversation_id, cm.c.person_id == person_id)
                .values(muted=muted)
            )
            state = ConversationMuted(conversation_id=conversation_id, muted=muted)
            tx.emit(NewEvent("conversation.muted", state.text(), [person_id]))
            return state.model_dump()

        return await self.uow.run(change)


async def _own_row(conn: AsyncConnection, conversation_id: int, person_id: int, now: datetime) -> None:
    """The person's member row, created when missing: position threads keep read markers and
    mute settings in member rows that the access check does not consult."""
    await conn.execute(
        insert_ignore(conn, conversation_members, ["conversation_id", "person_id"]),
        [{"conversation_id": conversation_id, "person_id": person_id, "last_read_message_id": 0, "joined_at": now}],
    )


async def _direct_pair(conn: AsyncConnection, conv: ConversationRow) -> tuple[int, int] | None:
    """The two persons of a direct chat (from its ``direct_key``); None for other kinds."""
    if conv.kind != "direct":
        return None
    key = (await conn.execute(select(conversations.c.direct_key).where(conversations.c.id == conv.id))).scalar()
    if not key:
        return None
    a, b = (int(x) for x in str(key).split(":"))
    return a, b
