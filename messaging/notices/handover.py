"""Handover of unread receipts: what a position owes follows it to the new holder.

Kept apart from the service because it is its own transaction shape: find
the unread receipts the old holder owed through the position, re-point them
(keeping who owed them before and when it changed), and tell both people.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from messaging.events import NewEvent
from messaging.notices.fanout import Label, NoticeHead, notice_events, shared_event
from messaging.notices.schema import notice_receipts, notices
from messaging.shapes import NoticeTransferred
from org_tree.index import OrgIndex

logger = logging.getLogger(__name__)

__all__ = ["unread_transfer_events"]


async def unread_transfer_events(
    conn: AsyncConnection,
    index: OrgIndex,
    head_of: Callable[[Any], NoticeHead],
    position_id: int,
    old_person_id: int,
    new_person_id: int,
    now: datetime,
) -> tuple[list[NewEvent], int]:
    """Re-point the unread receipts in the open transaction.

    Returns:
        the events to append, and how many receipts moved (0: nothing to do).

    Args:
        head_of: turns a ``notices`` row into the ``NoticeHead`` put in events.
    """
    r = notice_receipts
    rows = (
        await conn.execute(
            select(r.c.id, r.c.notice_id, r.c.position_id, r.c.via_position_id, r.c.reason)
            .join(notices, notices.c.id == r.c.notice_id)
            .where(
                r.c.via_position_id == position_id,
                r.c.person_id == old_person_id,
                r.c.read_at.is_(None),
                r.c.acked_at.is_(None),
                notices.c.recalled_at.is_(None),
            )
            .order_by(r.c.id)
        )
    ).all()
    if not rows:
        return [], 0
    already = {
        (int(n), int(p))
        for n, p in await conn.execute(
            select(r.c.notice_id, r.c.position_id).where(
                r.c.person_id == new_person_id, r.c.notice_id.in_({int(x.notice_id) for x in rows})
            )
        )
    }
    move = [x for x in rows if (int(x.notice_id), int(x.position_id)) not in already]
    if not move:
        return [], 0
    # fanned_out: the new holder's notice.new is written here, so the relay must not write another.
    await conn.execute(
        update(r)
        .where(r.c.id.in_([int(x.id) for x in move]))
        .values(person_id=new_person_id, previous_person_id=old_person_id, transferred_at=now, fanned_out=True)
    )
    heads = {
        int(n.id): head_of(n)
        for n in await conn.execute(select(notices).where(notices.c.id.in_({int(x.notice_id) for x in move})))
    }
    labels: dict[int, list[Label]] = {}
    for x in move:
        labels.setdefault(int(x.notice_id), []).append((int(x.position_id), int(x.via_position_id), x.reason))
    evs: list[NewEvent] = []
    for nid, lbls in sorted(labels.items()):
        evs += notice_events("notice.new", heads[nid], {new_person_id: lbls}, index, {"transferred": True})
        moved = NoticeTransferred(notice_id=nid, position_ids=[lb[0] for lb in lbls], to_person_id=new_person_id)
        evs.append(shared_event("notice.transferred", moved, [old_person_id]))
    return evs, len(move)
