"""``/api/v1/auth``: log in, refresh, log out; and ``/api/v1/me``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kernel.errors import BadRequest, ErrorCode, Unauthorized
from zzd.http.common import authenticate, json_body, ok, services_of

__all__ = ["routes"]


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    grant_type: Literal["password", "refresh_token"]
    login: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None


async def token(request: Request) -> JSONResponse:
    s = services_of(request)
    body = await json_body(request, TokenRequest)
    if body.grant_type == "password":
        if body.login is None or body.password is None:
            raise BadRequest("login and password are required", data={"fields": ["login", "password"]})
        person = await s.persons.by_login(body.login)
        good = await s.passwords.verify(person.password_hash if person else None, body.password)
        if person is None or not good or person.disabled:
            raise Unauthorized("wrong login or password", code=ErrorCode.INVALID_GRANT)
        issued = await s.sessions.open(person.id)
    else:
        if body.refresh_token is None:
            raise BadRequest("refresh_token is required", data={"fields": ["refresh_token"]})
        issued = await s.sessions.rotate(body.refresh_token)
    return ok(
        {
            "access_token": s.tokens.issue(issued.person_id, issued.session_id),
            "token_type": "Bearer",
            "expires_in": s.tokens.ttl_seconds,
            "refresh_token": issued.refresh_token,
            "person_id": issued.person_id,
        }
    )


async def logout(request: Request) -> JSONResponse:
    """Revoke the caller's session; its sockets on every process close with 4503."""
    s = services_of(request)
    claims = await authenticate(request)
    await s.sessions.revoke(claims.session_id)
    await s.announce({"t": "revoke_session", "sid": claims.session_id})
    return ok({"revoked": True})


async def me(request: Request) -> JSONResponse:
    s = services_of(request)
    claims = await authenticate(request)
    person = await s.persons.get(claims.person_id)
    state = await s.events.state(person.id)
    return ok(
        {"id": person.id, "login": person.login, "name": person.name, "epoch": state.epoch, "last_seq": state.last_seq}
    )


routes = [
    Route("/api/v1/auth/token", token, methods=["POST"]),
    Route("/api/v1/auth/logout", logout, methods=["POST"]),
    Route("/api/v1/me", me, methods=["GET"]),
]

#: Request body models, for the OpenAPI document.
bodies: dict[Callable[..., Any], type[BaseModel]] = {token: TokenRequest}
