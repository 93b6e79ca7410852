"""``positions.changed``: a person learns that the positions they hold changed.

Why: a person acts through positions, and a client shows and sends as them.
After a handover (or an assignment started or ended, a position or unit
retired) the predecessor's client would go on offering the seat it lost —
a send then failed with a bare 403 — and the successor's would not offer the
one it gained, until a reload. The org change calls this hook
(``org_tree.structure.OrgHooks.holders``) in its own transaction, so the
event exists exactly when the change does, is written once whichever
process made it, and reaches people offline through sync like any other.

The data lists every position the person holds after the change, in the
shape of ``GET /api/v1/me/positions`` (read in the change's transaction: the
index has not seen it yet), and the ids gained and lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from messaging.events import NewEvent
from messaging.shapes import HeldPosition, PositionsChanged
from messaging.unit_of_work import UnitOfWork
from org_tree.holder import read_holders
from org_tree.index import OrgIndex
from org_tree.org_schema import assignments
from org_tree.org_service import position_view

logger = logging.getLogger(__name__)

__all__ = ["SeatNotifier"]

_CHUNK = 1000


class SeatNotifier:
    """The ``OrgHooks.holders`` hook: one ``positions.changed`` to each person whose seats changed."""

    def __init__(self, uow: UnitOfWork, index: Callable[[], OrgIndex]) -> None:
        self._uow = uow
        self._index = index

    async def holders_changed(
        self, conn: AsyncConnection, changes: dict[int, tuple[list[int], list[int]]], now: datetime
    ) -> Callable[[], None] | None:
        persons = sorted(changes)
        held: dict[int, list[int]] = {p: [] for p in persons}
        for i in range(0, len(persons), _CHUNK):
            rows = await conn.execute(
                select(assignments.c.person_id, assignments.c.position_id)
                .where(assignments.c.person_id.in_(persons[i : i + _CHUNK]), assignments.c.end_at.is_(None))
                .order_by(assignments.c.position_id)
            )
            for person, pos in rows:
                if int(pos) not in held[int(person)]:
                    held[int(person)].append(int(pos))
        idx = self._index()
        # Positions the index does not know are not held (a dissolved unit's, as OrgService.actor has it).
        for p in persons:
            held[p] = [pos for pos in held[p] if idx.find_slot(pos) >= 0]
        holders = await read_holders(conn, {pos for ps in held.values() for pos in ps})
        views = {
            pos: HeldPosition.model_validate(
                asdict(position_view(idx, idx.find_slot(pos), tuple(primaries), tuple(alternates)))
            )
            for pos, (primaries, alternates) in holders.items()
        }
        tx = self._uow.join(conn, now)
        for p in persons:
            gained, lost = changes[p]
            data = PositionsChanged(person_id=p, positions=[views[pos] for pos in held[p]], gained=gained, lost=lost)
            tx.emit(NewEvent("positions.changed", data.text(), [p]))
        await self._uow.finish(tx)
        return lambda: self._uow.announce(tx)
