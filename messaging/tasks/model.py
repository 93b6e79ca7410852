"""Value types of tasks: the stored row as a value, its public summary, and input checks."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.errors import BadRequest, ErrorCode
from kernel.hexids import lower_hex
from kernel.text import check_text
from kernel.wire import iso

logger = logging.getLogger(__name__)

__all__ = ["CreatedTasks", "Linker", "TaskRow", "check_digests", "check_due_at", "iso"]

MAX_ATTACHMENTS = 9
MAX_TITLE = 200
MAX_BODY = 10_000
MAX_COMMENT = 2_000
#: A due_at must leave the owner at least this long ...
MIN_DUE_AHEAD = timedelta(minutes=1)
#: ... and at most this far ahead (a year and a day: a yearly inspection, not a typo of the year).
MAX_DUE_AHEAD = timedelta(days=366)


class CreatedTasks(list["TaskRow"]):
    """The tasks a create made, or, for a retry of one already made, those it made then.

    ``duplicate`` says which: the REST shell answers a retry 200 with ``Idempotent-Replayed``
    (docs/protocol.md "Retries"), as notices and messages do, instead of a second 201.
    """

    def __init__(self, rows: Sequence[TaskRow] = (), *, duplicate: bool = False) -> None:
        super().__init__(rows)
        self.duplicate = duplicate


def check_digests(digests: Sequence[str], field: str = "attachments") -> list[str]:
    """Photo references are sha256 hex digests of uploads; at most nine, no repeats.

    Returns them lower-case (read in either case, ``kernel.hexids``): stored, linked and answered so.
    """
    if len(digests) > MAX_ATTACHMENTS:
        raise BadRequest(f"at most {MAX_ATTACHMENTS} {field}", data={"field": field, "max": MAX_ATTACHMENTS})
    lowered = [lower_hex(d, 64) for d in digests]
    for d in lowered:
        if d is None:
            raise BadRequest(
                f"{field} must be sha256 hex digests of uploads",
                code=ErrorCode.UNKNOWN_ATTACHMENT,
                data={"field": field},
            )
    return list(dict.fromkeys(d for d in lowered if d is not None))


def check_due_at(due_at: datetime | None, now: datetime) -> datetime | None:
    """A create's ``due_at``: at least a minute and at most 366 days after ``now``; 400 naming it.

    Why a minute: a due_at already past (or about to be) would escalate the task before anyone
    could read it. Why 366 days: a year's inspection fits; a mistyped year (2062) does not.
    """
    if due_at is None:
        return None
    if due_at.tzinfo is None:
        raise BadRequest("due_at must carry a time zone", data={"field": "due_at"})
    if due_at < now + MIN_DUE_AHEAD:
        raise BadRequest(
            "due_at must be at least a minute in the future",
            data={"field": "due_at", "now": iso(now)},
        )
    if due_at > now + MAX_DUE_AHEAD:
        raise BadRequest("due_at must be at most 366 days ahead", data={"field": "due_at", "max_days": 366})
    return due_at


def check_task_text(title: str, body: str) -> None:
    check_text(title, field="title", max_chars=MAX_TITLE)
    check_text(body, field="body", max_chars=MAX_BODY, allow_empty=True)


class Linker(Protocol):
    """The part of ``messaging.attachments.AttachmentService`` tasks need (the agreed interface)."""

    async def link(
        self, conn: AsyncConnection, digests: Sequence[str], *, person_id: int, ref_kind: str, ref_id: int
    ) -> None:
        """Inside the caller's transaction; raises BadRequest ``unknown_attachment`` for foreign digests."""
        ...


@dataclass(frozen=True, slots=True)
class TaskRow:
    """A task as stored (one row of ``tasks``)."""

    id: int
    category: str
    title: str
    body: str
    state: str
    version: int
    owner_position_id: int
    owner_unit_id: int
    pool: tuple[int, ...]
    origin_unit_id: int
    creator_person_id: int
    creator_position_id: int
    watchers: tuple[int, ...]
    source: str
    source_id: int | None
    escalation_level: int
    accept_due_at: datetime | None
    resolve_due_at: datetime | None
    created_at: datetime
    updated_at: datetime
    accepted_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    #: the creator's 截止时间 (``due_at`` of the create), None: the category's windows only
    due_at: datetime | None = None

    @classmethod
    def from_row(cls, r: Any) -> TaskRow:
        return cls(
            int(r.id), r.category, r.title, r.body, r.state, int(r.version), int(r.owner_position_id),
            int(r.owner_unit_id), tuple(json.loads(r.pool)), int(r.origin_unit_id), int(r.creator_person_id),
            int(r.creator_position_id), tuple(json.loads(r.watchers)), r.source,
            None if r.source_id is None else int(r.source_id), int(r.escalation_level), r.accept_due_at,
            r.resolve_due_at, r.created_at, r.updated_at, r.accepted_at, r.resolved_at, r.closed_at,
            r.due_at,
        )  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """What every party's event and the API show (the body is fetched with the task)."""
        return {
            "task_id": self.id,
            "category": self.category,
            "title": self.title,
            "state": self.state,
            "version": self.version,
            "owner_position_id": self.owner_position_id,
            "owner_unit_id": self.owner_unit_id,
            "pool": list(self.pool),
            "origin_unit_id": self.origin_unit_id,
            "creator": {"person_id": self.creator_person_id, "position_id": self.creator_position_id},
            "source": {"kind": self.source, "id": self.source_id},
            "escalation_level": self.escalation_level,
            "accept_due_at": iso(self.accept_due_at),
            "resolve_due_at": iso(self.resolve_due_at),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "accepted_at": iso(self.accepted_at),
            "resolved_at": iso(self.resolved_at),
            "closed_at": iso(self.closed_at),
            "due_at": iso(self.due_at),
        }
