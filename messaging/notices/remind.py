"""A sender's one-click reminder: ``notice.remind`` to whoever in a unit's subtree still owes.

The DING ladder reminds on a schedule (ding.py); a manager watching the dashboard may also
remind the pending recipients of one unit at once. The targets are read in the same
transaction that appends their events, with the same rule as the ladder (not read, or not
acknowledged when acknowledgement is required, unless ``missing`` narrows it), limited to the
unit's subtree by the in-memory index, as the pending list is.

How often: a receipt reminded by hand less than ``REMIND_INTERVAL`` ago is not reminded
again. The mark (``notice_receipts.reminded_at``) is set by a conditional UPDATE, which is
the claim: two reminders at once, on one process or two, remind a person once. Why per
receipt in the database and not per unit in memory (as before): the 江西 audit reminded the
same people three times in a row by asking for the grid's township, then its county, then
its city, and a second process kept a minute of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.dialect import chunks
from messaging.events import NewEvent
from messaging.notices.fanout import Label, notice_events
from messaging.notices.relay import head_of_row
from messaging.notices.schema import notice_receipts
from org_tree.index import OrgIndex

__all__ = ["REMIND_INTERVAL", "Reminders", "reminder_events"]

#: Seconds before the same receipt of a notice may be reminded by hand again.
REMIND_INTERVAL = 60.0

_CLAIM_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class Reminders:
    """What one reminder found.

    Args:
        events: one ``notice.remind`` per person reminded now.
        recent: persons under the unit who still owe but were reminded by hand less than
            ``REMIND_INTERVAL`` ago (not reminded now).
    """

    events: list[NewEvent]
    recent: int


async def reminder_events(
    conn: AsyncConnection,
    index: OrgIndex,
    notice: Row[Any],
    unit: int,
    missing: str,
    actor_person_id: int,
    now: datetime,
) -> Reminders:
    """One ``notice.remind`` per person still owing under pre-order unit ``unit``, not reminded lately.

    Marks the reminded receipts ``reminded_at = now`` in ``conn``'s transaction.
    """
    r = notice_receipts
    col = r.c.read_at if missing == "read" else r.c.acked_at
    nid = int(notice.id)
    rows = await conn.execute(
        select(r.c.id, r.c.person_id, r.c.unit_id, r.c.position_id)
        .where(r.c.notice_id == nid, col.is_(None))
        .order_by(r.c.person_id, r.c.position_id)
    )
    candidates: list[int] = []
    owing: set[int] = set()
    for rid, person, unit_id, pos in rows:
        uu = index.find_unit(int(unit_id))
        # A position retired since the send is not reminded (S21 d); its receipt stays counted.
        if uu >= 0 and index.contains(unit, uu) and index.role_and_unit(int(pos)) is not None:
            candidates.append(int(rid))
            owing.add(int(person))
    cutoff = now - timedelta(seconds=REMIND_INTERVAL)
    targets: dict[int, list[Label]] = {}
    for part in chunks(candidates, _CLAIM_CHUNK):
        # The claim: a receipt another reminder marked meanwhile no longer matches (PostgreSQL re-reads
        # the row after that transaction commits; SQLite's writers take turns).
        claimed = await conn.execute(
            update(r)
            .where(r.c.id.in_(part), col.is_(None), or_(r.c.reminded_at.is_(None), r.c.reminded_at <= cutoff))
            .values(reminded_at=now)
            .returning(r.c.person_id, r.c.position_id, r.c.via_position_id, r.c.reason)
        )
        for person, pos, via, reason in claimed:
            targets.setdefault(int(person), []).append((int(pos), int(via), str(reason)))
    targets = {person: sorted(labels) for person, labels in sorted(targets.items())}
    extra = {"manual": True, "by": actor_person_id, "unit_id": index.unit_id(unit)}
    events = notice_events("notice.remind", head_of_row(notice), targets, index, extra)
    return Reminders(events, len(owing - targets.keys()))
