"""Per-route HTTP metrics and the request's log context (request id, method, path; person once known).

A pure ASGI wrapper outside the router: after the answer, ``scope["route"]``
names the matched route, so labels are templates (``/api/v1/notices/{notice_id:int}``),
never raw URLs, and their number stays bounded. Unmatched paths count as ``unmatched``.
"""

from __future__ import annotations

import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zzd.logs import REQUEST

__all__ = ["RequestMetrics"]


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        given = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if 0 < len(given) <= 64 and given.isprintable() else secrets.token_hex(8)
        token = REQUEST.set({"request_id": request_id, "method": scope["method"], "path": scope["path"]})

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            REQUEST.reset(token)
            services = getattr(scope["app"].state, "services", None) if "app" in scope else None
            if services is not None:
                route = getattr(scope.get("route"), "path", "unmatched")
                m = services.metrics
                m.http_requests.labels(route, scope["method"], str(status)).inc()
                m.http_seconds.labels(route, scope["method"]).observe(time.perf_counter() - start)
