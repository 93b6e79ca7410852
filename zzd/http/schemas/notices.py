"""Answers of ``/api/v1/notices``: sent, read back, receipts, progress roll-up, pending lists."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from messaging.shapes import NoticeHead
from zzd.http.contract import WireModel

__all__ = ["NoticeView", "Pending", "Progress", "Receipts", "Sent"]


class Sent(WireModel):
    """The notice and every receipt are stored (201), or this ``client_msg_id`` already was (200)."""

    #: the notice's id
    notice_id: int
    #: when it was stored (UTC)
    created_at: datetime
    #: true: a retry with the same client_msg_id; nothing new was stored
    duplicate: bool
    positions: int = Field(description="positions addressed")
    persons: int = Field(description="distinct people reached")
    receipts: int = Field(description="one per (addressed position, receiving person)")
    unfilled: int = Field(description="vacant positions nobody stands in for")


class Receipt(WireModel):
    """One receipt as its recipient sees it (``delivered_at``: a device has the notice)."""

    #: the notice's id
    notice_id: int
    position_id: int = Field(description="the addressed position")
    via_position_id: int = Field(description="the position the recipient holds that receives for it")
    #: a device of the recipient has it (null: not yet)
    delivered_at: datetime | None
    #: the recipient opened it (null: not yet)
    read_at: datetime | None
    #: the recipient acknowledged it (null: not yet)
    acked_at: datetime | None
    #: the text given with the acknowledgement (the first one stays)
    reply: str | None


class Receipts(WireModel):
    receipts: list[Receipt]


class AudienceSize(WireModel):
    #: positions addressed
    positions: int
    #: distinct people reached
    persons: int


class NoticeView(NoticeHead):
    """A notice: the recipient sees their receipts; the sender side also the selector and audience."""

    body: str
    attachments: list[Any]
    recalled_at: datetime | None
    receipts: list[Receipt]
    selector: dict[str, Any] | str | None = Field(default=None, description="sender side only")
    audience: AudienceSize | None = Field(default=None, description="sender side only")
    receipt_count: int | None = Field(default=None, description="sender side only")


class UnitProgress(WireModel):
    #: the unit's id
    unit_id: int
    #: its code
    code: str
    #: its name
    name: str
    #: receipts of positions in it (by_child: in its subtree)
    receipts: int
    #: of those, delivered
    delivered: int
    #: of those, read
    read: int
    #: of those, acknowledged
    acked: int


class Totals(WireModel):
    #: every receipt of the notice
    receipts: int
    delivered: int = Field(description="a device of the recipient has the notice (docs/notices.md: receipts)")
    #: receipts read
    read: int
    #: receipts acknowledged
    acked: int


class Progress(WireModel):
    notice_id: int
    recalled: bool
    ack_required: bool
    total: UnitProgress = Field(description="the unit asked for: the receipts of positions in its subtree")
    by_child: list[UnitProgress] = Field(description="the unit itself (positions addressed in it directly) first")
    elsewhere: int = Field(description="receipts outside the unit asked for")
    notice_total: Totals = Field(description="the whole notice, wherever its positions are")


class PendingItem(WireModel):
    #: the receipt's id (pages go by it: next_after)
    receipt_id: int
    #: who owes it
    person_id: int
    #: their name
    name: str
    #: the addressed position
    position_id: int
    #: that position's unit
    unit_id: int
    #: that unit's name
    unit: str
    #: when it was read (missing=ack lists read but unacknowledged ones too)
    read_at: datetime | None


class Pending(WireModel):
    items: list[PendingItem]
    next_after: int | None = Field(description="pass as after= for the next page")
