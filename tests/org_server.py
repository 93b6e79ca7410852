"""A served app over a small real division tree with synthetic holders, and seating helpers.

Shared by the org/notice API tests and the administration tests (issue 10).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from kernel.db.database import Database
from org_tree.importer import import_divisions
from org_tree.jurisdiction import SYSTEM
from org_tree.synthetic import generate_people
from tests.client import login, new_person
from tests.conftest import TEST_KEYS, RunningServer, make_settings, serving
from tests.notices.conftest import write_divisions

__all__ = ["auth", "cli_env", "org_server", "org_serving", "populate", "position_at", "seat", "slot", "unit_id_at"]


async def populate(
    db_url: str, tmp_path: Path, *, townships: int = 2, villages: int = 4, grids: int = 2, seed: int = 3
) -> None:
    """A division tree (by default the small served one: 2 townships of 4 villages) with synthetic holders."""
    async with Database(db_url) as db:
        div = write_divisions(tmp_path / "div", townships=townships, villages=villages)
        await import_divisions(db, div, grids_per_village=grids)
        await generate_people(db, seed=seed)


def cli_env(tmp_path: Path, sqlite_template: Path, **import_args: Any) -> dict[str, str]:
    """The environment for the ``zzd`` CLI (click's CliRunner) on a copy of the migrated SQLite template
    holding a tree of one township with one village; ``import_args`` go to ``import_divisions``."""
    db_file = tmp_path / "cli.db"
    shutil.copy(sqlite_template, db_file)
    url = f"sqlite+aiosqlite:///{db_file}"

    async def tree() -> None:
        async with Database(url) as db:
            await import_divisions(db, write_divisions(tmp_path / "div", townships=1, villages=1), **import_args)

    asyncio.run(tree())
    return {"ZZD_DATABASE_URL": url, "ZZD_JWT_KEYS": TEST_KEYS}


@asynccontextmanager
async def org_serving(db_url: str, tmp_path: Path, **settings: object) -> AsyncIterator[RunningServer]:
    """The small served tree on ``db_url`` (a database of the test's own: imports upsert units), served.

    ``settings`` adds to (or overrides) the served tree's settings.
    """
    await populate(db_url, tmp_path)
    served = {"background_interval": 0.1, "send_rate_per_minute": 10_000, **settings}
    async with serving(make_settings(db_url, **served)) as rs:
        yield rs


@pytest.fixture
async def org_server(own_db_url: str, tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with org_serving(own_db_url, tmp_path) as rs:
        yield rs


def slot(idx: Any, unit_code: str, role_key: str) -> int:
    u = idx.unit(unit_code)
    role = idx.role_id(role_key)
    return next(k for k in idx.unit_slots(u) if idx.position_role_id(k) == role)


def position_at(rs: RunningServer, unit_code: str, role_key: str) -> int:
    """The id of the (first) position of ``role_key`` in the unit ``unit_code``, as the server's index has it."""
    idx = rs.services_obj.org_index.index  # type: ignore[attr-defined]
    return int(idx.position_id(slot(idx, unit_code, role_key)))


def unit_id_at(rs: RunningServer, unit_code: str) -> int:
    """The id of the unit ``unit_code``, as the server's index has it."""
    idx = rs.services_obj.org_index.index  # type: ignore[attr-defined]
    return int(idx.unit_id(idx.unit(unit_code)))


async def seat(rs: RunningServer, unit_code: str, role_key: str) -> tuple[int, str, int, str]:
    """A new person who holds (role, unit): returns person id, login, position id, token."""
    s = rs.services_obj  # type: ignore[attr-defined]
    pid, lg = await new_person(s)
    position = position_at(rs, unit_code, role_key)
    await s.org.handover(SYSTEM, position, pid)
    return pid, lg, position, (await login(rs.http, lg))["access_token"]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
