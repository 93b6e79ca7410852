"""REST for conversations addressed to positions, groups and unit groups (docs/conversations.md).

Every read goes through ``messaging.conversations.access.access`` inside the
services: a conversation the caller may not read answers 404 exactly like a
missing one. History and the inbox are served by ``chat_routes`` (same paths
as before issue 5, now covering every kind).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kernel.errors import RateLimited
from kernel.wire import ClientMsgId
from messaging.conversations.model import PostRequest
from zzd.auth.tokens import AccessClaims
from zzd.http.actors import current_actor
from zzd.http.common import authenticate, json_body, services_of
from zzd.http.contract import operation, reply
from zzd.http.params import unit_ref
from zzd.http.schemas.chat import GroupView, MessageChanged, Muted, Posted, ReadBy, ReadMarker

__all__ = ["routes"]

Id = Annotated[int, Field(ge=1, le=2**53)]
Ids = Annotated[list[Id], Field(max_length=500)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PostBody(_Body):
    client_msg_id: ClientMsgId
    body: Annotated[str, StringConstraints(max_length=5000)] = ""
    #: Write as this held position (to a position: opens the position-to-position thread).
    as_position: Id | None = None
    reply_to: Id | None = None
    mention_persons: Annotated[list[Id], Field(max_length=50)] = Field(default_factory=list)
    mention_positions: Annotated[list[Id], Field(max_length=50)] = Field(default_factory=list)
    #: Opaque attachment ids or digests (e.g. from ``POST /api/v1/uploads``).
    attachments: Annotated[list[Annotated[str, StringConstraints(max_length=128)]], Field(max_length=20)] = Field(
        default_factory=list
    )


class EditBody(_Body):
    body: Annotated[str, StringConstraints(max_length=5000)]


class ReadBody(_Body):
    message_id: Id


class MuteBody(_Body):
    muted: bool


class GroupBody(_Body):
    title: Annotated[str, StringConstraints(max_length=100)]
    person_ids: Ids = Field(default_factory=list)
    position_ids: Ids = Field(default_factory=list)


class RenameBody(_Body):
    title: Annotated[str, StringConstraints(max_length=100)]


class MembersBody(_Body):
    person_ids: Ids = Field(default_factory=list)
    position_ids: Ids = Field(default_factory=list)


class AdminBody(_Body):
    person_id: Id
    admin: bool


class UnitGroupBody(_Body):
    depth: Annotated[int, Field(ge=0, le=5)] = 0
    title: Annotated[str, StringConstraints(max_length=100)] | None = None


def _cid(request: Request) -> int:
    return int(request.path_params["conversation_id"])


async def _post(request: Request, claims: AccessClaims, body: PostBody, **target: int) -> Response:
    s = services_of(request)
    if not s.rate_limiter.allow(claims.person_id, s.clock.monotonic()):
        raise RateLimited("too many messages; slow down")
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
    return reply(Posted, res, status=200 if res.duplicate else 201)


@operation({200: Posted, 201: Posted}, body=PostBody, errors=(409, 429), tag="conversations")
async def post_to_conversation(request: Request) -> Response:
    """Post to a conversation (group, unit group, position thread or direct chat) the caller belongs to."""
    claims = await authenticate(request)
    body = await json_body(request, PostBody)
    return await _post(request, claims, body, conversation_id=_cid(request))


@operation({200: Posted, 201: Posted}, body=PostBody, errors=(429,), tag="conversations")
async def post_to_position(request: Request) -> Response:
    """Write to a position: opens (or continues) the thread with whoever holds it now."""
    claims = await authenticate(request)
    body = await json_body(request, PostBody)
    return await _post(request, claims, body, to_position_id=int(request.path_params["position_id"]))


@operation({200: MessageChanged}, body=EditBody, errors=(409,), tag="conversations")
async def edit(request: Request) -> Response:
    """Replace the text of one's own message within the edit window."""
    s = services_of(request)
    claims = await authenticate(request)
    body = await json_body(request, EditBody)
    return reply(
        MessageChanged, await s.conversations.edit(claims.person_id, int(request.path_params["message_id"]), body.body)
    )


@operation({200: MessageChanged}, errors=(409,), tag="conversations")
async def recall(request: Request) -> Response:
    """Withdraw one's own message within the recall window."""
    s = services_of(request)
    claims = await authenticate(request)
    return reply(MessageChanged, await s.conversations.recall(claims.person_id, int(request.path_params["message_id"])))


@operation({200: ReadMarker}, body=ReadBody, tag="conversations")
async def read(request: Request) -> Response:
    """Move the caller's read marker to ``message_id``."""
    s = services_of(request)
    claims = await authenticate(request)
    body = await json_body(request, ReadBody)
    marker = await s.conversations.mark_read(claims.person_id, _cid(request), body.message_id)
    return reply(ReadMarker, {"conversation_id": _cid(request), "last_read_message_id": marker})


