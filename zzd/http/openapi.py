"""OpenAPI 3.1 for the REST API, generated from the routes and their declared contracts.

Paths and methods come from the route table, summaries from each endpoint's
docstring, and parameters, bodies, answers and errors from the
:func:`zzd.http.contract.operation` each endpoint carries: the same pydantic
models that parse requests and shape answers, so the document cannot drift
from what the server does.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from starlette.convertors import IntegerConvertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kernel.numbers import MAX_ID
from zzd import __version__
from zzd.http.contract import ERRORS, PATH_PARAMS, Op, operation, operation_of, reply
from zzd.http.fielddocs import describe

__all__ = ["build_openapi", "openapi_path", "openapi_route"]

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "stable error code (docs/api/errors.md)"},
                "message": {"type": "string", "description": "English explanation; clients switch on code"},
                "data": {"type": "object", "description": "what a client can act on, e.g. {field}"},
                "retryable": {"type": "boolean", "description": "the very same request may succeed later"},
            },
        }
    },
    "examples": [{"error": {"code": "not_found", "message": "no such notice"}}],
}
#: RFC 6749 5.2's error body, answered to a form-encoded token request (``Op.oauth_form``).
OAUTH_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "string",
            "enum": [
                "invalid_request",
                "invalid_client",
                "invalid_grant",
                "unsupported_grant_type",
                "temporarily_unavailable",
                "rate_limited",
            ],
            "description": "RFC 6749 5.2's code (temporarily_unavailable: RFC 6749 4.1.2.1's; rate_limited: ZZD's, "
            "with Retry-After)",
        },
        "error_description": {"type": "string", "description": "English explanation"},
        "error_detail": ERROR_SCHEMA["properties"]["error"],
    },
    "examples": [
        {
            "error": "invalid_client",
            "error_description": "unknown client or wrong secret",
            "error_detail": {"code": "invalid_client", "message": "unknown client or wrong secret"},
        }
    ],
}
_CONVERTOR = re.compile(r"\{(\w+):\w+\}")


def openapi_path(path: str) -> str:
    """The route's path as OpenAPI writes it (``{key:str}`` → ``{key}``)."""
    return _CONVERTOR.sub(r"{\1}", path)


class _Schemas:
    """Component schemas collected from the models, each once under its class name."""

    def __init__(self) -> None:
        self.all: dict[str, Any] = {"Error": ERROR_SCHEMA, "OAuthError": OAUTH_ERROR_SCHEMA}

    def ref(self, model: type[BaseModel], mode: str) -> dict[str, str]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)  # type: ignore[arg-type]
        fresh = {**schema.pop("$defs", {}), model.__name__: schema}
        describe(model, fresh, request=mode == "validation")  # ``#:`` comments above fields as descriptions
        for name, sub in fresh.items():
            # Two different models under one name would silently document the wrong one
            # (the same model seen as a body and as an answer differs only in descriptions).
            known = self.all.get(name, sub)
            if _shape(known) != _shape(sub):
                raise ValueError(f"two different schemas are named {name}")
            if name not in self.all or len(str(sub)) > len(str(known)):
                self.all[name] = sub
        return {"$ref": f"#/components/schemas/{model.__name__}"}


