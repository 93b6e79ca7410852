"""Conversations addressed to positions, unit groups and ad-hoc groups (issue 5).

New columns on existing tables are nullable and carry no foreign keys, so
SQLite can add them with ``ALTER TABLE``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import ID, TS, drop_table, fk, pk

revision = "0004_conversations"
down_revision = "0003_notices"

_CONVERSATION_COLUMNS = (
    ("thread_key", sa.String(96)),
    ("title", sa.String(200)),
    ("owner_id", ID),
    ("unit_id", ID),
    ("unit_depth", sa.SmallInteger()),
    ("position_id", ID),
    ("peer_position_id", ID),
    ("peer_person_id", ID),
    ("member_version", sa.BigInteger()),
)
_MEMBER_COLUMNS = (("role", sa.String(8)), ("source", sa.String(8)), ("muted", sa.Boolean()))
_MESSAGE_COLUMNS = (
    ("kind", sa.String(8)),
    ("sender_position_id", ID),
    ("reply_to", ID),
    ("mentions", sa.Text()),
    ("attachments", sa.Text()),
    ("edited_at", TS),
    ("recalled_at", TS),
)


def upgrade() -> None:
    for name, type_ in _CONVERSATION_COLUMNS:
        op.add_column("conversations", sa.Column(name, type_, nullable=True))
    for name, type_ in _MEMBER_COLUMNS:
        op.add_column("conversation_members", sa.Column(name, type_, nullable=True))
    for name, type_ in _MESSAGE_COLUMNS:
        op.add_column("messages", sa.Column(name, type_, nullable=True))
    op.create_index("uq_conversations_thread_key", "conversations", ["thread_key"], unique=True)
    op.create_index("ix_conversations_position", "conversations", ["position_id"])
    op.create_index("ix_conversations_peer_position", "conversations", ["peer_position_id"])
    op.create_index("ix_conversations_peer_person", "conversations", ["peer_person_id"])
    op.create_table(
        "conversation_positions",
        sa.Column("conversation_id", ID, nullable=False),
        sa.Column("position_id", ID, nullable=False),
        sa.Column("added_at", TS, nullable=False),
        fk("conversation_positions", "conversation_id", "conversations", ondelete="CASCADE"),
        pk("conversation_positions", "conversation_id", "position_id"),
    )


def downgrade() -> None:
    drop_table("conversation_positions")
    op.drop_index("ix_conversations_peer_person", table_name="conversations")
    op.drop_index("ix_conversations_peer_position", table_name="conversations")
    op.drop_index("ix_conversations_position", table_name="conversations")
    op.drop_index("uq_conversations_thread_key", table_name="conversations")
    for table, cols in (
        ("messages", _MESSAGE_COLUMNS),
        ("conversation_members", _MEMBER_COLUMNS),
        ("conversations", _CONVERSATION_COLUMNS),
    ):
        with op.batch_alter_table(table) as batch:
            for name, _ in reversed(cols):
                batch.drop_column(name)
