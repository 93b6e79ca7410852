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

from sqlalchemy import func, or_, select, union, update
from sqlalchemy.ext.asyncio import AsyncConnection

from messaging.conversations.access import current_holders, load_conversation
from messaging.conversations.reading import readers
from messaging.conversations.service import ConversationService
from messaging.conversations.system import system_message
from messaging.schema import conversations
from messaging.unit_of_work import Txn
from org_tree.org_schema import org_changes

logger = logging.getLogger(__name__)

__all__ = ["handover_notes", "pending_handovers"]


async def pending_handovers(conn: AsyncConnection) -> dict[int, int]:
    """``{position id: org version of its latest holder change}`` for every position that has a thread.

    Why: the reconciler learns holder changes from ``org_changes`` since the version it last
    saw, which it keeps in memory; on its first pass after a start, or a pass that also holds a
    tree change, it has no such window, and a handover made before that pass would get no
    note. The threads' ``member_version`` is the durable mark instead: ``handover_notes`` writes
    only what is newer than it. One pass over the holder changes of thread positions.
    """
    thread_positions = union(
        select(conversations.c.position_id.label("p")).where(conversations.c.kind == "position"),
        select(conversations.c.peer_position_id.label("p")).where(
            conversations.c.kind == "position", conversations.c.peer_position_id.is_not(None)
        ),
    ).subquery()
    rows = await conn.execute(
        select(org_changes.c.position_id, func.max(org_changes.c.version))
        .where(org_changes.c.scope == "holders", org_changes.c.position_id.in_(select(thread_positions.c.p)))
        .group_by(org_changes.c.position_id)
    )
    return {int(p): int(v) for p, v in rows}


async def handover_notes(svc: ConversationService, changes: dict[int, int], *, marked_only: bool = False) -> int:
    """Write the notes for ``{position id: org version of its latest holder change}``; returns notes written.

    A thread whose ``member_version`` is already at a change's version is skipped without a
    transaction (``_note`` checks again under the thread's lock). ``marked_only`` (with
    ``pending_handovers``' changes of any age): a thread with no mark at all, from before
    threads were marked at creation, gets no note for changes it may have begun after.
    """
    if not changes:
        return 0
    async with svc.db.read() as conn:
        rows = (
            await conn.execute(
                select(
                    conversations.c.id,
                    conversations.c.position_id,
                    conversations.c.peer_position_id,
                    conversations.c.member_version,
                ).where(
                    conversations.c.kind == "position",
                    or_(
                        conversations.c.position_id.in_(list(changes)),
                        conversations.c.peer_position_id.in_(list(changes)),
                    ),
                )
            )
        ).all()
    written = 0
    for cid, a, b, done in rows:
        sides = sorted((changes[int(p)], int(p)) for p in (a, b) if p is not None and int(p) in changes)
        for version, pos in sides:
            if (done is None and not marked_only) or (done is not None and int(done) < version):
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
