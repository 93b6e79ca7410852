"""Who has not yet read or acknowledged a notice, within one unit's subtree.

Receipts carry their unit id; the subtree test uses the in-memory index
(pre-order interval), so the query stays keyset-paged by receipt id and the
filter costs no join against the tree.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.schema import persons
from kernel.wire import iso
from messaging.notices.model import PendingPage
from messaging.notices.schema import notice_receipts
from org_tree.index import OrgIndex

logger = logging.getLogger(__name__)

__all__ = ["pending_page"]

#: Receipts read per query while filtering by subtree.
_SCAN = 2_000


async def pending_page(
    conn: AsyncConnection, index: OrgIndex, notice_id: int, unit: int, missing: str, after: int | None, limit: int
) -> PendingPage:
    """One page of recipients under pre-order unit ``unit`` still missing ``read`` or ``ack``."""
    col = notice_receipts.c.read_at if missing == "read" else notice_receipts.c.acked_at
    items: list[dict[str, Any]] = []
    cursor = after or 0
    more = False
    while True:
        rows = (
            await conn.execute(
                select(
                    notice_receipts.c.id,
                    notice_receipts.c.person_id,
                    persons.c.name,
                    notice_receipts.c.position_id,
                    notice_receipts.c.unit_id,
                    notice_receipts.c.read_at,
                )
                .join(persons, persons.c.id == notice_receipts.c.person_id)
                .where(notice_receipts.c.notice_id == notice_id, col.is_(None), notice_receipts.c.id > cursor)
                .order_by(notice_receipts.c.id)
                .limit(_SCAN)
            )
        ).all()
        for rid, pid, name, pos, unit_id, read_at in rows:
            cursor = int(rid)
            uu = index.find_unit(unit_id)
            if uu < 0 or not index.contains(unit, uu):
                continue
            if len(items) == limit:
                more = True
                break
            items.append(
                {
                    "receipt_id": int(rid),
                    "person_id": int(pid),
                    "name": name,
                    "position_id": int(pos),
                    "unit_id": int(unit_id),
                    "unit": index.unit_name(uu),
                    "read_at": iso(read_at),
                }
            )
        if more or len(rows) < _SCAN:
            break
    return PendingPage(items, items[-1]["receipt_id"] if more else None)
