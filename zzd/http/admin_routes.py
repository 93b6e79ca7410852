"""``/api/v1/admin/grants`` and ``/api/v1/audit``: administrators and auditors (docs/admin.md).

Who may call what is decided by ``org_tree.grants`` (one place): listing
others' grants needs ``grants`` or ``audit`` somewhere, giving one needs
``grants`` plus every permission given over the unit, revoking needs the same
over the grant's unit, and reading the audit log needs ``audit`` over the
subtree asked for (without ``unit``: the subtrees the caller audits).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kernel.audit import AuditQuery, query
from kernel.errors import BadRequest, Forbidden
from org_tree.grants import Perm, grant_unit, holds_grant, parse_perms, unit_path_of
from zzd.http.actors import current_actor
from zzd.http.common import json_body, ok
from zzd.http.params import int_param, opt_int_param, str_param, unit_ref

__all__ = ["bodies", "routes"]

Id = Annotated[int, Field(ge=1, le=2**53)]
UnitRef = Id | Annotated[str, StringConstraints(min_length=1, max_length=32)]
PermName = Annotated[str, StringConstraints(min_length=1, max_length=16)]


class NewGrant(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    person_id: Id
    #: Unit code or id whose subtree the grant covers; ``null``: the whole tree.
    unit: UnitRef | None
    #: Permission names: org, assignments, roles, settings, apps, audit, grants.
    perms: Annotated[list[PermName], Field(min_length=1, max_length=7)]


async def my_grants(request: Request) -> JSONResponse:
    """The caller's own grants (any signed-in person; empty for most)."""
    s, actor = await current_actor(request)
    return ok({"grants": [g.to_dict(s.org.index) for g in actor.grants]})


async def list_grants(request: Request) -> JSONResponse:
    """Grants inside the subtrees where the caller holds ``grants`` or ``audit`` (plus their own)."""
    s, actor = await current_actor(request)
    s.grants.require_some_admin(actor)
    person = opt_int_param(request, "person_id", 1, 2**53)
    found = await s.grants.visible(actor, person)
    return ok({"grants": [g.to_dict(s.org.index) for g in found]})


async def create_grant(request: Request) -> JSONResponse:
    s, actor = await current_actor(request)
    body = await json_body(request, NewGrant)
    g = await s.grants.grant(actor, body.person_id, body.unit, parse_perms(body.perms))
    return ok(g.to_dict(s.org.index), status=201)


async def revoke_grant(request: Request) -> JSONResponse:
    s, actor = await current_actor(request)
    g = await s.grants.revoke(actor, int(request.path_params["grant_id"]))
    return ok({**g.to_dict(s.org.index), "revoked": True})


def _time(request: Request, name: str) -> datetime | None:
    raw = str_param(request, name, max_len=40)
    if not raw:
        return None
    try:
        at = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise BadRequest(f"{name} must be ISO 8601 with a time zone", data={"field": name}) from exc
    if at.tzinfo is None:
        raise BadRequest(f"{name} must carry a time zone", data={"field": name})
    return at


async def audit_log(request: Request) -> JSONResponse:
    """Audit entries newest first, by actor, unit subtree, time and action (``audit`` grant)."""
    s, actor = await current_actor(request)
    idx = s.org.index
    raw_unit = str_param(request, "unit", max_len=32)
    prefix: str | None = None
    allowed: tuple[str, ...] | None = None
    if raw_unit:
        u = idx.unit(unit_ref(raw_unit))
        await s.org.authorize(actor, Perm.AUDIT, u, "audit.read")
        prefix = unit_path_of(idx, u)[1]
    elif not holds_grant(idx, actor, Perm.AUDIT, None):
        subtrees = [grant_unit(idx, g) for g in actor.grants if Perm.AUDIT in g.perms]
        allowed = tuple(str(unit_path_of(idx, u)[1]) for u in subtrees if u is not None)
        if not allowed:
            await s.org.authorize(actor, Perm.AUDIT, None, "audit.read")  # raises, and is audited
            raise Forbidden("audit permission needed")  # pragma: no cover - authorize raised
    q = AuditQuery(
        actor_person_id=opt_int_param(request, "actor", 1, 2**63 - 1),
        unit_prefix=prefix,
        since=_time(request, "since"),
        until=_time(request, "until"),
        action=str_param(request, "action", max_len=64) or None,
        before_id=opt_int_param(request, "before", 1, 2**63 - 1),
        limit=int_param(request, "limit", 100, 1, 500),
        unit_prefixes=allowed,
    )
    items, more = await query(s.db, q)
    return ok({"entries": items, "next_before": more})


routes = [
    Route("/api/v1/me/grants", my_grants, methods=["GET"]),
    Route("/api/v1/admin/grants", list_grants, methods=["GET"]),
    Route("/api/v1/admin/grants", create_grant, methods=["POST"]),
    Route("/api/v1/admin/grants/{grant_id:int}/revoke", revoke_grant, methods=["POST"]),
    Route("/api/v1/audit", audit_log, methods=["GET"]),
]

#: Request body models, for the OpenAPI document.
bodies: dict[Callable[..., Any], type[BaseModel]] = {create_grant: NewGrant}
