"""Tables of notices: the notice, one receipt per (recipient person, addressed position), DING steps.

The migrations ``migrations/versions/0003_notices.py``, ``0007_notice_fanout.py`` and
``0014_notice_pending_receipts.py`` create exactly these tables; keep the two in step
(``tests/test_migrations.py`` compares them).
"""

from __future__ import annotations

import logging

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

import org_tree.org_schema  # noqa: F401  (registers persons/positions/units in the shared metadata)
from kernel.db.base import UTCDateTime, metadata
from kernel.db.types import ID

logger = logging.getLogger(__name__)

__all__ = ["notice_ding_steps", "notice_pending_receipts", "notice_receipts", "notices"]

notices = Table(
    "notices",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("sender_person_id", ID, ForeignKey("persons.id"), nullable=False),
    # The position the sender acted as; its later holders also see the progress.
    Column("sender_position_id", ID, nullable=False),
    # The sender's idempotency key: a retried send returns the first notice.
    Column("client_msg_id", String(64), nullable=False),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    # JSON text: a list of attachment references (opaque to this package).
    Column("attachments", Text, nullable=False),
    # JSON text of the selector as sent (org_tree.selectors.to_json).
    Column("selector", Text, nullable=False),
    Column("priority", String(8), nullable=False),
    Column("ack_required", Boolean, nullable=False),
    Column("deadline", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    # Set once by a recall; receipts of a recalled notice no longer change or count.
    Column("recalled_at", UTCDateTime, nullable=True),
    # The resolution's numbers, frozen at send time (org version ``org_version``).
    Column("audience_positions", Integer, nullable=False),
    Column("audience_persons", Integer, nullable=False),
    Column("receipt_count", Integer, nullable=False),
    # Addressed positions nobody stands in for (no receipt); NULL for notices sent before 0018.
    Column("audience_unfilled", Integer, nullable=True),
    Column("org_version", ID, nullable=False),
    # Deferred fan-out (messaging/notices/relay.py): the recipients' events are
    # written after the send commits. Set once every receipt is ``fanned_out``.
    Column("fanout_done_at", UTCDateTime, nullable=True),
    # Lease on finishing the fan-out: the claimer's token until ``fanout_lease_until``;
    # after that another process finishes it (the first one died).
    Column("fanout_claimed_by", String(64), nullable=True),
    Column("fanout_lease_until", UTCDateTime, nullable=True),
    CheckConstraint("priority IN ('normal', 'urgent')", name="priority_valid"),
    UniqueConstraint("sender_person_id", "client_msg_id", name="uq_notices_sender_client_msg"),
    Index("ix_notices_sender", "sender_person_id", "id"),
    Index("ix_notices_fanout_done", "fanout_done_at"),
)

notice_receipts = Table(
    "notice_receipts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("notice_id", ID, ForeignKey("notices.id", ondelete="CASCADE"), nullable=False),
    # Who owes the receipt now (moves to the new holder on handover while unread).
    Column("person_id", ID, nullable=False),
    # The addressed position, and the position the person holds through which they
    # receive (differs from ``position_id`` only for a vacancy fallback).
    Column("position_id", ID, nullable=False),
    Column("via_position_id", ID, nullable=False),
    # holder | deputy | acting | unit_head | superior (org_tree.resolution)
    Column("reason", String(16), nullable=False),
    # Unit of the addressed position, for the rollup per child unit.
    Column("unit_id", ID, nullable=False),
    # Each only ever goes from NULL to a time, once (idempotent receipts).
    Column("delivered_at", UTCDateTime, nullable=True),
    Column("read_at", UTCDateTime, nullable=True),
    Column("acked_at", UTCDateTime, nullable=True),
    Column("reply", Text, nullable=True),
    # Handover history: who owed the receipt before ``transferred_at``.
    Column("previous_person_id", ID, nullable=True),
    Column("transferred_at", UTCDateTime, nullable=True),
    # The recipient's ``notice.new`` event is written (or deliberately skipped, after a
    # recall). Claimed false → true together with every receipt of the person, in the
    # transaction that appends the event: one event per person per notice.
    Column("fanned_out", Boolean, nullable=False, server_default=false()),
    # The last one-click reminder of this receipt (``remind.py``): the same person is reminded by hand
    # at most once a minute per notice, whichever unit is asked and whichever process answers.
    Column("reminded_at", UTCDateTime, nullable=True),
    UniqueConstraint("notice_id", "position_id", "person_id", name="uq_notice_receipts_notice_position_person"),
    Index("ix_notice_receipts_person", "person_id", "notice_id"),
    Index("ix_notice_receipts_notice_unit", "notice_id", "unit_id"),
    Index("ix_notice_receipts_via_position", "via_position_id"),
)

# The receipts of a large notice not written yet: its rows packed into one value at send
# time (messaging/notices/deferred.py), deleted in the transaction that writes them.
notice_pending_receipts = Table(
    "notice_pending_receipts",
    metadata,
    Column("notice_id", ID, ForeignKey("notices.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("receipts", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

notice_ding_steps = Table(
    "notice_ding_steps",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("notice_id", ID, ForeignKey("notices.id", ondelete="CASCADE"), nullable=False),
    # 0, 1, … in due order; ``action`` is ``remind`` (in-app) or ``escalate`` (out of band).
    Column("step", SmallInteger, nullable=False),
    Column("action", String(16), nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    # A claim is a lease: the claimer's token until ``claimed_until``; after that
    # another process may claim the step again (the first one died).
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_until", UTCDateTime, nullable=True),
    Column("attempts", Integer, nullable=False),
    # Set in the same transaction as the step's effects (fenced by ``claimed_by``).
    Column("done_at", UTCDateTime, nullable=True),
    Column("recipients", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    CheckConstraint("action IN ('remind', 'escalate')", name="action_valid"),
    UniqueConstraint("notice_id", "step", name="uq_notice_ding_steps_notice_step"),
    Index("ix_notice_ding_steps_due", "done_at", "due_at"),
)
