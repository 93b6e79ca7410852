"""Populated org-tree databases built once per test session and cloned per test.

Building a tree with people takes seconds; copying a SQLite file or creating a
PostgreSQL database ``TEMPLATE`` the populated one takes well under one. The
notice, task and conversation tests each populate their own tree through
these helpers, so every test starts from identical data on either backend.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import temp_pg_database
from tests.services import pg_url
from zzd.migrate import upgrade

#: Fills the migrated database at ``url`` from division CSVs in ``folder``.
Populate = Callable[[str, Path], Coroutine[Any, Any, None]]
#: Writes division CSVs into ``folder`` and returns it.
WriteDivisions = Callable[[Path], Path]


def sqlite_template(
    tmp_path_factory: pytest.TempPathFactory, name: str, populate: Populate, write: WriteDivisions
) -> Path:
    """A migrated, populated SQLite file to copy for each test."""
    base = tmp_path_factory.mktemp(f"{name}_tpl")
    path = base / "tree.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    asyncio.run(populate(url, write(base / "div")))
    return path


@contextmanager
def pg_template(
    tmp_path_factory: pytest.TempPathFactory, name: str, populate: Populate, write: WriteDivisions
) -> Iterator[str]:
    """A migrated, populated PostgreSQL database to clone for each test; dropped at the end."""
    with temp_pg_database(f"zzd_{name}_tpl") as db:
        asyncio.run(populate(pg_url(db), write(tmp_path_factory.mktemp(f"{name}_div_pg"))))
        yield db


@contextmanager
def cloned_url(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Iterator[str]:
    """A private copy of the ``{name}_sqlite_template`` / ``{name}_pg_template`` fixture's tree."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue(f"{name}_sqlite_template")
        dest = tmp_path / "tree.db"
        shutil.copy(template, dest)
        yield f"sqlite+aiosqlite:///{dest}"
        return
    tpl: str = request.getfixturevalue(f"{name}_pg_template")
    with temp_pg_database(f"zzd_{name}", template=tpl) as db:
        yield pg_url(db)


def tree_fixtures(name: str, url: str, populate: Populate, write: WriteDivisions) -> tuple[Any, Any, Any]:
    """The three fixtures of one test tree, the one way to build a test world per backend.

    ``{name}_sqlite_template`` and ``{name}_pg_template`` (built once per session)
    and ``url`` (a private copy for each test, on SQLite and on PostgreSQL). A
    conftest assigns them to module names so pytest finds them::

        conv_sqlite_template, conv_pg_template, conv_url = tree_fixtures("conv", "conv_url", populate, write)
    """

    @pytest.fixture(scope="session", name=f"{name}_sqlite_template")
    def sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
        return sqlite_template(tmp_path_factory, name, populate, write)

    @pytest.fixture(scope="session", name=f"{name}_pg_template")
    def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
        with pg_template(tmp_path_factory, name, populate, write) as db:
            yield db

    @pytest.fixture(name=url, params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
    def private(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
        """A migrated database holding the tree, private to one test."""
        with cloned_url(request, tmp_path, name) as out:
            yield out

    return sqlite, pg, private
