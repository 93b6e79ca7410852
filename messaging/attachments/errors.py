"""Upload refusals that carry their own HTTP status (413, 415, 411), so every layer reports them alike."""

from __future__ import annotations

from kernel.errors import BadRequest, ErrorCode, ZzdError

__all__ = ["ChecksumMismatch", "IncompleteUpload", "LengthRequired", "TooLarge", "UnsupportedType", "UploadStalled"]


class TooLarge(ZzdError, status=413, code=ErrorCode.PAYLOAD_TOO_LARGE):
    """The body is over the upload limit."""


class UnsupportedType(ZzdError, status=415, code=ErrorCode.UNSUPPORTED_MEDIA_TYPE):
    """The bytes are not an image of a type the server accepts."""


class LengthRequired(ZzdError, status=411, code=ErrorCode.LENGTH_REQUIRED):
    """The request did not say how long its body is."""


class ChecksumMismatch(BadRequest, code=ErrorCode.CHECKSUM_MISMATCH):
    """The bytes received do not hash to the digest the client named."""


class IncompleteUpload(BadRequest, code=ErrorCode.INCOMPLETE_UPLOAD):
    """The body ended before the length the client announced."""


class UploadStalled(ZzdError, status=408, code=ErrorCode.INCOMPLETE_UPLOAD, retryable=True):
    """The client stopped sending mid-body; it may simply upload again."""
