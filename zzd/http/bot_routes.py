"""``/api/v1/bot/…``: the bot API for apps (docs/apps.md).

Who may call: an app with an app token (``client_credentials``); person
tokens are refused (wrong audience). Each endpoint names the scope it needs;
everything an app addresses or reads must lie in its subtree (out of it:
403 ``out_of_scope`` for addressing, 404 for reads, as for unknown ids).
Every request counts against the app's rate limit (429 + ``Retry-After``).
Creates need an ``Idempotency-Key`` header: a retry gets the first answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from apps.idempotency import check_key
from apps.model import AppPrincipal, Scope
from messaging.attachments.errors import IncompleteUpload, UnsupportedType
from messaging.notices.model import validate_compose
from org_tree.selectors import parse_selector
from zzd.http.app_auth import current_app
from zzd.http.common import json_body
from zzd.http.contract import REPLAYED, BodyModel, Endpoints, Id, reply
from zzd.http.params import aware_time, unit_ref
from zzd.http.schemas.apps import BotMe, BotNoticeView, BotPosted, BotUnit, CheckedIn
from zzd.http.schemas.notices import Progress, Sent
from zzd.http.schemas.org import Preview as PreviewAnswer
from zzd.http.schemas.tasks import ReportView, TaskDetail, TasksMade, TaskView
from zzd.http.task_routes import DueAt
from zzd.http.upload_routes import _DOWNLOAD_DOC, _UPLOAD_DOC, SHA256_HEADER, Uploaded, _content_length, file_response

__all__ = ["routes"]

api = Endpoints(tag="bot", prefix="/api/v1/bot")

SelectorIn = dict[str, Any] | Annotated[str, StringConstraints(min_length=1, max_length=4000)]

if TYPE_CHECKING:
    from zzd.services import Services


class BotNotice(BodyModel):
    selector: SelectorIn
    title: Annotated[str, StringConstraints(max_length=200)]
    body: Annotated[str, StringConstraints(max_length=20_000)] = ""
    #: ``urgent`` is a DING: reminded, then escalated out of band, as for people.
    priority: Literal["normal", "urgent"] = "normal"
    ack_required: bool = False
    deadline: Annotated[str, StringConstraints(max_length=40)] | None = None


class BotPreview(BodyModel):
    selector: SelectorIn


class CheckIn(BodyModel):
    person_id: Id
    position_id: Id | None = None
    reply: Annotated[str, StringConstraints(max_length=200)] | None = None


class BotTasks(BodyModel):
    selector: SelectorIn
    shared: bool = False
    category: Annotated[str, StringConstraints(min_length=1, max_length=32)] = "general"
    title: Annotated[str, StringConstraints(max_length=200)]
    body: Annotated[str, StringConstraints(max_length=10_000)] = ""
    #: 截止时间, as on ``POST /api/v1/tasks`` (docs/tasks.md): resolved by then; null, the category's windows.
    due_at: DueAt = None


class BotAction(BodyModel):
    action: Literal["accept", "start", "resolve", "verify", "close", "return", "reject", "reassign", "cancel",
                    "comment"]  # fmt: skip
    version: Annotated[int, Field(ge=1, le=2**31)]
    comment: Annotated[str, StringConstraints(max_length=2000)] = ""
    to_position: Id | None = None
    #: Digests of photos the app uploaded (``POST /api/v1/bot/uploads``), e.g. proof of resolution.
    attachments: list[Annotated[str, StringConstraints(min_length=1, max_length=80)]] = Field(
        default_factory=list, max_length=9
    )


class BotMessage(BodyModel):
    body: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]


async def _idempotent(
    request: Request,
    s: Services,
    p: AppPrincipal,
    body: BaseModel,
    fn: Callable[[str], Awaitable[tuple[int, Any]]],
    model: type[BaseModel],
) -> Response:
    """Run a create once per ``Idempotency-Key``; a retry gets the first status and body back.

    Every replay carries ``Idempotent-Replayed: true``: one answered from the stored record, and one
    whose first attempt committed but died before its answer was stored (the service then
    answers from its own ``client_msg_id`` record, ``duplicate: true``).
    """
    keys = request.headers.getlist("idempotency-key")
    # Two keys on one request: which one would a retry repeat? Refused like a malformed key.
    key = check_key(keys[0] if len(keys) == 1 else None)
    sig = f"{request.method} {request.url.path}"
    status, answer, replayed = await s.idempotency.run(
        p.app_id, key, sig, body.model_dump_json().encode(), lambda: fn(key)
    )
    resp = reply(model, answer, status=status)
    if replayed or (isinstance(answer, dict) and answer.get("duplicate") is True):
        resp.headers[REPLAYED] = "true"
    return resp


#: Creates name their retry key in a header (docs/apps.md).
_IDEMPOTENT: Mapping[str, Any] = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": True,
            "description": "the client's key for this create; a retry with the same key gets the first answer",
            "schema": {"type": "string", "minLength": 1, "maxLength": 64},
        }
    ]
}


def _id(request: Request, name: str) -> int:
    return int(request.path_params[name])


@api.route("GET", "/me", {200: BotMe}, errors=(429,))
async def me(request: Request) -> Response:
    """The calling app as the registry has it now (any valid app token)."""
    s, p = await current_app(request)
    idx = s.org_index.index
    data = p.app.to_dict()
    data["subtree_path"] = idx.unit_path(idx.unit(p.app.subtree_unit_id))
    return reply(BotMe, data)


@api.route("POST", "/audience/preview", {200: PreviewAnswer}, body=BotPreview, errors=(404, 429))
async def preview(request: Request) -> Response:
    """Who a selector reaches from the app's subtree: counts per child unit and level (nothing written)."""
    s, p = await current_app(request, Scope.NOTICE_SEND, Scope.TASK_CREATE)
    b = await json_body(request, BotPreview)
    return reply(PreviewAnswer, s.bot.preview(p, parse_selector(b.selector)))


