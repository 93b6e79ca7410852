"""Column types and the constraint and table helpers every revision uses, defined once.

The types must match ``kernel.db.types.ID`` and ``kernel.db.base.UTCDateTime`` as
the database sees them, without importing application code (a revision must build
the same schema whatever the application later becomes). Frozen: a revision
that needs another type spells it out, so older revisions never change.

The helpers spell the names that the models' naming convention
(``kernel.db.base.NAMING_CONVENTION``) gives a primary or foreign key, so a
revision cannot misspell one and leave the models and the database disagreeing
about it; the DDL they produce is the one the revisions wrote out by hand before.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

__all__ = ["ID", "TS", "drop_table", "fk", "id_column", "pk", "ref_column"]

#: BIGINT on PostgreSQL; ``INTEGER`` on SQLite, the only type it auto-increments as a primary key.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: Timestamps are stored with their time zone (UTC).
TS = sa.DateTime(timezone=True)


def id_column() -> sa.Column[Any]:
    """The auto-incrementing ``id`` most tables are keyed by (declare the key itself with :func:`pk`)."""
    return sa.Column("id", ID, nullable=False, autoincrement=True)


def pk(table: str, *columns: str) -> sa.PrimaryKeyConstraint:
    """``table``'s primary key on ``columns`` (``id`` when none are named), named ``pk_<table>``."""
    return sa.PrimaryKeyConstraint(*(columns or ("id",)), name=f"pk_{table}")


def fk(
    table: str, column: str, referred: str, *, ondelete: str | None = None, referred_column: str = "id"
) -> sa.ForeignKeyConstraint:
    """``table.column`` refers to ``referred.referred_column``; named ``fk_<table>_<column>_<referred>``."""
    return sa.ForeignKeyConstraint(
        [column], [f"{referred}.{referred_column}"], name=f"fk_{table}_{column}_{referred}", ondelete=ondelete
    )


def ref_column(
    table: str, column: str, referred: str, *, nullable: bool = False, ondelete: str | None = None
) -> sa.Column[Any]:
    """An ``ID`` column of ``table`` that refers to ``referred.id``, its foreign key named as :func:`fk` names it."""
    name = f"fk_{table}_{column}_{referred}"
    return sa.Column(column, ID, sa.ForeignKey(f"{referred}.id", name=name, ondelete=ondelete), nullable=nullable)


def drop_table(table: str, *indexes: str) -> None:
    """Undo a ``create_table``: its ``indexes`` first (each named as ``create_index`` named it), then ``table``."""
    for index in indexes:
        op.drop_index(index, table_name=table)
    op.drop_table(table)
