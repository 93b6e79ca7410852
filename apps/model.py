"""What an app is, what it may do (scopes), and the events it may take out.

Why scopes and a subtree both: a scope says *what kind* of thing an app may
do (send notices, create tasks, read reports, take ``report.filed`` events);
the subtree says *where* (which units it may address and read). An app with
``notice:send`` over 柯城区 can never notify 衢江区, and an app over all of
衢州市 without ``report:read`` reads no report.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from kernel.errors import BadRequest, ErrorCode, Forbidden
from kernel.wire import iso

__all__ = [
    "ACCEPTED_SCOPES",
    "EVENT_TYPES",
    "App",
    "AppPrincipal",
    "Scope",
    "event_scope_allows",
    "parse_event_types",
    "parse_scopes",
    "require_scope",
]


class Scope(StrEnum):
    """Action scopes (``events:<type>`` scopes are checked by :func:`event_scope_allows`)."""

    NOTICE_SEND = "notice:send"
    TASK_CREATE = "task:create"
    TASK_ACT = "task:act"
    REPORT_READ = "report:read"
    CHAT_BOT = "chat:bot"
    ORG_READ = "org:read"


#: Every outbox event type (docs/events.md); ``events:task.*`` covers all ``task.`` types.
EVENT_TYPES: tuple[str, ...] = (
    "report.filed",
    "task.created",
    "task.accepted",
    "task.started",
    "task.resolved",
    "task.verified",
    "task.closed",
    "task.returned",
    "task.rejected",
    "task.reassigned",
    "task.escalated",
    "task.cancelled",
    "task.commented",
    "notice.acknowledged",
)

_ACTION_SCOPES = frozenset(s.value for s in Scope)


def _known_pattern(pattern: str) -> bool:
    return any(fnmatch.fnmatchcase(t, pattern) for t in EVENT_TYPES) and (
        pattern in EVENT_TYPES or pattern.endswith(".*") or pattern == "*"
    )


def parse_event_types(raw: Iterable[str], *, field: str = "event_types") -> tuple[str, ...]:
    """Event types or ``prefix.*`` patterns; unknown ones answer 400 naming them."""
    out = sorted({str(t).strip() for t in raw})
    if not out:
        raise BadRequest(f"{field} must name at least one event type", data={"field": field})
    unknown = [t for t in out if not _known_pattern(t)]
    if unknown:
        raise BadRequest(
            "unknown event type(s); known: " + ", ".join(EVENT_TYPES) + " (or a prefix like task.*)",
            code=ErrorCode.BAD_REQUEST,
            data={"field": field, "unknown": unknown},
        )
    return tuple(out)


#: Every scope an app may be given, as the refusals name them.
ACCEPTED_SCOPES: tuple[str, ...] = (
    *sorted(_ACTION_SCOPES),
    *(f"events:{t}" for t in EVENT_TYPES),
    *sorted({f"events:{t.split('.')[0]}.*" for t in EVENT_TYPES}),
)
_ACCEPTED = frozenset(ACCEPTED_SCOPES)


def parse_scopes(raw: Iterable[str]) -> frozenset[str]:
    """Validate scope names: the action scopes, ``events:<type>`` and ``events:<family>.*``.

    Why no ``events:*`` (nor ``events:*.*`` and other wildcards): it would grant every event
    type, including types added later that no administrator weighed for this app (least
    privilege). Name the types, or a family (``events:task.*``) whose types are all of one kind.
    """
    scopes = frozenset(str(s).strip() for s in raw)
    unknown = sorted(scopes - _ACCEPTED)
    if unknown:
        raise BadRequest(
            "unknown scope(s); accepted: the action scopes, events:<type> and events:<family>.* "
            "(data.accepted lists them; events:* is not granted)",
            data={"field": "scopes", "unknown": unknown, "accepted": list(ACCEPTED_SCOPES)},
        )
    return scopes


def event_scope_allows(scopes: frozenset[str], event_type: str) -> bool:
    """Whether ``events:…`` scopes cover one concrete event type."""
    return any(s.startswith("events:") and fnmatch.fnmatchcase(event_type, s[7:]) for s in scopes)


@dataclass(frozen=True, slots=True)
class App:
    """A registered app as administrators see it (never its secrets)."""

    id: int
    name: str
    client_id: str
    owning_unit_id: int
    owner_position_id: int | None
    subtree_unit_id: int
    visibility: str
    scopes: frozenset[str]
    rate_per_minute: int
    bot_person_id: int
    bot_position_id: int
    disabled: bool
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> App:
        m = row._mapping
        return cls(
            int(m["id"]), str(m["name"]), str(m["client_id"]), int(m["owning_unit_id"]),
            None if m["owner_position_id"] is None else int(m["owner_position_id"]), int(m["subtree_unit_id"]),
            str(m["visibility"]), frozenset(s for s in str(m["scopes"]).split(",") if s),
            int(m["rate_per_minute"]), int(m["bot_person_id"]), int(m["bot_position_id"]), bool(m["disabled"]),
            m["created_at"],
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "client_id": self.client_id, "owning_unit_id": self.owning_unit_id,
            "owner_position_id": self.owner_position_id, "subtree_unit_id": self.subtree_unit_id,
            "visibility": self.visibility, "scopes": sorted(self.scopes), "rate_per_minute": self.rate_per_minute,
            "bot_person_id": self.bot_person_id, "bot_position_id": self.bot_position_id,
            "disabled": self.disabled, "created_at": iso(self.created_at),
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class AppPrincipal:
    """An authenticated app on one request: the app as it is *now* (scopes changed take effect at once)."""

    app: App
    secret_id: int

    @property
    def app_id(self) -> int:
        return self.app.id


def require_scope(principal: AppPrincipal, scope: Scope) -> None:
    """403 ``insufficient_scope`` naming the scope an endpoint needs."""
    if scope.value not in principal.app.scopes:
        raise Forbidden(
            f"this needs the app scope '{scope.value}'",
            code=ErrorCode.INSUFFICIENT_SCOPE,
            data={"scope": scope.value},
        )
