"""The org tree: units, roles, positions, assignments, org_version, org_changes."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import ID, TS, drop_table, fk, id_column, pk

revision = "0002_org_tree"
down_revision = "0001_initial"


def upgrade() -> None:
    op.create_table(
        "units",
        id_column(),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("parent_id", ID, nullable=True),
        sa.Column("pinyin", sa.String(400), nullable=False),
        sa.Column("pinyin_initials", sa.String(100), nullable=False),
        sa.Column("imported", sa.Boolean(), nullable=False),
        sa.Column("dissolved_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("level BETWEEN 1 AND 6", name="ck_units_level_range"),
        fk("units", "parent_id", "units"),
        pk("units"),
        sa.UniqueConstraint("code", name="uq_units_code"),
    )
    op.create_index("ix_units_parent", "units", ["parent_id"])
    op.create_table(
        "roles",
        id_column(),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("levels", sa.String(100), nullable=False),
        sa.Column("jurisdiction", sa.String(16), nullable=False),
        sa.Column("is_head", sa.Boolean(), nullable=False),
        sa.Column("pool", sa.Boolean(), nullable=False),
        sa.Column("auto", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        pk("roles"),
        sa.UniqueConstraint("key", name="uq_roles_key"),
    )
    op.create_table(
        "positions",
        id_column(),
        sa.Column("unit_id", ID, nullable=False),
        sa.Column("role_id", ID, nullable=False),
        sa.Column("title", sa.String(100), nullable=True),
        sa.Column("pool", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("removed_at", TS, nullable=True),
        fk("positions", "unit_id", "units"),
        fk("positions", "role_id", "roles"),
        pk("positions"),
    )
    op.create_index("ix_positions_unit_role", "positions", ["unit_id", "role_id"])
    op.create_index("ix_positions_role", "positions", ["role_id"])
    op.create_table(
        "assignments",
        id_column(),
        sa.Column("person_id", ID, nullable=False),
        sa.Column("position_id", ID, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("start_at", TS, nullable=False),
        sa.Column("end_at", TS, nullable=True),
        sa.CheckConstraint("kind IN ('primary', 'deputy', 'acting')", name="ck_assignments_kind_valid"),
        fk("assignments", "person_id", "persons"),
        fk("assignments", "position_id", "positions"),
        pk("assignments"),
    )
    op.create_index("ix_assignments_position", "assignments", ["position_id"])
    op.create_index("ix_assignments_person", "assignments", ["person_id"])
    op.create_table(
        "org_version",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        pk("org_version"),
    )
    op.create_table(
        "org_changes",
        id_column(),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("position_id", ID, nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("changed_at", TS, nullable=False),
        pk("org_changes"),
    )
    op.create_index("ix_org_changes_version", "org_changes", ["version"])


def downgrade() -> None:
    drop_table("org_changes", "ix_org_changes_version")
    drop_table("org_version")
    drop_table("assignments", "ix_assignments_person", "ix_assignments_position")
    drop_table("positions", "ix_positions_role", "ix_positions_unit_role")
    drop_table("roles")
    drop_table("units", "ix_units_parent")
