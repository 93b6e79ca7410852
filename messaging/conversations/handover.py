"""A note in each thread of a position whose holders changed, so the new holders learn of it by sync.

Why: thread membership is derived (``access``), so a successor reads the
thread at once, but nothing would appear in their event stream until the
next message. One system message per thread and change — ``{"event":
"handover", "position_id", "holders"}`` — reaches the current readers (the
predecessor is no longer one). Exactly once across processes: under the
thread's row lock the note is written only when the thread's
``member_version`` is below the change's org version, which is then stored
(sides are handled in version order); the key
``sys:<thread>:v<version>:p<position>`` is unique as well. Costs O(threads of
the position), never O(messages).
"""

from __future__ import annotations

import logging

from sqlalchemy import or_, select, update

from messaging.conversations.access import current_holders, load_conversation
from messaging.conversations.service import ConversationService, readers
from messaging.conversations.system import system_message
from messaging.schema import conversations
from messaging.unit_of_work import Txn

logger = logging.getLogger(__name__)

__all__ = ["handover_notes"]


async def handover_notes(svc: ConversationService, changes: dict[int, int]) -> int:
    """Write the notes for ``{position id: org version of its latest holder change}``; returns notes written."""
    if not changes:
        return 0
    async with svc.db.read() as conn:
        rows = (
            await conn.execute(
                select(conversations.c.id, conversations.c.position_id, conversations.c.peer_position_id).where(
                    conversations.c.kind == "position",
                    or_(
                        conversations.c.position_id.in_(list(changes)),
                        conversations.c.peer_position_id.in_(list(changes)),
                    ),
                )
            )
        ).all()
    written = 0
    for cid, a, b in rows:
        sides = sorted((changes[int(p)], int(p)) for p in (a, b) if p is not None and int(p) in changes)
        for version, pos in sides:
            written += await _note(svc, int(cid), pos, version)
    return written


async def _note(svc: ConversationService, cid: int, pos: int, version: int) -> int:
    key = f"sys:{cid}:v{version}:p{pos}"

    async def change(tx: Txn) -> int:
        conn = tx.conn
        conv = await load_conversation(conn, cid, lock=True)
        done = (await conn.execute(select(conversations.c.member_version).where(conversations.c.id == cid))).scalar()
        if done is not None and int(done) >= version:
            return 0
        await conn.execute(update(conversations).where(conversations.c.id == cid).values(member_version=version))
        holders = sorted((await current_holders(conn, [pos]))[pos])
        if not holders:
            return 0
        mid = await system_message(
            tx,
            conversation_id=cid,
            conversation_kind="position",
            actor_id=holders[0],
            key=key,
            detail={"event": "handover", "position_id": pos, "holders": holders},
            about=holders,
            text="岗位交接",
            recipients=await readers(conn, conv),
        )
        return 0 if mid is None else 1

    return await svc.uow.run(change)
