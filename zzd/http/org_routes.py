"""``/api/v1/org``: units, roles, positions, assignments, handover, 找岗位 search, preview, resolution.

Every endpoint goes through ``OrgService``, which applies the jurisdiction
checks; this module only translates HTTP to calls and results to JSON.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response

from kernel.errors import BadRequest
from org_tree.selectors import parse_selector
from zzd.http.actors import current_actor
from zzd.http.common import json_body
from zzd.http.contract import BodyModel, Endpoints, Id, QueryModel, UnitRef, query, reply
from zzd.http.params import unit_ref
from zzd.http.schemas.org import (
    AssignmentList,
    AssignmentView,
    Children,
    DirectoryPage,
    EditPreview,
    Handed,
    Merged,
    MyPositions,
    OrgStats,
    PersonCard,
    PersonView,
    PositionRetired,
    PositionView,
    Preview,
    Resolved,
    RoleList,
    RoleView,
    UnitRetired,
    UnitView,
)

__all__ = ["routes"]

api = Endpoints(tag="org")

MAX_RESOLVE_PAGE = 1000


class NewUnit(BodyModel):
    #: The parent unit: its code (330802), "#17" or its id as a number.
    parent: UnitRef
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    #: 1-32 ASCII letters and digits, so selectors can name it; default "<parent code>x<NNN>".
    code: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z]{1,32}$")] | None = None


class MoveUnit(BodyModel):
    #: The new parent, one level above: its code (330802), "#17" or its id as a number.
    parent: UnitRef


class RenameUnit(BodyModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]


class Retire(BodyModel):
    #: The position that takes over open work (default: the same role above, else the head above).
    successor: Id | None = None


class MergeUnit(BodyModel):
    #: The unit of the same level that takes the children and positions: code, "#17" or id.
    into: UnitRef


class EditPreviewRequest(BodyModel):
    action: Literal["move", "merge", "retire"]
    #: The new parent (move) or the unit to merge into (merge); absent for retire.
    target: UnitRef | None = None


class ChangeRole(BodyModel):
    #: One word, without spaces or the characters selectors use as operators (docs/selectors.md, ROLE), so
    #: selectors name the role by it as by its key.
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    jurisdiction: Literal["subtree", "chain", "unit", "none"] | None = None


class ChangePerson(BodyModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    #: Digits, with + - or spaces; "" removes it; null (or absent) leaves it as it is.
    phone: Annotated[str, StringConstraints(max_length=32)] | None = None
    disabled: bool | None = Field(
        default=None, description="true: no more sign-ins, every session ends and its sockets close (4503)"
    )


class NewPosition(BodyModel):
    #: Its unit: the code (330802), "#17" or the id as a number.
    unit: UnitRef
    role: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    title: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = Field(
        default=None,
        description="e.g. 副书记 for a second position of a role in a unit: shown as the position's title "
        "(GET /api/v1/org/positions/{id}, 找岗位 hits, GET /api/v1/org/persons/{id})",
    )


class Assign(BodyModel):
    person_id: Id
    kind: Literal["primary", "deputy", "acting"] = "primary"


class Handover(BodyModel):
    person_id: Id


class SelectorRequest(BodyModel):
    #: The position the caller acts as (jurisdiction is that position's).
    as_position: Id
    #: Selector in JSON form, or its compact text form (docs/selectors.md).
    selector: dict[str, Any] | Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    #: the unit whose child units by_child counts (default: the audience's lowest common unit)
    under: UnitRef | None = None


class NewRole(BodyModel):
    key: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    #: One word, without spaces or the characters selectors use as operators (docs/selectors.md, ROLE), so
    #: selectors name the role by it as by its key.
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    #: Level names (``village``) or depths (``5``) the role exists at.
    levels: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=16)] | int], Field(min_length=1, max_length=6)
    ]
    #: Which units a position of the role may address (docs/selectors.md, "Jurisdiction").
    jurisdiction: Literal["subtree", "chain", "unit", "none"] = "subtree"
    #: The head of its unit: head(pos:N) and the unit_head vacancy fallback name it.
    is_head: bool = False
    #: A pool position: several primary holders, any of whom may take work offered to it.
    pool: bool = False
    #: Recorded with the role only: a division import gives positions to the shipped catalog's
    #: auto roles (org_tree/roles.toml), so a role added here gets positions through
    #: POST /api/v1/org/positions, whatever this says.
    auto: bool = False


class PageQuery(QueryModel):
    offset: Annotated[int, Field(ge=0, le=10**6)] = 0
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class SearchQuery(QueryModel):
    q: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="role, unit or holder name, in characters, pinyin or initials; words narrow each other"
    )
    offset: Annotated[int, Field(ge=0, le=10**6)] = 0
    limit: Annotated[int, Field(ge=1, le=100)] = 20


class ResolveQuery(QueryModel):
    offset: Annotated[int, Field(ge=0, le=10**8)] = 0
    limit: Annotated[int, Field(ge=1, le=MAX_RESOLVE_PAGE)] = 200


@api.route("POST", "/api/v1/org/units", {201: UnitView}, body=NewUnit, errors=(404, 409))
async def create_unit(request: Request) -> Response:
    """Create a unit under ``parent`` (``org`` grant over the parent)."""
    s, actor = await current_actor(request)
    body = await json_body(request, NewUnit)
    return reply(UnitView, await s.org.create_unit(actor, body.parent, body.name, code=body.code), status=201)


@api.route("GET", "/api/v1/org/units/{ref}", {200: UnitView})
async def get_unit(request: Request) -> Response:
    """A unit with its path and positions (public within the signed-in directory)."""
    s, actor = await current_actor(request)
    return reply(UnitView, s.org.get_unit(actor, unit_ref(request.path_params["ref"])))


@api.route("GET", "/api/v1/org/units/{ref}/children", {200: Children}, query=PageQuery)
async def list_children(request: Request) -> Response:
    """A unit's child units, paged."""
    s, actor = await current_actor(request)
    q = query(request, PageQuery)
    kids = s.org.list_children(actor, unit_ref(request.path_params["ref"]), offset=q.offset, limit=q.limit)
    return reply(Children, {"units": kids, "offset": q.offset})


