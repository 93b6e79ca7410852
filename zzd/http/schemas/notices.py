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

    notice_id: int
    created_at: datetime
    duplicate: bool
    positions: int = Field(description="positions addressed")
    persons: int = Field(description="distinct people reached")
    receipts: int = Field(description="one per (addressed position, receiving person)")
    unfilled: int = Field(description="vacant positions nobody stands in for")


class Receipt(WireModel):
    """One receipt as its recipient sees it (``delivered_at``: a device has the notice)."""

    notice_id: int
    position_id: int = Field(description="the addressed position")
    via_position_id: int = Field(description="the position the recipient holds that receives for it")
    delivered_at: datetime | None
    read_at: datetime | None
    acked_at: datetime | None
    reply: str | None


class Receipts(WireModel):
    receipts: list[Receipt]


class AudienceSize(WireModel):
    positions: int
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
    unit_id: int
    code: str
    name: str
    receipts: int
    delivered: int
    read: int
    acked: int


class Totals(WireModel):
    receipts: int
    delivered: int = Field(description="a device of the recipient has the notice (docs/notices.md: receipts)")
    read: int
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
    receipt_id: int
    person_id: int
    name: str
    position_id: int
    unit_id: int
    unit: str
    read_at: datetime | None


class Pending(WireModel):
    items: list[PendingItem]
    next_after: int | None = Field(description="pass as after= for the next page")
