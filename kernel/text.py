"""Text hygiene applied before anything reaches storage (docs/reliability.md S25).

PostgreSQL rejects NUL in text while SQLite stores it, and a lone surrogate
cannot be encoded to UTF-8 at all: both would make the two backends disagree
or poison a later write, so they are refused at the edge of the domain.
"""

from __future__ import annotations

import unicodedata

from kernel.errors import BadRequest, ErrorCode

__all__ = ["MAX_LABEL", "check_text", "clean_label", "drop_invisible", "normalize_name"]

# Bidi overrides/isolates and zero-width characters that can disguise a name.
_DISGUISING = dict.fromkeys(
    map(ord, "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")
)


def check_text(value: str, *, field: str, max_chars: int, allow_empty: bool = False) -> str:
    """Return ``value`` unchanged if it may be stored, else raise ``BadRequest``.

    Length is counted in code points, the same way clients are told to count.
    """
    # Empty also when only invisible: a body of zero-width spaces shows nothing, like one of spaces.
    if not allow_empty and not value.translate(_DISGUISING).strip():
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


def drop_invisible(value: str) -> str:
    """``value`` without the zero-width and bidi characters :func:`normalize_name` drops from names.

    Why: text compared with stored names (a 找岗位 query) must lose them too, or a name pasted
    with a zero-width space in it finds nothing although the name shown is the same.
    """
    return value.translate(_DISGUISING)


def normalize_name(value: str) -> str:
    """NFC-normalise and strip disguising characters, so equal-looking names compare equal."""
    return unicodedata.normalize("NFC", value).translate(_DISGUISING).strip()


#: The longest label :func:`clean_label` keeps, in code points (``auth_sessions.client_label`` is as wide).
MAX_LABEL = 100
#: Unicode categories a label loses: controls, format characters (bidi overrides, zero-width, BOM),
#: surrogates, private use and unassigned code points.
_UNSHOWN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def clean_label(value: str | None, max_chars: int = MAX_LABEL) -> str | None:
    """A label a client gave about itself (a device name, a User-Agent), safe to store and show; None if empty.

    Not refused but cleaned, because it is a description, not an input the person chose: NFC;
    controls, format characters (bidi overrides, zero-width), surrogates and private or unassigned
    code points dropped; every run of whitespace one space; cut to ``max_chars`` code points, the
    last of them ``…`` when something was cut. So a label cannot carry a NUL (refused by
    PostgreSQL, kept by SQLite), spoof its neighbour's text in a list, or grow a row past its column.
    """
    if value is None:
        return None
    text = "".join(
        c for c in unicodedata.normalize("NFC", value) if unicodedata.category(c) not in _UNSHOWN or c.isspace()
    )
    text = " ".join(text.split())
    if len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "…"
    return text or None
