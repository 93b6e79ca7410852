"""JSON parsing without the standard library's traps (docs/reliability.md finding 3).

``json.loads`` accepts NaN/Infinity, silently keeps the last of duplicate
keys, raises ``ValueError`` or ``RecursionError`` for huge numbers and deep
nesting, and accepts lone surrogates that later fail to encode. Each of these
becomes one clear ``invalid_json`` error here.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from kernel.errors import BadRequest, ErrorCode

__all__ = ["LoneSurrogate", "strict_loads"]

MAX_DEPTH = 32
_SURROGATE_ESCAPE = re.compile("\\\\u[dD][89a-fA-F]|[\ud800-\udfff]")
#: Where a key can end: its closing quote, optional whitespace, the colon.
_KEY_END = re.compile(r'"[ \t\n\r]*:')
_SLOW = object()


class LoneSurrogate(BadRequest):
    """Well-formed JSON holding a ``\\uD800``-style escape with no pair: refused as ``invalid_json``.

    ``value`` is what the text parsed to, so a WebSocket frame's readable ``id``
    can still be echoed as the error's ``ref`` (docs/protocol.md: ``ref`` is null
    only when the frame was too broken to read its id). A client that cut a text
    in the middle of an emoji otherwise waited for an answer that never named it.
    """

    def __init__(self, value: Any) -> None:
        super().__init__("invalid JSON: lone surrogate in a string", code=ErrorCode.INVALID_JSON)
        self.value = value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _depth_ok(text: str) -> bool:
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return True  # cannot nest deeper than it has brackets (the common case: no scan)
    depth = 0
    in_str = False
    esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def _count_keys(value: Any) -> int:
    """Keys in ``value`` and everything inside it; -1 if a float is in it (see :func:`_fast_loads`)."""
    if isinstance(value, dict):
        n = len(value)
        for v in value.values():
            if isinstance(v, dict | list | float):
                k = _count_keys(v)
                if k < 0:
                    return -1
                n += k
        return n
    if isinstance(value, list):
        n = 0
        for v in value:
            k = _count_keys(v)
            if k < 0:
                return -1
            n += k
        return n
    return -1 if isinstance(value, float) else 0


def _fast_loads(text: str) -> Any:
    """orjson's parse when it provably means what :func:`strict_loads`'s would, else ``_SLOW``.

    Why: every frame a client sends is parsed here, and ``json.loads`` with a
    Python hook per object was a tenth of a chat message's server time.
    orjson refuses NaN, Infinity and lone surrogates by itself, but keeps the
    last of duplicate keys silently. So the keys it kept are counted against
    the places in the text where a key can end (a quote followed by a colon):
    a duplicate makes the count come up short. A string value that contains
    such a place over-counts too, and any doubt, like any orjson error, falls
    back to the careful parse, which decides (and words the error) as before.
    Integers past 64 bits orjson reads as floats (``json`` keeps them exact),
    so a float anywhere also takes the careful parse (no frame field is one).
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _SLOW
    if _count_keys(value) != len(_KEY_END.findall(text)):
        return _SLOW
    return value


def strict_loads(text: str) -> Any:
    """Parse ``text`` or raise ``BadRequest(invalid_json)`` saying why."""
    if not _depth_ok(text):
        raise BadRequest(f"JSON nested deeper than {MAX_DEPTH}", code=ErrorCode.INVALID_JSON)
    if "\\u" not in text or not _SURROGATE_ESCAPE.search(text):
        value = _fast_loads(text)
        if value is not _SLOW:
            return value
    try:
        value = json.loads(text, parse_constant=_no_constants, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"invalid JSON: {exc}", code=ErrorCode.INVALID_JSON) from exc
    # Text decoded from UTF-8 holds no surrogates; only a \\uD8xx-style escape
    # (or a str built in-process) can carry one, so check values only then.
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise LoneSurrogate(value) from exc
    return value
