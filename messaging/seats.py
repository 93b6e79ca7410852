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

A unit renamed, moved or merged (``OrgHooks.units``) changes no seat but what
the holders' positions read as (their ``unit_path``, after a merge their
``unit_id``): its holders get the event too, with nothing gained or lost, and
the units are read from the edit's transaction, not the index (which still
has the old names and places).
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
from org_tree.org_schema import assignments, positions, units
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
        return await self._tell(conn, changes, now, units_moved=False)

    async def units_changed(
        self, conn: AsyncConnection, persons: list[int], now: datetime
    ) -> Callable[[], None] | None:
        """The ``OrgHooks.units`` hook: a unit above the positions these persons hold was renamed, moved or
        merged in this transaction; each is told what their positions read as now (nothing gained or lost)."""
        return await self._tell(conn, dict.fromkeys(persons, ([], [])), now, units_moved=True)

    async def _tell(
        self,
        conn: AsyncConnection,
        changes: dict[int, tuple[list[int], list[int]]],
        now: datetime,
        *,
        units_moved: bool,
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
        if units_moved:
            for pos, (unit_id, path) in (await _units_now(conn, list(views))).items():
                views[pos] = views[pos].model_copy(update={"unit_id": unit_id, "unit_path": path})
        tx = self._uow.join(conn, now)
        for p in persons:
            gained, lost = changes[p]
            data = PositionsChanged(person_id=p, positions=[views[pos] for pos in held[p]], gained=gained, lost=lost)
            tx.emit(NewEvent("positions.changed", data.text(), [p]))
        await self._uow.finish(tx)
        return lambda: self._uow.announce(tx)


async def _units_now(conn: AsyncConnection, position_ids: list[int]) -> dict[int, tuple[int, list[str]]]:
    """Each position's unit id and unit path (root first) as ``conn``'s transaction reads them.

    Why not the index: a unit edit's hook runs before its commit, and the index (every process's)
    applies the edit only after it; read from it, the event would carry the names and places it
    is sent to correct. The tree has six levels: at most six rounds of reads up the parents.
    """
    unit_of: dict[int, int] = {}
    for i in range(0, len(position_ids), _CHUNK):
        q = select(positions.c.id, positions.c.unit_id).where(positions.c.id.in_(position_ids[i : i + _CHUNK]))
        unit_of.update({int(p): int(u) for p, u in await conn.execute(q)})
    named: dict[int, tuple[str, int | None]] = {}
    todo = sorted(set(unit_of.values()))
    while todo:
        for i in range(0, len(todo), _CHUNK):
            up_q = select(units.c.id, units.c.name, units.c.parent_id).where(units.c.id.in_(todo[i : i + _CHUNK]))
            for u, n, up in await conn.execute(up_q):
                named[int(u)] = (str(n), None if up is None else int(up))
        todo = sorted({up for _, up in named.values() if up is not None and up not in named})

    def path(u: int) -> list[str]:
        out: list[str] = []
        at: int | None = u
        while at is not None and at in named:
            name, at = named[at]
            out.append(name)
        return out[::-1]

    return {p: (u, path(u)) for p, u in unit_of.items()}
