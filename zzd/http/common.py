"""What every REST endpoint shares: the error body, strict JSON bodies, bearer auth."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError
from starlette.convertors import IntegerConvertor
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from kernel.errors import BadRequest, ErrorCode, Forbidden, NotFound, RateLimited, Unauthorized, ZzdError
from kernel.numbers import MAX_ID
from zzd.auth.tokens import AccessClaims
from zzd.gateway.jsonsafe import strict_loads
from zzd.logs import set_person

if TYPE_CHECKING:
    from zzd.services import Services

logger = logging.getLogger(__name__)

__all__ = [
    "authenticate",
    "bearer_token",
    "check_send_rate",
    "error_response",
    "guard_int_params",
    "is_form",
    "json_body",
    "json_or_form_body",
    "oauth_error",
    "services_of",
]

#: The largest JSON body read. Not 64 KiB (the WebSocket frame cap): the documented field maxima are
#: code points, and a JSON encoder may escape each one (Python's ``json.dumps`` and ``requests`` do:
#: ``\u4f60`` is 6 bytes, a character beyond the BMP 12 as a surrogate pair). A notice at its limits
#: (4,000-character selector, 200-character title, 20,000-character body) is 145 KB escaped and
#: 291 KB escaped beyond the BMP; at 64 KiB a 10,923-character Chinese body already failed.
MAX_BODY_BYTES = 393_216
M = TypeVar("M", bound=BaseModel)


def services_of(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def error_response(err: ZzdError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if err.http_status == 401 else None
    retry = _retry_after(err)
    if retry is not None:
        headers = {"Retry-After": retry}
    return JSONResponse({"error": err.to_dict()}, status_code=err.http_status, headers=headers)


def _retry_after(err: ZzdError) -> str | None:
    """The ``Retry-After`` of a 429 or 503 that says how long to wait (``data.retry_after``), else None."""
    retry = err.data.get("retry_after") if err.http_status in (429, 503) else None
    return str(retry) if isinstance(retry, int) else None


#: RFC 6749 5.1 (and 5.2 for the form-encoded errors): no cache on the way may keep a token answer.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_error(err: ZzdError) -> JSONResponse:
    """``err`` as RFC 6749 5.2 words it: ``{"error": "<code>", "error_description": "…"}``.

    Why: OAuth2 client libraries send token requests form-encoded (RFC 6749 4.4.2) and read the
    answer's ``error`` as one of the RFC's codes (a string); ZZD's usual body has an object
    there. So a form-encoded request gets this body, with ZZD's own error object beside it as
    ``error_detail``; a JSON request keeps the usual body (docs/apps.md "Token errors").
    The RFC's statuses: 401 for ``invalid_client``, 400 for the others (an ``invalid_grant``,
    a wrong password or a spent refresh token, is 400 here, 401 in the JSON answer); 429 and
    503 keep their status and ``Retry-After``.
    """
    status = err.http_status
    if err.code == ErrorCode.INVALID_CLIENT:
        code = "invalid_client"
    elif status in (401, 403, 404):
        code, status = "invalid_grant", 400
    elif status == 429:
        code = "rate_limited"
    elif status == 503:
        code = "temporarily_unavailable"
    else:
        problems = err.data.get("errors") or [{}]
        bad_grant = err.data.get("field") == "grant_type" and problems[0].get("problem") != "Field required"
        code, status = ("unsupported_grant_type" if bad_grant else "invalid_request"), 400
    headers = dict(NO_STORE)
    if (retry := _retry_after(err)) is not None:
        headers["Retry-After"] = retry
    body = {"error": code, "error_description": err.message, "error_detail": err.to_dict()}
    return JSONResponse(body, status_code=status, headers=headers)


async def json_body(request: Request, model: type[M]) -> M:
    """Read and validate a JSON body strictly against ``model``."""
    return _validate(await _json_value(request), model)


FORM = "application/x-www-form-urlencoded"


async def json_or_form_body(request: Request, model: type[M]) -> M:
    """A JSON body, or an HTML-form-encoded one of flat string fields (the token endpoint).

    Why: RFC 6749 sends token requests form-encoded (4.4.2, client credentials), so an app's
    standard OAuth2 library speaks it. Each parameter at most once (3.2), UTF-8, no empty names.
    """
    if _content_type(request) != FORM:
        return await json_body(request, model)
    raw = await _read(request)
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("body is not a well-formed UTF-8 form", code=ErrorCode.INVALID_BODY) from exc
    names = [k for k, _ in pairs]
    twice = sorted({k for k in names if names.count(k) > 1})
    if twice:
        raise BadRequest("a form parameter is sent twice", code=ErrorCode.INVALID_BODY, data={"fields": twice})
    return _validate(dict(pairs), model)


def _validate(obj: Any, model: type[M]) -> M:
    try:
        return model.model_validate(obj, strict=True)
    except ValidationError as exc:
        fields = _bad_fields(exc)
        data = {"field": fields[0]["field"], "errors": fields}
        raise BadRequest(f"invalid request body: {fields[0]['field']}: {fields[0]['problem']}",
                         code=ErrorCode.INVALID_BODY, data=data) from exc  # fmt: skip


def _bad_fields(exc: ValidationError) -> list[dict[str, str]]:
    """The first five bad fields, each named by its path in the body (``parent``, ``levels.0``).

    A value that may take several forms (a unit as a code or an id, a selector as JSON or text)
    fails once per form, and pydantic names each failure after the form tried (``parent.int``,
    ``selector.dict[str,any]``): those names are not fields a client sent, so they are dropped
    and the forms' problems are joined under the one field (before, ``data.field`` was
    ``parent.int``).
    """
    problems: dict[str, list[str]] = {}
    for e in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in e["loc"] if not _is_form_tag(p)) or "body"
        seen = problems.setdefault(field, [])
        if e["msg"] not in seen:
            seen.append(e["msg"])
    return [{"field": f, "problem": " or ".join(ps)} for f, ps in list(problems.items())[:5]]


def _is_form_tag(part: int | str) -> bool:
    """Whether a step of a pydantic error's path names a form of a union, not a field or an index."""
    return isinstance(part, str) and (part in _FORM_TAGS or any(c in part for c in "[-,("))


