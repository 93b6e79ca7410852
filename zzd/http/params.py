"""A unit named in a URL (path or query string): its code or ``#id``."""

from __future__ import annotations

from kernel.errors import BadRequest
from kernel.numbers import MAX_ID, parse_uint

__all__ = ["unit_ref"]


def unit_ref(raw: str) -> int | str:
    """A unit named in a URL: its code (``330802``) or ``#id`` (as in the selector text form)."""
    if raw.startswith("#") and (uid := parse_uint(raw[1:], 0, MAX_ID)) is not None:
        return uid
    if not raw or len(raw) > 32 or "\x00" in raw:
        raise BadRequest("unit must be a code or #id", data={"field": "unit"})
    return raw
