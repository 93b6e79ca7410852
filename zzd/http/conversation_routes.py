"""REST for conversations addressed to positions, groups and unit groups (docs/conversations.md).

Every read goes through ``messaging.conversations.access.access`` inside the
services: a conversation the caller may not read answers 404 exactly like a
missing one. History and the inbox are served by ``chat_routes`` (same paths
as before issue 5, now covering every kind).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response

from kernel.wire import ClientMsgId
from messaging.conversations.model import PostRequest
from zzd.auth.tokens import AccessClaims
from zzd.http.actors import current_actor, current_person
from zzd.http.common import authenticate, check_send_rate, json_body, services_of
from zzd.http.contract import BodyModel, Endpoints, Id, created, reply
from zzd.http.params import unit_ref
from zzd.http.schemas.chat import GroupView, MessageChanged, Muted, Posted, ReadBy, ReadMarker

__all__ = ["routes"]

api = Endpoints(tag="conversations", prefix="/api/v1")

Ids = Annotated[list[Id], Field(max_length=500)]


class PostBody(BodyModel):
    client_msg_id: ClientMsgId
    body: Annotated[str, StringConstraints(max_length=5000)] = ""
    #: Write as this held position (to a position: opens the position-to-position thread).
    as_position: Id | None = None
    #: a message of this conversation you can read, quoted as reply_to {id, snippet}
    reply_to: Id | None = None
    #: person ids to mention (their message.new says mentioned: true); one no enabled person has: 404
    mention_persons: Annotated[list[Id], Field(max_length=50)] = Field(default_factory=list)
    #: position ids to mention (their holders' message.new says mentioned: true); one retired or unknown: 404
    mention_positions: Annotated[list[Id], Field(max_length=50)] = Field(default_factory=list)
    #: Opaque attachment ids or digests (e.g. from ``POST /api/v1/uploads``).
    attachments: Annotated[list[Annotated[str, StringConstraints(max_length=128)]], Field(max_length=20)] = Field(
        default_factory=list
    )


class EditBody(BodyModel):
    body: Annotated[str, StringConstraints(max_length=5000)]


class ReadBody(BodyModel):
    #: the newest message read: the marker moves to it (never back)
    message_id: Id


class MuteBody(BodyModel):
    #: true: your message.new events in it carry muted: true; false: they no longer do
    muted: bool


class GroupBody(BodyModel):
    title: Annotated[str, StringConstraints(max_length=100)]
    #: members by person
    person_ids: Ids = Field(default_factory=list)
    #: members by position: its holders, following handovers
    position_ids: Ids = Field(default_factory=list)


class RenameBody(BodyModel):
    title: Annotated[str, StringConstraints(max_length=100)]


class MembersBody(BodyModel):
    #: persons to add or remove
    person_ids: Ids = Field(default_factory=list)
    #: positions to add or remove (their holders follow)
    position_ids: Ids = Field(default_factory=list)


class AdminBody(BodyModel):
    person_id: Id
    #: true: make them an admin of the group; false: no longer
    admin: bool


class UnitGroupBody(BodyModel):
    #: 0: the unit's own positions' holders; n: also the units up to n levels below
    depth: Annotated[int, Field(ge=0, le=5)] = 0
    title: Annotated[str, StringConstraints(max_length=100)] | None = None


def _cid(request: Request) -> int:
    return int(request.path_params["conversation_id"])


async def _post(request: Request, claims: AccessClaims, body: PostBody, **target: int) -> Response:
    s = services_of(request)
    check_send_rate(s, claims.person_id)
    res = await s.conversations.post(
        PostRequest(
            claims.person_id,
            body.client_msg_id,
            body.body,
            as_position_id=body.as_position,
            reply_to=body.reply_to,
            mention_persons=tuple(body.mention_persons),
            mention_positions=tuple(body.mention_positions),
            attachments=tuple(body.attachments),
            **target,  # type: ignore[arg-type]
        )
    )
    return created(Posted, res, duplicate=res.duplicate)


@api.route(
    "POST",
    "/conversations/{conversation_id:int}/messages",
    {200: Posted, 201: Posted},
    body=PostBody,
    errors=(409, 429),
)
async def post_to_conversation(request: Request) -> Response:
    """Post to a conversation (group, unit group, position thread or direct chat) the caller belongs to."""
    claims = await authenticate(request)
    body = await json_body(request, PostBody)
    return await _post(request, claims, body, conversation_id=_cid(request))


@api.route("POST", "/positions/{position_id:int}/messages", {200: Posted, 201: Posted}, body=PostBody, errors=(429,))
async def post_to_position(request: Request) -> Response:
    """Write to a position: opens (or continues) the thread with whoever holds it now."""
    claims = await authenticate(request)
    body = await json_body(request, PostBody)
    return await _post(request, claims, body, to_position_id=int(request.path_params["position_id"]))


@api.route("PATCH", "/messages/{message_id:int}", {200: MessageChanged}, body=EditBody, errors=(409, 429))
async def edit(request: Request) -> Response:
    """Replace the text of one's own message within the edit window."""
    s, claims = await current_person(request)
    body = await json_body(request, EditBody)
    check_send_rate(s, claims.person_id, "edits")
    return reply(
        MessageChanged, await s.conversations.edit(claims.person_id, int(request.path_params["message_id"]), body.body)
    )