@api.route("POST", "/notices", {200: Sent, 201: Sent}, body=BotNotice, errors=(404, 409, 429), extra=_IDEMPOTENT)
async def send_notice(request: Request) -> Response:
    """A work notice (DING when urgent) from the app to positions in its subtree."""
    s, p = await current_app(request, Scope.NOTICE_SEND)
    b = await json_body(request, BotNotice)

    async def go(key: str) -> tuple[int, Any]:
        compose = validate_compose(
            client_msg_id=key, title=b.title, body=b.body, selector=b.selector, priority=b.priority,
            ack_required=b.ack_required, deadline=aware_time(b.deadline, "deadline"), attachments=[],
        )  # fmt: skip
        return await s.bot.send_notice(p, compose)

    return await _idempotent(request, s, p, b, go, Sent)


@api.route("GET", "/notices/{notice_id:int}", {200: BotNoticeView}, errors=(429,))
async def get_notice(request: Request) -> Response:
    """One of the app's own notices with its progress (another sender's: 404)."""
    s, p = await current_app(request, Scope.NOTICE_SEND)
    return reply(BotNoticeView, await s.bot.notice(p, _id(request, "notice_id")))


@api.route("POST", "/notices/{notice_id:int}/check-ins", {200: CheckedIn}, body=CheckIn, errors=(409, 429))
async def check_in(request: Request) -> Response:
    """Acknowledge the app's own notice for an attendee (a check-in device); repeating changes nothing."""
    s, p = await current_app(request, Scope.NOTICE_SEND)
    b = await json_body(request, CheckIn)
    return reply(CheckedIn, await s.bot.check_in(p, _id(request, "notice_id"), b.person_id, b.position_id, b.reply))


@api.route("GET", "/notices/{notice_id:int}/progress", {200: Progress}, errors=(429,))
async def notice_progress(request: Request) -> Response:
    """The live count of one of the app's own notices: receipts, delivered, read, acknowledged (checked in)."""
    s, p = await current_app(request, Scope.NOTICE_SEND)
    return reply(Progress, await s.bot.progress(p, _id(request, "notice_id")))


@api.route("POST", "/tasks", {200: TasksMade, 201: TasksMade}, body=BotTasks, errors=(404, 409, 429), extra=_IDEMPOTENT)
async def create_tasks(request: Request) -> Response:
    """Tasks on positions of the app's subtree (one per position, or one shared)."""
    s, p = await current_app(request, Scope.TASK_CREATE)
    b = await json_body(request, BotTasks)

    async def go(key: str) -> tuple[int, Any]:
        made = await s.bot.create_tasks(
            p, selector=parse_selector(b.selector), shared=b.shared, category=b.category, title=b.title,
            body=b.body, key=key, due_at=aware_time(b.due_at, "due_at"),
        )  # fmt: skip
        return (200 if made.duplicate else 201), {"tasks": [t.summary() for t in made], "duplicate": made.duplicate}

    return await _idempotent(request, s, p, b, go, TasksMade)


