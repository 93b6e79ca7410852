"""``/api/v1/tasks``: create (to a selector, for a notice), act with a version, read, list, stats, categories.

Each transition names the task ``version`` the client saw; a stale one is a
409 ``stale_version`` and the client reloads. Errors are the domain's.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response

from kernel.audit import AuditEntry
from kernel.errors import BadRequest
from kernel.wire import ClientMsgId
from messaging.tasks.categories import validate_category
from messaging.tasks.lifecycle import CLIENT_ACTIONS, Action
from messaging.tasks.model import CreatedTasks
from messaging.tasks.stats import unit_stats
from org_tree.divisions import Level
from org_tree.grants import Perm
from org_tree.index import OrgIndex
from org_tree.jurisdiction import access_unit
from org_tree.selectors import parse_selector
from zzd.http.actors import current_actor, current_person
from zzd.http.common import authenticate, check_send_rate, json_body, services_of
from zzd.http.contract import BodyModel, Endpoints, Id, QueryModel, created, query, reply
from zzd.http.params import aware_time, unit_ref
from zzd.http.schemas.tasks import CategoryList, CategoryView, TaskDetail, TaskList, TasksMade, TaskStats, TaskView

__all__ = ["routes"]

api = Endpoints(tag="tasks")

Digest = Annotated[str, StringConstraints(min_length=1, max_length=64)]
CategoryKey = Annotated[str, StringConstraints(min_length=1, max_length=32)]
#: A create's 截止时间 as sent (read by ``aware_time``; ``check_due_at`` bounds it); null: the category's windows.
DueAt = Annotated[str, StringConstraints(min_length=1, max_length=40)] | None


class NewTasks(BodyModel):
    as_position: Id
    selector: dict[str, Any] | Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    #: false: one task per addressed position; true: one task any of them may accept.
    shared: bool = False
    category: CategoryKey = "general"
    title: Annotated[str, StringConstraints(max_length=200)]
    body: Annotated[str, StringConstraints(max_length=10_000)] = ""
    client_msg_id: ClientMsgId
    attachments: list[Digest] = Field(default_factory=list, max_length=9)
    #: 截止时间, ISO 8601 with a time zone, 1 minute to 366 days ahead: resolved by then (docs/tasks.md)
    due_at: DueAt = None


class NoticeTasks(BodyModel):
    as_position: Id | None = Field(None, description="the position acting: the notice's sender position, held")
    category: CategoryKey = "general"
    client_msg_id: ClientMsgId
    title: Annotated[str, StringConstraints(max_length=200)] | None = None
    #: false: one task per addressed position; true: one task any of them may accept
    shared: bool = False
    #: 截止时间, as for POST /api/v1/tasks: every task of the notice resolved by then
    due_at: DueAt = None


class TaskAction(BodyModel):
    as_position: Id
    #: what to do; which side may do what from which state: docs/tasks.md
    action: Literal["accept", "start", "resolve", "verify", "close", "return", "reject", "reassign", "cancel",
                    "comment"]  # fmt: skip
    #: The task version the client last saw (409 ``stale_version`` if it moved on).
    version: Annotated[int, Field(ge=1, le=2**31)]
    #: kept in the task's history; a comment action needs it (or attachments): empty, 400 invalid_text
    comment: Annotated[str, StringConstraints(max_length=2000)] = ""
    attachments: list[Digest] = Field(default_factory=list, max_length=9)
    #: For ``reassign``: the new owner position (within the actor's jurisdiction); beside any other action: 400.
    to_position: Id | None = None


class CategoryBody(BodyModel):
    """A category's rules (the key is the URL's; a ``key`` in the body must match it)."""

    key: CategoryKey | None = None
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    accept_within: Annotated[int, Field(ge=1, le=365 * 86400, description="seconds to accept")]
    resolve_within: Annotated[int, Field(ge=1, le=365 * 86400, description="seconds to resolve once accepted")]
    escalation: Literal["same_role_up", "head_above"]
    ding: bool = False
    route_role: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    route_level: Literal["province", "city", "county", "township", "village", "grid"] | None = None
    max_escalations: Annotated[int, Field(ge=0, le=10)] = 5


class ListQuery(QueryModel):
    side: Literal["owner", "creator"] = Field("owner", description="owner: owned or offered; creator: created")
    state: Literal["created", "accepted", "in_progress", "resolved", "verified", "closed", "cancelled"] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class StatsQuery(QueryModel):
    unit: Annotated[str, StringConstraints(min_length=1, max_length=32)] = Field(description="unit code or #id")
    category: CategoryKey | None = None
    since: Annotated[str, StringConstraints(max_length=40)] | None = Field(
        None, description="ISO 8601 with a time zone: only tasks created since"
    )


#: A create's answers: 201 made, 200 a retry of one already made (``Idempotent-Replayed: true``).
_MADE = {200: TasksMade, 201: TasksMade}


@api.route("POST", "/api/v1/tasks", _MADE, body=NewTasks, errors=(404, 429))
async def create(request: Request) -> Response:
    """Tasks to the positions a selector names; acknowledged after they commit."""
    s, claims = await current_person(request)
    b = await json_body(request, NewTasks)
    check_send_rate(s, claims.person_id, "tasks")
    made = await s.tasks.create(
        claims.person_id, b.as_position, selector=parse_selector(b.selector), shared=b.shared,
        category=b.category, title=b.title, body=b.body, client_msg_id=b.client_msg_id, attachments=b.attachments,
        due_at=aware_time(b.due_at, "due_at"),
    )  # fmt: skip
    return created(TasksMade, _made(made), duplicate=made.duplicate)


def _made(made: CreatedTasks) -> dict[str, Any]:
    return {"tasks": [t.summary() for t in made], "duplicate": made.duplicate}


@api.route("GET", "/api/v1/tasks", {200: TaskList}, query=ListQuery)
async def list_tasks(request: Request) -> Response:
    """Tasks the caller's positions own or are offered (``side=owner``), or created (``side=creator``)."""
    s, actor = await current_actor(request)
    q = query(request, ListQuery)
    found = await s.tasks.list_for(actor.position_ids, side=q.side, state=q.state, limit=q.limit)
    return reply(TaskList, {"tasks": found})


