"""Per-route HTTP metrics: requests by route template, method and status, and their durations.

A pure ASGI wrapper outside the router: after the answer, ``scope["route"]``
names the matched route, so labels are templates (``/api/v1/notices/{notice_id:int}``),
never raw URLs, and their number stays bounded. Unmatched paths count as ``unmatched``.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            services = getattr(scope["app"].state, "services", None) if "app" in scope else None
            if services is not None:
                route = getattr(scope.get("route"), "path", "unmatched")
                m = services.metrics
                m.http_requests.labels(route, scope["method"], str(status)).inc()
                m.http_seconds.labels(route, scope["method"]).observe(time.perf_counter() - start)
