"""The org tree: units, roles, positions, assignments, org_version, org_changes.

Revision ID: 0002_org_tree
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import ID, TS

revision = "0002_org_tree"
down_revision = "0001_initial"


def upgrade() -> None:
    op.create_table(
        "units",
        sa.Column("id", ID, nullable=False, autoincrement=True),
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
        sa.ForeignKeyConstraint(["parent_id"], ["units.id"], name="fk_units_parent_id_units"),
        sa.PrimaryKeyConstraint("id", name="pk_units"),
        sa.UniqueConstraint("code", name="uq_units_code"),
    )
    op.create_index("ix_units_parent", "units", ["parent_id"])
    op.create_table(
        "roles",
        sa.Column("id", ID, nullable=False, autoincrement=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("levels", sa.String(100), nullable=False),
        sa.Column("jurisdiction", sa.String(16), nullable=False),
        sa.Column("is_head", sa.Boolean(), nullable=False),
        sa.Column("pool", sa.Boolean(), nullable=False),
        sa.Column("auto", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_roles"),
        sa.UniqueConstraint("key", name="uq_roles_key"),
    )
    op.create_table(
        "positions",
        sa.Column("id", ID, nullable=False, autoincrement=True),
        sa.Column("unit_id", ID, nullable=False),
        sa.Column("role_id", ID, nullable=False),
        sa.Column("title", sa.String(100), nullable=True),
        sa.Column("pool", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("removed_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name="fk_positions_unit_id_units"),
        sa.ForeignKeyConstraint(["role_id"], ["roles.id"], name="fk_positions_role_id_roles"),
        sa.PrimaryKeyConstraint("id", name="pk_positions"),
    )
    op.create_index("ix_positions_unit_role", "positions", ["unit_id", "role_id"])
    op.create_index("ix_positions_role", "positions", ["role_id"])
    op.create_table(
        "assignments",
        sa.Column("id", ID, nullable=False, autoincrement=True),
        sa.Column("person_id", ID, nullable=False),
        sa.Column("position_id", ID, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("start_at", TS, nullable=False),
        sa.Column("end_at", TS, nullable=True),
        sa.CheckConstraint("kind IN ('primary', 'deputy', 'acting')", name="ck_assignments_kind_valid"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name="fk_assignments_person_id_persons"),
        sa.ForeignKeyConstraint(["position_id"], ["positions.id"], name="fk_assignments_position_id_positions"),
        sa.PrimaryKeyConstraint("id", name="pk_assignments"),
    )
    op.create_index("ix_assignments_position", "assignments", ["position_id"])
    op.create_index("ix_assignments_person", "assignments", ["person_id"])
    op.create_table(
        "org_version",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_org_version"),
    )
    op.create_table(
        "org_changes",
        sa.Column("id", ID, nullable=False, autoincrement=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("position_id", ID, nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("changed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_org_changes"),
    )
    op.create_index("ix_org_changes_version", "org_changes", ["version"])


def downgrade() -> None:
    op.drop_index("ix_org_changes_version", table_name="org_changes")
    op.drop_table("org_changes")
    op.drop_table("org_version")
    op.drop_index("ix_assignments_person", table_name="assignments")
    op.drop_index("ix_assignments_position", table_name="assignments")
    op.drop_table("assignments")
    op.drop_index("ix_positions_role", table_name="positions")
    op.drop_index("ix_positions_unit_role", table_name="positions")
    op.drop_table("positions")
    op.drop_table("roles")
    op.drop_index("ix_units_parent", table_name="units")
    op.drop_table("units")
