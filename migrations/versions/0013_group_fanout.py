"""Issue 15 item 3: group messages are stored once and fanned out after the send commits.

``message_fanouts`` holds the ``message.new`` payload of each group message
still being fanned out and the lease on finishing it (the row is deleted then); ``message_fanout_pending`` one row per member
still owed the event (messaging/conversations/fanout.py). Messages sent before
this migration were fanned out in their send transaction: nothing to carry over.
No application imports.

Revision ID: 0013_group_fanout
Revises: 0012_pending_deliveries
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import ID, TS

revision = "0013_group_fanout"
down_revision = "0012_pending_deliveries"


def upgrade() -> None:
    op.create_table(
        "message_fanouts",
        sa.Column("id", ID, autoincrement=False, nullable=False),
        sa.Column("conversation_id", ID, nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("lease_until", TS, nullable=True),
        sa.ForeignKeyConstraint(["id"], ["messages.id"], name="fk_message_fanouts_id_messages", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_message_fanouts"),
    )
    op.create_table(
        "message_fanout_pending",
        sa.Column("person_id", ID, autoincrement=False, nullable=False),
        sa.Column("conversation_id", ID, autoincrement=False, nullable=False),
        sa.Column("message_id", ID, autoincrement=False, nullable=False),
        sa.Column("flags", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("person_id", "conversation_id", "message_id", name="pk_message_fanout_pending"),
    )
    op.create_index("ix_message_fanout_pending_message", "message_fanout_pending", ["message_id", "person_id"])


def downgrade() -> None:
    op.drop_index("ix_message_fanout_pending_message", table_name="message_fanout_pending")
    op.drop_table("message_fanout_pending")
    op.drop_table("message_fanouts")
