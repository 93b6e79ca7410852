"""Hex values a client sends (digests, session ids, event ids): read in either case, kept lower-case.

One rule for every place a request carries hex: the server reads ``0-9 a-f A-F`` and stores,
compares and answers lower case. Why normalise rather than refuse upper case: hex is
case-insensitive by nature (RFC 4648 §8 writes base16 in upper case; Windows' ``Get-FileHash``
prints upper case), and the two places most used, ``X-Content-SHA256`` and
``GET /api/v1/uploads/{digest}``, already read either case; refusing there would break clients that
work. What was wrong was the rest: a session id in upper case was refused, a photo digest in upper
case was refused as "not a digest", a chat or notice attachment in upper case was kept as an opaque
string and never linked (so its recipients got 404 for a file they should see), an event id in
upper case was "no delivery" — while the OpenAPI patterns said lower case only everywhere.

Opaque tokens that happen to be hex (an ETag, a stream's ``epoch``, a ``client_id``) are not
hex values: they are compared exactly, as RFC 9110 says of entity tags.
"""

from __future__ import annotations

import re

__all__ = ["UUID_PATTERN", "hex_pattern", "lower_hex", "lower_hex_ref", "lower_uuid"]

_HEX = {n: re.compile(f"[0-9a-fA-F]{{{n}}}") for n in (32, 64)}
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: The JSON Schema ``pattern`` of a UUID in its 8-4-4-4-12 form, either case (OpenAPI, request models).
UUID_PATTERN = f"^{_UUID.pattern}$"


def hex_pattern(length: int) -> str:
    """The JSON Schema ``pattern`` of ``length`` hex digits in either case (OpenAPI, AsyncAPI)."""
    return f"^[0-9a-fA-F]{{{length}}}$"


def lower_hex(value: object, length: int) -> str | None:
    """``value`` in lower case when it is exactly ``length`` hex digits (either case); else None.

    Exactly: no sign, no ``0x``, no surrounding or trailing whitespace (``re.fullmatch``, so not even
    the newline ``$`` would let through).
    """
    pattern = _HEX.get(length) or re.compile(f"[0-9a-fA-F]{{{length}}}")
    return value.lower() if isinstance(value, str) and pattern.fullmatch(value) else None


def lower_hex_ref(ref: object, length: int = 64) -> object:
    """An attachment reference: a digest in either case becomes the lower-case digest; anything else as it is."""
    return lower_hex(ref, length) or ref


def lower_uuid(value: str) -> str:
    """A UUID in its canonical 8-4-4-4-12 form in lower case (RFC 9562 §4: read in either case); else as it is."""
    return value.lower() if _UUID.fullmatch(value) else value
