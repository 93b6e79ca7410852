"""Alembic environment: async engine, URL handed in by ``zzd migrate`` (or alembic.ini).

On PostgreSQL an advisory lock serialises concurrent upgrades, so several
server processes may start (and migrate) at once.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from kernel.db.database import unpooled_engine
from zzd.tables import all_metadata

config = context.config
target_metadata = all_metadata()
_LOCK_ID = 0x7A7A_6D69


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_ID})")
    if sqlite:
        _foreign_keys(connection, on=False)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    if sqlite:
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"the migration left rows pointing nowhere (table, rowid, parent, fk): {broken[:10]}")
        _foreign_keys(connection, on=True)


def _foreign_keys(connection: Connection, *, on: bool) -> None:
    """Foreign keys off while SQLite's migrations run, as Alembic's batch mode needs.

    Why: batch mode changes a SQLite table by copying it and dropping the old one, and with
    foreign keys on (kernel.db.database turns them on for every connection) that drop cascades:
    the downgrade of ``notices.audience_unfilled`` (0018) deleted every receipt of every notice.
    The pragma only takes effect outside a transaction, so it goes straight to the driver, which
    runs in autocommit (``_sqlite_pragmas``); ``PRAGMA foreign_key_check`` afterwards proves that
    nothing was left dangling.
    """
    cur = connection.connection.cursor()
    try:
        cur.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    finally:
        cur.close()


async def _online() -> None:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    engine = unpooled_engine(str(url))
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `zzd migrate`")
asyncio.run(_online())
