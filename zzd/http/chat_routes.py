"""REST access to direct chat, history and the inbox of every conversation kind, and the event stream.

Same services, same checks and same errors as the WebSocket frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field, StringConstraints
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from kernel.wire import ClientMsgId, loads
from messaging.chat import SendRequest
from zzd.http.actors import current_person
from zzd.http.common import check_send_rate, json_body
from zzd.http.contract import BodyModel, Endpoints, QueryModel, created, query, reply
from zzd.http.schemas.chat import EventPage, History, Inbox, Posted

if TYPE_CHECKING:
    from zzd.services import Services

__all__ = ["routes"]

api = Endpoints(tag="chat")


class SendBody(BodyModel):
    #: the person written to (their person id)
    to: Annotated[int, Field(ge=1, le=2**53)]
    client_msg_id: ClientMsgId
    body: Annotated[str, StringConstraints(max_length=5000)]


class HistoryQuery(QueryModel):
    before: Annotated[int, Field(ge=1, le=2**53)] | None = Field(None, description="next_before of the newer page")
    limit: Annotated[int, Field(ge=1, le=100)] = 50


class InboxQuery(QueryModel):
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    cursor: Annotated[str, StringConstraints(max_length=40)] | None = Field(
        None, description="next_cursor of the previous page"
    )


class SyncQuery(QueryModel):
    since: Annotated[int, Field(ge=0, le=2**53)] = Field(0, description="the last seq the client has")
    limit: Annotated[int, Field(ge=1, le=500)] = 500
    epoch: Annotated[str, StringConstraints(max_length=40)] | None = Field(
        None,
        description="the epoch the client's seq belongs to; another epoch, or a since the stream does not hold "
        "(pruned, or past last_seq), answers 409 resync_required with data.epoch and data.last_seq: reload "
        "conversations, then sync on from that last_seq (since=0 is always served, whatever the epoch)",
    )


@api.route("POST", "/api/v1/messages", {200: Posted, 201: Posted}, body=SendBody, errors=(404, 429))
async def send(request: Request) -> Response:
    """Send a direct message to a person (idempotent by ``client_msg_id``)."""
    s, claims = await current_person(request)
    body = await json_body(request, SendBody)
    check_send_rate(s, claims.person_id)
    res = await s.chat.send(SendRequest(claims.person_id, body.to, body.client_msg_id, body.body))
    return created(Posted, res, duplicate=res.duplicate)


@api.route("GET", "/api/v1/conversations", {200: Inbox}, query=InboxQuery)
async def conversations(request: Request) -> Response:
    """The caller's conversations, most recent first, with unread counts and last messages."""
    s, claims = await current_person(request)
    q = query(request, InboxQuery)
    return reply(Inbox, await s.conversations.inbox(claims.person_id, cursor=q.cursor, limit=q.limit))


@api.route("GET", "/api/v1/conversations/{conversation_id:int}/messages", {200: History}, query=HistoryQuery)
async def history(request: Request) -> Response:
    """A conversation's messages, newest first, paged with ``before``."""
    s, claims = await current_person(request)
    cid = int(request.path_params["conversation_id"])
    q = query(request, HistoryQuery)
    items, next_before = await s.conversations.history(claims.person_id, cid, before=q.before, limit=q.limit)
    return reply(History, {"conversation_id": cid, "messages": items, "next_before": next_before})


@api.route("GET", "/api/v1/sync", {200: EventPage}, query=SyncQuery, errors=(409,))
async def sync(request: Request) -> Response:
    """The caller's events after ``since`` (the same events the WebSocket pushes; docs/events.md)."""
    s, claims = await current_person(request)
    q = query(request, SyncQuery)
    page = await s.events.read(claims.person_id, epoch=q.epoch, since=q.since, limit=q.limit)
    notices = [int(loads(p)["notice_id"]) for _, k, p in page.events if k in ("notice.new", "notice.remind")]
    resp = reply(
        EventPage,
        {
            "epoch": page.epoch,
            "events": [{"seq": q, "kind": k, "data": loads(p)} for q, k, p in page.events],
            "next_since": page.next_since,
            "limited": page.limited,
            "last_seq": page.last_seq,
        },
    )
    if notices:
        # Once the answer carrying them is sent, the notices are on the device: "delivered".
        resp.background = BackgroundTask(_delivered, s, claims.person_id, notices)
    return resp


async def _delivered(s: Services, person_id: int, notice_ids: list[int]) -> None:
    for nid in notice_ids:
        s.delivered.written(person_id, nid)


routes = api.routes
