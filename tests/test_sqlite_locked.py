"""A SQLite database held by another writer past the busy timeout is the retryable 503, not a 500."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from kernel.db import database
from kernel.schema import auth_sessions
from tests.client import PASSWORD, login, new_person
from tests.conftest import make_settings, serving


async def test_a_sign_in_meeting_a_locked_database_is_unavailable_and_writes_nothing(
    sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write transaction's ``BEGIN IMMEDIATE`` runs in an event hook, where the driver's
    "database is locked" was not wrapped as SQLAlchemy wraps a statement's error, so no
    outage check recognised it and the sign-in answered 500 ``internal_error``. It is now
    ``503 unavailable`` (``retryable``), no session is written, and the same sign-in
    succeeds once the other writer lets go."""
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 300)  # the production 10 s, shortened for the test
    path = tmp_path / "zzd.db"
    shutil.copy(sqlite_template, path)
    async with serving(make_settings(f"sqlite+aiosqlite:///{path}")) as rs:
        _, name = await new_person(rs.services)

        async def session_rows() -> int:
            async with rs.services.db.read() as conn:
                return int((await conn.execute(select(func.count()).select_from(auth_sessions))).scalar_one())

        before = await session_rows()
        other_writer = sqlite3.connect(path, isolation_level=None)
        try:
            other_writer.execute("BEGIN IMMEDIATE")
            async with httpx.AsyncClient(timeout=30) as c:
                r = await c.post(
                    f"{rs.http}/api/v1/auth/token",
                    json={"grant_type": "password", "login": name, "password": PASSWORD},
                )
        finally:
            other_writer.close()
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "unavailable"
        assert r.json()["error"]["retryable"] is True
        assert await session_rows() == before
        assert (await login(rs.http, name))["access_token"]
        assert await session_rows() == before + 1
