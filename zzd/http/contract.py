"""One declaration per REST operation: what it reads, what it answers, which errors it documents.

An endpoint is declared with :meth:`Endpoints.route` (its method, path and
:func:`operation`); the same models then parse its query string (:func:`query`)
and body (``common.json_body``), shape its answer (:func:`reply`) and write
``/openapi.json`` (``zzd.http.openapi``). Nothing about the wire is said twice,
so the document cannot drift from the code, and ``tests/test_contract_openapi.py``
fails for a route that declares nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import UnionType
from typing import Annotated, Any, TypedDict, TypeVar, Union, Unpack, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kernel.errors import BadRequest
from kernel.hexids import hex_pattern
from kernel.wire import WireModel
from org_tree.selectors import UNIT_FORMS, unit_value

__all__ = [
    "ERRORS",
    "BodyModel",
    "Endpoints",
    "Id",
    "Op",
    "PATH_PARAMS",
    "QueryModel",
    "REPLAYED",
    "Timestamp",
    "UnitRef",
    "WireModel",
    "created",
    "operation",
    "operation_of",
    "query",
    "reply",
]

F = TypeVar("F", bound=Callable[..., Any])
Q = TypeVar("Q", bound="QueryModel")

#: Error statuses and the codes each can carry (docs/protocol.md lists them all).
ERRORS: dict[int, str] = {
    400: "bad_request, invalid_body, invalid_json, invalid_text, invalid_location, unknown_category, "
    "unknown_attachment, group_too_large, checksum_mismatch",
    401: "unauthorized, token_expired, invalid_grant, invalid_client (apps)",
    403: "forbidden, out_of_scope, no_grant, insufficient_scope and address_not_allowed (apps) "
    "(also: the session was revoked)",
    404: "not_found (missing, or not visible to the caller: the same answer)",
    405: "method_not_allowed",
    409: "conflict, stale_version, invalid_transition, already_exists, resync_required, idempotency_key_reused (apps)",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited (see Retry-After)",
    503: "unavailable (retryable; see Retry-After)",
}


_DIGITS = re.compile(r"[0-9]{1,19}")

#: Path parameters that are not integers, by name: what they hold.
PATH_PARAMS: dict[str, dict[str, Any]] = {
    "unit": {
        "type": "string",
        "minLength": 1,
        "maxLength": 32,
        "description": "a unit's code (330802) or #id (#17, written %2317 in a URL)",
        "examples": ["330802"],
    },
    "ref": {
        "type": "string",
        "minLength": 1,
        "maxLength": 32,
        "description": "a unit's code (330802) or #id (#17, written %2317 in a URL)",
        "examples": ["330802"],
    },
    "role": {
        "type": "string",
        "minLength": 1,
        "maxLength": 100,
        "description": "a role's key (grid_worker) or display name",
        "examples": ["grid_worker"],
    },
    "digest": {
        "type": "string",
        "pattern": hex_pattern(64),
        "description": "hex SHA-256 of the file, as the upload answered (either case is read; answers are lower-case)",
    },
    "session": {
        "type": "string",
        "pattern": hex_pattern(32),
        "description": "a sign-in session's id as GET /api/v1/auth/sessions shows it (32 hex digits, either case)",
    },
    "key": {
        "type": "string",
        "pattern": "^[a-z][a-z0-9_]{0,31}$",
        "description": "task category key",
        "examples": ["flood"],
    },
}


#: An instant as ISO 8601 in UTC (``2026-12-02T08:30:00Z``).
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]

#: A row id in a body or query string (bounded so that JavaScript clients read it exactly).
Id = Annotated[int, Field(ge=1, le=2**53)]


def _unit_in_body(value: int | str) -> int | str:
    try:
        return unit_value(value)
    except BadRequest as exc:
        raise ValueError(f"must name a unit by {UNIT_FORMS}") from exc


#: A unit in a body: its id (``17`` or ``"#17"``, read as the id 17) or its code (``"330802"``).
UnitRef = Annotated[
    Id | Annotated[str, StringConstraints(min_length=1, max_length=33)],
    AfterValidator(_unit_in_body),
]


def _is_int(annotation: object) -> bool:
    return annotation is int or (get_origin(annotation) is Annotated and get_args(annotation)[0] is int)


class BodyModel(BaseModel):
    """A JSON request body: strict types (``"1"`` is not a number), and a field it does not name is refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class QueryModel(BaseModel):
    """A query string: strings converted to the field types, unknown names ignored.

    Integers are ASCII digits only (no sign, space, underscore or other
    scripts' digits, which ``int()`` would accept), and bounded by the field.
    """

    model_config = ConfigDict(extra="ignore")

    @field_validator("*", mode="before")
    @classmethod
    def _ascii_digits(cls, value: object, info: ValidationInfo) -> object:
        annotation = cls.model_fields[str(info.field_name)].annotation
        wants_int = annotation is int or (
            get_origin(annotation) in (Union, UnionType) and any(_is_int(a) for a in get_args(annotation))
        )
        if wants_int and isinstance(value, str) and _DIGITS.fullmatch(value) is None:
            raise ValueError("must be a whole number written in ASCII digits")
        return value


