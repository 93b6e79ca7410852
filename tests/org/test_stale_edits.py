"""A structural edit checked against an index that another process's edit has made stale (广西 audit).

Each edit is checked against its process's index and written under the ``org_version`` lock. Between
the two, another process may commit a change this index has not applied yet. Before, the edit was
written anyway: two villages merged into each other at once (one merge on each of two ``zzd serve``
processes) were both retired, their positions left in a retired unit with their holders seated, and
the second merge's log entry named a unit the first had retired: no process could apply it, every
index refresh failed on it from then on, and no org change reached any process until a restart.

``two`` is two services on one database, each with its own index, as two processes are; ``b`` is
not refreshed between ``a``'s edit and its own, which is the window made certain.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from kernel.clock import FakeClock
from kernel.db.database import Database
from kernel.errors import Forbidden, NotFound
from org_tree.grants import Grant, Perm
from org_tree.jurisdiction import SYSTEM, Actor
from org_tree.org_schema import assignments, org_changes, positions, roles, units
from org_tree.org_service import OrgService
from org_tree.people import PersonDirectory
from org_tree.versioning import append_change, bump_version

TOWN = "990101001"
VILLAGE, OTHER_VILLAGE = "990101001001", "990101001002"
OTHER_TOWN = "990101002"


async def _unit_row(db: Database, code: str) -> tuple[str, bool]:
    async with db.read() as conn:
        row = (await conn.execute(select(units.c.name, units.c.dissolved_at).where(units.c.code == code))).one()
    return str(row.name), row.dissolved_at is not None


async def test_two_units_merged_into_each_other_at_once_merge_once(
    two: tuple[OrgService, OrgService], org_db: Database
) -> None:
    a, b = two
    kept = a.get_unit(SYSTEM, OTHER_VILLAGE)
    moved = a.get_unit(SYSTEM, VILLAGE).position_ids
    await a.structure.merge_units(SYSTEM, VILLAGE, OTHER_VILLAGE)
    version = a.index.version
    # b's index still has both villages: the reverse merge is checked again and refused, nothing written.
    with pytest.raises(NotFound):
        await b.structure.merge_units(SYSTEM, OTHER_VILLAGE, VILLAGE)
    assert (await _unit_row(org_db, OTHER_VILLAGE))[1] is False
    async with org_db.read() as conn:
        live = (await conn.execute(select(positions.c.id).where(positions.c.unit_id == kept.id))).scalars().all()
    assert set(moved) <= set(live)
    for s in (a, b):  # both indexes follow the log, and agree
        await s._holder.refresh_if_changed()
        assert s.index.version == version
        assert set(moved) <= set(s.get_unit(SYSTEM, OTHER_VILLAGE).position_ids)
        with pytest.raises(NotFound):
            s.get_unit(SYSTEM, VILLAGE)


async def test_an_edit_of_a_unit_retired_meanwhile_is_refused_and_the_others_keep_following(
    two: tuple[OrgService, OrgService], org_db: Database
) -> None:
    a, b = two
    name = a.get_unit(SYSTEM, VILLAGE).name
    await a.structure.retire_unit(SYSTEM, VILLAGE)
    version = a.index.version
    with pytest.raises(NotFound):
        await b.rename_unit(SYSTEM, VILLAGE, "改名村")
    with pytest.raises(NotFound):
        await b.create_unit(SYSTEM, VILLAGE, "新网格")
    assert await _unit_row(org_db, VILLAGE) == (name, True)
    async with org_db.read() as conn:
        later = await conn.execute(select(org_changes.c.version).where(org_changes.c.version > version))
        assert later.first() is None
    # An edit elsewhere is made on the refreshed index (no retry needed) and reaches the other service.
    await b.rename_unit(SYSTEM, TOWN, "新镇")
    assert await a._holder.refresh_if_changed()
    assert a.get_unit(SYSTEM, TOWN).name == "新镇"


async def test_a_log_entry_that_does_not_apply_is_rebuilt_past_not_failed_on(
    two: tuple[OrgService, OrgService], org_db: Database
) -> None:
    """A rename of a unit no index has (a log written before the fix above): the reader rebuilds, as for any
    entry that does not apply. Before, the index's ``NotFound`` escaped and every later refresh failed."""
    _, b = two
    clock = FakeClock()
    async with org_db.write() as conn:
        version = await bump_version(conn, clock, scope="struct")
        op = {"op": "unit_rename", "unit": 987654321, "name": "无", "pinyin": "wu", "initials": "w"}
        await append_change(conn, clock, version, "struct", op)
    rebuilds = b._holder.rebuilds
    assert await b._holder.refresh_if_changed()
    assert (b.index.version, b._holder.rebuilds) == (version, rebuilds + 1)