@api.route("PATCH", "/api/v1/org/units/{ref}", {200: UnitView}, body=RenameUnit, errors=(404,))
async def rename_unit(request: Request) -> Response:
    """Rename a unit (``org`` grant over it); search finds it by its new name at once."""
    s, actor = await current_actor(request)
    body = await json_body(request, RenameUnit)
    return reply(UnitView, await s.org.rename_unit(actor, unit_ref(request.path_params["ref"]), body.name))


@api.route("POST", "/api/v1/org/units/{ref}/move", {200: UnitView}, body=MoveUnit, errors=(409,))
async def move_unit(request: Request) -> Response:
    """Move a unit under another parent (``org`` grant over both)."""
    s, actor = await current_actor(request)
    body = await json_body(request, MoveUnit)
    return reply(UnitView, await s.org.move_unit(actor, unit_ref(request.path_params["ref"]), body.parent))


@api.route("POST", "/api/v1/org/units/{ref}/merge", {200: Merged}, body=MergeUnit, errors=(404, 409))
async def merge_unit(request: Request) -> Response:
    """Merge a unit into another of its level (``org`` grant over both): children and positions move."""
    s, actor = await current_actor(request)
    body = await json_body(request, MergeUnit)
    return reply(Merged, await s.org.structure.merge_units(actor, unit_ref(request.path_params["ref"]), body.into))


@api.route("POST", "/api/v1/org/units/{ref}/retire", {200: UnitRetired}, body=Retire, errors=(404, 409))
async def retire_unit(request: Request) -> Response:
    """Retire a unit with its subtree (``org`` grant); open tasks of its positions go to successors."""
    s, actor = await current_actor(request)
    body = await json_body(request, Retire)
    out = await s.org.structure.retire_unit(actor, unit_ref(request.path_params["ref"]), successor=body.successor)
    out["successors"] = {str(k): v for k, v in out["successors"].items()}
    return reply(UnitRetired, out)


