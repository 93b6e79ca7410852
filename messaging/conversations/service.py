"""Messages in position threads and groups: open a thread, post, edit, recall.

History, read markers, read lists, the inbox and mute are in ``reading.py``
(``ConversationReading``, which ``ConversationService`` inherits).

Same guarantees as direct chat (messaging/chat.py): the message and one event
per recipient stream commit in one transaction, then the wake-up is handed to
``notify``; a retried ``client_msg_id`` returns the stored message. The
conversation row is locked first in every writing transaction, so messages of
one conversation get ids, and reach every stream, in commit order.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.dialect import insert_ignore
from kernel.errors import BadRequest, Conflict, Forbidden, NotFound
from kernel.schema import persons
from kernel.text import check_text
from kernel.wire import iso, loads
from messaging.conversations.access import (
    Access,
    access,
    current_holders,
    held_positions,
    require_live,
)
from messaging.conversations.fanout import (
    BULK_AUDIENCE,
    GROUP_KINDS,
    MENTIONED,
    MUTED,
    GroupFanout,
    append_per_person,
    flush,
)
from messaging.conversations.model import (
    MAX_BODY_CHARS,
    ConversationConfig,
    PostRequest,
    PostResult,
    snippet,
    validate_post,
)
from messaging.conversations.photos import MESSAGE_REF, PhotoLinker
from messaging.conversations.reading import ConversationReading, readers
from messaging.conversations.schema import message_fanouts
from messaging.conversations.storage import insert_pending, stored_members
from messaging.events import NewEvent
from messaging.ports import Notify
from messaging.schema import conversation_members, conversations, messages
from messaging.shapes import (
    MessageEdited,
    MessageNew,
    MessageRecalled,
    Sender,
)
from messaging.unit_of_work import Txn, UnitOfWork
from org_tree.org_schema import positions
from org_tree.versioning import read_version

logger = logging.getLogger(__name__)

__all__ = ["ConversationService", "Notify", "stored_members", "thread_key"]


def thread_key(to_position_id: int, *, as_position_id: int | None, person_id: int) -> str:
    """One thread per pair of sides: position↔position is symmetric, person→position is not."""
    if as_position_id is not None:
        lo, hi = sorted((to_position_id, as_position_id))
        return f"pt:{lo}:{hi}"
    return f"pt:{to_position_id}:u{person_id}"


class ConversationService(ConversationReading):
    def __init__(
        self,
        uow: UnitOfWork,
        config: ConversationConfig | None = None,
        photos: PhotoLinker | None = None,
        fanout: GroupFanout | None = None,
    ) -> None:
        super().__init__(uow, config)
        self.photos = photos  # links the sender's uploaded photos to the message
        self.events = uow.events
        self.clock = uow.clock
        #: Writes large groups' events after the send commits (None: in the send's transaction).
        self.fanout = fanout

    # ------------------------------------------------------------------ threads
    async def open_thread(self, person_id: int, to_position_id: int, *, as_position_id: int | None = None) -> int:
        """The thread between the person (or their position) and a position, created on first use."""

        async def change(tx: Txn) -> int:
            return await self._open_thread(tx.conn, person_id, to_position_id, as_position_id, tx.now)

        return await self.uow.run(change)

    async def _open_thread(
        self, conn: AsyncConnection, person_id: int, to_position_id: int, as_position_id: int | None, now: datetime
    ) -> int:
        live = {
            int(r[0])
            for r in await conn.execute(
                select(positions.c.id).where(
                    positions.c.id.in_([p for p in (to_position_id, as_position_id) if p is not None]),
                    positions.c.removed_at.is_(None),
                )
            )
        }
        if to_position_id not in live:
            raise NotFound("no such position", data={"position_id": to_position_id})
        if as_position_id is not None:
            # Held first: acting as a position one does not hold is the one 403 everywhere
            # (docs/protocol.md), whatever else is wrong with the request.
            if as_position_id not in live or as_position_id not in await held_positions(conn, person_id):
                raise Forbidden("you do not hold that position", data={"as_position": as_position_id})
            if as_position_id == to_position_id:
                raise BadRequest("a position cannot open a thread with itself", data={"field": "as_position"})
        key = thread_key(to_position_id, as_position_id=as_position_id, person_id=person_id)
        found = await self._thread_id(conn, key)
        if found is not None:
            return found
        if as_position_id is None and to_position_id in await held_positions(conn, person_id):
            # A holder writes as the position (docs/conversations.md), so this would be the position's
            # thread with its own holder: until the 湖南 audit it was opened, a thread with oneself.
            raise BadRequest("a position cannot open a thread with itself", data={"field": "to_position"})
        lo_hi = sorted((to_position_id, as_position_id)) if as_position_id is not None else [to_position_id, None]
        await conn.execute(
            insert_ignore(conn, conversations, ["thread_key"]),
            [
                {
                    "kind": "position",
                    "thread_key": key,
                    "created_at": now,
                    "position_id": lo_hi[0] if as_position_id is not None else to_position_id,
                    "peer_position_id": lo_hi[1],
                    "peer_person_id": None if as_position_id is not None else person_id,
                    # Handover notes are for changes after the thread began (handover.py).
                    "member_version": await read_version(conn),
                }
            ],
        )
        cid = await self._thread_id(conn, key)
        assert cid is not None
        return cid

    @staticmethod
    async def _thread_id(conn: AsyncConnection, key: str) -> int | None:
        row = (await conn.execute(select(conversations.c.id).where(conversations.c.thread_key == key))).first()
        return None if row is None else int(row[0])

    # --------------------------------------------------------------------- post
    async def post(self, req: PostRequest) -> PostResult:
        """Store a message and return once it is committed.

        Raises:
            BadRequest: invalid body, ids, mentions or attachments.
            NotFound: no such conversation or position (or not a member: same answer).
            Forbidden: a former holder (read-only), a disabled sender, a position not held.
            Unavailable: the database is down; retry with the same client_msg_id.
        """
        req = validate_post(req)
        return await self.uow.run(lambda tx: self._post(tx, req))

    async def _post(self, tx: Txn, req: PostRequest) -> PostResult:
        conn, now = tx.conn, tx.now
        # The sender and a stored message of this client_msg_id in one round trip; a retry
        # answers the stored message whatever happened since (as it did before this join).
        m = messages
        sender = (
            await conn.execute(
                select(persons.c.name, persons.c.disabled, m.c.id, m.c.conversation_id, m.c.created_at)
                .select_from(
                    persons.outerjoin(m, (m.c.sender_id == persons.c.id) & (m.c.client_msg_id == req.client_msg_id))
                )
                .where(persons.c.id == req.sender_id)
            )
        ).first()
        if sender is not None and sender[2] is not None:
            return PostResult(int(sender[2]), int(sender[3]), sender[4], True, None)
        if sender is None or sender[1]:
            raise Forbidden("sender is disabled")
        cid = req.conversation_id
        if req.to_position_id is not None:
            cid = await self._open_thread(conn, req.sender_id, req.to_position_id, req.as_position_id, now)
        assert cid is not None
        acc = await access(conn, req.sender_id, cid, lock=True)
        if not acc.full:
            raise Forbidden(
                "you no longer hold this position: you may read your own period only",
                data={"conversation_id": cid},
            )
        conv = acc.conversation
        if conv.kind == "position":
            await self._sides_live(conn, conv.side_positions)
        as_position = acc.as_position_id
        if req.as_position_id is not None and req.as_position_id != as_position:
            if req.as_position_id not in await held_positions(conn, req.sender_id):
                raise Forbidden("you do not hold that position", data={"as_position": req.as_position_id})
            if conv.kind == "position" and req.as_position_id not in conv.side_positions:
                # A thread is between its two sides: writing in it as a third position would
                # show a sender position its readers are not talking to.
                raise BadRequest("write to a position thread as one of its sides", data={"field": "as_position"})
            as_position = req.as_position_id
        reply = await self._reply(conn, acc, req.reply_to)
        if conv.kind == "position":
            audience, muted = await readers(conn, conv), await self._muted(conn, cid)
        else:
            audience, muted = await stored_members(conn, cid)
        # A mention names someone: an id no person or live position has was stored as sent (the 湖南 audit).
        await require_live(
            conn, req.mention_persons, req.mention_positions, fields=("mention_persons", "mention_positions")
        )
        mentioned = set(req.mention_persons)
        for holders in (await current_holders(conn, req.mention_positions)).values():
            mentioned |= holders
        mentions = {"persons": list(req.mention_persons), "positions": list(req.mention_positions)}
        ins = insert_ignore(conn, messages, ["sender_id", "client_msg_id"]).returning(messages.c.id)
        row = (
            await conn.execute(
                ins,
                [
                    {
                        "conversation_id": cid,
                        "sender_id": req.sender_id,
                        "client_msg_id": req.client_msg_id,
                        "body": req.body,
                        "created_at": now,
                        "kind": "text",
                        "sender_position_id": as_position,
                        "reply_to": req.reply_to,
                        "mentions": json.dumps(mentions) if req.mention_persons or req.mention_positions else None,
                        "attachments": json.dumps(list(req.attachments)) if req.attachments else None,
                    }
                ],
            )
        ).first()
        if row is None:  # lost a race with another process for the same key: theirs stands
            dup = await self._existing(conn, req.sender_id, req.client_msg_id)
            assert dup is not None
            return dup
        mid = int(row[0])
        if self.photos is not None and req.attachments:
            sender_id = req.sender_id
            await self.photos.link_owned(conn, req.attachments, person_id=sender_id, ref_kind=MESSAGE_REF, ref_id=mid)
        in_thread = conv.kind == "position"
        # A direct chat's members are its two persons (one for a chat with oneself): the other is written to.
        others = sorted(audience - {req.sender_id}) if conv.kind == "direct" else []
        payload = MessageNew(
            id=mid,
            conversation_id=cid,
            conversation_kind=conv.kind,
            sender=Sender(id=req.sender_id, name=sender[0], position_id=as_position),
            client_msg_id=req.client_msg_id,
            body=req.body,
            created_at=now,
            reply_to=reply,
            mentions=mentions,
            attachments=list(req.attachments),
            recipient_id=(others[0] if others else req.sender_id) if conv.kind == "direct" else None,
            position_id=conv.position_id if in_thread else None,
            peer_position_id=conv.peer_position_id if in_thread else None,
            peer_person_id=conv.peer_person_id if in_thread else None,
        )
        if conv.kind in GROUP_KINDS:
            seq = await self._post_to_group(tx, cid, mid, req.sender_id, payload, audience, mentioned, muted)
        else:
            seq = await self._append_new(tx, req.sender_id, payload, audience, mentioned, muted)
        await conn.execute(update(conversations).where(conversations.c.id == cid).values(last_message_id=mid))
        return PostResult(mid, cid, now, False, seq)

    @staticmethod
    async def _sides_live(conn: AsyncConnection, sides: tuple[int, ...]) -> None:
        """Refuse a message to a thread one of whose positions is retired: nobody can hold it again,
        so the message would reach no one there, ever (``to_position`` answers the same)."""
        gone = (
            await conn.execute(
                select(positions.c.id).where(positions.c.id.in_(sides), positions.c.removed_at.is_not(None)).limit(1)
            )
        ).scalar()
        if gone is not None:
            raise NotFound("no such position", data={"position_id": int(gone)})

    async def _append_new(
        self, tx: Txn, sender_id: int, payload: MessageNew, audience: set[int], mentioned: set[int], muted: set[int]
    ) -> int | None:
        """Every reader's ``message.new`` in the send's transaction; returns the sender's seq."""
        # The payload differs between recipients only in two flags: encode each combination once.
        texts: dict[tuple[bool, bool], str] = {}
        per_person: list[tuple[int, str]] = []
        for pid in sorted(audience):
            flags = (pid in mentioned and pid != sender_id, pid in muted)
            text = texts.get(flags)
            if text is None:
                text = texts[flags] = payload.model_copy(update={"mentioned": flags[0], "muted": flags[1]}).text()
            per_person.append((pid, text))
        groups = await append_per_person(tx, "message.new", per_person)
        return next((s for g in groups for p, s in g.recipients if p == sender_id), None)

    async def _post_to_group(
        self,
        tx: Txn,
        cid: int,
        mid: int,
        sender_id: int,
        payload: MessageNew,
        audience: set[int],
        mentioned: set[int],
        muted: set[int],
    ) -> int | None:
        """A group message: large groups fan out after the commit (messaging/conversations/fanout.py).

        With a relay and 64 members or more: the events of the sender and of the
        members connected to this process (after their earlier pending rows), the
        payload once and a pending row per other member; the relay writes those
        after the commit, the other processes' connected members first.
        Smaller groups, or a service without a relay: every member's event here,
        after any earlier message still pending for them, as before.
        """
        fanout = self.fanout
        if fanout is None or len(audience) < BULK_AUDIENCE:
            await flush(tx, cid, sorted(audience), mid)
            return await self._append_new(tx, sender_id, payload, audience, mentioned, muted)
        head = {
            "id": mid,
            "conversation_id": cid,
            "payload": payload.text(),
            "created_at": tx.now,
            "claimed_by": fanout.relay.token,
            "lease_until": tx.now + fanout.relay.lease,
        }
        await tx.conn.execute(insert(message_fanouts), [head])
        # The members connected to this process (and the sender) get theirs with the commit,
        # after any earlier message still pending for them; only the others get a pending row.
        here = audience.intersection(fanout.connected())
        here.add(sender_id)
        rows = [
            (pid, (MENTIONED if pid in mentioned and pid != sender_id else 0) | (MUTED if pid in muted else 0))
            for pid in sorted(audience - here)
        ]
        await insert_pending(tx.conn, cid, mid, rows)
        await flush(tx, cid, sorted(here), mid)
        seq = await self._append_new(tx, sender_id, payload, here, mentioned, muted)
        tx.on_commit(lambda: fanout.committed(cid, mid))
        return seq

    async def _reply(self, conn: AsyncConnection, acc: Access, reply_to: int | None) -> dict[str, Any] | None:
        if reply_to is None:
            return None
        row = (
            await conn.execute(
                select(messages.c.id, messages.c.body, messages.c.created_at, messages.c.recalled_at).where(
                    messages.c.id == reply_to, messages.c.conversation_id == acc.conversation.id
                )
            )
        ).first()
        if row is None or not acc.sees(row.created_at):
            raise NotFound("no such message in this conversation", data={"reply_to": reply_to})
        return {"id": int(row.id), "snippet": snippet(row.body, row.recalled_at is not None)}

    @staticmethod
    async def _muted(conn: AsyncConnection, cid: int) -> set[int]:
        rows = await conn.execute(
            select(conversation_members.c.person_id).where(
                conversation_members.c.conversation_id == cid, conversation_members.c.muted.is_(True)
            )
        )
        return {int(r[0]) for r in rows}

    @staticmethod
    async def _existing(conn: AsyncConnection, sender_id: int, client_msg_id: str) -> PostResult | None:
        row = (
            await conn.execute(
                select(messages.c.id, messages.c.conversation_id, messages.c.created_at).where(
                    messages.c.sender_id == sender_id, messages.c.client_msg_id == client_msg_id
                )
            )
        ).first()
        return None if row is None else PostResult(int(row[0]), int(row[1]), row[2], True, None)

    # -------------------------------------------------------------- edit/recall
    async def edit(self, person_id: int, message_id: int, body: str) -> dict[str, Any]:
        """Replace the text of one's own message within the edit window; every reader is told."""
        check_text(body, field="body", max_chars=MAX_BODY_CHARS)
        return await self.uow.run(lambda tx: self._change(tx, person_id, message_id, body))

    async def recall(self, person_id: int, message_id: int) -> dict[str, Any]:
        """Withdraw one's own message within the recall window: its text is dropped; readers are told."""
        return await self.uow.run(lambda tx: self._change(tx, person_id, message_id, None))

    async def _change(self, tx: Txn, person_id: int, message_id: int, body: str | None) -> dict[str, Any]:
        conn, now = tx.conn, tx.now
        m = messages
        cid_row = (await conn.execute(select(m.c.conversation_id).where(m.c.id == message_id))).first()
        if cid_row is None:
            raise NotFound("no such message", data={"message_id": message_id})
        acc = await access(conn, person_id, int(cid_row[0]), lock=True)
        row = (await conn.execute(select(m).where(m.c.id == message_id))).one()
        if not acc.sees(row.created_at):
            raise NotFound("no such message", data={"message_id": message_id})
        if int(row.sender_id) != person_id or row.kind == "system":
            raise Forbidden("only the sender may change a message", data={"message_id": message_id})
        as_position = row.sender_position_id
        if as_position is not None and int(as_position) not in await held_positions(conn, person_id):
            # Written as the position: after a handover it is the successor's word; a former holder
            # reads their own period and nothing more (issue 10 item 3).
            raise Forbidden(
                "the message was written as a position you no longer hold",
                data={"message_id": message_id, "position_id": int(as_position)},
            )
        recall = body is None
        if row.recalled_at is not None:
            if recall:  # the first recall's answer, every field of it (docs/conversations.md)
                return {
                    "message_id": message_id,
                    "conversation_id": int(row.conversation_id),
                    "recalled_at": iso(row.recalled_at),
                    "edited_at": iso(row.edited_at),
                }
            raise Conflict("the message was recalled", data={"message_id": message_id})
        window = self.config.recall_window if recall else self.config.edit_window
        if now - row.created_at > window:
            raise Forbidden(
                f"messages can be {'recalled' if recall else 'edited'} for {int(window.total_seconds())} s",
                data={"message_id": message_id, "window_seconds": int(window.total_seconds())},
            )
        values: dict[str, Any] = {"recalled_at": now, "body": ""} if recall else {"edited_at": now, "body": body}
        await conn.execute(update(m).where(m.c.id == message_id).values(**values))
        cid = acc.conversation.id
        kind = "message.recalled" if recall else "message.edited"
        change: MessageRecalled | MessageEdited = (
            MessageRecalled(message_id=message_id, conversation_id=cid, recalled_at=now, edited_at=row.edited_at)
            if body is None
            else MessageEdited(message_id=message_id, conversation_id=cid, edited_at=now, body=body)
        )
        audience = sorted(await readers(conn, acc.conversation, row.created_at))
        if acc.conversation.kind in GROUP_KINDS:  # whoever is still owed the message's own event gets it first
            await flush(tx, cid, audience, message_id)
        text = change.text()
        if len(audience) >= BULK_AUDIENCE:
            await tx.append_bulk(kind, [(p, text) for p in audience])
        else:
            tx.emit(NewEvent(kind, text, audience))
        answer: dict[str, Any] = loads(text)  # the same fields, instants as text, for the REST and frame answers
        return answer
