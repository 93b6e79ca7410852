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
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_ID})")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


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
