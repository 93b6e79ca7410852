"""Tables of messaging: per-person event streams, conversations, messages."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, String, Table, Text, UniqueConstraint

from org_tree.db.base import UTCDateTime, metadata
from org_tree.db.types import ID

__all__ = ["conversation_members", "conversations", "messages", "person_events", "person_streams"]

person_streams = Table(
    "person_streams",
    metadata,
    # One row per person, locked (in person_id order) by every transaction that
    # appends to that person's stream, so sequence numbers commit in order and
    # without gaps (STYLE.md lesson 5).
    Column("person_id", ID, ForeignKey("persons.id", ondelete="CASCADE"), primary_key=True),
    # Changes when the stream is reset; a client holding another epoch must resync.
    Column("epoch", String(16), nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    # Events below this were pruned by retention; a cursor before it must resync.
    Column("min_seq", BigInteger, nullable=False),
)

person_events = Table(
    "person_events",
    metadata,
    Column("person_id", ID, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("kind", String(40), nullable=False),
    # JSON text, sent to clients verbatim inside the event frame.
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    # "lo:hi" person ids for a direct chat, so each pair has exactly one.
    Column("direct_key", String(64), nullable=True, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_message_id", BigInteger, nullable=True),
)

conversation_members = Table(
    "conversation_members",
    metadata,
    Column("conversation_id", ID, ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True),
    Column("person_id", ID, ForeignKey("persons.id", ondelete="CASCADE"), primary_key=True),
    # Highest message id this member has read; only ever moves forward.
    Column("last_read_message_id", BigInteger, nullable=False, default=0),
    Column("joined_at", UTCDateTime, nullable=False),
    Index("ix_conversation_members_person", "person_id"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("conversation_id", ID, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    Column("sender_id", ID, ForeignKey("persons.id"), nullable=False),
    # The sender's idempotency key: a retried send returns the first message.
    Column("client_msg_id", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("sender_id", "client_msg_id", name="uq_messages_sender_client_msg"),
    Index("ix_messages_conversation_id", "conversation_id", "id"),
)