@api.route("GET", "/api/v1/tasks/stats", {200: TaskStats}, query=StatsQuery, errors=(404,))
async def stats(request: Request) -> Response:
    """p50/p90 seconds to accept, resolve and close under ``unit`` (per category and child unit)."""
    s, actor = await current_actor(request)
    q = query(request, StatsQuery)
    index = s.org_index.index
    # In a jurisdiction: a grid worker's own grid, not (as their directory reads) the province above.
    u = access_unit(index, actor, unit_ref(q.unit), private=True, above=False)
    category, since = q.category, aware_time(q.since or None, "since")
    async with s.db.read() as conn:
        return reply(TaskStats, await unit_stats(conn, index, u, category=category, since=since))


@api.route("GET", "/api/v1/tasks/categories", {200: CategoryList})
async def list_categories(request: Request) -> Response:
    """Task categories with their deadlines, escalation and routing."""
    s = services_of(request)
    await authenticate(request)
    return reply(CategoryList, {"categories": await s.tasks.categories()})


def _check_route(index: OrgIndex, role: str, level: str) -> None:
    """Refuse a route to a role the tree has no position of at ``level``.

    Why: stored, every report of the category answered 404 "no … position above this grid"
    until someone noticed (江西 audit: ``village_director`` routed at county level).

    Raises:
        NotFound: a role the tree does not know.
        BadRequest: the role has no positions at that level (``field: route_level``).
    """
    info = index.roles[index.role_id(role)]
    depth = int(Level.parse(level))
    if depth not in info.levels:
        levels = [Level(x).label for x in sorted(info.levels)]
        raise BadRequest(
            f"role {role} has no positions at {level} level (it has: {', '.join(levels) or 'none'})",
            data={"field": "route_level", "role": role, "levels": levels},
        )


@api.route("PUT", "/api/v1/tasks/categories/{key:str}", {200: CategoryView}, body=CategoryBody, errors=(404,))
async def put_category(request: Request) -> Response:
    """Create or replace a category's deadlines, escalation and routing (``settings`` grant, whole tree)."""
    s, actor = await current_actor(request)
    key = str(request.path_params["key"])
    await s.org.authorize(actor, Perm.SETTINGS, None, "settings.category_put", key=key[:64])
    raw = (await json_body(request, CategoryBody)).model_dump(exclude_unset=True)
    if raw.get("key", key) != key:
        raise BadRequest("the body's key differs from the URL's", data={"field": "key"})
    cat = validate_category({**raw, "key": key})
    if cat.route_role is not None and cat.route_level is not None:
        _check_route(s.org_index.index, cat.route_role, cat.route_level)
    entry = AuditEntry("settings.category_put", actor.person_id, detail={"key": key, "category": cat.to_dict()})
    return reply(CategoryView, await s.tasks.put_category(cat, entry))


@api.route("GET", "/api/v1/tasks/{task_id:int}", {200: TaskDetail})
async def get(request: Request) -> Response:
    """A task with its body and full history (involved persons, and auditors over the owner's unit)."""
    s, actor = await current_actor(request)
    return reply(TaskDetail, await s.tasks.get(actor.person_id, int(request.path_params["task_id"]), overseer=actor))


@api.route("POST", "/api/v1/tasks/{task_id:int}/actions", {200: TaskView}, body=TaskAction, errors=(409,))
async def act(request: Request) -> Response:
    """Move a task on (accept, start, resolve, verify, close, return, reject, reassign, cancel, comment)."""
    s, claims = await current_person(request)
    b = await json_body(request, TaskAction)
    action = Action(b.action)
    assert action in CLIENT_ACTIONS
    t = await s.tasks.act(
        claims.person_id, b.as_position, int(request.path_params["task_id"]), action, b.version,
        comment=b.comment, attachments=b.attachments, to_position=b.to_position,
    )  # fmt: skip
    return reply(TaskView, t.summary())


@api.route("POST", "/api/v1/notices/{notice_id:int}/tasks", _MADE, body=NoticeTasks, errors=(409, 429))
async def from_notice(request: Request) -> Response:
    """Tasks for every position a notice addressed (the notice's sender side only)."""
    s, claims = await current_person(request)
    b = await json_body(request, NoticeTasks)
    check_send_rate(s, claims.person_id, "tasks")
    made = await s.tasks.create_for_notice(
        claims.person_id, int(request.path_params["notice_id"]), category=b.category,
        client_msg_id=b.client_msg_id, title=b.title, shared=b.shared, as_position=b.as_position,
        due_at=aware_time(b.due_at, "due_at"),
    )  # fmt: skip
    return created(TasksMade, _made(made), duplicate=made.duplicate)


routes = api.routes
