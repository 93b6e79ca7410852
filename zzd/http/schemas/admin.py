"""Answers of ``/api/v1/admin/grants``, ``/api/v1/me/grants`` and ``/api/v1/audit``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from zzd.http.contract import Timestamp, WireModel

__all__ = ["AuditPage", "GrantList", "GrantView", "RevokedGrant"]


class GrantView(WireModel):
    id: int
    person_id: int
    unit_id: int | None = Field(description="null: the whole tree")
    perms: list[str]
    unit_path: list[str] | None = Field(
        default=None,
        description="names from the province down to the unit; null for the whole tree (unit_id null) "
        "and for a unit retired since (the grant then covers nothing)",
    )


class RevokedGrant(GrantView):
    revoked: bool


class GrantList(WireModel):
    grants: list[GrantView]


class AuditEntry(WireModel):
    id: int
    at: Timestamp = Field(description="as hashed into the chain")
    actor_person_id: int | None
    acting_position_id: int | None
    action: str = Field(description="e.g. org.handover, notice.sent, auth.login_failed (docs/admin.md)")
    outcome: Literal["ok", "denied", "failed"]
    unit_id: int | None
    unit_path: str | None = Field(description="/<root id>/…/<unit id>/ at the time of the entry")
    detail: dict[str, Any]
    seq: int | None = Field(description="position in the hash chain; null until the sealer has chained it")
    hash: str | None = Field(description="SHA-256 of the sealed entry; null until sealed")


class AuditPage(WireModel):
    entries: list[AuditEntry] = Field(description="newest first")
    next_before: int | None = Field(description="pass as before= for the next (older) page")
