"""The SQLite settings every connection runs with: durability first, then the checkpoint interval.

``synchronous=FULL`` in WAL mode is what makes an acknowledged message survive a
crash (docs/reliability.md decision 2); the start-up check refuses to serve
without it. ``wal_autocheckpoint`` only decides how often the WAL is copied back
into the database file (``SQLITE_WAL_AUTOCHECKPOINT_PAGES``: fewer copies of the
chat's hot pages, issue 15), never whether a commit is on disk.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from kernel.db.database import SQLITE_BUSY_TIMEOUT_MS, SQLITE_WAL_AUTOCHECKPOINT_PAGES, Database


async def test_every_sqlite_connection_is_durable_and_checkpoints_every_10000_pages(
    sqlite_template: Path, tmp_path: Path
) -> None:
    path = tmp_path / "pragmas.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        assert await db.pragmas() == {
            "journal_mode": "wal",
            "synchronous": 2,  # FULL
            "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
            "wal_autocheckpoint": SQLITE_WAL_AUTOCHECKPOINT_PAGES,
        }
        assert SQLITE_WAL_AUTOCHECKPOINT_PAGES == 10_000
        async with db.read() as conn:  # the readers' pool is set up by the same hook
            assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 2
            assert (await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar() == 10_000
    finally:
        await db.dispose()
