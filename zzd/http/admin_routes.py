"""``/api/v1/admin/grants`` and ``/api/v1/audit``: administrators and auditors (docs/admin.md).

Who may call what is decided by ``org_tree.grants`` (one place): listing
others' grants needs ``grants`` or ``audit`` somewhere, giving one needs
``grants`` plus every permission given over the unit, revoking needs the same
over the grant's unit, and reading the audit log needs ``audit`` over the
subtree asked for (without ``unit``: the subtrees the caller audits).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response

from kernel.audit import AuditQuery
from kernel.audit import query as audit_query
from kernel.errors import Forbidden
from org_tree.grants import Perm, grant_unit, holds_grant, parse_perms, unit_path_of
from zzd.http.actors import current_actor
from zzd.http.common import json_body
from zzd.http.contract import BodyModel, Endpoints, Id, QueryModel, UnitRef, query, reply
from zzd.http.params import aware_time, unit_ref
from zzd.http.schemas.admin import AuditPage, GrantList, GrantView, RevokedGrant

__all__ = ["routes"]

api = Endpoints(tag="admin")

PermName = Annotated[str, StringConstraints(min_length=1, max_length=16)]


class NewGrant(BodyModel):
    person_id: Id
    #: Unit whose subtree the grant covers: its id (number), code or ``"#id"``; ``null``: the whole tree.
    unit: UnitRef | None
    #: Permission names: org, assignments, roles, settings, apps, audit, grants.
    perms: Annotated[list[PermName], Field(min_length=1, max_length=7)]


class GrantsQuery(QueryModel):
    person_id: Annotated[int, Field(ge=1, le=2**53)] | None = Field(None, description="only this person's grants")


class AuditQueryParams(QueryModel):
    unit: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = Field(
        None, description="unit code or #id: entries about its subtree (default: every subtree the caller audits)"
    )
    actor: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = Field(None, description="person id who acted")
    since: Annotated[str, StringConstraints(max_length=40)] | None = Field(None, description="ISO 8601 with zone")
    until: Annotated[str, StringConstraints(max_length=40)] | None = Field(None, description="ISO 8601 with zone")
    # A dotted lower-case name, as every action is: a NUL reached PostgreSQL and answered 500 (江西 audit).
    action: Annotated[str, StringConstraints(max_length=64, pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")] | None = Field(
        None, description="e.g. org.handover"
    )
    before: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = Field(None, description="next_before of the last page")
    limit: Annotated[int, Field(ge=1, le=500)] = 100


@api.route("GET", "/api/v1/me/grants", {200: GrantList})
async def my_grants(request: Request) -> Response:
    """The caller's own grants (any signed-in person; empty for most)."""
    s, actor = await current_actor(request)
    return reply(GrantList, {"grants": [g.to_dict(s.org.index) for g in actor.grants]})


@api.route("GET", "/api/v1/admin/grants", {200: GrantList}, query=GrantsQuery)
async def list_grants(request: Request) -> Response:
    """Grants inside the subtrees where the caller holds ``grants`` or ``audit`` (plus their own)."""
    s, actor = await current_actor(request)
    await s.grants.require_some_admin(actor)
    found = await s.grants.visible(actor, query(request, GrantsQuery).person_id)
    return reply(GrantList, {"grants": [g.to_dict(s.org.index) for g in found]})


@api.route("POST", "/api/v1/admin/grants", {201: GrantView}, body=NewGrant, errors=(404, 409))
async def create_grant(request: Request) -> Response:
    """Give a person permissions over a unit's subtree (``grants`` plus every permission given)."""
    s, actor = await current_actor(request)
    body = await json_body(request, NewGrant)
    g = await s.grants.grant(actor, body.person_id, body.unit, parse_perms(body.perms))
    return reply(GrantView, g.to_dict(s.org.index), status=201)


@api.route("POST", "/api/v1/admin/grants/{grant_id:int}/revoke", {200: RevokedGrant}, errors=(409,))
async def revoke_grant(request: Request) -> Response:
    """Revoke a grant (``grants`` over the grant's unit)."""
    s, actor = await current_actor(request)
    g = await s.grants.revoke(actor, int(request.path_params["grant_id"]))
    return reply(RevokedGrant, {**g.to_dict(s.org.index), "revoked": True})


@api.route("GET", "/api/v1/audit", {200: AuditPage}, query=AuditQueryParams, errors=(404,))
async def audit_log(request: Request) -> Response:
    """Audit entries newest first, by actor, unit subtree, time and action (``audit`` grant)."""
    s, actor = await current_actor(request)
    idx = s.org.index
    p = query(request, AuditQueryParams)
    raw_unit = p.unit
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
        actor_person_id=p.actor,
        unit_prefix=prefix,
        since=aware_time(p.since or None, "since"),
        until=aware_time(p.until or None, "until"),
        action=p.action or None,
        before_id=p.before,
        limit=p.limit,
        unit_prefixes=allowed,
    )
    items, more = await audit_query(s.db, q)
    if not holds_grant(idx, actor, Perm.AUDIT, None):
        audited = [grant_unit(idx, g) for g in actor.grants if Perm.AUDIT in g.perms]
        _hide_targets(items, tuple(str(unit_path_of(idx, u)[1]) for u in audited if u is not None))
    return reply(AuditPage, {"entries": items, "next_before": more})


def _hide_targets(items: list[dict[str, Any]], audited: tuple[str, ...]) -> None:
    """Leave out the target unit of a ``hidden`` refusal to an auditor who sees it only as the actor's side.

    Such a refusal (revoking a grant, ending an assignment, changing a person, outside one's grant) was
    answered 404, as for an unknown id, so that ids cannot be probed; an unknown id is recorded alike, with
    no unit. Seen through ``actor_unit_ids`` alone, the entry must say no more than that answer did:
    otherwise an administrator who also audits their own county reads back, from the log, which ids exist
    and in which county each lies. The target's own auditors (``audited`` covers its unit) see it whole.
    """
    for item in items:
        path = item["unit_path"]
        if item["detail"].get("hidden") is True and path is not None and not path.startswith(audited):
            item["unit_id"] = item["unit_path"] = None


routes = api.routes
