"""Out-of-band escalation of DING notices: the ``Notifier`` protocol and its two adapters.

``LoggingNotifier`` is the development adapter (it logs and remembers).
``messaging.notices.http_notifier.HttpNotifier`` POSTs a signed JSON body to an SMS/voice gateway:

- ``X-ZZD-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes, keyed by the shared secret>``;
- ``Idempotency-Key: notice-<id>-step-<n>``: the same escalation always carries the
  same key, so a gateway can drop the duplicate sent after a process died between
  the gateway's 200 and the step being marked done (escalation is at-least-once);
- retries with exponential backoff (tenacity) on connection errors, timeouts,
  429 and 5xx; any other status is a permanent failure.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

logger = logging.getLogger(__name__)

__all__ = ["SIGNATURE_HEADER", "Escalation", "EscalationFailed", "LoggingNotifier", "Notifier", "sign"]

SIGNATURE_HEADER = "X-ZZD-Signature"


@dataclass(frozen=True, slots=True)
class Escalation:
    """Recipients of a notice to reach out of band, with the positions they owe a receipt for."""

    notice_id: int
    step: int
    title: str
    priority: str
    ack_required: bool
    #: (person_id, addressed position ids) per recipient, in person order.
    recipients: tuple[tuple[int, tuple[int, ...]], ...]
    sender_person_id: int

    @property
    def idempotency_key(self) -> str:
        return f"notice-{self.notice_id}-step-{self.step}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "idempotency_key": self.idempotency_key,
            "notice_id": self.notice_id,
            "step": self.step,
            "title": self.title,
            "priority": self.priority,
            "ack_required": self.ack_required,
            "sender_person_id": self.sender_person_id,
            "recipients": [{"person_id": p, "position_ids": list(pos)} for p, pos in self.recipients],
        }


class EscalationFailed(Exception):
    """The notifier gave up; the DING step is released and tried again later."""


class Notifier(Protocol):
    """Reaches recipients outside the app (SMS, voice call).

    ``escalate`` returns once the gateway accepted the escalation, and raises
    :class:`EscalationFailed` (after its own retries) otherwise. It may be called
    again with the same ``Escalation`` after a crash: implementations pass
    ``idempotency_key`` on so the far side can deduplicate.
    """

    async def escalate(self, escalation: Escalation) -> None: ...


@dataclass
class LoggingNotifier:
    """Development adapter: logs each escalation and keeps it in ``sent``."""

    sent: list[Escalation] = field(default_factory=list)

    async def escalate(self, escalation: Escalation) -> None:
        self.sent.append(escalation)
        logger.info(
            "DING escalation %s: %d recipient(s) of notice %d",
            escalation.idempotency_key,
            len(escalation.recipients),
            escalation.notice_id,
        )


def sign(secret: bytes, body: bytes) -> str:
    """The signature header value for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


if TYPE_CHECKING:
    _check: type[Notifier] = LoggingNotifier
