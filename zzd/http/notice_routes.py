"""``/api/v1/notices``: compose, preview, send, receipts, progress roll-up, pending lists, recall."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kernel.errors import BadRequest
from messaging.notices.model import validate_compose
from org_tree.selectors import parse_selector
from zzd.http.common import authenticate, json_body, ok, services_of
from zzd.http.params import int_param, opt_int_param, str_param, unit_ref

__all__ = ["routes"]

Id = Annotated[int, Field(ge=1, le=2**53)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class NoticeBody(_Body):
    as_position: Id
    selector: dict[str, Any] | Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    client_msg_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    title: Annotated[str, StringConstraints(max_length=200)]
    body: Annotated[str, StringConstraints(max_length=20_000)] = ""
    priority: Literal["normal", "urgent"] = "normal"
    ack_required: bool = False
    #: ISO 8601 with a time zone, e.g. 2026-12-01T09:00:00+08:00.
    deadline: Annotated[str, StringConstraints(max_length=40)] | None = None
    attachments: list[Any] = Field(default_factory=list, max_length=20)


class PreviewBody(_Body):
    as_position: Id
    selector: dict[str, Any] | Annotated[str, StringConstraints(min_length=1, max_length=4000)]


class AckBody(_Body):
    position_id: Id | None = None
    reply: Annotated[str, StringConstraints(max_length=2000)] | None = None


def _deadline(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise BadRequest("deadline must be ISO 8601 with a time zone", data={"field": "deadline"}) from exc
    if dt.tzinfo is None:
        raise BadRequest("deadline must carry a time zone", data={"field": "deadline"})
    return dt


def _nid(request: Request) -> int:
    return int(request.path_params["notice_id"])


async def preview(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    body = await json_body(request, PreviewBody)
    return ok(asdict(s.notices.preview(claims.person_id, body.as_position, parse_selector(body.selector))))


async def send(request: Request) -> JSONResponse:
    """Send a notice (DING when urgent); acknowledged after the notice and every receipt commit."""
    s = services_of(request)
    claims = await authenticate(request)
    b = await json_body(request, NoticeBody)
    compose = validate_compose(
        client_msg_id=b.client_msg_id,
        title=b.title,
        body=b.body,
        selector=b.selector,
        priority=b.priority,
        ack_required=b.ack_required,
        deadline=_deadline(b.deadline),
        attachments=b.attachments,
    )
    res = await s.notices.send(claims.person_id, b.as_position, compose)
    return ok(res.to_dict(), status=200 if res.duplicate else 201)


async def get(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    return ok(await s.notices.get(claims.person_id, _nid(request)))


async def read(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    states = await s.notices.mark_read(claims.person_id, _nid(request))
    return ok({"receipts": [r.to_dict() for r in states]})


async def ack(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    b = await json_body(request, AckBody)
    states = await s.notices.acknowledge(claims.person_id, _nid(request), position_id=b.position_id, reply=b.reply)
    return ok({"receipts": [r.to_dict() for r in states]})


async def recall(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    at = await s.notices.recall(claims.person_id, _nid(request))
    return ok({"recalled_at": at.isoformat().replace("+00:00", "Z")})


async def progress(request: Request) -> JSONResponse:
    """Totals and a roll-up per child unit of ``unit`` (default: the audience's common ancestor)."""
    s = services_of(request)
    claims = await authenticate(request)
    unit = str_param(request, "unit", max_len=32)
    ref = unit_ref(unit) if unit else None
    return ok((await s.notices.progress(claims.person_id, _nid(request), unit=ref)).to_dict())


async def pending(request: Request) -> JSONResponse:
    """Paged recipients in a unit who have not read (``missing=read``) or acknowledged (``missing=ack``)."""
    s = services_of(request)
    claims = await authenticate(request)
    unit = str_param(request, "unit", max_len=32)
    if not unit:
        raise BadRequest("unit is required", data={"field": "unit"})
    missing = str_param(request, "missing", max_len=4) or "read"
    after = opt_int_param(request, "after", 1, 2**53)
    page = await s.notices.pending(
        claims.person_id,
        _nid(request),
        unit=unit_ref(unit),
        missing=missing,
        after=after,
        limit=int_param(request, "limit", 50, 1, 500),
    )
    return ok(asdict(page))


routes = [
    Route("/api/v1/notices/preview", preview, methods=["POST"]),
    Route("/api/v1/notices", send, methods=["POST"]),
    Route("/api/v1/notices/{notice_id:int}", get, methods=["GET"]),
    Route("/api/v1/notices/{notice_id:int}/read", read, methods=["POST"]),
    Route("/api/v1/notices/{notice_id:int}/ack", ack, methods=["POST"]),
    Route("/api/v1/notices/{notice_id:int}/recall", recall, methods=["POST"]),
    Route("/api/v1/notices/{notice_id:int}/progress", progress, methods=["GET"]),
    Route("/api/v1/notices/{notice_id:int}/pending", pending, methods=["GET"]),
]

#: Request body models, for the OpenAPI document.
bodies: dict[Callable[..., Any], type[BaseModel]] = {preview: PreviewBody, send: NoticeBody, ack: AckBody}
