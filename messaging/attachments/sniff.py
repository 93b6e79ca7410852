"""What a file really is, from its first bytes; the client's Content-Type is never trusted.

Only still-image formats phones produce are accepted. A file is served with
the type found here (and ``nosniff``), so a PDF or HTML page labelled
``image/jpeg`` can never reach a browser as something it would execute.
"""

from __future__ import annotations

__all__ = ["ALLOWED_TYPES", "SNIFF_BYTES", "sniff"]

#: Bytes needed to decide (the ISO-BMFF brand of HEIC ends at offset 12).
SNIFF_BYTES = 12

_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"}
_HEIF_BRANDS = {b"mif1", b"msf1"}

ALLOWED_TYPES = ("image/jpeg", "image/png", "image/webp", "image/heic", "image/heif")


def sniff(head: bytes) -> str | None:
    """The image type of a file starting with ``head``, or None if it is not one we accept."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIC_BRANDS:
            return "image/heic"
        if brand in _HEIF_BRANDS:
            return "image/heif"
    return None
