"""Real imports of the shipped Zhejiang divisions on SQLite and PostgreSQL; idempotent; all-or-nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernel.audit import AuditQuery, query
from kernel.db.database import Database
from kernel.errors import BadRequest
from org_tree.divisions import DivisionFormatError
from org_tree.importer import import_divisions
from org_tree.index import OrgIndex
from tests.org.conftest import ZHEJIANG, write_mini_divisions

ZHEJIANG_LEVELS = {"province": 1, "city": 11, "county": 90, "township": 1387, "village": 25547, "grid": 76641}


@pytest.mark.slow  # the whole province (103,677 units): a large-tree test, left out of the quick lane
async def test_zhejiang_import_and_reimport(org_db: Database) -> None:
    stages: list[str] = []
    report = await import_divisions(org_db, ZHEJIANG, progress=lambda stage, _d, _t: stages.append(stage))
    assert report.by_level == ZHEJIANG_LEVELS
    assert (report.created, report.updated, report.unchanged, report.removed) == (103677, 0, 0, 0)
    assert report.warnings == []
    assert {"read", "units", "positions"} <= set(stages)
    index = await OrgIndex.load(org_db)
    stats = index.stats()
    assert [stats[f"level_{n}"] for n in range(1, 7)] == list(ZHEJIANG_LEVELS.values())
    assert stats["positions"] == report.positions_created
    kc = index.unit("330802")
    assert index.unit_name(kc) == "柯城区"
    assert index.unit_path(index.unit("330802005001003"))[-3:] == ["新新街道", "金桂社区", "第3网格"]

    again = await import_divisions(org_db, ZHEJIANG)
    assert (again.created, again.updated, again.unchanged, again.removed) == (0, 0, 103677, 0)
    assert again.positions_created == 0
    assert again.version == report.version + 1


async def test_failed_import_leaves_nothing(org_db: Database, tmp_path: Path) -> None:
    folder = write_mini_divisions(tmp_path / "mini")

    def boom(stage: str, _done: int, _total: int) -> None:
        if stage == "positions":
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        await import_divisions(org_db, folder, progress=boom)
    index = await OrgIndex.load(org_db)
    assert index.stats()["units"] == 0
    assert index.version == 0

    with open(folder / "streets.csv", "a", encoding="utf-8") as fh:
        fh.write('990101009,"坏",990101,99\n')
    with pytest.raises(DivisionFormatError) as info:
        await import_divisions(org_db, folder)
    assert info.value.data == {"file": "streets.csv", "line": 8, "reason": "expected 5 columns, found 4"}
    assert (await OrgIndex.load(org_db)).stats()["units"] == 0


async def test_reimport_dissolves_and_revives(org_db: Database, tmp_path: Path) -> None:
    folder = write_mini_divisions(tmp_path / "mini")
    first = await import_divisions(org_db, folder, grids_per_village=2)
    assert first.created == 1 + 2 + 3 + 6 + 12 + 24
    assert any("no county level" in w for w in first.warnings)
    lines = (folder / "villages.csv").read_text(encoding="utf-8").splitlines()
    (folder / "villages.csv").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    second = await import_divisions(org_db, folder, grids_per_village=2)
    assert (second.created, second.updated, second.removed) == (0, 0, 3)  # one village and its two grids
    index = await OrgIndex.load(org_db)
    assert index.stats()["units"] == first.created - 3
    (folder / "villages.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    third = await import_divisions(org_db, folder, grids_per_village=2)
    assert (third.created, third.updated, third.removed, third.positions_created) == (0, 3, 0, 0)
    assert (await OrgIndex.load(org_db)).stats()["units"] == first.created
    # each import is on the audit record (actor: the CLI operator), with what it changed
    entries, _ = await query(org_db, AuditQuery(action="org.imported"))
    assert [(e["actor_person_id"], e["outcome"]) for e in entries] == [(None, "ok")] * 3
    assert [(e["detail"]["created"], e["detail"]["updated"], e["detail"]["removed"]) for e in entries] == [
        (0, 3, 0), (0, 0, 3), (first.created, 0, 0)
    ]  # fmt: skip
    assert entries[0]["detail"]["version"] == third.version and "by_level" not in entries[0]["detail"]


def _second_province(folder: Path) -> Path:
    """The mini tree (province 99) plus a province 98 of one village, in the same five files."""
    more = {
        "provinces": ['98,"乙省"'],
        "cities": ['9801,"乙市",98'],
        "areas": ['980101,"乙区",9801,98'],
        "streets": ['980101001,"乙街道",980101,98,9801'],
        "villages": ['980101001001,"乙村",980101001,98,9801,980101', "980101001002,broken"],  # malformed, skipped
    }
    for stem, rows in more.items():
        with (folder / f"{stem}.csv").open("a", encoding="utf-8") as fh:
            fh.write("\n".join(rows) + "\n")
    return folder


async def test_one_province_out_of_national_files(org_db: Database, tmp_path: Path) -> None:
    """``zzd org import DIR --province 62``: the probes import a province out of the national files."""
    folder = _second_province(write_mini_divisions(tmp_path / "two"))
    with pytest.raises(DivisionFormatError):  # the whole folder: province 98's broken row is an error
        await import_divisions(org_db, folder, grids_per_village=1)
    first = await import_divisions(org_db, folder, grids_per_village=1, provinces=["99"])
    assert first.created == 1 + 2 + 3 + 6 + 12 + 12
    assert {u[:2] for u in _codes(await OrgIndex.load(org_db))} == {"99"}
    lines = (folder / "villages.csv").read_text(encoding="utf-8").splitlines()
    (folder / "villages.csv").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")  # 98's fixed
    second = await import_divisions(org_db, folder, grids_per_village=1, provinces=["98"])
    assert (second.created, second.removed) == (1 + 1 + 1 + 1 + 1 + 1, 0)  # province 99 is left as it is
    assert {u[:2] for u in _codes(await OrgIndex.load(org_db))} == {"98", "99"}
    with pytest.raises(BadRequest) as info:
        await import_divisions(org_db, folder, provinces=["97"])
    assert info.value.data == {"provinces": ["97"]}


def _codes(index: OrgIndex) -> list[str]:
    return [index.unit_code(u) for u in index.units()]


def test_the_cli_imports_one_province(tmp_path: Path, sqlite_template: Path) -> None:
    from click.testing import CliRunner

    from tests.org_server import cli_env
    from zzd.cli import main

    env = cli_env(tmp_path, sqlite_template)
    folder = _second_province(write_mini_divisions(tmp_path / "two"))
    lines = (folder / "villages.csv").read_text(encoding="utf-8").splitlines()
    (folder / "villages.csv").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")  # 98's row fixed
    runner = CliRunner()
    res = runner.invoke(main, ["org", "import", str(folder), "--province", "98", "--grids", "0"], env=env)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert (out["created"], out["removed"]) == (5, 0)  # province 99, already there, stays
    for bad, says in (("6", "not a 2-digit province code"), ("97", "no province 97")):
        res = runner.invoke(main, ["org", "import", str(folder), "--province", bad], env=env)
        assert res.exit_code != 0 and says in res.output, res.output


def test_a_reimport_that_drops_a_village_hands_its_open_tasks_on(tmp_path: Path, sqlite_template: Path) -> None:
    """Division codes change yearly: ``zzd org import`` retires the units it drops as an administrator's
    retirement would, so a village's open task goes to the successor by rule instead of being stranded
    on a position that left the tree (the import alone only dissolved the unit)."""
    import asyncio
    import shutil

    from click.testing import CliRunner

    from org_tree.selectors import PositionSel
    from org_tree.synthetic import generate_people
    from tests.conftest import make_settings
    from tests.notices.conftest import write_divisions
    from tests.org_server import TEST_KEYS, slot
    from zzd.cli import main
    from zzd.services import Services

    db_file = tmp_path / "cli.db"
    shutil.copy(sqlite_template, db_file)
    url = f"sqlite+aiosqlite:///{db_file}"
    folder = write_divisions(tmp_path / "div", townships=1, villages=2)
    dropped, kept = "990101001002", "990101001001"

    async def setup() -> tuple[int, int, int]:
        async with Database(url) as db:
            await import_divisions(db, folder, grids_per_village=1)
            await generate_people(db, seed=3)
        s = Services.build(make_settings(url))
        try:
            idx = await s.org_index.load()
            await s.tasks.seed_categories()  # as a server's start does
            head = idx.position_id(slot(idx, "990101", "county_head"))
            boss = idx.primary_holders(slot(idx, "990101", "county_head"))[0]
            sec = idx.position_id(slot(idx, dropped, "village_secretary"))
            [task] = await s.tasks.create(boss, head, selector=PositionSel(sec), shared=False, category="general",
                                          title="防汛检查", body="", client_msg_id="reimport-1")  # fmt: skip
            return boss, sec, task.id
        finally:
            await s.db.dispose()

    boss, sec, task_id = asyncio.run(setup())
    lines = (folder / "villages.csv").read_text(encoding="utf-8").splitlines()
    (folder / "villages.csv").write_text("\n".join(x for x in lines if not x.startswith(dropped)) + "\n", "utf-8")
    res = CliRunner().invoke(
        main, ["org", "import", str(folder), "--grids", "1"], env={"ZZD_DATABASE_URL": url, "ZZD_JWT_KEYS": TEST_KEYS}
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["removed"] == 0  # the import found the village already retired, with its grid
    [retired] = out["retired"]
    assert retired["units"] == 2 and sec in retired["positions"]
    successor = retired["successors"][str(sec)]

    async def check() -> None:
        s = Services.build(make_settings(url))
        try:
            idx = await s.org_index.load()
            assert idx.find_slot(sec) < 0 and idx.unit(kept) >= 0
            with pytest.raises(Exception, match="no such unit"):
                idx.unit(dropped)
            # by rule: the same role in the nearest unit above, else its head (here the township's head)
            assert successor == idx.position_id(idx.head_slot(idx.unit("990101001")))
            task = await s.tasks.get(boss, task_id)
            assert task["owner_position_id"] == successor and task["state"] == "created"
            last = task["history"][-1]
            assert (last["action"], last["data"]["reason"], last["data"]["from_owner"]) == (
                "reassign",
                "position_retired",
                sec,
            )
            entries, _ = await query(s.db, AuditQuery(action="org.unit_retired"))
            assert [(e["actor_person_id"], e["detail"]["unit_id"]) for e in entries] == [(None, retired["unit_id"])]
        finally:
            await s.db.dispose()

    asyncio.run(check())


async def test_a_unit_an_administrator_retired_stays_retired_across_reimports(org_url: str, tmp_path: Path) -> None:
    """A re-import revived every dissolved unit of the files: a township an administrator retired through the
    API came back with fresh positions, and the admin grant over it silently covered its subtree again."""
    from org_tree.grants import grant_unit
    from org_tree.jurisdiction import SYSTEM
    from tests.client import new_person
    from tests.conftest import make_settings
    from zzd.services import Services

    folder = write_mini_divisions(tmp_path / "mini")
    s = Services.build(make_settings(org_url))
    try:
        await import_divisions(s.db, folder, grids_per_village=1)
        await s.org_index.load()
        admin, _ = await new_person(s, "县管理员")
        local, _ = await new_person(s, "镇管理员")
        await s.grants.grant(SYSTEM, admin, "990101", frozenset({"org"}))
        await s.grants.grant(SYSTEM, local, "990101001", frozenset({"org", "assignments"}))
        actor = await s.org.actor(admin)
        retired = await s.org.structure.retire_unit(actor, "990101001")  # a township: 2 villages, 2 grids
        assert retired["units"] == 5
        await s.org.structure.merge_units(actor, "990101002001", "990101002002")  # a village: its grid moves
        gone = ("990101001", "990101001001", "990101001002001", "990101002001")
        positions_before = (await s.org_index.load()).position_count()

        for _ in range(2):  # and again: nothing piles up
            again = await import_divisions(s.db, folder, grids_per_village=1)
            assert (again.created, again.updated, again.kept_retired, again.positions_created) == (0, 0, 6, 0)
            idx = await s.org_index.load()
            assert [idx.find_unit_code(code) for code in gone] == [-1] * 4
            assert idx.position_count() == positions_before
            grid = idx.unit("990101002001001")  # stays where the merge put it
            assert idx.unit_code(idx.parent(grid)) == "990101002002"
            [township_grant] = (await s.org.actor(local)).grants
            assert grant_unit(idx, township_grant) is None  # covers nothing, as after the retirement
        entries, _ = await query(s.db, AuditQuery(action="org.imported"))
        assert entries[0]["detail"]["kept_retired"] == 6

        # an operator who means it brings them back, with the grant
        revived = await import_divisions(s.db, folder, grids_per_village=1, revive_retired=True)
        assert (revived.kept_retired, revived.updated) == (0, 7)  # the grid moves back under its village
        idx = await s.org_index.load()
        assert all(idx.find_unit_code(code) >= 0 for code in gone)
        assert grant_unit(idx, (await s.org.actor(local)).grants[0]) == idx.unit("990101001")
        assert (await import_divisions(s.db, folder, grids_per_village=1)).kept_retired == 0
    finally:
        await s.db.dispose()


async def test_a_unit_made_through_the_api_with_a_code_the_files_list_is_taken_over_out_loud(
    org_url: str, tmp_path: Path
) -> None:
    """An administrator made a village under one township with an NBS-looking code; next year's files list
    that code under another township. The import takes the unit over (the files win: name, place,
    positions), and says so in ``warnings``. Until 2026-12-05 (广西 audit) it was renamed, moved to the
    other township and made an imported unit with nothing said."""
    from org_tree.jurisdiction import SYSTEM
    from tests.conftest import make_settings
    from zzd.services import Services

    folder = write_mini_divisions(tmp_path / "mini")
    s = Services.build(make_settings(org_url))
    try:
        await import_divisions(s.db, folder, grids_per_village=1)
        await s.org_index.load()
        made = await s.org.create_unit(SYSTEM, "990101002", "管理员建的村", code="990101001009")
        with (folder / "villages.csv").open("a", encoding="utf-8") as f:
            f.write('990101001009,"新设村",990101001,99,9901,990101\n')
        again = await import_divisions(s.db, folder, grids_per_village=1)
        assert again.updated == 1
        [warning] = [w for w in again.warnings if "created through the API" in w]
        assert "990101001009" in warning
        idx = await s.org_index.load()
        unit = idx.unit("990101001009")
        assert (idx.unit_id(unit), idx.unit_name(unit), idx.unit_code(idx.parent(unit))) == (
            made.id,
            "新设村",
            "990101001",
        )
        assert not [w for w in (await import_divisions(s.db, folder, grids_per_village=1)).warnings if "API" in w]
    finally:
        await s.db.dispose()
