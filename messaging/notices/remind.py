"""A sender's one-click reminder: ``notice.remind`` to whoever in a unit's subtree still owes.

The DING ladder reminds on a schedule (ding.py); a manager watching the dashboard may also
remind the pending recipients of one unit at once. The targets are read in the same
transaction that appends their events, with the same rule as the ladder (not read, or not
acknowledged when acknowledgement is required, unless ``missing`` narrows it), limited to the
unit's subtree by the in-memory index, as the pending list is.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from messaging.events import NewEvent
from messaging.notices.fanout import Label, notice_events
from messaging.notices.relay import head_of_row
from messaging.notices.schema import notice_receipts
from org_tree.index import OrgIndex

__all__ = ["REMIND_INTERVAL", "reminder_events"]

#: Seconds before the same unit of the same notice may be reminded again (per process).
REMIND_INTERVAL = 60.0


async def reminder_events(
    conn: AsyncConnection, index: OrgIndex, notice: Row[Any], unit: int, missing: str, actor_person_id: int
) -> list[NewEvent]:
    """One ``notice.remind`` per person still owing under pre-order unit ``unit``."""
    r = notice_receipts
    col = r.c.read_at if missing == "read" else r.c.acked_at
    nid = int(notice.id)
    rows = await conn.execute(
        select(r.c.person_id, r.c.position_id, r.c.via_position_id, r.c.reason, r.c.unit_id)
        .where(r.c.notice_id == nid, col.is_(None))
        .order_by(r.c.person_id, r.c.position_id)
    )
    targets: dict[int, list[Label]] = {}
    for person, pos, via, reason, unit_id in rows:
        uu = index.find_unit(int(unit_id))
        # A position retired since the send is not reminded (S21 d); its receipt stays counted.
        if uu >= 0 and index.contains(unit, uu) and index.role_and_unit(int(pos)) is not None:
            targets.setdefault(int(person), []).append((int(pos), int(via), str(reason)))
    extra = {"manual": True, "by": actor_person_id, "unit_id": index.unit_id(unit)}
    return notice_events("notice.remind", head_of_row(notice), targets, index, extra)
