"""``/api/v1/bot/…``: the bot API for apps (docs/apps.md).

Who may call: an app with an app token (``client_credentials``); person
tokens are refused (wrong audience). Each endpoint names the scope it needs;
everything an app addresses or reads must lie in its subtree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from zzd.http.app_auth import current_app
from zzd.http.common import ok

__all__ = ["bodies", "routes"]


async def me(request: Request) -> JSONResponse:
    """The calling app as the registry has it now (any valid app token)."""
    s, p = await current_app(request)
    idx = s.org_index.index
    data = p.app.to_dict()
    data["subtree_path"] = idx.unit_path(idx.unit(p.app.subtree_unit_id))
    return ok(data)


routes = [
    Route("/api/v1/bot/me", me, methods=["GET"]),
]

#: Request body models, for the OpenAPI document.
bodies: dict[Callable[..., Any], type[BaseModel]] = {}