@api.route("POST", "/api/v1/org/units/{ref}/preview", {200: EditPreview}, body=EditPreviewRequest, errors=(404, 409))
async def preview_edit(request: Request) -> Response:
    """What a move, merge or retirement would touch, with the same grants as the edit itself."""
    s, actor = await current_actor(request)
    body = await json_body(request, EditPreviewRequest)
    if body.action != "retire" and body.target is None:
        raise BadRequest("target is required for a move or a merge", data={"field": "target"})
    ref = unit_ref(request.path_params["ref"])
    return reply(EditPreview, await s.org.structure.preview(actor, body.action, ref, body.target))


@api.route("PATCH", "/api/v1/org/roles/{role}", {200: RoleView}, body=ChangeRole, errors=(404, 409))
async def change_role(request: Request) -> Response:
    """Rename a role or change its jurisdiction rule (``roles`` grant over the whole tree)."""
    s, actor = await current_actor(request)
    body = await json_body(request, ChangeRole)
    ref = request.path_params["role"]
    role = await s.org.update_role(actor, ref, name=body.name, jurisdiction=body.jurisdiction)
    return reply(RoleView, role)


@api.route("GET", "/api/v1/org/persons/{person_id:int}", {200: PersonCard}, errors=(404,))
async def get_person(request: Request) -> Response:
    """One person (a chat sender, a group member) with the positions they hold; as public as 找岗位."""
    s, actor = await current_actor(request)
    return reply(PersonCard, await s.org.person(actor, int(request.path_params["person_id"])))


@api.route("PATCH", "/api/v1/org/persons/{person_id:int}", {200: PersonView}, body=ChangePerson, errors=(404,))
async def change_person(request: Request) -> Response:
    """Change a person's name, phone or ``disabled`` (``assignments`` over all their positions' units and grants)."""
    s, actor = await current_actor(request)
    body = await json_body(request, ChangePerson)
    pid = int(request.path_params["person_id"])
    changed = await s.org.change_person(actor, pid, name=body.name, phone=body.phone, disabled=body.disabled)
    if changed["disabled"]:  # every process closes their sockets now (the safety poll would, later)
        await s.announce({"t": "disable_person", "pid": pid})
    return reply(PersonView, changed)


@api.route(
    "POST", "/api/v1/org/positions/{position_id:int}/retire", {200: PositionRetired}, body=Retire, errors=(404, 409)
)
async def retire_position(request: Request) -> Response:
    """Retire a position (``org`` grant): its assignments end, its open tasks go to the successor."""
    s, actor = await current_actor(request)
    body = await json_body(request, Retire)
    pid = int(request.path_params["position_id"])
    return reply(PositionRetired, await s.org.structure.retire_position(actor, pid, successor=body.successor))


@api.route("GET", "/api/v1/org/roles", {200: RoleList})
async def list_roles(request: Request) -> Response:
    """The role catalog."""
    s, _ = await current_actor(request)
    return reply(RoleList, {"roles": s.org.list_roles()})


@api.route("POST", "/api/v1/org/roles", {201: RoleView}, body=NewRole, errors=(409,))
async def create_role(request: Request) -> Response:
    """Add a role to the catalog (``roles`` grant over the whole tree)."""
    s, actor = await current_actor(request)
    body = await json_body(request, NewRole)
    return reply(RoleView, await s.org.create_role(actor, body.model_dump()), status=201)


@api.route("POST", "/api/v1/org/positions", {201: PositionView}, body=NewPosition, errors=(404, 409))
async def create_position(request: Request) -> Response:
    """Create a position of ``role`` in ``unit`` (``org`` grant over the unit)."""
    s, actor = await current_actor(request)
    body = await json_body(request, NewPosition)
    return reply(PositionView, await s.org.create_position(actor, body.unit, body.role, title=body.title), status=201)


@api.route("GET", "/api/v1/org/positions/{position_id:int}", {200: PositionView})
async def get_position(request: Request) -> Response:
    """A position with its holders, deputies and acting holders."""
    s, actor = await current_actor(request)
    return reply(PositionView, s.org.get_position(actor, int(request.path_params["position_id"])))


