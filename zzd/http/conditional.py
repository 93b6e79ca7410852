"""``If-None-Match`` on a GET of a resource with an ETag, as RFC 9110 §13.1.2 defines it.

The condition is *false* (the answer is 304 Not Modified, with the headers a 200 would carry and
no body) when the field value is ``*`` (a current representation exists: the caller has already
passed the access checks and the file was found), or when one of the listed entity tags matches
the representation's ETag by **weak comparison** (§8.8.3.2: ``W/"x"`` matches ``"x"``; the
opaque tags are compared character by character, so ``"ABC"`` does not match ``"abc"``).

A list may span several header lines and may have empty elements (``"a", , "b"``: §5.6.1), and
an opaque tag may contain a comma (``"a,b"`` is one tag), so the list is parsed, not split. A
field value that is neither ``*`` nor a list of entity tags (``*, "a"``, ``abc``, an unclosed
quote) is ignored: the full 200 is always a correct answer to an unconditional GET, and
guessing at a malformed precondition could answer 304 to a client that has nothing cached.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["entity_tags", "none_match"]

#: One list element: optional whitespace, an optional entity tag (``W/`` and an opaque tag of
#: etagc characters: %x21 / %x23-7E / obs-text), optional whitespace, then a comma or the end.
_ELEMENT = re.compile(r'[ \t]*(?:(?:W/)?("[\x21\x23-\x7e\x80-\xff]*"))?[ \t]*(?:,|\Z)')


def entity_tags(value: str) -> list[str] | None:
    """The opaque tags (with their quotes, without ``W/``) of an entity-tag list; None if malformed."""
    tags: list[str] = []
    pos = 0
    while pos < len(value):
        m = _ELEMENT.match(value, pos)
        if m is None or m.end() == pos:
            return None
        if m.group(1) is not None:
            tags.append(m.group(1))
        pos = m.end()
    return tags


def none_match(fields: Iterable[str], etag: str) -> bool:
    """True when ``If-None-Match`` (every line of it, in order) makes a GET of ``etag`` answer 304.

    Args:
        fields: the request's ``If-None-Match`` header lines (none: no precondition).
        etag: the current representation's ETag as sent in the answer (``"…"`` or ``W/"…"``).
    """
    lines = list(fields)
    if not lines:
        return False
    value = ", ".join(lines)
    if value.strip(" \t") == "*":
        return True
    tags = entity_tags(value)
    ours = etag.removeprefix("W/")
    return tags is not None and ours in tags
