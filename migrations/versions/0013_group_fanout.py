"""Issue 15 item 3: group messages are stored once and fanned out after the send commits.

``message_fanouts`` holds the ``message.new`` payload of each group message
still being fanned out and the lease on finishing it (the row is deleted then); ``message_fanout_pending`` one row per member
still owed the event (messaging/conversations/fanout.py). Messages sent before
this migration were fanned out in their send transaction: nothing to carry over.
No application imports.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import ID, TS, drop_table, fk, pk

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
        fk("message_fanouts", "id", "messages", ondelete="CASCADE"),
        pk("message_fanouts"),
    )
    op.create_table(
        "message_fanout_pending",
        sa.Column("person_id", ID, autoincrement=False, nullable=False),
        sa.Column("conversation_id", ID, autoincrement=False, nullable=False),
        sa.Column("message_id", ID, autoincrement=False, nullable=False),
        sa.Column("flags", sa.SmallInteger(), nullable=False),
        pk("message_fanout_pending", "person_id", "conversation_id", "message_id"),
    )
    op.create_index("ix_message_fanout_pending_message", "message_fanout_pending", ["message_id", "person_id"])


def downgrade() -> None:
    drop_table("message_fanout_pending", "ix_message_fanout_pending_message")
    drop_table("message_fanouts")
