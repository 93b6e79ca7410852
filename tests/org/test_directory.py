"""找岗位 (issue 18): live in another process, ranked as docs/directory.md says, phones for administrators only."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.clock import FakeClock
from kernel.db.database import Database
from kernel.errors import BadRequest
from org_tree.grants import Grant
from org_tree.holder import OrgIndexHolder
from org_tree.importer import import_divisions
from org_tree.jurisdiction import SYSTEM, Actor
from org_tree.org_service import OrgService
from org_tree.people import PersonDirectory
from org_tree.synthetic import generate_people

ADMIN = SYSTEM
VILLAGE = "990101001001"


def _ids(page: object) -> list[int]:
    return [h.position_id for h in page.hits]  # type: ignore[attr-defined]


async def test_changes_reach_the_other_process_directory(two: tuple[OrgService, OrgService], org_db: Database) -> None:
    a, b = two
    sec = a.get_unit(ADMIN, VILLAGE).position_ids[0]
    assert (await b.search(ADMIN, "周晓岚")).total == 0  # b's directory is built before the person exists
    newcomer = await PersonDirectory(org_db, FakeClock()).create("周晓岚")
    await a.handover(ADMIN, sec, newcomer.id)
    assert await b._holder.refresh_if_changed()
    assert b._holder.rebuilds == 1  # patched, not rebuilt
    for q in ("周晓岚", "zhouxiaolan", "zxl", "晓岚"):
        page = await b.search(ADMIN, q)
        assert sec in _ids(page), q
    await a.change_person(ADMIN, newcomer.id, name="周小兰")
    await b._holder.refresh_if_changed()
    assert sec in _ids(await b.search(ADMIN, "周小兰"))
    assert (await b.search(ADMIN, "周晓岚")).total == 0
    await a.rename_unit(ADMIN, VILLAGE, "金桂社区")
    made = await a.create_position(ADMIN, VILLAGE, "river_chief")
    await b._holder.refresh_if_changed()
    for q in ("金桂社区", "jinguishequ", "jgsq"):
        page = await b.search(ADMIN, q)
        assert page.hits[0].unit_code == VILLAGE and page.hits[0].unit_path[-1] == "金桂社区", q
    assert made.id in _ids(await b.search(ADMIN, "金桂 hezhang"))
    await a.structure.retire_position(ADMIN, sec, successor=made.id)
    await b._holder.refresh_if_changed()
    assert (await b.search(ADMIN, "周小兰")).total == 0  # the retired position is gone from the directory
    assert b._holder.rebuilds == 1


async def test_ranking_and_mixed_queries(two: tuple[OrgService, OrgService], org_db: Database) -> None:
    svc, _ = two
    page = await svc.search(ADMIN, "柯城区", limit=100)
    first = page.hits[0]
    assert first.unit_code == "990101"  # the exactly named unit's own positions first …
    own = [h for h in page.hits if h.unit_code == "990101"]
    assert list(page.hits[: len(own)]) == own
    levels = [len(h.unit_path) for h in page.hits]
    assert levels == sorted(levels)  # … then its subtree, level by level
    grid_workers = await svc.search(ADMIN, "kcq wgy", limit=100)
    assert grid_workers.total == 16 and {h.role_key for h in grid_workers.hits} == {"grid_worker", "grid_volunteer"}
    assert {h.unit_path[2] for h in grid_workers.hits} == {"柯城区"}
    # a holder's exact name before partial matches
    zhang = await PersonDirectory(org_db, FakeClock()).create("张三")
    zhangsanfeng = await PersonDirectory(org_db, FakeClock()).create("张三丰")
    pos_a = svc.get_unit(ADMIN, "990102001001").position_ids[0]
    pos_b = svc.get_unit(ADMIN, "990101002001").position_ids[0]
    await svc.handover(ADMIN, pos_b, zhangsanfeng.id)
    await svc.handover(ADMIN, pos_a, zhang.id)
    for q in ("张三", "zhangsan"):
        got = _ids(await svc.search(ADMIN, q))
        assert got.index(pos_a) < got.index(pos_b), q
    # a vacant position is shown as vacant, with who receives instead
    end = [a for a in await svc.history(ADMIN, pos_a) if a.end_at is None][0]
    await svc.end_assignment(ADMIN, end.id)
    hit = next(h for h in (await svc.search(ADMIN, "990102001001", limit=100)).hits if h.position_id == pos_a)
    assert hit.vacant and hit.holders == () and hit.fallback is not None
    assert hit.fallback.reason in ("unit_head", "superior", "unfilled")
    assert (await svc.search(ADMIN, "no-such-thing")).total == 0


async def test_phones_only_for_administrators_of_the_unit(two: tuple[OrgService, OrgService], org_db: Database) -> None:
    svc, _ = two
    from sqlalchemy import update

    from kernel.schema import persons

    pos = svc.get_unit(ADMIN, VILLAGE).position_ids[0]
    holder = svc.get_position(ADMIN, pos).holders[0]
    async with org_db.write() as conn:
        await conn.execute(update(persons).where(persons.c.id == holder).values(phone="13800000001"))
    ordinary = await svc.actor(holder)
    unit_id = svc.index.unit_id(svc.index.unit("990101"))
    other_unit = svc.index.unit_id(svc.index.unit("990102"))
    admin = Actor(999, (), (Grant(1, 999, unit_id, frozenset({"assignments"})),))
    elsewhere = Actor(998, (), (Grant(2, 998, other_unit, frozenset({"assignments", "audit"})),))
    name = svc.get_position(ADMIN, pos)
    del name
    for actor, phone in ((ordinary, None), (elsewhere, None), (admin, "13800000001")):
        hit = next(h for h in (await svc.search(actor, VILLAGE, limit=100)).hits if h.position_id == pos)
        assert [d.phone for d in hit.holder_details] == [phone]


async def test_the_persons_part_of_a_build_runs_off_the_event_loop(
    org_db: Database, mini_divisions: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process builds its directory on its first search; built in the event loop, the persons' part
    (5 of the 7 s on a province, minutes on the country) answered nothing else meanwhile."""
    import threading

    from org_tree.directory import Directory

    await import_divisions(org_db, mini_divisions, grids_per_village=1, clock=FakeClock())
    await generate_people(org_db, pool_size=1, seed=7, vacancy_rate=0.0, deputy_rate=0.0, clock=FakeClock())
    holder = OrgIndexHolder(org_db)
    await holder.load()
    threads: list[threading.Thread] = []
    build = Directory._build_persons

    def recording(self: Directory, *rows: object) -> None:
        threads.append(threading.current_thread())
        build(self, *rows)  # type: ignore[arg-type]

    monkeypatch.setattr(Directory, "_build_persons", recording)
    svc = OrgService(org_db, FakeClock(), holder)
    page = await svc.search(ADMIN, "柯城区")
    assert page.total > 0 and threads and threads[0] is not threading.main_thread()


