"""Tables of messaging: per-person event streams, conversations, messages, and the domain-event outbox.

``outbox_events`` is created by ``migrations/versions/0005_tasks.py``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from kernel.db.base import UTCDateTime, metadata
from kernel.db.types import ID

__all__ = [
    "conversation_members",
    "conversations",
    "maintenance_leases",
    "messages",
    "outbox_events",
    "person_events",
    "person_streams",
]

person_streams = Table(
    "person_streams",
    metadata,
    # One row per person, locked (in person_id order) by every transaction that
    # appends to that person's stream, so sequence numbers commit in order and
    # without gaps (docs/style.md lesson 5).
    Column("person_id", ID, ForeignKey("persons.id", ondelete="CASCADE"), primary_key=True),
    # Changes when the stream is reset; a client holding another epoch must resync.
    Column("epoch", String(16), nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    # Events below this were pruned by retention; a cursor before it must resync.
    Column("min_seq", BigInteger, nullable=False),
    # Room on each page so a bump of last_seq is a HOT update (no new index entry; migration 0010).
    postgresql_with={"fillfactor": 30},
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
    # --- issue 5 (migration 0004): 'direct' | 'position' | 'unit' | 'group' ---
    # Unique identity of threads and unit groups ("pt:…", "unit:<id>"), like direct_key for pairs.
    Column("thread_key", String(96), nullable=True),
    Column("title", String(200), nullable=True),
    Column("owner_id", ID, nullable=True),
    # Unit groups: the unit and how many levels below it also belong (0 = the unit only).
    Column("unit_id", ID, nullable=True),
    Column("unit_depth", SmallInteger, nullable=True),
    # Position threads: the addressed position, and the other side (a position or a person).
    Column("position_id", ID, nullable=True),
    Column("peer_position_id", ID, nullable=True),
    Column("peer_person_id", ID, nullable=True),
    # Org version the derived member set was last reconciled with (unit groups, position members).
    Column("member_version", BigInteger, nullable=True),
    Index("uq_conversations_thread_key", "thread_key", unique=True),
    Index("ix_conversations_position", "position_id"),
    Index("ix_conversations_peer_position", "peer_position_id"),
    Index("ix_conversations_peer_person", "peer_person_id"),
)

conversation_members = Table(
    "conversation_members",
    metadata,
    Column("conversation_id", ID, ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True),
    Column("person_id", ID, ForeignKey("persons.id", ondelete="CASCADE"), primary_key=True),
    # Highest message id this member has read; only ever moves forward.
    Column("last_read_message_id", BigInteger, nullable=False, default=0),
    Column("joined_at", UTCDateTime, nullable=False),
    # Groups: 'owner' | 'admin' | NULL (member).
    Column("role", String(8), nullable=True),
    # NULL: added by a person (or a direct chat); 'derived': kept in step with the org tree by the reconciler.
    Column("source", String(8), nullable=True),
    Column("muted", Boolean, nullable=True),
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
    # --- issue 5 (migration 0004) ---
    # NULL or 'text'; 'system' for join/leave notes written by the reconciler.
    Column("kind", String(8), nullable=True),
    # The position the sender wrote as (position threads, groups); NULL when as a person.
    Column("sender_position_id", ID, nullable=True),
    Column("reply_to", ID, nullable=True),
    # JSON lists: mentions {"persons": [...], "positions": [...]}, attachment references.
    Column("mentions", Text, nullable=True),
    Column("attachments", Text, nullable=True),
    Column("edited_at", UTCDateTime, nullable=True),
    Column("recalled_at", UTCDateTime, nullable=True),
    # --- migration 0015 ---
    # JSON: a system note's detail (the ``system`` object of its ``message.new``); NULL otherwise.
    Column("system", Text, nullable=True),
    UniqueConstraint("sender_id", "client_msg_id", name="uq_messages_sender_client_msg"),
    Index("ix_messages_conversation_id", "conversation_id", "id"),
)

outbox_events = Table(
    "outbox_events",
    metadata,
    # Commit order is not id order on PostgreSQL; a relay reads by id and tolerates late lower ids.
    Column("id", ID, primary_key=True, autoincrement=True),
    # Stable, globally unique id (UUID text): the consumer's deduplication key.
    Column("event_id", String(36), nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    # report | task | notice, and that object's id.
    Column("aggregate", String(16), nullable=False),
    Column("aggregate_id", ID, nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("published_at", UTCDateTime, nullable=True),
    Index("ix_outbox_events_unpublished", "published_at", "id"),
    Index("ix_outbox_events_aggregate", "aggregate", "aggregate_id"),
)


maintenance_leases = Table(
    "maintenance_leases",
    metadata,
    # One row per housekeeping job that one process at a time runs (messaging/retention.py).
    Column("id", ID, primary_key=True, autoincrement=False),
    Column("name", String(32), nullable=False, unique=True),
    Column("claimed_by", String(64), nullable=True),
    Column("leased_until", UTCDateTime, nullable=True),
    # Where the current pass stands (the last person id looked at; 0 between passes).
    Column("cursor", BigInteger, nullable=False),
    Column("passed_at", UTCDateTime, nullable=True),
)
