"""Notices: notices, notice_receipts (one per recipient person and addressed position), notice_ding_steps."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import ID, TS, drop_table, fk, id_column, pk

revision = "0003_notices"
down_revision = "0002_org_tree"


def upgrade() -> None:
    op.create_table(
        "notices",
        id_column(),
        sa.Column("sender_person_id", ID, nullable=False),
        sa.Column("sender_position_id", ID, nullable=False),
        sa.Column("client_msg_id", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attachments", sa.Text(), nullable=False),
        sa.Column("selector", sa.Text(), nullable=False),
        sa.Column("priority", sa.String(8), nullable=False),
        sa.Column("ack_required", sa.Boolean(), nullable=False),
        sa.Column("deadline", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("recalled_at", TS, nullable=True),
        sa.Column("audience_positions", sa.Integer(), nullable=False),
        sa.Column("audience_persons", sa.Integer(), nullable=False),
        sa.Column("receipt_count", sa.Integer(), nullable=False),
        sa.Column("org_version", ID, nullable=False),
        sa.CheckConstraint("priority IN ('normal', 'urgent')", name="ck_notices_priority_valid"),
        fk("notices", "sender_person_id", "persons"),
        pk("notices"),
        sa.UniqueConstraint("sender_person_id", "client_msg_id", name="uq_notices_sender_client_msg"),
    )
    op.create_index("ix_notices_sender", "notices", ["sender_person_id", "id"])
    op.create_table(
        "notice_receipts",
        id_column(),
        sa.Column("notice_id", ID, nullable=False),
        sa.Column("person_id", ID, nullable=False),
        sa.Column("position_id", ID, nullable=False),
        sa.Column("via_position_id", ID, nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("unit_id", ID, nullable=False),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("read_at", TS, nullable=True),
        sa.Column("acked_at", TS, nullable=True),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("previous_person_id", ID, nullable=True),
        sa.Column("transferred_at", TS, nullable=True),
        fk("notice_receipts", "notice_id", "notices", ondelete="CASCADE"),
        pk("notice_receipts"),
        sa.UniqueConstraint("notice_id", "position_id", "person_id", name="uq_notice_receipts_notice_position_person"),
    )
    op.create_index("ix_notice_receipts_person", "notice_receipts", ["person_id", "notice_id"])
    op.create_index("ix_notice_receipts_notice_unit", "notice_receipts", ["notice_id", "unit_id"])
    op.create_index("ix_notice_receipts_via_position", "notice_receipts", ["via_position_id"])
    op.create_table(
        "notice_ding_steps",
        id_column(),
        sa.Column("notice_id", ID, nullable=False),
        sa.Column("step", sa.SmallInteger(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_until", TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("done_at", TS, nullable=True),
        sa.Column("recipients", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint("action IN ('remind', 'escalate')", name="ck_notice_ding_steps_action_valid"),
        fk("notice_ding_steps", "notice_id", "notices", ondelete="CASCADE"),
        pk("notice_ding_steps"),
        sa.UniqueConstraint("notice_id", "step", name="uq_notice_ding_steps_notice_step"),
    )
    op.create_index("ix_notice_ding_steps_due", "notice_ding_steps", ["done_at", "due_at"])


def downgrade() -> None:
    drop_table("notice_ding_steps", "ix_notice_ding_steps_due")
    drop_table(
        "notice_receipts",
        "ix_notice_receipts_via_position",
        "ix_notice_receipts_notice_unit",
        "ix_notice_receipts_person",
    )
    drop_table("notices", "ix_notices_sender")
