"""Liveness (``/healthz``: the process answers) and readiness (``/readyz``: dependencies answer)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from zzd.http.common import services_of
from zzd.http.contract import operation, reply
from zzd.http.schemas.ops import Health, Ready

__all__ = ["routes"]


@operation({200: Health}, public=True, tag="meta")
async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return reply(Health, {"status": "ok"})


_NOT_READY = {
    "description": "a dependency does not answer",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}},
}


@operation({200: Ready}, public=True, tag="meta", extra={"responses": {"503": _NOT_READY}})
async def readyz(request: Request) -> Response:
    """Readiness: the database and the broker answer within 2 s."""
    s = services_of(request)
    checks: dict[str, str] = {}
    for name, probe in (("database", s.db.ping), ("broker", s.broker.ping)):
        try:
            await asyncio.wait_for(probe(), timeout=2)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return reply(
        Ready,
        {
            "status": "ready" if ready else "unavailable",
            "checks": checks,
            "node": s.settings.node_id,
            "connections": s.hub.count(),
        },
        status=200 if ready else 503,
    )


routes = [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