@api.route("GET", "/tasks/{task_id:int}", {200: TaskDetail}, errors=(429,))
async def get_task(request: Request) -> Response:
    """A task the app is involved in or whose owner is in its subtree, with its history."""
    s, p = await current_app(request, Scope.TASK_CREATE, Scope.TASK_ACT, Scope.REPORT_READ)
    return reply(TaskDetail, await s.bot.task(p, _id(request, "task_id")))


@api.route("POST", "/tasks/{task_id:int}/actions", {200: TaskView}, body=BotAction, errors=(409, 429))
async def act(request: Request) -> Response:
    """Act on a task at the version the app saw: as its creator, or on the owner's side of a task owned in its
    subtree (accept, start, resolve …, the app recorded as acting for that position)."""
    s, p = await current_app(request, Scope.TASK_ACT)
    b = await json_body(request, BotAction)
    t = await s.bot.act(
        p, _id(request, "task_id"), b.action, b.version, comment=b.comment, to_position=b.to_position,
        attachments=b.attachments,
    )  # fmt: skip
    return reply(TaskView, t)


@api.route("GET", "/reports/{report_id:int}", {200: ReportView}, errors=(429,))
async def get_report(request: Request) -> Response:
    """A grid report filed in the app's subtree (elsewhere: 404)."""
    s, p = await current_app(request, Scope.REPORT_READ)
    return reply(ReportView, await s.bot.report(p, _id(request, "report_id")))


@api.route(
    "POST",
    "/conversations/{conversation_id:int}/messages",
    {200: BotPosted, 201: BotPosted},
    body=BotMessage,
    errors=(409, 429),
    extra=_IDEMPOTENT,
)
async def post_message(request: Request) -> Response:
    """A bot message into a conversation the app was added to (others: 404)."""
    s, p = await current_app(request, Scope.CHAT_BOT)
    b = await json_body(request, BotMessage)

    async def go(key: str) -> tuple[int, Any]:
        return await s.bot.post(p, _id(request, "conversation_id"), b.body, key)

    return await _idempotent(request, s, p, b, go, BotPosted)


@api.route("GET", "/org/units/{unit}", {200: BotUnit}, errors=(429,))
async def get_unit(request: Request) -> Response:
    """A unit of the app's subtree with its positions and children (code or ``#id``)."""
    s, p = await current_app(request, Scope.ORG_READ)
    return reply(BotUnit, s.bot.unit(p, unit_ref(str(request.path_params["unit"]))))


@api.route("POST", "/uploads", {200: Uploaded, 201: Uploaded}, errors=(400, 411, 413, 415, 429), extra=_UPLOAD_DOC)
async def upload(request: Request) -> Response:
    """Upload one photo as the app (``task:act``): raw image body, its SHA-256 in X-Content-SHA256.

    The digest can then be attached to a task action of the app.
    """
    s, p = await current_app(request, Scope.TASK_ACT)
    declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not declared.startswith("image/"):
        raise UnsupportedType("send the photo as the raw body with Content-Type image/…")
    length = _content_length(request)
    try:
        res = await s.attachments.upload(
            p.app.bot_person_id, request.stream(), sha256=request.headers.get(SHA256_HEADER), length=length
        )
    except ClientDisconnect:
        raise IncompleteUpload("the connection closed before the whole file arrived") from None
    return reply(Uploaded, res.to_dict(), status=201 if res.created else 200)


@api.route("GET", "/uploads/{digest}", {200: None, 304: None}, errors=(429,), extra=_DOWNLOAD_DOC)
async def download(request: Request) -> Response:
    """Download a file the app may see: a report photo of its subtree, a task attachment, its own upload.

    Needs ``report:read`` or ``task:act``; the report's photos need ``report:read``, a task's those of a
    task the app created or was handed; any other file answers 404, as one that does not exist.
    """
    s, p = await current_app(request, Scope.REPORT_READ, Scope.TASK_ACT)
    dl = await s.attachments.open_for(request.path_params["digest"], partial(s.bot.may_read_file, p))
    return file_response(request, dl)


routes = api.routes
