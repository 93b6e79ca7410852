"""The OpenAPI document against the route table: a route without a full contract fails here.

Every HTTP route must declare its operation (``zzd.http.contract.operation``);
the document must give every operation its path and query parameters with
bounds, its request body when the endpoint reads one, each success status
with its body, and its error statuses with the error body. The endpoint's own
source is read to catch a body or query string parsed outside the contract.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from pydantic import RootModel
from starlette.routing import Route

from tests.conftest import make_settings
from zzd.app import create_app
from zzd.http.contract import WireModel, operation_of
from zzd.http.openapi import build_openapi, openapi_path

BOUNDED_STRING = ("maxLength", "pattern", "enum", "const")


@pytest.fixture(scope="module")
def app_routes(tmp_path_factory: pytest.TempPathFactory) -> list[Route]:
    db = tmp_path_factory.mktemp("oa") / "x.db"
    app = create_app(make_settings(f"sqlite+aiosqlite:///{db}"))
    return [r for r in app.routes if isinstance(r, Route) and r.include_in_schema]


@pytest.fixture(scope="module")
def document(app_routes: list[Route]) -> dict[str, Any]:
    return build_openapi(app_routes)


def _bounded(schema: dict[str, Any], components: dict[str, Any]) -> bool:
    if "$ref" in schema:
        return _bounded(components[schema["$ref"].rsplit("/", 1)[1]], components)
    if "anyOf" in schema:
        return all(_bounded(s, components) for s in schema["anyOf"])
    kind = schema.get("type")
    if kind == "integer":
        return "minimum" in schema and "maximum" in schema
    if kind == "string":
        return any(k in schema for k in BOUNDED_STRING)
    return "enum" in schema or kind == "boolean"


def test_every_route_declares_its_operation(app_routes: list[Route]) -> None:
    missing = [f"{sorted(r.methods or ())} {r.path}" for r in app_routes if operation_of(r.endpoint) is None]
    assert not missing, (
        f"routes without @operation: {missing}; declare each with zzd.http.contract.operation (answers, body, query,"
        " errors) and answer through reply(Model, data); then regenerate docs/api: .venv/bin/python scripts/api_docs.py"
    )


def test_every_operation_is_complete(app_routes: list[Route], document: dict[str, Any]) -> None:
    components = document["components"]["schemas"]
    problems: list[str] = []
    for route in app_routes:
        path = openapi_path(route.path)
        assert ":" not in path, path
        for method in sorted((route.methods or set()) - {"HEAD"}):
            op = document["paths"][path][method.lower()]
            where = f"{method} {path}"
            params = {(p["in"], p["name"]): p for p in op.get("parameters", [])}
            for name in route.param_convertors:
                p = params.get(("path", name))
                if p is None or not _bounded(p["schema"], components):
                    problems.append(f"{where}: path parameter {name} missing or unbounded")
            for (where_in, name), p in params.items():
                if where_in == "query" and not _bounded(p["schema"], components):
                    problems.append(f"{where}: query parameter {name} unbounded: {p['schema']}")
            statuses = {int(s) for s in op["responses"]}
            ok = [s for s in statuses if 200 <= s < 300]
            if not ok:
                problems.append(f"{where}: no success status")
            for s in ok:
                if "content" not in op["responses"][str(s)]:
                    problems.append(f"{where}: {s} has no body schema")
            errors = [s for s in statuses if s >= 400]
            if not errors:
                problems.append(f"{where}: no documented errors")
            for s in errors:
                if "content" not in op["responses"][str(s)]:
                    problems.append(f"{where}: {s} has no body schema")
            if "default" in op["responses"]:
                problems.append(f"{where}: a catch-all 'default' answer hides the real error statuses")
            source = inspect.getsource(route.endpoint)
            declared = operation_of(route.endpoint)
            assert declared is not None
            if "json_body(" in source and "requestBody" not in op:
                problems.append(f"{where}: reads a JSON body the document does not describe")
            if "query_params" in source or ("query(request" in source and declared.query is None):
                problems.append(f"{where}: reads the query string outside its declared QueryModel")
            for model in declared.responses.values():
                meta = route.path.endswith("api.json")  # the documents themselves are free-form
                if model is not None and not issubclass(model, WireModel | RootModel) and not meta:
                    problems.append(f"{where}: answer model {model.__name__} is not a WireModel (extra=forbid)")
            if not op.get("summary"):
                problems.append(f"{where}: no summary (the endpoint's docstring)")
    assert not problems, "\n".join(problems)


def test_creating_operations_answer_201(document: dict[str, Any]) -> None:
    """A POST that makes a new resource says 201 (and 200 only for an idempotent retry)."""
    creators = [
        ("/api/v1/messages", "post"),
        ("/api/v1/notices", "post"),
        ("/api/v1/tasks", "post"),
        ("/api/v1/reports", "post"),
        ("/api/v1/groups", "post"),
        ("/api/v1/org/units", "post"),
        ("/api/v1/org/roles", "post"),
        ("/api/v1/org/positions", "post"),
        ("/api/v1/admin/grants", "post"),
        ("/api/v1/uploads", "post"),
        ("/api/v1/notices/{notice_id}/tasks", "post"),
    ]
    for path, method in creators:
        assert "201" in document["paths"][path][method]["responses"], path


def test_no_module_builds_json_answers_by_hand() -> None:
    """Answers leave through ``reply(Model, …)``; a bare JSONResponse would bypass the contract."""
    root = Path(__file__).resolve().parents[1] / "zzd" / "http"
    offenders = [p.name for p in root.rglob("*.py") if p.name != "common.py" and "JSONResponse(" in p.read_text()]
    assert not offenders, offenders