@api.route("POST", "/messages/{message_id:int}/recall", {200: MessageChanged}, errors=(409, 429))
async def recall(request: Request) -> Response:
    """Withdraw one's own message within the recall window."""
    s, claims = await current_person(request)
    check_send_rate(s, claims.person_id, "edits")
    return reply(MessageChanged, await s.conversations.recall(claims.person_id, int(request.path_params["message_id"])))


@api.route("POST", "/conversations/{conversation_id:int}/read", {200: ReadMarker}, body=ReadBody)
async def read(request: Request) -> Response:
    """Move the caller's read marker to ``message_id``."""
    s, claims = await current_person(request)
    body = await json_body(request, ReadBody)
    marker = await s.conversations.mark_read(claims.person_id, _cid(request), body.message_id)
    return reply(ReadMarker, {"conversation_id": _cid(request), "last_read_message_id": marker})


@api.route("GET", "/conversations/{conversation_id:int}/messages/{message_id:int}/reads", {200: ReadBy}, errors=(409,))
async def read_by(request: Request) -> Response:
    """Who has read a message (small conversations only)."""
    s, claims = await current_person(request)
    return reply(
        ReadBy, await s.conversations.read_by(claims.person_id, _cid(request), int(request.path_params["message_id"]))
    )


@api.route("POST", "/conversations/{conversation_id:int}/mute", {200: Muted}, body=MuteBody)
async def mute(request: Request) -> Response:
    """Mute or unmute a conversation for oneself."""
    s, claims = await current_person(request)
    body = await json_body(request, MuteBody)
    return reply(Muted, await s.conversations.set_muted(claims.person_id, _cid(request), body.muted))


@api.route("POST", "/groups", {201: GroupView}, body=GroupBody, errors=(429,))
async def create_group(request: Request) -> Response:
    """Create an ad-hoc group of people and positions; the caller owns it."""
    s, claims = await current_person(request)
    body = await json_body(request, GroupBody)
    check_send_rate(s, claims.person_id, "group changes")
    return reply(
        GroupView, await s.groups.create(claims.person_id, body.title, body.person_ids, body.position_ids), status=201
    )


@api.route("GET", "/groups/{conversation_id:int}", {200: GroupView})
async def get_group(request: Request) -> Response:
    """A group with its members."""
    s, claims = await current_person(request)
    return reply(GroupView, await s.groups.get(claims.person_id, _cid(request)))


@api.route("PATCH", "/groups/{conversation_id:int}", {200: GroupView}, body=RenameBody, errors=(429,))
async def rename_group(request: Request) -> Response:
    """Rename a group (owner or admin)."""
    s, claims = await current_person(request)
    body = await json_body(request, RenameBody)
    check_send_rate(s, claims.person_id, "group changes")
    return reply(GroupView, await s.groups.rename(claims.person_id, _cid(request), body.title))


@api.route("POST", "/groups/{conversation_id:int}/members", {200: GroupView}, body=MembersBody, errors=(409, 429))
async def add_members(request: Request) -> Response:
    """Add people or positions (owner or admin)."""
    s, claims = await current_person(request)
    body = await json_body(request, MembersBody)
    check_send_rate(s, claims.person_id, "group changes")
    return reply(GroupView, await s.groups.add(claims.person_id, _cid(request), body.person_ids, body.position_ids))


@api.route(
    "POST", "/groups/{conversation_id:int}/members/remove", {200: GroupView}, body=MembersBody, errors=(409, 429)
)
async def remove_members(request: Request) -> Response:
    """Remove people or positions (owner or admin)."""
    s, claims = await current_person(request)
    body = await json_body(request, MembersBody)
    check_send_rate(s, claims.person_id, "group changes")
    return reply(GroupView, await s.groups.remove(claims.person_id, _cid(request), body.person_ids, body.position_ids))


@api.route("POST", "/groups/{conversation_id:int}/leave", {200: GroupView})
async def leave(request: Request) -> Response:
    """Leave an ad-hoc group one joined by name."""
    s, claims = await current_person(request)
    return reply(GroupView, await s.groups.leave(claims.person_id, _cid(request)))


@api.route("POST", "/groups/{conversation_id:int}/admins", {200: GroupView}, body=AdminBody, errors=(429,))
async def set_admin(request: Request) -> Response:
    """Make a member an admin or not (owner only)."""
    s, claims = await current_person(request)
    body = await json_body(request, AdminBody)
    check_send_rate(s, claims.person_id, "group changes")
    return reply(GroupView, await s.groups.set_admin(claims.person_id, _cid(request), body.person_id, body.admin))


@api.route("POST", "/units/{ref}/group", {201: GroupView}, body=UnitGroupBody, errors=(409, 429))
async def create_unit_group(request: Request) -> Response:
    """A group of everyone holding a position in a unit (down ``depth`` levels)."""
    s, actor = await current_actor(request)
    body = await json_body(request, UnitGroupBody)
    check_send_rate(s, actor.person_id, "group changes")
    unit = unit_ref(str(request.path_params["ref"]))
    return reply(
        GroupView, await s.members.create_unit_group(actor, unit, depth=body.depth, title=body.title), status=201
    )


routes = api.routes
