"""Migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from kernel.db.database import unpooled_engine
from tests.conftest import temp_pg_database
from tests.services import pg_url
from zzd.migrate import alembic_config, upgrade
from zzd.tables import all_metadata

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations" / "versions"


def _diff(url: str) -> list[object]:
    async def go() -> list[object]:
        eng = unpooled_engine(url)
        try:
            async with eng.connect() as conn:

                def cmp(sync_conn: Connection) -> list[object]:
                    ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                    return list(compare_metadata(ctx, all_metadata()))

                return await conn.run_sync(cmp)
        finally:
            await eng.dispose()

    return asyncio.run(go())


def test_sqlite_upgrade_from_empty_matches_models(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    assert _diff(url) == []
    upgrade(url)  # idempotent: a second run changes nothing


@pytest.mark.postgres
def test_postgres_upgrade_from_empty_matches_models() -> None:
    with temp_pg_database("zzd_mig") as name:
        assert _diff(pg_url(name)) == []


def test_revisions_form_one_line_and_import_no_application_code() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://"))
    assert len(script.get_heads()) == 1, "migrations must form a single line (no branches)"
    for path in MIGRATIONS.glob("*.py"):
        text = path.read_text()
        for pkg in ("zzd", "org_tree", "messaging", "apps"):
            assert f"import {pkg}" not in text and f"from {pkg}" not in text, f"{path.name} imports {pkg}"
