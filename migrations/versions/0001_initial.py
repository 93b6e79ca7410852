"""Initial schema: persons, login sessions, event streams, direct chat."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import ID, TS, drop_table, fk, id_column, pk

revision = "0001_initial"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "conversations",
        id_column(),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("direct_key", sa.String(length=64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_message_id", sa.BigInteger(), nullable=True),
        pk("conversations"),
        sa.UniqueConstraint("direct_key", name=op.f("uq_conversations_direct_key")),
    )
    op.create_table(
        "person_events",
        sa.Column("person_id", ID, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        pk("person_events", "person_id", "seq"),
    )
    op.create_table(
        "persons",
        id_column(),
        sa.Column("login", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        pk("persons"),
        sa.UniqueConstraint("login", name=op.f("uq_persons_login")),
    )
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("person_id", ID, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        fk("auth_sessions", "person_id", "persons", ondelete="CASCADE"),
        pk("auth_sessions"),
    )
    op.create_index("ix_auth_sessions_person", "auth_sessions", ["person_id"], unique=False)

    op.create_table(
        "conversation_members",
        sa.Column("conversation_id", ID, nullable=False),
        sa.Column("person_id", ID, nullable=False),
        sa.Column("last_read_message_id", sa.BigInteger(), nullable=False),
        sa.Column("joined_at", TS, nullable=False),
        fk("conversation_members", "conversation_id", "conversations", ondelete="CASCADE"),
        fk("conversation_members", "person_id", "persons", ondelete="CASCADE"),
        pk("conversation_members", "conversation_id", "person_id"),
    )
    op.create_index(
        "ix_conversation_members_person",
        "conversation_members",
        ["person_id"],
        unique=False,
    )

    op.create_table(
        "messages",
        id_column(),
        sa.Column("conversation_id", ID, nullable=False),
        sa.Column("sender_id", ID, nullable=False),
        sa.Column("client_msg_id", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        fk("messages", "conversation_id", "conversations", ondelete="CASCADE"),
        fk("messages", "sender_id", "persons"),
        pk("messages"),
        sa.UniqueConstraint("sender_id", "client_msg_id", name="uq_messages_sender_client_msg"),
    )
    op.create_index(
        "ix_messages_conversation_id",
        "messages",
        ["conversation_id", "id"],
        unique=False,
    )

    op.create_table(
        "person_streams",
        sa.Column("person_id", ID, nullable=False),
        sa.Column("epoch", sa.String(length=16), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("min_seq", sa.BigInteger(), nullable=False),
        fk("person_streams", "person_id", "persons", ondelete="CASCADE"),
        pk("person_streams", "person_id"),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("issued_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        fk("refresh_tokens", "session_id", "auth_sessions", ondelete="CASCADE"),
        pk("refresh_tokens", "token_hash"),
    )
    op.create_index("ix_refresh_tokens_session", "refresh_tokens", ["session_id"], unique=False)


def downgrade() -> None:
    drop_table("refresh_tokens", "ix_refresh_tokens_session")
    drop_table("person_streams")
    drop_table("messages", "ix_messages_conversation_id")
    drop_table("conversation_members", "ix_conversation_members_person")
    drop_table("auth_sessions", "ix_auth_sessions_person")
    drop_table("persons")
    drop_table("person_events")
    drop_table("conversations")
