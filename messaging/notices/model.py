"""Plain values of the notice domain: requests, results, receipts, progress, policies.

The shell turns these into frames and JSON bodies with their ``to_dict``;
validation of raw input happens in :func:`validate_compose`, before anything
touches the database.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kernel.errors import BadRequest
from kernel.hexids import lower_hex_ref
from kernel.text import check_text
from kernel.wire import check_client_msg_id, iso
from org_tree.selectors import Selector, parse_selector, to_json

logger = logging.getLogger(__name__)

__all__ = [
    "Compose",
    "DingPolicy",
    "NoticeConfig",
    "PendingPage",
    "Progress",
    "ReceiptState",
    "SendResult",
    "UnitProgress",
    "iso",
    "validate_compose",
]

MAX_TITLE = 200
MAX_BODY = 20_000
MAX_REPLY = 2_000
MAX_ATTACHMENTS = 20
PRIORITIES = ("normal", "urgent")


@dataclass(frozen=True, slots=True)
class DingPolicy:
    """The reminder ladder of an urgent notice: ``(delay after sending, action)`` in due order.

    ``remind`` re-sends the notice in the app to recipients who have not yet
    read it (or acknowledged it, when acknowledgement is required);
    ``escalate`` hands the same recipients to the out-of-band ``Notifier``.
    """

    steps: tuple[tuple[timedelta, str], ...] = (
        (timedelta(minutes=30), "remind"),
        (timedelta(minutes=60), "escalate"),
    )

    def __post_init__(self) -> None:
        for delay, action in self.steps:
            if action not in ("remind", "escalate"):
                raise ValueError(f"unknown DING action {action!r}")
            if delay < timedelta(0):
                raise ValueError("DING delays must not be negative")


@dataclass(frozen=True, slots=True)
class NoticeConfig:
    """Settings of the notice service (the shell builds it from its configuration)."""

    #: A notice may be recalled up to this long after it was sent.
    recall_window: timedelta = timedelta(hours=24)
    ding: DingPolicy = field(default_factory=DingPolicy)
    #: The sender gets at most one ``notice.progress`` event per notice per this many seconds.
    progress_interval: float = 1.0


@dataclass(frozen=True, slots=True)
class Compose:
    """A validated notice to send."""

    client_msg_id: str
    title: str
    body: str
    selector: Selector
    priority: str = "normal"
    ack_required: bool = False
    deadline: datetime | None = None
    attachments: tuple[Any, ...] = ()

    @property
    def selector_json(self) -> str:
        return json.dumps(to_json(self.selector), ensure_ascii=False, separators=(",", ":"))


def validate_compose(
    *,
    client_msg_id: str,
    title: str,
    body: str,
    selector: Selector | str | dict[str, Any],
    priority: str = "normal",
    ack_required: bool = False,
    deadline: datetime | None = None,
    attachments: list[Any] | tuple[Any, ...] = (),
) -> Compose:
    """Check raw input and return a :class:`Compose` (``BadRequest`` names the field)."""
    check_client_msg_id(client_msg_id)
    check_text(title, field="title", max_chars=MAX_TITLE)
    check_text(body, field="body", max_chars=MAX_BODY, allow_empty=True)
    if priority not in PRIORITIES:
        raise BadRequest("priority must be normal or urgent", data={"field": "priority"})
    if not isinstance(ack_required, bool):
        raise BadRequest("ack_required must be a boolean", data={"field": "ack_required"})
    if deadline is not None and deadline.tzinfo is None:
        raise BadRequest("deadline must carry a time zone", data={"field": "deadline"})
    if len(attachments) > MAX_ATTACHMENTS:
        raise BadRequest(f"at most {MAX_ATTACHMENTS} attachments", data={"field": "attachments"})
    for a in attachments:
        if not isinstance(a, str | dict):
            raise BadRequest("attachments are references (strings or objects)", data={"field": "attachments"})
        check_text(json.dumps(a, ensure_ascii=False), field="attachments", max_chars=2_000)
    sel = selector if not isinstance(selector, str | dict) else parse_selector(selector)
    # A digest in either case is the lower-case digest (kernel.hexids), so it is linked and served; before,
    # an upper-case one was kept as an opaque string and its recipients got 404 for the photo.
    refs = tuple(lower_hex_ref(a) for a in attachments)
    return Compose(client_msg_id, title, body, sel, priority, ack_required, deadline, refs)


@dataclass(frozen=True, slots=True)
class SendResult:
    notice_id: int
    created_at: datetime
    #: True when this (sender, client_msg_id) was already stored: nothing new was written.
    duplicate: bool
    positions: int
    persons: int
    receipts: int
    unfilled: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "notice_id": self.notice_id,
            "created_at": iso(self.created_at),
            "duplicate": self.duplicate,
            "positions": self.positions,
            "persons": self.persons,
            "receipts": self.receipts,
            "unfilled": self.unfilled,
        }


@dataclass(frozen=True, slots=True)
class ReceiptState:
    """One receipt as its recipient sees it."""

    notice_id: int
    position_id: int
    via_position_id: int
    delivered_at: datetime | None
    read_at: datetime | None
    acked_at: datetime | None
    reply: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "notice_id": self.notice_id,
            "position_id": self.position_id,
            "via_position_id": self.via_position_id,
            "delivered_at": iso(self.delivered_at),
            "read_at": iso(self.read_at),
            "acked_at": iso(self.acked_at),
            "reply": self.reply,
        }


@dataclass(frozen=True, slots=True)
class UnitProgress:
    """Counts of the receipts whose addressed position lies in one unit's subtree."""

    unit_id: int
    code: str
    name: str
    receipts: int
    delivered: int
    read: int
    acked: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Totals:
    """Receipt counts with no unit attached (the whole notice)."""

    receipts: int
    delivered: int
    read: int
    acked: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Progress:
    notice_id: int
    recalled: bool
    ack_required: bool
    #: The requested unit's own totals (receipts of positions in its subtree), under its name.
    total: UnitProgress
    #: The requested unit itself (positions addressed in it directly) first, then each child unit.
    by_child: tuple[UnitProgress, ...]
    #: Receipts outside the requested unit (or in units no longer in the tree).
    elsewhere: int = 0
    #: The whole notice, wherever its positions are.
    notice_total: Totals = Totals(0, 0, 0, 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "notice_id": self.notice_id,
            "recalled": self.recalled,
            "ack_required": self.ack_required,
            "total": self.total.to_dict(),
            "by_child": [c.to_dict() for c in self.by_child],
            "elsewhere": self.elsewhere,
            "notice_total": self.notice_total.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class PendingPage:
    """Recipients in a unit who have not yet read / acknowledged, ordered by receipt id."""

    items: list[dict[str, Any]]
    #: Pass as ``after`` for the next page; None when there is none.
    next_after: int | None