async def test_full_width_input_and_names_fold_with_nfkc(two: tuple[OrgService, OrgService]) -> None:
    """Audit (河南): full-width input (``ｈｅｚｈａｎｇ``, ``４１０１０５``) found nothing, and ``幸福ｅ家社区``
    and ``幸福e家社区`` did not find each other. Query and indexed names are now compared NFKC-folded;
    hits still show the names as written."""
    a, b = two
    for ascii_q, wide_q in (("hezhang", "ｈｅｚｈａｎｇ"), ("990101", "９９０１０１"), ("kcq wgy", "ｋｃｑ　ｗｇｙ")):
        want = _ids(await b.search(ADMIN, ascii_q, limit=100))
        assert want and _ids(await b.search(ADMIN, wide_q, limit=100)) == want, wide_q
    other = "990101001002"
    await a.rename_unit(ADMIN, VILLAGE, "幸福ｅ家社区")  # full-width e
    await a.rename_unit(ADMIN, other, "幸福e家社区")
    await b._holder.refresh_if_changed()
    for q in ("幸福e家社区", "幸福ｅ家社区", "ｅ家", "xingfuejiashequ"):
        page = await b.search(ADMIN, q, limit=100)
        assert {h.unit_code[:12] for h in page.hits} == {VILLAGE, other}, q  # the villages and their grids
    named = {h.unit_code: h.unit_path[-1] for h in (await b.search(ADMIN, "幸福e家社区", limit=100)).hits}
    assert (named[VILLAGE], named[other]) == ("幸福ｅ家社区", "幸福e家社区")


async def test_a_query_pasted_with_invisible_characters_finds_the_name(
    two: tuple[OrgService, OrgService], org_db: Database
) -> None:
    """The 湖南 audit: ``网\\u200b格甲`` (a holder's name pasted with a zero-width space) found nothing,
    though stored names never keep one; ``\\u200b`` alone answered ``200`` with nothing where a blank
    query is ``400``, and a NUL answered ``200`` with nothing where every other text refuses it."""
    a, b = two
    sec = a.get_unit(ADMIN, VILLAGE).position_ids[0]
    newcomer = await PersonDirectory(org_db, FakeClock()).create("网格甲")
    await a.handover(ADMIN, sec, newcomer.id)
    await b._holder.refresh_if_changed()
    want = _ids(await b.search(ADMIN, "网格甲"))
    assert want == [sec]
    for pasted in ("网\u200b格甲", "\u202e网格甲\u202c", "\ufeff网格甲", "网格甲\u200d"):
        assert _ids(await b.search(ADMIN, pasted)) == want, ascii(pasted)
    for blank in ("\u200b", "\u200b \u2066"):
        with pytest.raises(BadRequest) as refused:
            await b.search(ADMIN, blank)
        assert refused.value.data == {"field": "q"}
    with pytest.raises(BadRequest) as refused:
        await b.search(ADMIN, "网格\x00甲")
    assert (refused.value.message, refused.value.data) == ("q contains NUL", {"field": "q"})
