"""Integers from the outside world, checked against what the columns can hold.

Why: an id or cursor past a BIGINT (``9223372036854775808``) used to reach the
database and come back as a 500 on PostgreSQL (integer out of range) and on
SQLite (Python int too large to convert). Every integer that arrives as text
(path, query string, cursor) is read here: ASCII digits only (``str.isdigit``
also accepts ``²`` and other digits ``int()`` refuses), at most 19 digits, and
within the range asked for.
"""

from __future__ import annotations

import re

__all__ = ["MAX_ID", "parse_uint"]

#: The largest value of a BIGINT id column (and of SQLite's INTEGER).
MAX_ID = 2**63 - 1

_DIGITS = re.compile(r"[0-9]{1,19}")


def parse_uint(raw: str, lo: int = 0, hi: int = MAX_ID) -> int | None:
    """``int(raw)`` when ``raw`` is ASCII digits within ``[lo, hi]``, else ``None``."""
    if _DIGITS.fullmatch(raw) is None:
        return None
    value = int(raw)
    return value if lo <= value <= hi else None
