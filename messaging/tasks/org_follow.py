"""Open tasks follow structural org edits, inside the edit's own transaction.

Why here and in that transaction: a task owned by a position that is retired
would otherwise belong to nobody, and a crash between the org edit and a
separate task fix-up would leave it so. The org edit (``org_tree.structure``)
calls these hooks with its connection, so either both commit or neither.

* A **retired** position's open tasks (created, accepted, in progress) go to
  its successor, back to ``created`` with a fresh accept deadline, like a
  reassignment; resolved or verified ones only change owner (the creator still
  verifies). Each gets a ``reassign`` history entry with
  ``{"from_owner", "to_owner", "reason": "position_retired"}``, an outbox
  ``task.reassigned`` event and a ``task.updated`` event to everyone involved.
  An open task with no successor refuses the edit (409 ``conflict``): the
  administrator names one.
* A **moved** position (a merge) keeps its tasks; their ``owner_unit_id``
  follows it so roll-ups and auditors see them where the position now is.
* Pending escalations need nothing: a deadline escalates along the superior
  chain of the index *at the time it fires*, so a moved unit's tasks climb
  its new chain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.dialect import for_update
from kernel.errors import Conflict
from messaging.tasks.categories import Category, get_category
from messaging.tasks.lifecycle import Action, State
from messaging.tasks.model import TaskRow
from messaging.tasks.schema import tasks
from messaging.tasks.service import TaskService
from messaging.tasks.writer import Change, Planned, write_changes_locked

logger = logging.getLogger(__name__)

__all__ = ["OPEN_STATES", "TaskOrgFollower"]

OPEN_STATES = (State.CREATED, State.ACCEPTED, State.IN_PROGRESS, State.RESOLVED, State.VERIFIED)
_BACK_TO_CREATED = (State.CREATED, State.ACCEPTED, State.IN_PROGRESS)


class TaskOrgFollower:
    """The task side of ``org_tree.structure.OrgHooks``."""

    def __init__(self, service: TaskService) -> None:
        self._svc = service

    async def _open(self, conn: AsyncConnection, position_ids: list[int]) -> list[TaskRow]:
        q = select(tasks).where(
            tasks.c.owner_position_id.in_(position_ids), tasks.c.state.in_([s.value for s in OPEN_STATES])
        )
        return [TaskRow.from_row(r) for r in await conn.execute(for_update(conn, q.order_by(tasks.c.id)))]

    async def positions_retired(
        self, conn: AsyncConnection, moves: dict[int, int | None], now: datetime, actor: int | None
    ) -> Callable[[], None] | None:
        """Hand the retired positions' open tasks to their successors; returns the after-commit wake-up."""
        index = self._svc.index()
        found = await self._open(conn, sorted(moves))
        if not found:
            return None
        orphans = sorted({t.owner_position_id for t in found if moves.get(t.owner_position_id) is None})
        if orphans:
            raise Conflict(
                "open tasks of a retired position need a successor: name one",
                data={"field": "successor", "positions": orphans},
            )
        cats: dict[str, Category] = {}
        planned: list[Planned] = []
        for t in found:
            cat = cats.get(t.category)
            if cat is None:
                cat = cats[t.category] = await get_category(conn, t.category)
            to = moves[t.owner_position_id]
            assert to is not None
            k = index.slot(to)
            change = Change(Action.REASSIGN, actor, None)
            if State(t.state) in _BACK_TO_CREATED:
                values, change = TaskService.plan_move(index, t, cat, k, now, change, level=t.escalation_level,
                                                       rule=None)  # fmt: skip
                state = State.CREATED
            else:
                values = {"owner_position_id": to, "owner_unit_id": index.unit_id(index.position_unit(k))}
                change.data = {"from_owner": t.owner_position_id, "to_owner": to}
                state = State(t.state)
            change.data["reason"] = "position_retired"
            planned.append(Planned(t, values, change, state))
        by_keys: dict[tuple[str, ...], list[Planned]] = {}
        for p in planned:  # one batch per set of changed columns (write_changes_locked's rule)
            by_keys.setdefault(tuple(sorted(p.values)), []).append(p)
        uow = self._svc.uow
        tx = uow.join(conn, now)
        for batch in by_keys.values():
            written = await write_changes_locked(conn, index, batch, now)
            tx.emit(*written.events)
        await uow.finish(tx)
        return lambda: uow.announce(tx)

    async def positions_moved(self, conn: AsyncConnection, moves: dict[int, int], now: datetime) -> None:
        """Tasks of moved positions are counted where the position now is."""
        by_unit: dict[int, list[int]] = {}
        for pid, unit_id in moves.items():
            by_unit.setdefault(unit_id, []).append(pid)
        for unit_id, pids in by_unit.items():
            await conn.execute(
                update(tasks)
                .where(tasks.c.owner_position_id.in_(pids), tasks.c.state.in_([s.value for s in OPEN_STATES]))
                .values(owner_unit_id=unit_id, updated_at=now)
            )

    async def impact(self, conn: AsyncConnection, position_ids: list[int]) -> dict[str, Any]:
        """For a preview: open tasks owned by these positions."""
        n = 0
        for i in range(0, len(position_ids), 1000):
            n += int(
                (
                    await conn.execute(
                        select(func.count()).where(
                            tasks.c.owner_position_id.in_(position_ids[i : i + 1000]),
                            tasks.c.state.in_([s.value for s in OPEN_STATES]),
                        )
                    )
                ).scalar_one()
            )
        return {"open_tasks": n}
