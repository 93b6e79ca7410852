"""``/api/v1/notices``: compose, preview, send, receipts, progress roll-up, pending lists, recall."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response

from kernel.wire import ClientMsgId
from messaging.notices.model import validate_compose
from org_tree.selectors import parse_selector
from zzd.http.actors import current_person
from zzd.http.common import check_send_rate, json_body
from zzd.http.contract import BodyModel, Endpoints, Id, QueryModel, UnitRef, WireModel, created, query, reply
from zzd.http.params import aware_time, unit_ref
from zzd.http.schemas.common import Recalled
from zzd.http.schemas.notices import NoticeView, Pending, Progress, Receipts, Sent
from zzd.http.schemas.org import Preview

UnitParam = Annotated[str, StringConstraints(min_length=1, max_length=32)]

__all__ = ["routes"]

api = Endpoints(tag="notices")


class NoticeBody(BodyModel):
    as_position: Id
    selector: dict[str, Any] | Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    client_msg_id: ClientMsgId
    title: Annotated[str, StringConstraints(max_length=200)]
    body: Annotated[str, StringConstraints(max_length=20_000)] = ""
    #: urgent: a DING (reminded after ZZD_DING_REMIND_AFTER, escalated out of band after ZZD_DING_ESCALATE_AFTER while
    #: unread or unacknowledged)
    priority: Literal["normal", "urgent"] = "normal"
    #: true: recipients are asked to acknowledge (progress and pending count acks)
    ack_required: bool = False
    #: ISO 8601 with a time zone, e.g. 2026-12-01T09:00:00+08:00.
    deadline: Annotated[str, StringConstraints(max_length=40)] | None = None
    #: Up to 20 references shown with the notice; those that are digests of the sender's uploads
    #: (POST /api/v1/uploads) become downloadable by every recipient and the sender side
    #: (GET /api/v1/uploads/{digest}); other strings are kept as they are.
    attachments: list[Any] = Field(default_factory=list, max_length=20)


class PreviewBody(BodyModel):
    as_position: Id
    selector: dict[str, Any] | Annotated[str, StringConstraints(min_length=1, max_length=4000)]


class AckBody(BodyModel):
    #: acknowledge for this one position only (one the notice reached you through); null: for all of them
    position_id: Id | None = None
    #: kept with the acknowledgement (the first one stays)
    reply: Annotated[str, StringConstraints(max_length=2000)] | None = None


class ProgressQuery(QueryModel):
    unit: UnitParam | None = Field(
        None, description="unit code or #id whose own totals and child units to show (default: the audience's "
        "common ancestor)"
    )  # fmt: skip


class PendingQuery(QueryModel):
    unit: UnitParam = Field(description="unit code or #id whose recipients to list")
    missing: Literal["read", "ack"] = Field("read", description="read: not yet read; ack: not yet acknowledged")
    after: Annotated[int, Field(ge=1, le=2**53)] | None = Field(None, description="next_after of the previous page")
    limit: Annotated[int, Field(ge=1, le=500)] = 50


def _nid(request: Request) -> int:
    return int(request.path_params["notice_id"])


@api.route("POST", "/api/v1/notices/preview", {200: Preview}, body=PreviewBody, errors=(404,))
async def preview(request: Request) -> Response:
    """What a notice to this selector would reach, per child unit and level, before sending."""
    s, claims = await current_person(request)
    body = await json_body(request, PreviewBody)
    return reply(Preview, (s.notices.preview(claims.person_id, body.as_position, parse_selector(body.selector))))


@api.route("POST", "/api/v1/notices", {200: Sent, 201: Sent}, body=NoticeBody, errors=(404, 429))
async def send(request: Request) -> Response:
    """Send a notice (DING when urgent); acknowledged after the notice and every receipt commit."""
    s, claims = await current_person(request)
    b = await json_body(request, NoticeBody)
    check_send_rate(s, claims.person_id, "notices")
    compose = validate_compose(
        client_msg_id=b.client_msg_id,
        title=b.title,
        body=b.body,
        selector=b.selector,
        priority=b.priority,
        ack_required=b.ack_required,
        deadline=aware_time(b.deadline, "deadline"),
        attachments=b.attachments,
    )
    res = await s.notices.send(claims.person_id, b.as_position, compose)
    return created(Sent, res, duplicate=res.duplicate)


@api.route("GET", "/api/v1/notices/{notice_id:int}", {200: NoticeView})
async def get(request: Request) -> Response:
    """A notice: recipients see their own receipts; the sender side also its selector and audience."""
    s, claims = await current_person(request)
    return reply(NoticeView, await s.notices.get(claims.person_id, _nid(request)))


@api.route("POST", "/api/v1/notices/{notice_id:int}/read", {200: Receipts})
async def read(request: Request) -> Response:
    """Mark a notice read for every position the caller receives it through (idempotent)."""
    s, claims = await current_person(request)
    states = await s.notices.mark_read(claims.person_id, _nid(request))
    return reply(Receipts, {"receipts": states})


@api.route("POST", "/api/v1/notices/{notice_id:int}/ack", {200: Receipts}, body=AckBody, errors=(409,))
async def ack(request: Request) -> Response:
    """Acknowledge a notice for one position (``position_id``) or all, with an optional reply."""
    s, claims = await current_person(request)
    b = await json_body(request, AckBody)
    states = await s.notices.acknowledge(claims.person_id, _nid(request), position_id=b.position_id, reply=b.reply)
    return reply(Receipts, {"receipts": states})


@api.route("POST", "/api/v1/notices/{notice_id:int}/recall", {200: Recalled}, errors=(409,))
async def recall(request: Request) -> Response:
    """Recall a notice (sender side): recipients are told; progress shows it recalled."""
    s, claims = await current_person(request)
    at = await s.notices.recall(claims.person_id, _nid(request))
    return reply(Recalled, {"recalled_at": at})


@api.route("GET", "/api/v1/notices/{notice_id:int}/progress", {200: Progress}, query=ProgressQuery)
async def progress(request: Request) -> Response:
    """Totals and a roll-up per child unit of ``unit`` (default: the audience's common ancestor)."""
    s, claims = await current_person(request)
    q = query(request, ProgressQuery)
    ref = unit_ref(q.unit) if q.unit else None
    return reply(Progress, await s.notices.progress(claims.person_id, _nid(request), unit=ref))


@api.route("GET", "/api/v1/notices/{notice_id:int}/pending", {200: Pending}, query=PendingQuery)
async def pending(request: Request) -> Response:
    """Paged recipients in a unit who have not read (``missing=read``) or acknowledged (``missing=ack``)."""
    s, claims = await current_person(request)
    q = query(request, PendingQuery)
    page = await s.notices.pending(
        claims.person_id, _nid(request), unit=unit_ref(q.unit), missing=q.missing, after=q.after, limit=q.limit
    )
    return reply(Pending, page)


class RemindBody(BodyModel):
    unit: UnitRef
    #: ack: those who have not acknowledged; read: those who have not read (a notice that needs no acknowledgement
    #: always uses read)
    missing: Literal["read", "ack"] = "ack"


class Reminded(WireModel):
    """How many recipients were reminded now (``notice.remind`` with ``manual: true``).

    Those reminded by hand less than a minute ago are left out (not counted); when that is everyone
    still owing under the unit, the answer is 429 instead.
    """

    reminded: int


@api.route("POST", "/api/v1/notices/{notice_id:int}/remind", {200: Reminded}, body=RemindBody, errors=(404, 409, 429))
async def remind(request: Request) -> Response:
    """Remind now the recipients under ``unit`` who have not acknowledged (or read) — sender side only.

    A person is reminded by hand at most once a minute per notice, whichever unit names them: 429
    ``rate_limited`` when everyone still owing under ``unit`` was reminded less than a minute ago.
    """
    s, claims = await current_person(request)
    b = await json_body(request, RemindBody)
    n = await s.notices.remind(claims.person_id, _nid(request), unit=b.unit, missing=b.missing)
    return reply(Reminded, {"reminded": n})


routes = api.routes
