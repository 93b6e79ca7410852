"""OpenAPI 3.1 for the REST API, generated from the routes themselves.

Paths and methods come from the route table, summaries from each endpoint's
docstring, and request bodies from the same pydantic models that validate
them, so the document cannot drift from what the server accepts.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel
from starlette.convertors import IntegerConvertor
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from zzd import __version__

__all__ = ["build_openapi", "openapi_route"]

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "stable error code (docs/protocol.md)"},
                "message": {"type": "string"},
                "data": {"type": "object"},
                "retryable": {"type": "boolean"},
            },
        }
    },
}
PUBLIC = {"/healthz", "/readyz", "/metrics", "/api/v1/auth/token", "/api/v1/auth/activate", "/openapi.json"}
_CONVERTOR = re.compile(r"\{(\w+):\w+\}")


def build_openapi(routes: Sequence[BaseRoute], bodies: dict[Callable[..., Any], type[BaseModel]]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for route in routes:
        if not isinstance(route, Route) or route.methods is None or not route.include_in_schema:
            continue
        doc = inspect.getdoc(route.endpoint) or route.name.replace("_", " ")
        path = _CONVERTOR.sub(r"{\1}", route.path)
        for method in sorted(route.methods - {"HEAD"}):
            op: dict[str, Any] = {
                "operationId": f"{method.lower()}_{route.name}",
                "summary": doc.splitlines()[0],
                "responses": {
                    "200": {"description": "OK"},
                    **({"201": {"description": "Created"}} if method in ("POST", "PUT") else {}),
                    "default": {
                        "description": "error",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    },
                },
            }
            if path not in PUBLIC:
                op["security"] = [{"bearer": []}]
            params = [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 0}
                    if isinstance(conv, IntegerConvertor)
                    else {"type": "string"},
                }
                for name, conv in route.param_convertors.items()
            ]
            if params:
                op["parameters"] = params
            model = bodies.get(route.endpoint)
            if model is not None:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
                }
            # Endpoints whose body is not a JSON model (raw uploads) describe it themselves.
            op.update(getattr(route.endpoint, "openapi_extra", {}).get(method.lower(), {}))
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "ZZD", "version": __version__, "description": "Messaging addressed to positions (岗位)."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def openapi_route(routes: Sequence[BaseRoute], bodies: dict[Callable[..., Any], type[BaseModel]]) -> Route:
    document: dict[str, Any] = {}

    async def openapi(request: Request) -> JSONResponse:
        """The OpenAPI document of this server."""
        if not document:
            document.update(build_openapi(request.app.routes, bodies))
        return JSONResponse(document)

    return Route("/openapi.json", openapi, methods=["GET"])
