"""Values named in a request as text: a unit (its code or ``#id``), a time with its zone."""

from __future__ import annotations

from datetime import datetime

from kernel.errors import BadRequest
from org_tree.selectors import unit_value

__all__ = ["aware_time", "unit_ref"]


def unit_ref(raw: str, field: str = "unit") -> int | str:
    """A unit named in a URL path or query: its code (``330802``) or ``#id`` (``%2317``); 400 naming ``field``."""
    return unit_value(raw, field)


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