@operation({200: ReadBy}, errors=(409,), tag="conversations")
async def read_by(request: Request) -> Response:
    """Who has read a message (small conversations only)."""
    s = services_of(request)
    claims = await authenticate(request)
    return reply(
        ReadBy, await s.conversations.read_by(claims.person_id, _cid(request), int(request.path_params["message_id"]))
    )


@operation({200: Muted}, body=MuteBody, tag="conversations")
async def mute(request: Request) -> Response:
    """Mute or unmute a conversation for oneself."""
    s = services_of(request)
    claims = await authenticate(request)
    body = await json_body(request, MuteBody)
    return reply(Muted, await s.conversations.set_muted(claims.person_id, _cid(request), body.muted))


@operation({201: GroupView}, body=GroupBody, tag="conversations")
async def create_group(request: Request) -> Response:
    """Create an ad-hoc group of people and positions; the caller owns it."""
    s = services_of(request)
    claims = await authenticate(request)
    body = await json_body(request, GroupBody)
    return reply(
        GroupView, await s.groups.create(claims.person_id, body.title, body.person_ids, body.position_ids), status=201
    )


@operation({200: GroupView}, tag="conversations")
async def get_group(request: Request) -> Response:
    """A group with its members."""
    s = services_of(request)
    claims = await authenticate(request)
    return reply(GroupView, await s.groups.get(claims.person_id, _cid(request)))


@operation({200: GroupView}, body=RenameBody, tag="conversations")
async def rename_group(request: Request) -> Response:
    """Rename a group (owner or admin)."""
    s = services_of(request)
    claims = await authenticate(request)
    body = await json_body(request, RenameBody)
    return reply(GroupView, await s.groups.rename(claims.person_id, _cid(request), body.title))


@operation({200: GroupView}, body=MembersBody, errors=(409,), tag="conversations")
async def add_members(request: Request) -> Response:
    """Add people or positions (owner or admin)."""
    s = services_of(request)
    claims = await authenticate(request)
    body = await json_body(request, MembersBody)
    return reply(GroupView, await s.groups.add(claims.person_id, _cid(request), body.person_ids, body.position_ids))


@operation({200: GroupView}, body=MembersBody, errors=(409,), tag="conversations")
async def remove_members(request: Request) -> Response:
    """Remove people or positions (owner or admin)."""
    s = services_of(request)
    claims = await authenticate(request)
    body = await json_body(request, MembersBody)
    return reply(GroupView, await s.groups.remove(claims.person_id, _cid(request), body.person_ids, body.position_ids))


@operation({200: GroupView}, tag="conversations")
async def leave(request: Request) -> Response:
    """Leave an ad-hoc group one joined by name."""
    s = services_of(request)
    claims = await authenticate(request)
    return reply(GroupView, await s.groups.leave(claims.person_id, _cid(request)))


@operation({200: GroupView}, body=AdminBody, tag="conversations")
async def set_admin(request: Request) -> Response:
    """Make a member an admin or not (owner only)."""
    s = services_of(request)
    claims = await authenticate(request)
    body = await json_body(request, AdminBody)
    return reply(GroupView, await s.groups.set_admin(claims.person_id, _cid(request), body.person_id, body.admin))


@operation({201: GroupView}, body=UnitGroupBody, errors=(409,), tag="conversations")
async def create_unit_group(request: Request) -> Response:
    """A group of everyone holding a position in a unit (down ``depth`` levels)."""
    s, actor = await current_actor(request)
    body = await json_body(request, UnitGroupBody)
    unit = unit_ref(str(request.path_params["ref"]))
    return reply(
        GroupView, await s.members.create_unit_group(actor, unit, depth=body.depth, title=body.title), status=201
    )


_C = "/api/v1/conversations/{conversation_id:int}"
_G = "/api/v1/groups/{conversation_id:int}"
routes = [
    Route(f"{_C}/messages", post_to_conversation, methods=["POST"]),
    Route("/api/v1/positions/{position_id:int}/messages", post_to_position, methods=["POST"]),
    Route("/api/v1/messages/{message_id:int}", edit, methods=["PATCH"]),
    Route("/api/v1/messages/{message_id:int}/recall", recall, methods=["POST"]),
    Route(f"{_C}/read", read, methods=["POST"]),
    Route(f"{_C}/messages/{{message_id:int}}/reads", read_by, methods=["GET"]),
    Route(f"{_C}/mute", mute, methods=["POST"]),
    Route("/api/v1/groups", create_group, methods=["POST"]),
    Route(_G, get_group, methods=["GET"]),
    Route(_G, rename_group, methods=["PATCH"]),
    Route(f"{_G}/members", add_members, methods=["POST"]),
    Route(f"{_G}/members/remove", remove_members, methods=["POST"]),
    Route(f"{_G}/leave", leave, methods=["POST"]),
    Route(f"{_G}/admins", set_admin, methods=["POST"]),
    Route("/api/v1/units/{ref}/group", create_unit_group, methods=["POST"]),
]
