"""Tables added for conversations addressed to positions (migration 0004).

The columns added to ``conversations``, ``conversation_members`` and
``messages`` live with those tables in ``messaging/schema.py``; this module
holds what is new: the positions that are members of an ad-hoc group (their
current holders are members, kept in step by the reconciler), and (migration
0013) the deferred fan-out of group messages: the ``message.new`` payload of a
group message written once, and one pending row per member still owed that
event (``messaging/conversations/fanout.py``).
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, SmallInteger, String, Table, Text

import messaging.schema  # noqa: F401  (registers ``conversations``)
from kernel.db.base import UTCDateTime, metadata
from kernel.db.types import ID

__all__ = ["conversation_positions", "message_fanout_pending", "message_fanouts"]

conversation_positions = Table(
    "conversation_positions",
    metadata,
    Column("conversation_id", ID, ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True),
    Column("position_id", ID, primary_key=True),
    Column("added_at", UTCDateTime, nullable=False),
)

#: One row per group message still being fanned out: the ``message.new`` payload every member's
#: event is made from (``mentioned``/``muted`` false; each member's flags are in their pending
#: row) and the lease on finishing it (``messaging.leases``). Deleted once no member is owed it.
message_fanouts = Table(
    "message_fanouts",
    metadata,
    # The message's id (named ``id`` for ``messaging.leases``).
    Column("id", ID, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("conversation_id", ID, nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("claimed_by", String(64), nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
)

#: One row per (member, group message) whose ``message.new`` is not written yet. Deleting the
#: row is the claim: it happens in the transaction that appends the event, so exactly once.
#: ``flags``: 1 = mentioned, 2 = muted (as of the send).
message_fanout_pending = Table(
    "message_fanout_pending",
    metadata,
    # Person first: a claim names hundreds of persons (``person_id = ANY(…)``), and with the
    # conversation first PostgreSQL scanned every pending row of the conversation instead.
    Column("person_id", ID, primary_key=True),
    Column("conversation_id", ID, primary_key=True),
    # No foreign key: the payload row outlives every pending row of its message (the sweep
    # deletes it last), and a per-row check only slows a 2,078-member send's insert.
    Column("message_id", ID, primary_key=True),
    Column("flags", SmallInteger, nullable=False),
    Index("ix_message_fanout_pending_message", "message_id", "person_id"),
)
