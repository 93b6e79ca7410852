"""Values named in a request as text: a unit (its code or ``#id``), a time with its zone."""

from __future__ import annotations

from datetime import datetime

from kernel.errors import BadRequest
from kernel.numbers import MAX_ID, parse_uint

__all__ = ["aware_time", "body_unit_ref", "unit_ref"]


def unit_ref(raw: str) -> int | str:
    """A unit named in a URL: its code (``330802``) or ``#id`` (as in the selector text form)."""
    if raw.startswith("#") and (uid := parse_uint(raw[1:], 0, MAX_ID)) is not None:
        return uid
    if not raw or len(raw) > 32 or "\x00" in raw:
        raise BadRequest("unit must be a code or #id", data={"field": "unit"})
    return raw


def body_unit_ref(raw: int | str) -> int | str:
    """A unit named in a JSON body: its id as a number, its code, or ``#id`` as in a URL.

    The body's schema has already bounded the text (1-32 characters); ``#`` and digits naming
    no possible id stay text and answer 404 like any unknown code. Before, ``"#17"`` in a body
    was looked up as a code and answered 404, though the API documents the ``#id`` form there.
    """
    if isinstance(raw, str) and raw.startswith("#") and (uid := parse_uint(raw[1:], 0, MAX_ID)) is not None:
        return uid
    return raw


def aware_time(raw: str | None, field: str) -> datetime | None:
    """An ISO 8601 time that carries its zone (``2026-12-01T09:00:00+08:00``), None for None; 400 naming ``field``."""
    if raw is None:
        return None
    try:
        at = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise BadRequest(f"{field} must be ISO 8601 with a time zone", data={"field": field}) from exc
    if at.tzinfo is None:
        raise BadRequest(f"{field} must carry a time zone", data={"field": field})
    return at
