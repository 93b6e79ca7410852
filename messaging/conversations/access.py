"""The one membership check (docs/reliability.md decision 6) and the holders of positions.

Every path that reads a conversation — REST and WebSocket history, read
lists, read markers, edits, recalls, inbox items — asks :func:`access`. It
answers ``NotFound`` for a conversation that does not exist *and* for one the
person may not read, so ids cannot be probed.

Why position threads are derived, not copied: who may read a thread follows
the ``assignments`` table. A current holder of either side's position reads
everything (the successor inherits the whole thread the moment the handover
commits, O(1) in thread length); a former holder reads only messages created
while they held it (``start_at <= created_at < end_at``). Send-time recipients
use the same rule at the send's timestamp, so an event never reaches someone
who could not read the message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, false, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from kernel.errors import NotFound
from kernel.schema import persons
from messaging.schema import conversation_members, conversations, messages
from org_tree.org_schema import assignments, positions

logger = logging.getLogger(__name__)

__all__ = [
    "Access",
    "ConversationRow",
    "access",
    "current_holders",
    "former_holders_at",
    "held_positions",
    "load_conversation",
]

Period = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class ConversationRow:
    id: int
    kind: str
    title: str | None
    owner_id: int | None
    unit_id: int | None
    unit_depth: int | None
    position_id: int | None
    peer_position_id: int | None
    peer_person_id: int | None
    last_message_id: int | None

    @property
    def side_positions(self) -> tuple[int, ...]:
        return tuple(p for p in (self.position_id, self.peer_position_id) if p is not None)


@dataclass(frozen=True, slots=True)
class Access:
    """What one person may do in one conversation."""

    conversation: ConversationRow
    person_id: int
    #: True: every message; False: only those created within ``periods`` (a former holder).
    full: bool
    periods: tuple[Period, ...]
    #: The side position the person currently holds in a position thread (what they write as).
    as_position_id: int | None
    last_read_message_id: int
    role: str | None
    muted: bool

    def visible(self) -> ColumnElement[bool]:
        """SQL condition on ``messages`` for what this person may read."""
        if self.full:
            return messages.c.conversation_id == self.conversation.id
        if not self.periods:
            return false()
        return and_(
            messages.c.conversation_id == self.conversation.id,
            or_(*[and_(messages.c.created_at >= a, messages.c.created_at < b) for a, b in self.periods]),
        )

    def sees(self, created_at: datetime) -> bool:
        return self.full or any(a <= created_at < b for a, b in self.periods)


_CONV_COLS = (
    conversations.c.id,
    conversations.c.kind,
    conversations.c.title,
    conversations.c.owner_id,
    conversations.c.unit_id,
    conversations.c.unit_depth,
    conversations.c.position_id,
    conversations.c.peer_position_id,
    conversations.c.peer_person_id,
    conversations.c.last_message_id,
)


def _conv(row: Any) -> ConversationRow:
    return ConversationRow(
        int(row[0]),
        str(row[1]),
        row[2],
        _opt(row[3]),
        _opt(row[4]),
        _opt(row[5]),
        _opt(row[6]),
        _opt(row[7]),
        _opt(row[8]),
        _opt(row[9]),
    )


def _opt(v: Any) -> int | None:
    return None if v is None else int(v)


async def load_conversation(conn: AsyncConnection, conversation_id: int, *, lock: bool = False) -> ConversationRow:
    """The conversation row (locked for update when ``lock``): sends in one conversation commit in id order."""
    q = select(*_CONV_COLS).where(conversations.c.id == conversation_id)
    if lock:
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    if row is None:
        raise NotFound("no such conversation", data={"conversation_id": conversation_id})
    return _conv(row)


async def access(conn: AsyncConnection, person_id: int, conversation_id: int, *, lock: bool = False) -> Access:
    """What ``person_id`` may read in the conversation; ``NotFound`` when nothing (or no such id).

    The conversation row (locked when ``lock``: only it, never the member row)
    and the person's member row come in one round trip.
    """
    cm = conversation_members
    q = (
        select(*_CONV_COLS, cm.c.person_id, cm.c.last_read_message_id, cm.c.role, cm.c.muted)
        .select_from(
            conversations.outerjoin(cm, (cm.c.conversation_id == conversations.c.id) & (cm.c.person_id == person_id))
        )
        .where(conversations.c.id == conversation_id)
    )
    if lock:
        q = q.with_for_update(of=conversations)
    row = (await conn.execute(q)).first()
    if row is None:
        raise NotFound("no such conversation", data={"conversation_id": conversation_id})
    conv = _conv(row)
    n = len(_CONV_COLS)
    member = None if row[n] is None else row[n + 1 :]
    marker = int(member[0]) if member is not None else 0
    role = member[1] if member is not None else None
    muted = bool(member[2]) if member is not None else False
    if conv.kind != "position":
        if member is None:
            raise NotFound("no such conversation", data={"conversation_id": conversation_id})
        return Access(conv, person_id, True, (), None, marker, role, muted)
    rows = (
        await conn.execute(
            select(assignments.c.position_id, assignments.c.start_at, assignments.c.end_at).where(
                assignments.c.person_id == person_id, assignments.c.position_id.in_(conv.side_positions)
            )
        )
    ).all()
    current = [int(p) for p, _, end in rows if end is None]
    as_position = None
    if current:
        # Write as the addressed position when holding it; otherwise as the other side's.
        as_position = conv.position_id if conv.position_id in current else current[0]
    full = bool(current) or conv.peer_person_id == person_id
    periods = tuple((start, end) for _, start, end in rows if end is not None and start < end)
    if not full and not periods:
        raise NotFound("no such conversation", data={"conversation_id": conversation_id})
    return Access(conv, person_id, full, () if full else periods, as_position, marker, role, muted)


async def require_live(
    conn: AsyncConnection,
    person_ids: Iterable[int],
    position_ids: Iterable[int],
    *,
    fields: tuple[str, str] | None = None,
) -> None:
    """``NotFound`` naming up to ten of ``person_ids`` no enabled person has, else of ``position_ids``
    no live position has. ``fields`` (the request's names of the two lists) go into ``data.field``.

    Why one check: a group's new members were refused when unknown while a message's mentions of
    the same ids were stored as sent (the 湖南 audit); both now answer alike.
    """
    people, posts = sorted(set(person_ids)), sorted(set(position_ids))
    if people:
        rows = await conn.execute(select(persons.c.id, persons.c.disabled).where(persons.c.id.in_(people)))
        found = {int(i) for i, disabled in rows if not disabled}
        missing = [p for p in people if p not in found]
        if missing:
            data: dict[str, Any] = {"field": fields[0]} if fields else {}
            raise NotFound("no such person", data={**data, "person_ids": missing[:10]})
    if posts:
        rows = await conn.execute(
            select(positions.c.id).where(positions.c.id.in_(posts), positions.c.removed_at.is_(None))
        )
        live = {int(r[0]) for r in rows}
        missing = [p for p in posts if p not in live]
        if missing:
            data = {"field": fields[1]} if fields else {}
            raise NotFound("no such position", data={**data, "position_ids": missing[:10]})


async def current_holders(conn: AsyncConnection, position_ids: Iterable[int]) -> dict[int, set[int]]:
    """Position id → persons holding it now (primary, deputy or acting), from the database."""
    ids = sorted(set(position_ids))
    out: dict[int, set[int]] = {p: set() for p in ids}
    if not ids:
        return out
    rows = await conn.execute(
        select(assignments.c.position_id, assignments.c.person_id).where(
            assignments.c.position_id.in_(ids), assignments.c.end_at.is_(None)
        )
    )
    for pos, person in rows:
        out[int(pos)].add(int(person))
    return out


async def former_holders_at(conn: AsyncConnection, position_ids: Iterable[int], at: datetime) -> set[int]:
    """Persons whose ended assignment of one of the positions covered ``at`` (they still read that message)."""
    ids = sorted(set(position_ids))
    if not ids:
        return set()
    rows = await conn.execute(
        select(assignments.c.person_id).where(
            assignments.c.position_id.in_(ids),
            assignments.c.end_at.is_not(None),
            assignments.c.start_at <= at,
            assignments.c.end_at > at,
        )
    )
    return {int(r[0]) for r in rows}


async def held_positions(conn: AsyncConnection, person_id: int) -> list[int]:
    """Positions the person holds now (any kind), ascending."""
    rows = await conn.execute(
        select(assignments.c.position_id)
        .where(assignments.c.person_id == person_id, assignments.c.end_at.is_(None))
        .order_by(assignments.c.position_id)
    )
    return list(dict.fromkeys(int(r[0]) for r in rows))
