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

from kernel.errors import BadRequest, ErrorCode

__all__ = ["strict_loads"]

MAX_DEPTH = 32
_SURROGATE_ESCAPE = re.compile("\\\\u[dD][89a-fA-F]|[\ud800-\udfff]")


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


def strict_loads(text: str) -> Any:
    """Parse ``text`` or raise ``BadRequest(invalid_json)`` saying why."""
    if not _depth_ok(text):
        raise BadRequest(f"JSON nested deeper than {MAX_DEPTH}", code=ErrorCode.INVALID_JSON)
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
            raise BadRequest("invalid JSON: lone surrogate in a string", code=ErrorCode.INVALID_JSON) from exc
    return value
