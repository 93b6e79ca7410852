"""The only place where SQLite and PostgreSQL differ (docs/style.md: no scattered
``isinstance(…, PostgresEngine)`` checks)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

__all__ = ["insert_ignore", "is_postgres"]


def is_postgres(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


def insert_ignore(conn: AsyncConnection, table: Table, index_elements: list[str]) -> Insert:
    """``INSERT … ON CONFLICT (cols) DO NOTHING`` for the connection's backend.

    Both backends support it; only the construct's import differs.
    """
    if is_postgres(conn):
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=index_elements)
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=index_elements)


def chunks(rows: list[Any], size: int) -> list[list[Any]]:
    """Split bulk parameter lists so no statement exceeds the backends' bind limits."""
    return [rows[i : i + size] for i in range(0, len(rows), size)]
