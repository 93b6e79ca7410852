"""Fixtures of the org-tree tests: databases on both backends, a small division tree.

PostgreSQL databases are cloned from a migrated template database created
once per session (``CREATE DATABASE … TEMPLATE``), so each test gets an empty,
migrated database in a fraction of a second and no test sees another's data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import org_tree.org_schema  # noqa: F401  (registers the org tables in the shared metadata)
from kernel.clock import FakeClock
from kernel.db.database import Database
from org_tree.divisions import SHIPPED_ZHEJIANG
from org_tree.holder import OrgIndexHolder
from org_tree.importer import import_divisions
from org_tree.org_service import OrgService
from org_tree.synthetic import generate_people

ZHEJIANG = SHIPPED_ZHEJIANG


@pytest.fixture
def org_pg_url(own_pg_database: str) -> str:
    """A fresh migrated PostgreSQL database for one test, dropped after it."""
    return own_pg_database


@pytest.fixture
def org_url(own_db_url: str) -> str:
    """A migrated, empty database on each backend, private to one test."""
    return own_db_url


@pytest.fixture
async def org_db(org_url: str) -> AsyncIterator[Database]:
    async with Database(org_url) as db:
        yield db


def write_mini_divisions(folder: Path) -> Path:
    """A small division tree: 1 province, 2 cities (one without counties), 3 counties, 6 townships, 12 villages."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "provinces.csv").write_text('code,name\n99,"测试省"\n', encoding="utf-8")
    (folder / "cities.csv").write_text('code,name,provinceCode\n9901,"甲市",99\n9902,"东莞市",99\n', encoding="utf-8")
    areas = ["code,name,cityCode,provinceCode", '990101,"柯城区",9901,99', '990102,"衢江区",9901,99']
    areas.append('990200,"东莞市",9902,99')  # placeholder county: a city without county level
    (folder / "areas.csv").write_text("\n".join(areas) + "\n", encoding="utf-8")
    streets = ["code,name,areaCode,provinceCode,cityCode"]
    villages = ["code,name,streetCode,provinceCode,cityCode,areaCode"]
    names = iter("东南西北中上下左右前后内外山水田林湖")
    for area, city in (("990101", "9901"), ("990102", "9901"), ("990200", "9902")):
        for t in (1, 2):
            street = f"{area}{t:03d}"
            streets.append(f'{street},"{next(names)}街道",{area},99,{city}')
            for v in (1, 2):
                villages.append(f'{street}{v:03d},"{street[-3:]}{v}村",{street},99,{city},{area}')
    (folder / "streets.csv").write_text("\n".join(streets) + "\n", encoding="utf-8")
    (folder / "villages.csv").write_text("\n".join(villages) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def mini_divisions(tmp_path: Path) -> Path:
    return write_mini_divisions(tmp_path / "mini")


@pytest.fixture
async def two(org_db: Database, mini_divisions: Path) -> tuple[OrgService, OrgService]:
    """Two services on one database, as two server processes would be (each its own index and directory).

    Neither has built its directory: the first search (or ``warm``) does.
    """
    clock = FakeClock()
    await import_divisions(org_db, mini_divisions, grids_per_village=2, clock=clock)
    await generate_people(org_db, pool_size=2, seed=7, vacancy_rate=0.0, deputy_rate=0.0, clock=clock)
    out = []
    for _ in range(2):
        holder = OrgIndexHolder(org_db)
        await holder.load()
        out.append(OrgService(org_db, clock, holder))
    return out[0], out[1]
