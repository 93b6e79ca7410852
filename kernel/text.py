"""Text hygiene applied before anything reaches storage (docs/reliability.md S25).

PostgreSQL rejects NUL in text while SQLite stores it, and a lone surrogate
cannot be encoded to UTF-8 at all: both would make the two backends disagree
or poison a later write, so they are refused at the edge of the domain.
"""

from __future__ import annotations

import unicodedata

from kernel.errors import BadRequest, ErrorCode

__all__ = ["check_text", "normalize_name"]

# Bidi overrides/isolates and zero-width characters that can disguise a name.
_DISGUISING = dict.fromkeys(
    map(ord, "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")
)


def check_text(value: str, *, field: str, max_chars: int, allow_empty: bool = False) -> str:
    """Return ``value`` unchanged if it may be stored, else raise ``BadRequest``.

    Length is counted in code points, the same way clients are told to count.
    """
    if not allow_empty and not value.strip():
        raise BadRequest(f"{field} must not be empty", code=ErrorCode.INVALID_TEXT, data={"field": field})
    if len(value) > max_chars:
        raise BadRequest(
            f"{field} is longer than {max_chars} characters",
            code=ErrorCode.INVALID_TEXT,
            data={"field": field, "max_chars": max_chars},
        )
    if "\x00" in value:
        raise BadRequest(f"{field} contains NUL", code=ErrorCode.INVALID_TEXT, data={"field": field})
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(
            f"{field} is not valid Unicode (lone surrogate)",
            code=ErrorCode.INVALID_TEXT,
            data={"field": field},
        ) from exc
    return value


def normalize_name(value: str) -> str:
    """NFC-normalise and strip disguising characters, so equal-looking names compare equal."""
    return unicodedata.normalize("NFC", value).translate(_DISGUISING).strip()
