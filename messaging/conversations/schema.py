"""Tables added for conversations addressed to positions (migration 0004).

The columns added to ``conversations``, ``conversation_members`` and
``messages`` live with those tables in ``messaging/schema.py``; this module
holds what is new: the positions that are members of an ad-hoc group (their
current holders are members, kept in step by the reconciler).
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Table

import messaging.schema  # noqa: F401  (registers ``conversations``)
from kernel.db.base import UTCDateTime, metadata
from kernel.db.types import ID

__all__ = ["conversation_positions"]

conversation_positions = Table(
    "conversation_positions",
    metadata,
    Column("conversation_id", ID, ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True),
    Column("position_id", ID, primary_key=True),
    Column("added_at", UTCDateTime, nullable=False),
)
