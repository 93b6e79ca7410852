"""REST access to direct chat, history and the inbox of every conversation kind, and the event stream.

Same services, same checks and same errors as the WebSocket frames.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kernel.errors import RateLimited
from messaging.chat import SendRequest
from zzd.http.common import authenticate, json_body, ok, services_of
from zzd.http.params import int_param, opt_int_param, str_param

__all__ = ["routes"]


class SendBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    to: Annotated[int, Field(ge=1, le=2**53)]
    client_msg_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    body: Annotated[str, StringConstraints(max_length=5000)]


async def send(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    body = await json_body(request, SendBody)
    if not s.rate_limiter.allow(claims.person_id, s.clock.monotonic()):
        raise RateLimited("too many messages; slow down")
    res = await s.chat.send(SendRequest(claims.person_id, body.to, body.client_msg_id, body.body))
    return ok(res.to_dict(), status=200 if res.duplicate else 201)


async def history(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    cid = int(request.path_params["conversation_id"])
    before = opt_int_param(request, "before", 1, 2**53)
    limit = int_param(request, "limit", 50, 1, 100)
    items, next_before = await s.conversations.history(claims.person_id, cid, before=before, limit=limit)
    return ok({"conversation_id": cid, "messages": items, "next_before": next_before})


async def conversations(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    limit = int_param(request, "limit", 50, 1, 200)
    cursor = str_param(request, "cursor", max_len=40)
    return ok(await s.conversations.inbox(claims.person_id, cursor=cursor, limit=limit))


async def sync(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    since = int_param(request, "since", 0, 0, 2**53)
    limit = int_param(request, "limit", 500, 1, 500)
    epoch = request.query_params.get("epoch")
    page = await s.events.read(claims.person_id, epoch=epoch, since=since, limit=limit)
    return ok(
        {
            "epoch": page.epoch,
            "events": [{"seq": q, "kind": k, "data": json.loads(p)} for q, k, p in page.events],
            "next_since": page.next_since,
            "limited": page.limited,
            "last_seq": page.last_seq,
        }
    )


routes = [
    Route("/api/v1/messages", send, methods=["POST"]),
    Route("/api/v1/conversations", conversations, methods=["GET"]),
    Route("/api/v1/conversations/{conversation_id:int}/messages", history, methods=["GET"]),
    Route("/api/v1/sync", sync, methods=["GET"]),
]

#: Request body models, for the OpenAPI document.
bodies: dict[Callable[..., Any], type[BaseModel]] = {send: SendBody}
