"""``/api/v1/org``: units, roles, positions, assignments, handover, 找岗位 search, preview, resolution.

Every endpoint goes through ``OrgService``, which applies the jurisdiction
checks; this module only translates HTTP to calls and results to JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kernel.errors import BadRequest
from org_tree.selectors import parse_selector
from zzd.http.actors import current_actor
from zzd.http.common import json_body, json_object, ok
from zzd.http.params import int_param, str_param, unit_ref

__all__ = ["routes"]

UnitRef = int | Annotated[str, StringConstraints(min_length=1, max_length=32)]
Id = Annotated[int, Field(ge=1, le=2**53)]
MAX_RESOLVE_PAGE = 1000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class NewUnit(_Body):
    parent: UnitRef
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    code: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None


class MoveUnit(_Body):
    parent: UnitRef


class NewPosition(_Body):
    unit: UnitRef
    role: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    title: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None


class Assign(_Body):
    person_id: Id
    kind: Literal["primary", "deputy", "acting"] = "primary"


class Handover(_Body):
    person_id: Id


class SelectorRequest(_Body):
    #: The position the caller acts as (jurisdiction is that position's).
    as_position: Id
    #: Selector in JSON form, or its compact text form (docs/selectors.md).
    selector: dict[str, Any] | Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    under: UnitRef | None = None


def _dict(obj: Any) -> dict[str, Any]:
    return asdict(obj)


async def get_unit(request: Request) -> JSONResponse:
    """A unit with its path and positions (public within the signed-in directory)."""
    s, actor = await current_actor(request)
    return ok(_dict(s.org.get_unit(actor, unit_ref(request.path_params["ref"]))))


async def list_children(request: Request) -> JSONResponse:
    s, actor = await current_actor(request)
    offset = int_param(request, "offset", 0, 0, 10**6)
    limit = int_param(request, "limit", 50, 1, 200)
    kids = s.org.list_children(actor, unit_ref(request.path_params["ref"]), offset=offset, limit=limit)
    return ok({"units": [_dict(u) for u in kids], "offset": offset})


async def create_unit(request: Request) -> JSONResponse:
    s, actor = await current_actor(request)
    body = await json_body(request, NewUnit)
    return ok(_dict(await s.org.create_unit(actor, body.parent, body.name, code=body.code)), status=201)


async def move_unit(request: Request) -> JSONResponse:
    s, actor = await current_actor(request)
    body = await json_body(request, MoveUnit)
    return ok(_dict(await s.org.move_unit(actor, unit_ref(request.path_params["ref"]), body.parent)))


async def list_roles(request: Request) -> JSONResponse:
    s, _ = await current_actor(request)
    return ok({"roles": [_dict(r) for r in s.org.list_roles()]})


async def create_role(request: Request) -> JSONResponse:
    s, actor = await current_actor(request)
    return ok(_dict(await s.org.create_role(actor, await json_object(request))), status=201)


async def create_position(request: Request) -> JSONResponse:
    s, actor = await current_actor(request)
    body = await json_body(request, NewPosition)
    return ok(_dict(await s.org.create_position(actor, body.unit, body.role, title=body.title)), status=201)


async def get_position(request: Request) -> JSONResponse:
    s, actor = await current_actor(request)
    return ok(_dict(s.org.get_position(actor, int(request.path_params["position_id"]))))


async def position_history(request: Request) -> JSONResponse:
    s, actor = await current_actor(request)
    rows = await s.org.history(actor, int(request.path_params["position_id"]))
    return ok({"assignments": [_assignment(a) for a in rows]})


async def assign(request: Request) -> JSONResponse:
    s, actor = await current_actor(request)
    body = await json_body(request, Assign)
    a = await s.org.assign(actor, int(request.path_params["position_id"]), body.person_id, kind=body.kind)
    return ok(_assignment(a), status=201)


async def end_assignment(request: Request) -> JSONResponse:
    s, actor = await current_actor(request)
    return ok(_assignment(await s.org.end_assignment(actor, int(request.path_params["assignment_id"]))))


async def handover(request: Request) -> JSONResponse:
    """Hand a position to another person; its unread notices follow it."""
    s, actor = await current_actor(request)
    body = await json_body(request, Handover)
    pid = int(request.path_params["position_id"])
    before = s.org.get_position(actor, pid).holders
    a = await s.org.handover(actor, pid, body.person_id)
    moved = 0
    for old in before:
        if old != body.person_id:
            moved += await s.notices.transfer_unread(pid, old, body.person_id)
    return ok({**_assignment(a), "previous_holders": list(before), "unread_notices_moved": moved})


async def search(request: Request) -> JSONResponse:
    """找岗位: positions by role, unit (also pinyin / initials) or holder name."""
    s, actor = await current_actor(request)
    q = str_param(request, "q", max_len=100)
    if not q:
        raise BadRequest("q is required", data={"field": "q"})
    page = await s.org.search(
        actor, q, offset=int_param(request, "offset", 0, 0, 10**6), limit=int_param(request, "limit", 20, 1, 100)
    )
    return ok(_dict(page))


async def preview(request: Request) -> JSONResponse:
    """What a selector reaches, per child unit and per level, before anything is sent."""
    s, actor = await current_actor(request)
    body = await json_body(request, SelectorRequest)
    sel = parse_selector(body.selector)
    return ok(_dict(s.org.preview(actor, body.as_position, sel, under=body.under)))


async def resolve(request: Request) -> JSONResponse:
    """The positions and current holders a selector reaches (paged by person)."""
    s, actor = await current_actor(request)
    body = await json_body(request, SelectorRequest)
    offset = int_param(request, "offset", 0, 0, 10**8)
    limit = int_param(request, "limit", 200, 1, MAX_RESOLVE_PAGE)
    aud = s.org.resolve(actor, body.as_position, parse_selector(body.selector))
    people = sorted(aud.by_person.items())
    return ok(
        {
            "version": aud.version,
            "positions": len(aud.positions),
            "persons": len(people),
            "receivers": [{"person_id": p, "via_positions": list(v)} for p, v in people[offset : offset + limit]],
            "fallbacks": [asdict(f) for f in aud.fallbacks[:100]],
            "offset": offset,
        }
    )


async def my_positions(request: Request) -> JSONResponse:
    s, actor = await current_actor(request)
    views = []
    for pid in actor.position_ids:
        v = s.org.get_position(actor, pid)
        views.append(_dict(v))
    grants = [g.to_dict(s.org.index) for g in actor.grants]
    return ok({"person_id": actor.person_id, "positions": views, "grants": grants})


async def stats(request: Request) -> JSONResponse:
    s, _ = await current_actor(request)
    return ok(await s.org.stats())


def _assignment(a: Any) -> dict[str, Any]:
    d = asdict(a)
    for k in ("start_at", "end_at"):
        if d.get(k) is not None:
            d[k] = d[k].isoformat().replace("+00:00", "Z")
    return d


routes = [
    Route("/api/v1/org/units", create_unit, methods=["POST"]),
    Route("/api/v1/org/units/{ref}", get_unit, methods=["GET"]),
    Route("/api/v1/org/units/{ref}/children", list_children, methods=["GET"]),
    Route("/api/v1/org/units/{ref}/move", move_unit, methods=["POST"]),
    Route("/api/v1/org/roles", list_roles, methods=["GET"]),
    Route("/api/v1/org/roles", create_role, methods=["POST"]),
    Route("/api/v1/org/positions", create_position, methods=["POST"]),
    Route("/api/v1/org/positions/{position_id:int}", get_position, methods=["GET"]),
    Route("/api/v1/org/positions/{position_id:int}/history", position_history, methods=["GET"]),
    Route("/api/v1/org/positions/{position_id:int}/assignments", assign, methods=["POST"]),
    Route("/api/v1/org/positions/{position_id:int}/handover", handover, methods=["POST"]),
    Route("/api/v1/org/assignments/{assignment_id:int}/end", end_assignment, methods=["POST"]),
    Route("/api/v1/org/search", search, methods=["GET"]),
    Route("/api/v1/org/preview", preview, methods=["POST"]),
    Route("/api/v1/org/resolve", resolve, methods=["POST"]),
    Route("/api/v1/org/stats", stats, methods=["GET"]),
    Route("/api/v1/me/positions", my_positions, methods=["GET"]),
]

#: Request body models, for the OpenAPI document.
bodies: dict[Callable[..., Any], type[BaseModel]] = {
    create_unit: NewUnit,
    move_unit: MoveUnit,
    create_position: NewPosition,
    assign: Assign,
    handover: Handover,
    preview: SelectorRequest,
    resolve: SelectorRequest,
}