async def test_a_position_retired_meanwhile_is_not_handed_over_or_assigned(
    two: tuple[OrgService, OrgService], org_db: Database
) -> None:
    a, b = two
    pos = a.get_unit(SYSTEM, VILLAGE).position_ids[0]
    newcomer = await PersonDirectory(org_db, FakeClock()).create("周晓岚")
    await a.structure.retire_position(SYSTEM, pos)
    with pytest.raises(NotFound):
        await b.handover(SYSTEM, pos, newcomer.id)
    with pytest.raises(NotFound):
        await b.assign(SYSTEM, pos, newcomer.id, kind="deputy")
    async with org_db.read() as conn:
        seated = await conn.execute(
            select(assignments.c.id).where(assignments.c.position_id == pos, assignments.c.end_at.is_(None))
        )
        assert seated.first() is None


async def test_a_rename_back_on_a_stale_index_is_written_not_taken_for_no_change(
    two: tuple[OrgService, OrgService], org_db: Database
) -> None:
    """``b``'s index still has the old name when the other process's rename has committed: renaming it
    back is a change. Before, "the name is already that" was read from the stale index: 200, nothing
    written, and the other process's name stayed."""
    a, b = two
    name = b.get_unit(SYSTEM, VILLAGE).name
    await a.rename_unit(SYSTEM, VILLAGE, "改名村")
    view = await b.rename_unit(SYSTEM, VILLAGE, name)
    assert view.name == name
    assert await _unit_row(org_db, VILLAGE) == (name, False)
    assert await a._holder.refresh_if_changed()
    assert a.get_unit(SYSTEM, VILLAGE).name == name


async def test_a_role_changed_back_on_a_stale_index_is_written_not_taken_for_no_change(
    two: tuple[OrgService, OrgService], org_db: Database
) -> None:
    a, b = two
    info = b.index.roles[b.index.role_id("village_secretary")]
    other = "none" if info.jurisdiction != "none" else "unit"
    await a.update_role(SYSTEM, "village_secretary", name="村书记", jurisdiction=other)
    await b.update_role(SYSTEM, "village_secretary", name=info.name, jurisdiction=info.jurisdiction)
    async with org_db.read() as conn:
        row = (await conn.execute(select(roles.c.name, roles.c.jurisdiction).where(roles.c.id == info.id))).one()
    assert (row.name, row.jurisdiction) == (info.name, info.jurisdiction)


@pytest.mark.parametrize("op", ["handover", "assign", "end"])
async def test_a_seat_in_a_unit_moved_out_of_the_grant_meanwhile_is_refused(
    two: tuple[OrgService, OrgService], org_db: Database, op: str
) -> None:
    """An admin of one township assigns, hands over or ends a seat in one of its villages on ``b``, whose
    index has not yet applied ``a``'s move of that village to the next township. The grant was checked
    on the stale index and never again under the lock: each was written, in a village the admin no
    longer administers (the review of 2026-12-05). Now it is checked again on the refreshed index."""
    a, b = two
    town = a.get_unit(SYSTEM, TOWN).id
    admin = Actor(0, (), (Grant(1, 0, town, frozenset({Perm.ASSIGNMENTS.value})),))
    pos = a.get_unit(SYSTEM, VILLAGE).position_ids[0]
    newcomer = await PersonDirectory(org_db, FakeClock()).create("周晓岚")

    async def seated() -> list[int]:
        async with org_db.read() as conn:
            rows = await conn.execute(
                select(assignments.c.id).where(assignments.c.position_id == pos, assignments.c.end_at.is_(None))
            )
            return sorted(rows.scalars().all())

    held = await seated()
    assert held
    await a.structure.move_unit(SYSTEM, VILLAGE, OTHER_TOWN)
    if op == "handover":
        with pytest.raises(Forbidden):
            await b.handover(admin, pos, newcomer.id)
    elif op == "assign":
        with pytest.raises(Forbidden):
            await b.assign(admin, pos, newcomer.id, kind="deputy")
    else:
        with pytest.raises(NotFound):  # as an assignment out of reach answers
            await b.end_assignment(admin, held[0])
    assert await seated() == held
