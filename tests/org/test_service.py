"""The org service on both backends: handover with history, two processes' indexes, access checks, search."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.clock import FakeClock
from kernel.db.database import Database
from kernel.errors import Conflict, ErrorCode, Forbidden, NotFound
from org_tree.holder import OrgIndexHolder
from org_tree.importer import import_divisions
from org_tree.index import OrgIndex
from org_tree.jurisdiction import SYSTEM, Actor
from org_tree.org_service import OrgService
from org_tree.people import PersonDirectory
from org_tree.selectors import PositionSel, parse_text
from org_tree.synthetic import generate_people


@pytest.fixture
async def svc(org_db: Database, mini_divisions: Path) -> OrgService:
    clock = FakeClock()
    await import_divisions(org_db, mini_divisions, grids_per_village=2, clock=clock)
    await generate_people(org_db, pool_size=2, seed=7, vacancy_rate=0.0, deputy_rate=0.0, clock=clock)
    holder = OrgIndexHolder(org_db)
    await holder.load()
    return OrgService(org_db, clock, holder)


def _position(svc: OrgService, role: str, unit_code: str) -> int:
    return parse_and_resolve(svc, f"{role}@{unit_code}").positions[0]


def parse_and_resolve(svc: OrgService, text: str):  # type: ignore[no-untyped-def]
    from org_tree.resolution import resolve

    return resolve(svc.index, parse_text(text))


ADMIN = SYSTEM


async def test_stats_and_views(svc: OrgService) -> None:
    stats = await svc.stats()
    assert stats["units"] == {"province": 1, "city": 2, "county": 3, "township": 6, "village": 12, "grid": 24}
    assert stats["positions"] == svc.index.position_count()
    assert stats["persons"] > 0 and stats["assignments"] >= stats["persons"]
    view = svc.get_unit(ADMIN, "990101")
    assert (view.name, view.level, view.path, view.children) == ("柯城区", "county", ("测试省", "甲市", "柯城区"), 2)
    assert [c.code for c in svc.list_children(ADMIN, "990101")] == ["990101001", "990101002"]
    assert {r.key for r in svc.list_roles()} >= {"river_chief", "grid_worker", "village_secretary"}


async def test_handover_keeps_history_and_reaches_other_process(svc: OrgService, org_db: Database) -> None:
    other = OrgIndexHolder(org_db)  # another server process's view of the tree
    await other.load()
    pos = _position(svc, "村书记", "990101001001")
    old = svc.get_position(ADMIN, pos).holders
    assert len(old) == 1
    successor = await PersonDirectory(org_db, FakeClock()).create("新书记")
    await svc.handover(ADMIN, pos, successor.id)
    assert svc.get_position(ADMIN, pos).holders == (successor.id,)
    history = await svc.history(ADMIN, pos)
    assert [(h.person_id, h.end_at is None) for h in history] == [(old[0], False), (successor.id, True)]

    assert await other.refresh_if_changed() is True
    assert other.patches == 1 and other.rebuilds == 1
    from org_tree.resolution import resolve

    assert tuple(resolve(other.index, PositionSel(pos)).person_ids) == (successor.id,)
    assert await other.refresh_if_changed() is False

    with pytest.raises(Conflict):
        await svc.assign(ADMIN, pos, old[0])  # held single position: use handover
    # handing it to the one who holds it changes nothing (it restarted their assignment and, through the
    # reconciler, wrote a handover note into every thread of the position)
    version = svc.index.version
    with pytest.raises(Conflict) as again:
        await svc.handover(ADMIN, pos, successor.id)
    assert again.value.data == {"person_id": successor.id}
    assert [(h.person_id, h.end_at is None) for h in await svc.history(ADMIN, pos)] == [
        (old[0], False), (successor.id, True)
    ]  # fmt: skip
    assert svc.index.version == version and await other.refresh_if_changed() is False
    made = await svc.create_position(ADMIN, "990101001001", "village_secretary", title="副书记")
    assert await other.refresh_if_changed() is True
    assert other.rebuilds == 1 and other.patches == 2  # a structural edit is patched in, not rebuilt
    assert other.index.position_count() == svc.index.position_count()
    assert other.index.find_slot(made.id) >= 0
    # its title is shown wherever the position is (it was stored and never shown): here, in the other
    # process's patched index, after a rebuild, and on a 找岗位 hit
    assert made.title == "副书记" and svc.get_position(ADMIN, pos).title is None
    assert other.index.position_title(other.index.find_slot(made.id)) == "副书记"
    fresh = await OrgIndex.load(org_db)
    assert fresh.position_title(fresh.find_slot(made.id)) == "副书记"
    hits = (await svc.search(ADMIN, "990101001001 村书记", limit=10)).hits
    assert {h.position_id: h.title for h in hits} == {pos: None, made.id: "副书记"}


async def test_vacancy_falls_back_to_unit_head(svc: OrgService) -> None:
    pos = _position(svc, "村书记", "990101001002")
    holder = svc.get_position(ADMIN, pos).holders[0]
    history = await svc.history(ADMIN, pos)
    await svc.end_assignment(ADMIN, history[-1].id)
    head = _position(svc, "村主任", "990101001002")
    audience = parse_and_resolve(svc, "村书记@990101001002")
    assert audience.reasons == ("unit_head",)
    assert tuple(audience.via_position_ids) == (head,)
    assert tuple(audience.person_ids) == svc.get_position(ADMIN, head).holders
    assert holder not in audience.person_ids


async def test_jurisdiction_and_access(svc: OrgService, org_db: Database) -> None:
    worker_pos = _position(svc, "专职网格员", "990101001001001")
    worker = await svc.actor(svc.get_position(ADMIN, worker_pos).holders[0])
    assert worker_pos in worker.position_ids
    # her own grid is in scope; the chain above is not (issue 10: notices go down, threads and reports go up)
    svc.resolve(worker, worker_pos, parse_text("*@990101001001001"))
    for upward in ("村书记@990101001001", "区县长@990101"):
        with pytest.raises(Forbidden) as info:
            svc.resolve(worker, worker_pos, parse_text(upward))
        assert info.value.code == ErrorCode.OUT_OF_SCOPE
    with pytest.raises(Forbidden) as info:
        svc.resolve(worker, worker_pos, parse_text("专职网格员@990101001001/**"))
    assert info.value.code == ErrorCode.OUT_OF_SCOPE
    assert info.value.data["out_of_scope"] == ["专职网格员@990101001001/**"]
    assert info.value.data["count"] == 1  # the neighbouring grid's worker
    with pytest.raises(Forbidden):
        svc.resolve(worker, _position(svc, "村书记", "990101001001"), parse_text("pos:1"))  # not her position
    with pytest.raises(Forbidden):
        await svc.assign(worker, worker_pos, worker.person_id, kind="deputy")
    with pytest.raises(NotFound):
        await svc.history(worker, _position(svc, "村书记", "990102001001"))  # another county: private
    secretary_pos = _position(svc, "书记", "990101")
    secretary = await svc.actor(svc.get_position(ADMIN, secretary_pos).holders[0])
    pv = svc.preview(secretary, secretary_pos, parse_text("村书记@990101/** | 专职网格员@990101/**"))
    assert pv.positions == 4 + 8  # 2 townships × 2 villages, 2 grids each
    assert [c.code for c in pv.by_child] == ["990101001", "990101002"]
    assert pv.by_level == {"village": (4, 4), "grid": (8, 8)}
    assert pv.unfilled_count == 0
    with pytest.raises(NotFound):
        svc.resolve(secretary, secretary_pos, parse_text("村书记@77/**"))


async def test_directory_search(svc: OrgService) -> None:
    page = await svc.search(ADMIN, "kcq 网格长", limit=5)
    assert page.total == 8  # 2 townships × 2 villages × 2 grids
    assert all(h.unit_path[2] == "柯城区" and h.role == "网格长" for h in page.hits)
    assert (await svc.search(ADMIN, "kechengqu 网格长", offset=5, limit=5)).total == 8
    assert len((await svc.search(ADMIN, "kechengqu 网格长", offset=5, limit=5)).hits) == 3
    water = await svc.search(ADMIN, "衢江区 水务")
    assert [h.role for h in water.hits] == ["水务负责人"]
    name = water.hits[0].holders[0]
    found = await svc.search(ADMIN, name)
    assert any(h.position_id == water.hits[0].position_id for h in found.hits)
    assert (await svc.search(ADMIN, "%_")).total == 0


async def test_units_roles_positions_crud(svc: OrgService) -> None:
    unit = await svc.create_unit(ADMIN, "990101001", "新村")
    assert (unit.level, unit.path[-2:]) == ("village", ("东街道", "新村"))
    moved = await svc.move_unit(ADMIN, unit.id, "990101002")
    assert moved.parent_id == svc.get_unit(ADMIN, "990101002").id
    role = await svc.create_role(ADMIN, {"key": "safety_officer", "name": "安全员", "levels": ["village"]})
    pos = await svc.create_position(ADMIN, unit.id, "安全员")
    assert (pos.role, pos.holders) == ("安全员", ())
    assert parse_and_resolve(svc, f"安全员@#{unit.id}").unfilled == (pos.id,)  # a new village has no head yet
    with pytest.raises(Forbidden):
        await svc.create_role(Actor(1, ()), {"key": "x", "name": "X", "levels": ["grid"]})
    with pytest.raises(Conflict):
        await svc.create_role(ADMIN, {"key": "safety_officer", "name": "安全员2", "levels": ["grid"]})
    assert role.key == "safety_officer"
