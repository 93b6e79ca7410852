"""Notices (通知) to positions: fan-out, receipts, rollups, recall, DING reminders, handover.

See ``docs/notices.md`` for the design. ``HttpNotifier`` lives in
``messaging.notices.http_notifier`` (imported only where it is wired up).
"""

from __future__ import annotations

from messaging.notices.ding import DingScheduler, StepOutcome
from messaging.notices.model import (
    Compose,
    DingPolicy,
    NoticeConfig,
    PendingPage,
    Progress,
    ReceiptState,
    SendResult,
    UnitProgress,
    validate_compose,
)
from messaging.notices.notifier import Escalation, EscalationFailed, LoggingNotifier, Notifier, sign
from messaging.notices.service import IndexProvider, NoticeService

__all__ = [
    "Compose",
    "DingPolicy",
    "DingScheduler",
    "Escalation",
    "EscalationFailed",
    "IndexProvider",
    "LoggingNotifier",
    "NoticeConfig",
    "NoticeService",
    "Notifier",
    "PendingPage",
    "Progress",
    "ReceiptState",
    "SendResult",
    "StepOutcome",
    "UnitProgress",
    "sign",
    "validate_compose",
]