@dataclass(frozen=True)
class Op:
    """What one endpoint declares (read by the OpenAPI builder and the completeness test)."""

    responses: Mapping[int, type[BaseModel] | None]
    body: type[BaseModel] | None = None
    query: type[QueryModel] | None = None
    errors: tuple[int, ...] = ()
    public: bool = False
    #: Free-form OpenAPI additions (raw uploads, binary downloads).
    extra: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    #: The body is also taken form-encoded, and such a request's errors are RFC 6749 5.2's shape
    #: (the token endpoint, as OAuth2 client libraries call it).
    oauth_form: bool = False


def operation(
    responses: Mapping[int, type[BaseModel] | None],
    *,
    body: type[BaseModel] | None = None,
    query: type[QueryModel] | None = None,
    errors: tuple[int, ...] = (),
    public: bool = False,
    extra: Mapping[str, Any] | None = None,
    tag: str | None = None,
    oauth_form: bool = False,
) -> Callable[[F], F]:
    """Declare an endpoint's contract; ``responses`` maps each success status to its body model."""

    def mark(fn: F) -> F:
        fn.__zzd_op__ = Op(  # type: ignore[attr-defined]
            responses=responses,
            body=body,
            query=query,
            errors=errors,
            public=public,
            extra=extra or {},
            tags=(tag,) if tag else (),
            oauth_form=oauth_form,
        )
        return fn

    return mark


class Contract(TypedDict, total=False):
    """What :meth:`Endpoints.route` passes on to :func:`operation` besides the answers."""

    body: type[BaseModel] | None
    query: type[QueryModel] | None
    errors: tuple[int, ...]
    public: bool
    extra: Mapping[str, Any] | None
    oauth_form: bool


class Endpoints:
    """A module's REST endpoints: each declares its method and path where it is defined.

    Why: a separate route list at the bottom of every module repeated each
    endpoint's name and had to be kept in step with the functions by hand.
    ``routes`` keeps the order of declaration, which is the order Starlette
    matches in and the order ``/openapi.json`` and docs/api/ list the paths.
    """

    def __init__(self, tag: str | None = None, prefix: str = "") -> None:
        #: The OpenAPI tag of every endpoint here that names none of its own.
        self.tag = tag
        #: Where every path here starts (a module serving one resource: ``/api/v1/bot``).
        self.prefix = prefix
        self.routes: list[Route] = []

    def route(
        self,
        method: str,
        path: str,
        responses: Mapping[int, type[BaseModel] | None],
        *,
        tag: str | None = None,
        **contract: Unpack[Contract],
    ) -> Callable[[F], F]:
        """Serve ``method prefix+path`` with the decorated endpoint, declared as :func:`operation` does."""
        declare = operation(responses, tag=tag or self.tag, **contract)

        def register(fn: F) -> F:
            self.routes.append(Route(self.prefix + path, declare(fn), methods=[method]))
            return fn

        return register


def operation_of(endpoint: Callable[..., Any]) -> Op | None:
    return getattr(endpoint, "__zzd_op__", None)


def query(request: Request, model: type[Q]) -> Q:
    """The query string validated against ``model`` (400 naming the first bad parameter).

    A parameter the model reads may appear once: ``?limit=10&limit=20`` answers 400 naming
    ``limit`` (before, the last one silently won, so a client and a proxy or cache in
    between could each read a different value).
    """
    params = request.query_params
    twice = sorted({k for k in params if k in model.model_fields and len(params.getlist(k)) > 1})
    if twice:
        raise BadRequest(f"{twice[0]}: give this query parameter once", data={"field": twice[0], "repeated": twice})
    raw = {k: v for k, v in params.items() if k in model.model_fields}
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        name = str(first["loc"][0]) if first["loc"] else "query"
        raise BadRequest(f"{name}: {first['msg']}", data={"field": name}) from exc


def reply(model: type[BaseModel], data: Any, status: int = 200) -> Response:
    """Shape ``data`` (a dict, dataclass or model) as ``model`` and answer it as JSON.

    Validating what leaves makes the model the producer's contract, not only
    the document's: a field the model does not name fails here (in the tests)
    instead of reaching a client undocumented.
    """
    if isinstance(data, model):
        value = data
    else:
        # Domain results that name their own wire form (``to_dict``) are read through it.
        to_dict = getattr(data, "to_dict", None)
        value = model.model_validate(to_dict() if callable(to_dict) else data, from_attributes=True)
    return Response(value.__pydantic_serializer__.to_json(value), status_code=status, media_type="application/json")


#: The header that marks an answer to a retried create (docs/protocol.md "Retries").
REPLAYED = "Idempotent-Replayed"


def created(model: type[BaseModel], data: Any, *, duplicate: bool) -> Response:
    """A create's answer: 201, or for a retry of a create already made 200 with ``Idempotent-Replayed: true``.

    Why one helper: every create keyed by a ``client_msg_id`` must tell a retry from a first
    write the same way (tasks answered a retry 201 with nothing to tell it by, notices 200).
    """
    resp = reply(model, data, status=200 if duplicate else 201)
    if duplicate:
        resp.headers[REPLAYED] = "true"
    return resp