@api.route("GET", "/api/v1/org/positions/{position_id:int}/history", {200: AssignmentList})
async def position_history(request: Request) -> Response:
    """Every assignment of a position, oldest first (within the caller's scopes)."""
    s, actor = await current_actor(request)
    rows = await s.org.history(actor, int(request.path_params["position_id"]))
    return reply(AssignmentList, {"assignments": rows})


@api.route(
    "POST", "/api/v1/org/positions/{position_id:int}/assignments", {201: AssignmentView}, body=Assign, errors=(409,)
)
async def assign(request: Request) -> Response:
    """Assign a person to a position as primary, deputy or acting (``assignments`` grant)."""
    s, actor = await current_actor(request)
    body = await json_body(request, Assign)
    a = await s.org.assign(actor, int(request.path_params["position_id"]), body.person_id, kind=body.kind)
    return reply(AssignmentView, a, status=201)


@api.route("POST", "/api/v1/org/positions/{position_id:int}/handover", {200: Handed}, body=Handover, errors=(409,))
async def handover(request: Request) -> Response:
    """Hand a position to another person; its unread notices follow it."""
    s, actor = await current_actor(request)
    body = await json_body(request, Handover)
    # The previous holders and the notices passed on are the handover's own, read in its transaction.
    return reply(Handed, await s.org.handover(actor, int(request.path_params["position_id"]), body.person_id))


@api.route("POST", "/api/v1/org/assignments/{assignment_id:int}/end", {200: AssignmentView}, errors=(409,))
async def end_assignment(request: Request) -> Response:
    """End an assignment (``assignments`` grant)."""
    s, actor = await current_actor(request)
    return reply(AssignmentView, await s.org.end_assignment(actor, int(request.path_params["assignment_id"])))


@api.route("GET", "/api/v1/org/search", {200: DirectoryPage}, query=SearchQuery)
async def search(request: Request) -> Response:
    """找岗位: positions by role, unit (also pinyin / initials) or holder name."""
    s, actor = await current_actor(request)
    q = query(request, SearchQuery)
    return reply(DirectoryPage, await s.org.search(actor, q.q, offset=q.offset, limit=q.limit))


@api.route("POST", "/api/v1/org/preview", {200: Preview}, body=SelectorRequest, errors=(404,), tag="selectors")
async def preview(request: Request) -> Response:
    """What a selector reaches, per child unit and per level, before anything is sent."""
    s, actor = await current_actor(request)
    body = await json_body(request, SelectorRequest)
    sel = parse_selector(body.selector)
    return reply(Preview, s.org.preview(actor, body.as_position, sel, under=body.under))


@api.route(
    "POST",
    "/api/v1/org/resolve",
    {200: Resolved},
    body=SelectorRequest,
    query=ResolveQuery,
    errors=(404,),
    tag="selectors",
)
async def resolve(request: Request) -> Response:
    """The positions and current holders a selector reaches (paged by person)."""
    s, actor = await current_actor(request)
    body = await json_body(request, SelectorRequest)
    q = query(request, ResolveQuery)
    offset, limit = q.offset, q.limit
    aud = s.org.resolve(actor, body.as_position, parse_selector(body.selector))
    people = sorted(aud.by_person.items())
    return reply(
        Resolved,
        {
            "version": aud.version,
            "positions": len(aud.positions),
            "persons": len(people),
            "receivers": [{"person_id": p, "via_positions": list(v)} for p, v in people[offset : offset + limit]],
            "fallbacks": aud.fallbacks[:100],
            "offset": offset,
        },
    )


@api.route("GET", "/api/v1/org/stats", {200: OrgStats})
async def stats(request: Request) -> Response:
    """Units per level and the numbers of positions, assignments and persons."""
    s, _ = await current_actor(request)
    return reply(OrgStats, await s.org.stats())


@api.route("GET", "/api/v1/me/positions", {200: MyPositions})
async def my_positions(request: Request) -> Response:
    """The caller's positions and admin grants."""
    s, actor = await current_actor(request)
    views = [s.org.get_position(actor, pid) for pid in actor.position_ids]
    grants = [g.to_dict(s.org.index) for g in actor.grants]
    return reply(MyPositions, {"person_id": actor.person_id, "positions": views, "grants": grants})


routes = api.routes
