"""Administrators and trust: admin grants, the hash-chained audit log, phones and activation codes.

``admin_grants`` replaces the ``ZZD_ADMIN_LOGINS`` operator list (org_tree/grants.py);
``audit_log`` + ``audit_head`` are the tamper-evident log (kernel/audit.py), the head
row is created here; ``persons.phone`` and ``activation_codes`` serve bulk provisioning
(``zzd person import``). No application imports.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import ID, TS, drop_table, pk, ref_column

revision = "0008_admin_audit"
down_revision = "0007_notice_fanout"

GENESIS = "0" * 64


def upgrade() -> None:
    op.add_column("persons", sa.Column("phone", sa.String(32), nullable=True))
    op.create_table(
        "activation_codes",
        ref_column("activation_codes", "person_id", "persons", ondelete="CASCADE"),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        pk("activation_codes", "person_id"),
    )
    op.create_table(
        "admin_grants",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        ref_column("admin_grants", "person_id", "persons"),
        ref_column("admin_grants", "unit_id", "units", nullable=True),
        sa.Column("perms", sa.String(200), nullable=False),
        sa.Column("granted_by", ID, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("revoked_by", ID, nullable=True),
        pk("admin_grants"),
    )
    op.create_index("ix_admin_grants_person", "admin_grants", ["person_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", ID, nullable=False, autoincrement=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor_person_id", ID, nullable=True),
        sa.Column("acting_position_id", ID, nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("unit_id", ID, nullable=True),
        sa.Column("unit_path", sa.String(400), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        pk("audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_actor", "audit_log", ["actor_person_id"])
    op.create_index("ix_audit_log_unit_path", "audit_log", ["unit_path"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("last_id", ID, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("pruned_through_id", ID, nullable=False),
        sa.Column("pruned_through_hash", sa.String(64), nullable=False),
        pk("audit_head"),
    )
    op.execute(
        sa.text(
            "INSERT INTO audit_head (id, last_id, last_hash, pruned_through_id, pruned_through_hash) "
            "VALUES (1, 0, :g, 0, :g)"
        ).bindparams(g=GENESIS)
    )


def downgrade() -> None:
    drop_table("audit_head")
    drop_table("audit_log", "ix_audit_log_unit_path", "ix_audit_log_actor", "ix_audit_log_at")
    drop_table("admin_grants", "ix_admin_grants_person")
    drop_table("activation_codes")
    with op.batch_alter_table("persons") as batch:
        batch.drop_column("phone")
