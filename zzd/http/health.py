"""Liveness (``/healthz``: the process answers) and readiness (``/readyz``: dependencies answer)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from zzd.http.common import services_of

__all__ = ["routes"]


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    s = services_of(request)
    checks: dict[str, str] = {}
    for name, probe in (("database", s.db.ping), ("broker", s.broker.ping)):
        try:
            await asyncio.wait_for(probe(), timeout=2)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {
            "status": "ready" if ready else "unavailable",
            "checks": checks,
            "node": s.settings.node_id,
            "connections": s.hub.count(),
        },
        status_code=200 if ready else 503,
    )


routes = [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
