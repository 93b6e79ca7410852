"""The ASGI application: routes, error mapping, WebSocket endpoint, lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from kernel.errors import ErrorCode, Unauthorized, ZzdError
from messaging.db_errors import as_unavailable
from zzd.config import Settings
from zzd.gateway.app_stream import app_stream_endpoint
from zzd.gateway.asyncapi import asyncapi_route
from zzd.gateway.closecodes import Close
from zzd.gateway.connection import Connection
from zzd.gateway.logfilter import mark_denied, quiet_client_protocol_errors
from zzd.http import (
    admin_routes,
    app_admin_routes,
    auth_routes,
    bot_routes,
    chat_routes,
    conversation_routes,
    health,
    notice_routes,
    org_routes,
    report_routes,
    subscription_routes,
    task_routes,
    upload_routes,
    web_routes,
)
from zzd.http.common import bearer_token, error_response, guard_int_params
from zzd.http.observe import RequestMetrics
from zzd.http.openapi import openapi_route
from zzd.metrics import routes as metrics_routes
from zzd.services import Services

logger = logging.getLogger(__name__)

__all__ = ["create_app"]


async def ws_endpoint(websocket: WebSocket) -> None:
    s: Services = websocket.app.state.services
    origin = websocket.headers.get("origin")
    # Browsers always send Origin; refuse foreign ones before upgrading (S22).
    # Non-browser clients send none and authenticate with a bearer token (in the hello or the upgrade).
    if origin is not None and not _origin_allowed(websocket, origin.lower(), s):
        logger.info("refused WebSocket from origin %r", origin[:100])
        await websocket.close(code=Close.POLICY)  # before accept: HTTP 403
        return
    # A token in the upgrade request is checked before upgrading: a bad one never gets a socket (S16 d, S20).
    bearer = websocket.headers.get("authorization")
    if bearer is not None:
        token = bearer_token(bearer)
        try:
            if token is None:
                raise Unauthorized("expected Authorization: Bearer <access token>")
            s.tokens.verify(token)
        except ZzdError as exc:
            mark_denied()
            s.metrics.ws_refused.labels("unauthorized").inc()
            await websocket.send_denial_response(error_response(exc))
            return
    else:
        token = None
    hub = s.hub
    # uvicorn's --limit-concurrency answers 503 to HTTP requests only (upgrades skip
    # its check), so the WebSocket cap is ours (S16 b); a draining process refuses too,
    # and so does one with ``max_pending_hellos`` hellos in progress (S9: shed, not stall).
    if not hub.admit(s.settings.limit_concurrency, s.settings.max_pending_hellos):
        mark_denied()
        busy = hub.open_sockets < s.settings.limit_concurrency and not hub.draining
        s.metrics.ws_refused.labels("draining" if hub.draining else "busy" if busy else "full").inc()
        await websocket.send_denial_response(
            JSONResponse(
                {"error": {"code": str(ErrorCode.UNAVAILABLE), "message": "at capacity: retry with backoff"}},
                status_code=503,
                headers={"Retry-After": "1" if busy else "5"},
            )
        )
        return
    conn = Connection(websocket, s, handshake_token=token)
    try:
        await conn.run()
    finally:
        hub.leave(conn.hello_answered)


class _App(Starlette):
    """Starlette, with the clients' WebSocket (``/ws``) taken before the middleware and the routes.

    Why: every hello's socket went through the error middlewares, the request
    metrics (which skip WebSockets anyway) and a match against each HTTP route
    before ``/ws``, and every frame it sent through two wrappers that only watch
    for HTTP responses: about a twentieth of a reconnect storm's server CPU
    (py-spy, issue 15). The endpoint is the same; an exception it lets through
    reaches uvicorn, which closes the socket (1011, or 500 before the upgrade),
    as Starlette's handlers, written for HTTP responses, leave it to do.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == scope.get("root_path", "") + "/ws":
            scope["app"] = self
            await ws_endpoint(WebSocket(scope, receive, send))
            return
        await super().__call__(scope, receive, send)


def _origin_allowed(websocket: WebSocket, origin: str, s: Services) -> bool:
    """The allowlist, plus the server's own origin (the page it served) unless turned off.

    The own origin is the scheme and ``Host`` of this very request: a page this server served
    connects back to where it came from. A page elsewhere (even one on a rebound DNS name that
    reaches this host) has no token for this origin, and every socket must authenticate.
    """
    if origin in s.settings.allowed_origins:
        return True
    if not s.settings.allow_own_origin:
        return False
    host = websocket.headers.get("host", "").lower()
    scheme = "https" if websocket.url.scheme == "wss" else "http"
    return bool(host) and origin == f"{scheme}://{host}"


async def _zzd_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ZzdError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}.get(exc.status_code, ErrorCode.BAD_REQUEST)
    body = {"error": {"code": str(code), "message": str(exc.detail)}}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)  # 405 keeps its Allow header


async def _internal_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ClientDisconnect):
        # The client went away mid-request: nothing is wrong with the server and nobody reads the answer.
        logger.info("client disconnected during %s %s", request.method, request.url.path)
        return Response(status_code=499)
    busy = as_unavailable(exc)
    if busy is not None:  # the database is away or full: the retryable 503, not a 500
        logger.warning("%s %s: %s (%r)", request.method, request.url.path, busy.message, exc)
        return error_response(busy)
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": {"code": str(ErrorCode.INTERNAL), "message": "internal error"}}, status_code=500)


def create_app(settings: Settings, *, services: Services | None = None) -> Starlette:
    """Build the app; ``services`` may be supplied by tests (e.g. with a fake clock)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        svc = services or Services.build(settings)
        quiet_client_protocol_errors()  # after uvicorn has configured its loggers
        await svc.start()
        app.state.services = svc
        logger.info(
            "zzd node %s ready (db=%s, broker=%s)",
            settings.node_id,
            svc.db.dialect,
            settings.broker_url.split("://")[0],
        )
        try:
            yield
        finally:
            svc.hub.close_all(Close.GOING_AWAY, "server shutting down")
            svc.stream_hub.close_all()
            await svc.stop()

    routes = [
        *health.routes,
        *metrics_routes,
        *auth_routes.routes,
        *admin_routes.routes,
        *app_admin_routes.routes,
        *bot_routes.routes,
        *subscription_routes.routes,
        *chat_routes.routes,
        *org_routes.routes,
        *notice_routes.routes,
        *upload_routes.routes,
        *conversation_routes.routes,
        *task_routes.routes,
        *report_routes.routes,
        WebSocketRoute("/ws", ws_endpoint),
        WebSocketRoute("/api/v1/bot/stream", app_stream_endpoint),
        *web_routes.routes,
    ]
    for route in routes:
        guard_int_params(route)
    routes += [openapi_route(), asyncapi_route()]
    app = _App(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={ZzdError: _zzd_error, HTTPException: _http_error, Exception: _internal_error},
        middleware=[Middleware(RequestMetrics)],
    )
    # No path ends in a slash: "/api/v1/me/" is the JSON 404 of any unknown path. Starlette's default
    # answered 307 with no body and a Location built from the request's Host header, so a POST was
    # bounced, body and token with it, to wherever Host pointed (found by the trust audit).
    app.router.redirect_slashes = False
    return app
