"""Revision 0002_org_tree creates exactly the tables ``org_tree.org_schema`` declares, on both backends."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

import org_tree.org_schema as org_schema
from kernel.db.base import metadata
from kernel.db.database import unpooled_engine

ORG_TABLES = {"units", "roles", "positions", "assignments", "org_version", "org_changes", "admin_grants"}
MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "versions" / "0002_org_tree.py"


def _table_of(diff: object) -> str | None:
    item = diff[0] if isinstance(diff, list) else diff  # modify_* diffs come as lists of tuples
    for part in item[1:] if isinstance(item, tuple) else ():
        name = getattr(part, "name", None)
        table = getattr(part, "table", None)
        if table is not None and getattr(table, "name", None):
            return str(table.name)
        if isinstance(part, str) and part in ORG_TABLES:
            return part
        if name in ORG_TABLES:
            return str(name)
    return None


async def _org_diffs(url: str) -> list[object]:
    eng = unpooled_engine(url)
    try:
        async with eng.connect() as conn:

            def cmp(sync_conn: Connection) -> list[object]:
                ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                return [d for d in compare_metadata(ctx, metadata) if _table_of(d) in ORG_TABLES]

            return await conn.run_sync(cmp)
    finally:
        await eng.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migration_matches_models(backend: str, request: pytest.FixtureRequest) -> None:
    assert set(org_schema.__all__) == ORG_TABLES
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{request.getfixturevalue('sqlite_template')}"
    else:
        url = request.getfixturevalue("org_pg_url")
    assert asyncio.run(_org_diffs(url)) == []


def test_migration_imports_no_application_code() -> None:
    source = MIGRATION.read_text(encoding="utf-8")
    for forbidden in ("org_tree", "messaging", "zzd", "apps"):
        assert f"import {forbidden}" not in source and f"from {forbidden}" not in source
