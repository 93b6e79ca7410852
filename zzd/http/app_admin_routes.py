"""``/api/v1/apps``: the app registry for administrators (docs/apps.md).

Who may call: a signed-in *person* holding the ``apps`` permission over the
app's owning unit (creating also needs it over the addressed subtree). Apps
outside the caller's grants answer 404 like unknown ids. App tokens are
refused here (wrong audience), person tokens on the bot API.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response

from apps.registry import NewApp
from zzd.http.actors import current_actor
from zzd.http.common import json_body
from zzd.http.contract import BodyModel, Endpoints, Id, UnitRef, reply
from zzd.http.schemas.apps import AppList, AppView, AppWithSecret, AppWithSecrets, NewSecret, SecretRevoked, Workbench

__all__ = ["routes"]

api = Endpoints(tag="apps")

SelectorIn = dict[str, Any] | Annotated[str, StringConstraints(min_length=1, max_length=4000)]
ScopeName = Annotated[str, StringConstraints(min_length=1, max_length=80)]


class NewAppBody(BodyModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    #: Unit (code, ``"#id"`` or integer id) whose ``apps`` administrators manage the app.
    owning_unit: UnitRef
    #: Unit (code, ``"#id"`` or integer id) whose subtree the app may address and read.
    subtree: UnitRef
    #: Selector of the positions that see the app in their workbench (可见范围).
    visibility: SelectorIn
    scopes: Annotated[list[ScopeName], Field(max_length=40)]
    #: Position told when one of the app's webhook endpoints is disabled.
    owner_position_id: Id | None = None
    rate_per_minute: Annotated[int, Field(ge=1, le=100_000)] = 600


class PatchAppBody(BodyModel):
    scopes: Annotated[list[ScopeName], Field(max_length=40)] | None = None
    visibility: SelectorIn | None = None
    disabled: bool | None = None
    rate_per_minute: Annotated[int, Field(ge=1, le=100_000)] | None = None


class RotateBody(BodyModel):
    #: Seconds the current secrets keep working (default ``ZZD_APP_SECRET_OVERLAP``).
    overlap_seconds: Annotated[int, Field(ge=0, le=30 * 86_400)] | None = None


def _app_id(request: Request) -> int:
    return int(request.path_params["app_id"])


@api.route("GET", "/api/v1/me/apps", {200: Workbench})
async def my_apps(request: Request) -> Response:
    """The apps in the caller's workbench: those whose visibility selector reaches a position they hold."""
    s, actor = await current_actor(request)
    return reply(Workbench, {"apps": await s.apps.workbench(actor)})


@api.route("POST", "/api/v1/apps", {201: AppWithSecret}, body=NewAppBody, errors=(404, 409))
async def create_app(request: Request) -> Response:
    """Register an app; the answer carries ``client_secret`` this once."""
    s, actor = await current_actor(request)
    b = await json_body(request, NewAppBody)
    spec = NewApp(b.name, b.owning_unit, b.subtree, b.visibility, b.scopes, b.owner_position_id, b.rate_per_minute)
    app, secret = await s.apps.create(actor, spec)
    return reply(AppWithSecret, {**app.to_dict(), "client_secret": secret.secret, "secret_id": secret.id}, status=201)


@api.route("GET", "/api/v1/apps", {200: AppList})
async def list_apps(request: Request) -> Response:
    """The apps the caller administers (``apps`` grant over their owning unit)."""
    s, actor = await current_actor(request)
    return reply(AppList, {"apps": [a.to_dict() for a in await s.apps.list_apps(actor)]})


@api.route("GET", "/api/v1/apps/{app_id:int}", {200: AppWithSecrets})
async def get_app(request: Request) -> Response:
    """An app with its secrets as hints and dates (never the secrets)."""
    s, actor = await current_actor(request)
    app = await s.apps.get(actor, _app_id(request))
    return reply(AppWithSecrets, {**app.to_dict(), "secrets": await s.apps.secrets(actor, app.id)})


@api.route("PATCH", "/api/v1/apps/{app_id:int}", {200: AppView}, body=PatchAppBody)
async def patch_app(request: Request) -> Response:
    """Change scopes, visibility, rate or disable; disabling closes the app's live streams."""
    s, actor = await current_actor(request)
    b = await json_body(request, PatchAppBody)
    app = await s.apps.update(
        actor,
        _app_id(request),
        scopes=b.scopes,
        visibility=b.visibility,
        disabled=b.disabled,
        rate_per_minute=b.rate_per_minute,
    )
    if app.disabled or b.scopes is not None:
        await s.announce({"t": "app_changed", "app_id": app.id})
    return reply(AppView, app.to_dict())


@api.route("POST", "/api/v1/apps/{app_id:int}/secrets", {201: NewSecret}, body=RotateBody)
async def rotate_secret(request: Request) -> Response:
    """A new secret (shown once); the previous ones keep working for the overlap."""
    s, actor = await current_actor(request)
    b = await json_body(request, RotateBody)
    overlap = b.overlap_seconds if b.overlap_seconds is not None else s.settings.app_secret_overlap
    new = await s.apps.rotate_secret(actor, _app_id(request), timedelta(seconds=overlap))
    if overlap == 0:
        await s.announce({"t": "app_changed", "app_id": _app_id(request)})
    return reply(NewSecret, new.to_dict(), status=201)


@api.route("POST", "/api/v1/apps/{app_id:int}/secrets/{secret_id:int}/revoke", {200: SecretRevoked})
async def revoke_secret(request: Request) -> Response:
    """Revoke one secret now; the app's live connections using it close within a second."""
    s, actor = await current_actor(request)
    app_id = _app_id(request)
    out = await s.apps.revoke_secret(actor, app_id, int(request.path_params["secret_id"]))
    await s.announce({"t": "app_changed", "app_id": app_id})
    return reply(SecretRevoked, out)


routes = api.routes
