"""A person's conversation list: direct chats, groups and the position threads of the positions they hold.

Why position threads are found through the person's current positions rather
than member rows: thread membership is derived (see ``access``), so a new
holder's inbox shows the position's threads the moment the handover commits.
Threads of positions the person no longer holds are not listed (their own
period stays readable by id). Ordered by last message, newest first, paged
with an opaque cursor; unread counts exclude the person's own and system
messages and recalled ones, and use the same markers ``conversation.read``
events carry, so a client that applies events stays consistent with it.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import and_, func, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.errors import BadRequest
from kernel.numbers import parse_uint
from kernel.schema import persons
from kernel.wire import iso
from messaging.conversations.access import held_positions
from messaging.conversations.model import names_reader, snippet
from messaging.schema import conversation_members, conversations, messages

logger = logging.getLogger(__name__)

__all__ = ["inbox"]


def _cursor(raw: str | None) -> tuple[int, int] | None:
    if raw is None:
        return None
    a, _, b = raw.partition(".")
    last, cid = parse_uint(a), parse_uint(b)
    if last is None or cid is None:
        raise BadRequest("cursor must be the next_cursor of a previous page", data={"field": "cursor"})
    return last, cid


async def inbox(conn: AsyncConnection, person_id: int, *, cursor: str | None = None, limit: int = 50) -> dict[str, Any]:
    limit = max(1, min(limit, 200))
    after = _cursor(cursor)
    c, cm = conversations, conversation_members
    cols = (
        c.c.id,
        c.c.kind,
        c.c.title,
        c.c.direct_key,
        c.c.last_message_id,
        c.c.position_id,
        c.c.peer_position_id,
        c.c.peer_person_id,
        c.c.unit_id,
        cm.c.last_read_message_id,
        cm.c.muted,
    )
    mine = (
        select(*cols)
        .join(cm, cm.c.conversation_id == c.c.id)
        .where(cm.c.person_id == person_id, c.c.kind != "position")
    )
    held = await held_positions(conn, person_id)
    conds = [c.c.peer_person_id == person_id]
    if held:
        conds += [c.c.position_id.in_(held), c.c.peer_position_id.in_(held)]
    threads = (
        select(*cols)
        .outerjoin(cm, and_(cm.c.conversation_id == c.c.id, cm.c.person_id == person_id))
        .where(c.c.kind == "position", or_(*conds))
    )
    # Ordered and paged in the database: a position may have thousands of threads.
    u = union_all(mine, threads).subquery()
    recency = func.coalesce(u.c.last_message_id, 0)
    q = select(u).order_by(recency.desc(), u.c.id.desc()).limit(limit + 1)
    if after is not None:
        q = q.where(or_(recency < after[0], and_(recency == after[0], u.c.id < after[1])))
    rows = (await conn.execute(q)).all()
    more = len(rows) > limit
    page = []
    for r in rows[:limit]:
        via = None
        if r.kind == "position" and r.position_id in held:
            via = int(r.position_id)
        elif r.kind == "position" and r.peer_position_id in held:
            via = int(r.peer_position_id)
        page.append(_item(r, person_id, via))
    await _fill(conn, person_id, page, set(held))
    by_position: dict[int, int] = {}
    for it in page:
        if it["via_position_id"] is not None:
            by_position[it["via_position_id"]] = by_position.get(it["via_position_id"], 0) + it["unread"]
    last = page[-1] if page else None
    return {
        "conversations": page,
        "positions": [{"position_id": p, "unread_on_page": n} for p, n in sorted(by_position.items())],
        "next_cursor": f"{last['last_message_id'] or 0}.{last['id']}" if more and last else None,
    }


def _item(r: Any, person_id: int, via: int | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": int(r.id),
        "kind": r.kind,
        "title": r.title,
        "last_message_id": None if r.last_message_id is None else int(r.last_message_id),
        "last_read_message_id": int(r.last_read_message_id or 0),
        "muted": bool(r.muted),
        "via_position_id": via,
        "unread": 0,
        "unread_mentions": 0,
        "last_message": None,
        # Every field on every row (null where the kind has none): the WebSocket answer sends
        # the dict as it is, and the REST one fills the same nulls from the model.
        "peer_id": None,
        "position_id": None,
        "peer_position_id": None,
        "peer_person_id": None,
        "unit_id": None,
    }
    if r.kind == "direct" and r.direct_key:
        a, b = (int(x) for x in str(r.direct_key).split(":"))
        item["peer_id"] = b if a == person_id else a
    if r.kind == "position":
        item.update(
            position_id=int(r.position_id),
            peer_position_id=None if r.peer_position_id is None else int(r.peer_position_id),
            peer_person_id=None if r.peer_person_id is None else int(r.peer_person_id),
        )
    if r.kind == "unit":
        item["unit_id"] = int(r.unit_id)
    return item


async def _fill(conn: AsyncConnection, person_id: int, page: list[dict[str, Any]], held: set[int]) -> None:
    """Last message, unread count and unread mentions for the conversations on one page (three queries)."""
    last_ids = [it["last_message_id"] for it in page if it["last_message_id"]]
    if last_ids:
        rows = await conn.execute(
            select(
                messages.c.id,
                messages.c.conversation_id,
                messages.c.sender_id,
                persons.c.name,
                messages.c.body,
                messages.c.kind,
                messages.c.created_at,
                messages.c.recalled_at,
            )
            .join(persons, persons.c.id == messages.c.sender_id)
            .where(messages.c.id.in_(last_ids))
        )
        lasts = {
            int(r.conversation_id): {
                "id": int(r.id),
                "sender": {"id": int(r.sender_id), "name": r.name},
                "kind": r.kind or "text",
                "snippet": snippet(r.body, r.recalled_at is not None),
                "created_at": iso(r.created_at),
                "recalled": r.recalled_at is not None,
            }
            for r in rows
        }
        for it in page:
            it["last_message"] = lasts.get(it["id"])
    pending = [it for it in page if (it["last_message_id"] or 0) > it["last_read_message_id"]]
    if not pending:
        return
    unread = (
        or_(
            *[
                and_(messages.c.conversation_id == it["id"], messages.c.id > it["last_read_message_id"])
                for it in pending
            ]
        ),
        messages.c.sender_id != person_id,
        messages.c.recalled_at.is_(None),
        or_(messages.c.kind.is_(None), messages.c.kind != "system"),
    )
    counts = await conn.execute(
        select(messages.c.conversation_id, func.count()).where(*unread).group_by(messages.c.conversation_id)
    )
    n = {int(cid): int(k) for cid, k in counts}
    # 有人@我: the unread messages among those that name the person or a position they hold now.
    named = await conn.execute(
        select(messages.c.conversation_id, messages.c.sender_id, messages.c.mentions).where(
            *unread, messages.c.mentions.is_not(None)
        )
    )
    mentions: dict[int, int] = {}
    for cid, sender, text in named:
        if names_reader(text, int(sender), person_id, held):
            mentions[int(cid)] = mentions.get(int(cid), 0) + 1
    for it in pending:
        it["unread"] = n.get(it["id"], 0)
        it["unread_mentions"] = mentions.get(it["id"], 0)