_FORM_TAGS = frozenset({"int", "str", "float", "bool", "dict", "list", "none", "bytes"})


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def is_form(request: Request) -> bool:
    """Whether the body is declared HTML-form-encoded (``application/x-www-form-urlencoded``)."""
    return _content_type(request) == FORM


async def _read(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BadRequest(f"body larger than {MAX_BODY_BYTES} bytes", data={"max_bytes": MAX_BODY_BYTES})
    return body


async def _json_value(request: Request) -> Any:
    """The request's JSON value; no body at all (none declared, or an empty JSON one) is ``{}``.

    Why ``{}``: an endpoint whose body fields are all optional (``POST …/ack``: ``reply`` and
    ``position_id``) is naturally called with no body, and answered ``invalid_json`` it read as if
    the call were wrong (河北 audit); a body with required fields is then refused naming the first
    one missing (``invalid_body``), which says more than "not JSON".
    """
    ctype = _content_type(request)
    if ctype not in ("application/json", ""):
        raise BadRequest("send the body as application/json", code=ErrorCode.INVALID_JSON)
    body = await _read(request)
    if not body:
        return {}
    if not ctype:
        raise BadRequest("send the body as application/json", code=ErrorCode.INVALID_JSON)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("body is not UTF-8", code=ErrorCode.INVALID_JSON) from exc
    return strict_loads(text)


def check_send_rate(s: Services, person_id: int, what: str = "messages") -> None:
    """Take one of the person's ``ZZD_SEND_RATE_PER_MINUTE`` writes that reach others, or ``RateLimited``.

    Why one budget for messages, notices, tasks and reports, edits and recalls, and group
    changes: each writes to other people's streams (a notice or a task to hundreds, a report a
    task with DING calls out of band, a group change a system note to every member), and without
    a bound one account could flood them all (group changes and edits were unbounded until the
    湖南 audit).
    """
    if not s.rate_limiter.allow(person_id, s.clock.monotonic()):
        raise RateLimited(f"too many {what}; slow down", data={"per_minute": s.settings.send_rate_per_minute})


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (the scheme in any case, RFC 9110), or None.

    One parser for REST, the bot API and the WebSocket upgrade, so all three read the header alike.
    """
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def authenticate(request: Request) -> AccessClaims:
    """The caller's claims from ``Authorization: Bearer``, with the session still active."""
    s = services_of(request)
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise Unauthorized("missing bearer token")
    claims = s.tokens.verify(token)
    # The session read is shared with the other requests and hellos checking at the same
    # moment (one statement for all, read after this request arrived: revocation is as
    # immediate as before); under load it was a transaction of its own per request.
    if not await s.hellos.session_active(claims.session_id, claims.person_id):
        raise Forbidden("session is no longer active")
    set_person(claims.person_id)
    return claims


def guard_int_params(route: BaseRoute) -> None:
    """Answer 404 (the usual error body) for an integer path parameter no id column can hold.

    Starlette's ``{x:int}`` accepts any run of digits; past a BIGINT the value
    used to reach the database and come back as a 500 (issue 10 item 5). No row
    has such an id, so "not found" is the truthful answer, given before the
    endpoint runs so no endpoint can forget it.
    """
    if not isinstance(route, Route):
        return
    names = [n for n, c in route.param_convertors.items() if isinstance(c, IntegerConvertor)]
    if not names:
        return
    inner = route.app

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        params = scope.get("path_params", {})
        for name in names:
            value = params.get(name)
            if isinstance(value, int) and not 0 <= value <= MAX_ID:
                what = name.removesuffix("_id")
                err = NotFound(f"no such {what}", data={"field": name})
                await error_response(err)(scope, receive, send)
                return
        await inner(scope, receive, send)

    route.app = app
