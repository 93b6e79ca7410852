"""REST for conversations addressed to positions, groups and unit groups (docs/conversations.md).

Every read goes through ``messaging.conversations.access.access`` inside the
services: a conversation the caller may not read answers 404 exactly like a
missing one. History and the inbox are served by ``chat_routes`` (same paths
as before issue 5, now covering every kind).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kernel.errors import RateLimited
from messaging.conversations.model import PostRequest
from zzd.auth.tokens import AccessClaims
from zzd.http.actors import current_actor
from zzd.http.common import authenticate, json_body, ok, services_of
from zzd.http.params import unit_ref

__all__ = ["bodies", "routes"]

Id = Annotated[int, Field(ge=1, le=2**53)]
Ids = Annotated[list[Id], Field(max_length=500)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PostBody(_Body):
    client_msg_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
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


async def _post(request: Request, claims: AccessClaims, body: PostBody, **target: int) -> JSONResponse:
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
    return ok(res.to_dict(), status=200 if res.duplicate else 201)


async def post_to_conversation(request: Request) -> JSONResponse:
    claims = await authenticate(request)
    body = await json_body(request, PostBody)
    return await _post(request, claims, body, conversation_id=_cid(request))


async def post_to_position(request: Request) -> JSONResponse:
    claims = await authenticate(request)
    body = await json_body(request, PostBody)
    return await _post(request, claims, body, to_position_id=int(request.path_params["position_id"]))


async def edit(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    body = await json_body(request, EditBody)
    return ok(await s.conversations.edit(claims.person_id, int(request.path_params["message_id"]), body.body))


async def recall(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    return ok(await s.conversations.recall(claims.person_id, int(request.path_params["message_id"])))


async def read(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    body = await json_body(request, ReadBody)
    marker = await s.conversations.mark_read(claims.person_id, _cid(request), body.message_id)
    return ok({"conversation_id": _cid(request), "last_read_message_id": marker})


async def read_by(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    return ok(await s.conversations.read_by(claims.person_id, _cid(request), int(request.path_params["message_id"])))


async def mute(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    body = await json_body(request, MuteBody)
    return ok(await s.conversations.set_muted(claims.person_id, _cid(request), body.muted))


async def create_group(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    body = await json_body(request, GroupBody)
    return ok(await s.groups.create(claims.person_id, body.title, body.person_ids, body.position_ids), status=201)


async def get_group(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    return ok(await s.groups.get(claims.person_id, _cid(request)))


async def rename_group(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    body = await json_body(request, RenameBody)
    return ok(await s.groups.rename(claims.person_id, _cid(request), body.title))


async def add_members(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    body = await json_body(request, MembersBody)
    return ok(await s.groups.add(claims.person_id, _cid(request), body.person_ids, body.position_ids))


async def remove_members(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    body = await json_body(request, MembersBody)
    return ok(await s.groups.remove(claims.person_id, _cid(request), body.person_ids, body.position_ids))


async def leave(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    return ok(await s.groups.leave(claims.person_id, _cid(request)))


async def set_admin(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    body = await json_body(request, AdminBody)
    return ok(await s.groups.set_admin(claims.person_id, _cid(request), body.person_id, body.admin))


async def create_unit_group(request: Request) -> JSONResponse:
    s, actor = await current_actor(request)
    body = await json_body(request, UnitGroupBody)
    unit = unit_ref(str(request.path_params["ref"]))
    return ok(await s.members.create_unit_group(actor, unit, depth=body.depth, title=body.title), status=201)


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

#: Request body models, for the OpenAPI document.
bodies: dict[Callable[..., Any], type[BaseModel]] = {
    post_to_conversation: PostBody,
    post_to_position: PostBody,
    edit: EditBody,
    read: ReadBody,
    mute: MuteBody,
    create_group: GroupBody,
    rename_group: RenameBody,
    add_members: MembersBody,
    remove_members: MembersBody,
    set_admin: AdminBody,
    create_unit_group: UnitGroupBody,
}
