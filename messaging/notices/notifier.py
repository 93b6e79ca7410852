"""Out-of-band escalation of DING notices: the ``Notifier`` protocol, its two adapters, the jobs' base.

``LoggingNotifier`` is the development adapter (it logs and remembers).
``messaging.notices.http_notifier.HttpNotifier`` POSTs a signed JSON body to an SMS/voice gateway:

- ``X-ZZD-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes, keyed by the shared secret>``;
- ``Idempotency-Key: notice-<id>-step-<n>``: the same escalation always carries the
  same key, so a gateway can drop the duplicate sent after a process died between
  the gateway's 200 and the step being marked done (escalation is at-least-once);
- retries with exponential backoff (tenacity) on connection errors, timeouts,
  429 and 5xx; any other status is a permanent failure.

``DingJob`` is what the two DING jobs share (``messaging.notices.ding.DingScheduler``
for notice steps, ``messaging.tasks.timers.TaskTimers`` for task timers): the lease
on their due rows, the retry policy, the notifier and the org index.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypedDict

from sqlalchemy import Table
from typing_extensions import Unpack

from messaging.leases import Leases, run_token
from messaging.ports import IndexProvider
from messaging.unit_of_work import UnitOfWork

logger = logging.getLogger(__name__)

__all__ = [
    "SIGNATURE_HEADER",
    "DingJob",
    "DingSettings",
    "Escalation",
    "EscalationFailed",
    "LoggingNotifier",
    "Notifier",
    "sign",
]

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

    @property
    def subject(self) -> str:
        """What is escalated, for log lines: ``notice 12``."""
        return f"notice {self.notice_id}"

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
            "DING escalation %s: %d recipient(s) of %s",
            escalation.idempotency_key,
            len(escalation.recipients),
            escalation.subject,
        )


class DingSettings(TypedDict, total=False):
    """How a DING job claims and retries; a job's ``DEFAULTS`` fill in what is not given.

    Keys:
        node_id: names this process in ``claimed_by`` (a random suffix is added per run).
        lease: how long a claim is exclusive; longer than one run of the calls takes.
        batch: rows claimed per run.
        retry_after: delay before a failed row is tried again.
        max_attempts: tries before a row is closed as failed.
    """

    node_id: str
    lease: timedelta
    batch: int
    retry_after: timedelta
    max_attempts: int


class DingJob:
    """Base of the jobs that claim due rows of ``TABLE`` under a lease and escalate out of band.

    ``TABLE`` has the lease columns ``claimed_by``, ``claimed_until``, ``attempts``
    and ``done_at`` (unfinished while NULL). Safe to run in every server process at once.
    """

    TABLE: ClassVar[Table]
    DEFAULTS: ClassVar[DingSettings]

    def __init__(
        self, uow: UnitOfWork, notifier: Notifier, index_provider: IndexProvider, **given: Unpack[DingSettings]
    ) -> None:
        settings: DingSettings = {"node_id": "node", "max_attempts": 5, **self.DEFAULTS, **given}
        self._db = uow.db
        self._clock = uow.clock
        self._uow = uow
        self._notifier = notifier
        self._index = index_provider
        self._node = settings["node_id"]
        self.lease = settings["lease"]
        c = self.TABLE.c
        self._leases = Leases(
            self.TABLE, c.claimed_by, c.claimed_until, c.done_at.is_(None), self.lease, attempts=c.attempts
        )
        self._batch = settings["batch"]
        self._retry_after = settings["retry_after"]
        self._max_attempts = settings["max_attempts"]

    def _token(self) -> str:
        """A fresh claim token for one run of this process."""
        return run_token(self._node)


def sign(secret: bytes, body: bytes) -> str:
    """The signature header value for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


if TYPE_CHECKING:
    _check: type[Notifier] = LoggingNotifier