def _shape(node: Any) -> Any:
    """A schema without its prose, to compare two models' shapes."""
    if isinstance(node, dict):
        return {k: _shape(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_shape(v) for v in node]
    return node


def _parameters(route: Route, op: Op, schemas: _Schemas) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name, conv in route.param_convertors.items():
        if isinstance(conv, IntegerConvertor):
            schema: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
        else:
            schema = dict(PATH_PARAMS.get(name, {"type": "string"}))
        desc = schema.pop("description", None)
        params.append({"name": name, "in": "path", "required": True, "schema": schema,
                       **({"description": desc} if desc else {})})  # fmt: skip
    if op.query is not None:
        full = op.query.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.all.update(full.pop("$defs", {}))
        required = set(full.get("required", []))
        for name, schema in full.get("properties", {}).items():
            desc = schema.pop("description", None)
            schema.pop("title", None)
            # An optional parameter is simply left out of the query string; it is never "null".
            options = [o for o in schema.pop("anyOf", []) if o.get("type") != "null"]
            if len(options) == 1:
                schema.update(options[0])
            elif options:
                schema["anyOf"] = options
            if schema.get("default", 0) is None:
                del schema["default"]
            params.append({"name": name, "in": "query", "required": name in required, "schema": schema,
                           **({"description": desc} if desc else {})})  # fmt: skip
    return params


def _operation(route: Route, method: str, op: Op, schemas: _Schemas) -> dict[str, Any]:
    doc = inspect.getdoc(route.endpoint) or route.name.replace("_", " ")
    summary, _, rest = doc.partition("\n")
    responses: dict[str, Any] = {}
    for status, model in sorted(op.responses.items()):
        entry: dict[str, Any] = {"description": _STATUS_TEXT.get(status, "OK")}
        if model is not None:
            entry["content"] = {"application/json": {"schema": schemas.ref(model, "serialization")}}
        responses[str(status)] = entry
    errors = set(op.errors)
    if not op.public:
        errors |= {401, 403}
    if op.body is not None or op.query is not None or route.param_convertors:
        errors.add(400)
    if route.param_convertors or (op.body is not None and not op.public):
        errors.add(404)  # a path id, or an id in the body, that is missing or not visible
    errors |= {503}
    error: dict[str, Any] = {"$ref": "#/components/schemas/Error"}
    if op.oauth_form:  # a JSON request's errors are ZZD's; a form-encoded one's are RFC 6749's
        error = {"oneOf": [error, {"$ref": "#/components/schemas/OAuthError"}]}
    for status in sorted(errors):
        responses[str(status)] = {
            "description": ERRORS[status] + ("; a form-encoded request gets OAuthError" if op.oauth_form else ""),
            "content": {"application/json": {"schema": error}},
        }
    out: dict[str, Any] = {
        "operationId": f"{method.lower()}_{route.name}",
        "summary": summary.strip(),
        "responses": responses,
    }
    if rest.strip():
        out["description"] = rest.strip()
    if op.tags:
        out["tags"] = list(op.tags)
    if not op.public:
        out["security"] = [{"bearer": []}]
    params = _parameters(route, op, schemas)
    if params:
        out["parameters"] = params
    if op.body is not None:
        body = schemas.ref(op.body, "validation")
        content = {"application/json": {"schema": body}}
        if op.oauth_form:
            content["application/x-www-form-urlencoded"] = {"schema": body}
        out["requestBody"] = {"required": True, "content": content}
    for key, value in op.extra.items():
        if key == "parameters":
            out["parameters"] = [*out.get("parameters", []), *value]
        elif key == "responses":
            for status, entry in value.items():
                out["responses"][status] = {**out["responses"].get(status, {}), **entry}
        else:
            out[key] = value
    return out


_STATUS_TEXT = {200: "OK", 201: "Created", 304: "Not modified (If-None-Match: * or a matching ETag)"}


def build_openapi(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The document for every HTTP route that declares an operation (all of them, by test)."""
    paths: dict[str, dict[str, Any]] = {}
    schemas = _Schemas()
    for route in routes:
        if not isinstance(route, Route) or route.methods is None or not route.include_in_schema:
            continue
        op = operation_of(route.endpoint)
        if op is None:
            continue
        path = openapi_path(route.path)
        for method in sorted(route.methods - {"HEAD"}):
            paths.setdefault(path, {})[method.lower()] = _operation(route, method, op, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ZZD",
            "version": __version__,
            "description": "Messaging addressed to positions (岗位). Reference: docs/api/README.md.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.all,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


class OpenApiDocument(BaseModel):
    """The OpenAPI document itself (free-form JSON)."""

    model_config = {"extra": "allow"}


def openapi_route() -> Route:
    document: dict[str, Any] = {}

    async def openapi(request: Request) -> Response:
        """The OpenAPI 3.1 document of this server."""
        if not document:
            document.update(build_openapi(request.app.routes))
        return reply(OpenApiDocument, document)

    operation({200: OpenApiDocument}, public=True, tag="meta")(openapi)
    return Route("/openapi.json", openapi, methods=["GET"])
