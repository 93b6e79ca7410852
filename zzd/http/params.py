"""Query-string parameters, validated with the same error body as JSON fields."""

from __future__ import annotations

from starlette.requests import Request

from kernel.errors import BadRequest
from kernel.numbers import MAX_ID, parse_uint

__all__ = ["int_param", "opt_int_param", "str_param", "unit_ref"]


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    value = opt_int_param(request, name, lo, hi)
    return default if value is None else value


def opt_int_param(request: Request, name: str, lo: int, hi: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    value = parse_uint(raw, lo, hi)
    if value is None:
        raise BadRequest(f"{name} must be an integer from {lo} to {hi}", data={"field": name})
    return value


def str_param(request: Request, name: str, *, max_len: int = 200) -> str | None:
    raw = request.query_params.get(name)
    if raw is not None and (len(raw) > max_len or "\x00" in raw):
        raise BadRequest(f"{name} is too long or contains NUL", data={"field": name})
    return raw


def unit_ref(raw: str) -> int | str:
    """A unit named in a URL: its code (``330802``) or ``#id`` (as in the selector text form)."""
    if raw.startswith("#") and (uid := parse_uint(raw[1:], 0, MAX_ID)) is not None:
        return uid
    if not raw or len(raw) > 32 or "\x00" in raw:
        raise BadRequest("unit must be a code or #id", data={"field": "unit"})
    return raw
