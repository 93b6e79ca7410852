"""Grid reports (事件上报): one filing becomes a report, a routed task, and a domain event.

A grid worker files as one of her grid-level positions; the grid is that
position's unit, never a client-supplied field, so a report cannot claim a
grid its author does not serve. The category's routing rule picks the
responsible position (``messaging.tasks.routing``). In ONE transaction:
the report row, its task (created → the routed owner, with the accept
timer), the photo links, a ``report.filed`` and a ``task.created`` outbox
event, and the events of everyone involved. A bad category, location,
position or photo stores nothing.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.dialect import insert_ignore
from kernel.errors import BadRequest, ErrorCode, Forbidden, NotFound
from kernel.text import check_text
from kernel.wire import iso
from messaging.tasks.categories import get_category
from messaging.tasks.lifecycle import Action
from messaging.tasks.model import check_digests
from messaging.tasks.routing import route_report
from messaging.tasks.schema import reports
from messaging.tasks.service import TaskService, owner_values
from messaging.tasks.writer import Change, involved_persons, load_task, write_new_task
from messaging.unit_of_work import Txn
from org_tree.divisions import Level

logger = logging.getLogger(__name__)

__all__ = ["Filing", "ReportService", "check_location"]

MAX_TEXT = 5_000


def check_location(lat: Any, lon: Any) -> tuple[int, int]:
    """A WGS-84 point as microdegrees; anything else is ``invalid_location``."""
    for name, v, bound in (("lat", lat, 90.0), ("lon", lon, 180.0)):
        # abs(v) > bound before anything converts v to a float: JSON integers have no size limit, and
        # float(10**400) raises OverflowError (a 500 until 2026-12-05, the 福建 audit). Python compares
        # an int with a float exactly; NaN fails every comparison, so it is refused by isfinite.
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or abs(v) > bound
            or (isinstance(v, float) and not math.isfinite(v))
        ):
            raise BadRequest(
                f"location.{name} must be a number between -{bound:g} and {bound:g}",
                code=ErrorCode.INVALID_LOCATION,
                data={"field": f"location.{name}"},
            )
    return round(float(lat) * 1e6), round(float(lon) * 1e6)


@dataclass(frozen=True, slots=True)
class Filing:
    """What a grid worker sends (already shape-checked by the shell)."""

    client_msg_id: str
    category: str
    text: str
    lat: float
    lon: float
    photos: Sequence[str] = ()
    beyond_capacity: bool = False


def _report_dict(r: Any) -> dict[str, Any]:
    return {
        "report_id": int(r.id),
        "reporter": {"person_id": int(r.reporter_person_id), "position_id": int(r.reporter_position_id)},
        "grid_unit_id": int(r.grid_unit_id),
        "category": r.category,
        "text": r.text,
        "location": {"lat": r.lat_e6 / 1e6, "lon": r.lon_e6 / 1e6},
        "beyond_capacity": bool(r.beyond_capacity),
        "photos": json.loads(r.photos),
        "task_id": None if r.task_id is None else int(r.task_id),
        "created_at": iso(r.created_at),
    }


class ReportService:
    """Files grid reports as routed tasks; shares the task service's database, events and clock."""

    def __init__(self, tasks_service: TaskService) -> None:
        self._t = tasks_service

    async def file(self, person_id: int, as_position: int, f: Filing) -> tuple[dict[str, Any], bool]:
        """File a report; returns it (with its task id) and whether it was a retry of an earlier filing.

        Raises:
            BadRequest: bad text, location (``invalid_location``), category
                (``unknown_category``) or photos (``unknown_attachment``).
            Forbidden: the person does not hold the position, or it is not a grid-level position.
            NotFound: the routing rule finds no responsible position above this grid.
        """
        check_text(f.text, field="text", max_chars=MAX_TEXT)
        lat_e6, lon_e6 = check_location(f.lat, f.lon)
        photos = check_digests(f.photos, "photos")
        t = self._t
        index = t.index()
        refusal: Forbidden | None = None
        if not index.holds(person_id, as_position):
            refusal = Forbidden("you do not hold that position", data={"as_position": as_position})
        elif index.unit_level(index.position_unit(index.slot(as_position))) != Level.GRID:
            refusal = Forbidden("reports are filed as a grid-level position", data={"as_position": as_position})
        if refusal is not None:
            # An offline phone's retry can arrive after its grid position was handed over: the key
            # still answers the first filing (docs/protocol.md, "Retries of a create"). Read only on
            # this refusal path, so a first filing pays no read for it.
            async with t.db.read() as conn:
                earlier = await _find_report(conn, person_id, f.client_msg_id)
            if earlier is None:
                raise refusal
            return earlier, True
        grid_u = index.position_unit(index.slot(as_position))

        # A retry is recognised by the report's unique key inside the transaction, not by a read
        # transaction ahead of every filing (that read was 5 of ~30 round trips per report).
        async def change(tx: Txn) -> tuple[dict[str, Any], bool]:
            conn, now = tx.conn, tx.now
            cat = await get_category(conn, f.category)
            rid = (
                await conn.execute(
                    insert_ignore(conn, reports, ["reporter_person_id", "client_msg_id"])
                    .values(
                        reporter_person_id=person_id,
                        reporter_position_id=as_position,
                        grid_unit_id=index.unit_id(grid_u),
                        client_msg_id=f.client_msg_id,
                        category=cat.key,
                        text=f.text,
                        lat_e6=lat_e6,
                        lon_e6=lon_e6,
                        beyond_capacity=f.beyond_capacity,
                        photos=json.dumps(photos),
                        task_id=None,
                        created_at=now,
                    )  # fmt: skip
                    .returning(reports.c.id)
                )
            ).scalar()
            if rid is None:  # a retry: the first filing stands (nothing written)
                return await _read_report(conn, person_id, f.client_msg_id), True
            # Routed after the key is taken so that a retry is answered even if its route has gone
            # since; a refused route rolls the report row back.
            owner_k, level = route_report(index, cat, grid_u, beyond_capacity=f.beyond_capacity)
            rid = int(rid)
            await t.link_attachments(conn, photos, person_id, "report", rid)
            values = {
                "category": cat.key, "title": f"[{cat.name}] {f.text[:60]}", "body": f.text,
                "creator_person_id": person_id, "creator_position_id": as_position, "source": "report",
                "source_id": rid, "client_msg_id": f"report-{rid}", "pool": "[]", "watchers": "[]",
                **owner_values(index, owner_k), "origin_unit_id": index.unit_id(grid_u),
                "escalation_level": level, "accept_due_at": now + cat.accept_delta, "resolve_due_at": None,
            }  # fmt: skip
            created = Change(
                Action.CREATE, person_id, as_position, attachments=photos,
                data={"report_id": rid, "beyond_capacity": f.beyond_capacity},
            )  # fmt: skip
            task, _ev_id = await write_new_task(tx, index, values, created)
            assert task is not None  # the key is new with the report
            row = (
                await conn.execute(
                    update(reports).where(reports.c.id == rid).values(task_id=task.id).returning(*reports.c)
                )
            ).one()
            body = _report_dict(row)
            filed = {**body, "routed_to": task.owner_position_id, "escalation_level": level}
            tx.record("report.filed", "report", rid, filed)
            return body, False

        return await t.uow.run(change)

    async def get(self, person_id: int, report_id: int) -> dict[str, Any]:
        """A report, for its reporter and everyone involved in its task."""
        if not await self.can_see(person_id, report_id):
            raise NotFound("no such report", data={"report_id": report_id})
        async with self._t.db.read() as conn:
            row = (await conn.execute(select(reports).where(reports.c.id == report_id))).one()
        return _report_dict(row)

    async def get_within(self, report_id: int, covers: Callable[[int], bool]) -> dict[str, Any]:
        """A report for a reader entitled to a subtree (an app with ``report:read``).

        ``covers(grid_unit_id)`` says whether the report's grid lies in that
        subtree; outside it the answer is ``NotFound``, as for an unknown id.
        """
        async with self._t.db.read() as conn:
            row = (await conn.execute(select(reports).where(reports.c.id == report_id))).first()
        if row is None or not covers(int(row.grid_unit_id)):
            raise NotFound("no such report", data={"report_id": report_id})
        return _report_dict(row)

    async def can_see(self, person_id: int, report_id: int) -> bool:
        """Whether ``person_id`` may see the report and its photos."""
        async with self._t.db.read() as conn:
            row = (
                await conn.execute(
                    select(reports.c.reporter_person_id, reports.c.task_id).where(reports.c.id == report_id)
                )
            ).first()
            if row is None:
                return False
            if int(row[0]) == person_id:
                return True
            if row[1] is None:
                return False
            task = await load_task(conn, int(row[1]))
        return person_id in involved_persons(self._t.index(), task)


async def _find_report(conn: AsyncConnection, person_id: int, client_msg_id: str) -> dict[str, Any] | None:
    """The report this person filed under ``client_msg_id``, or None (the key of a retry)."""
    row = (
        await conn.execute(
            select(reports).where(reports.c.reporter_person_id == person_id, reports.c.client_msg_id == client_msg_id)
        )
    ).first()
    return None if row is None else _report_dict(row)


async def _read_report(conn: AsyncConnection, person_id: int, client_msg_id: str) -> dict[str, Any]:
    found = await _find_report(conn, person_id, client_msg_id)
    if found is None:
        raise NotFound("no such report")
    return found
