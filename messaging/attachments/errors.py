"""Upload refusals that carry their own HTTP status (413, 415, 411), so every layer reports them alike."""

from __future__ import annotations

from kernel.errors import BadRequest, ErrorCode, ZzdError

__all__ = ["ChecksumMismatch", "IncompleteUpload", "LengthRequired", "TooLarge", "UnsupportedType", "UploadStalled"]


class TooLarge(ZzdError):
    http_status = 413
    default_code = ErrorCode.PAYLOAD_TOO_LARGE


class UnsupportedType(ZzdError):
    http_status = 415
    default_code = ErrorCode.UNSUPPORTED_MEDIA_TYPE


class LengthRequired(ZzdError):
    http_status = 411
    default_code = ErrorCode.LENGTH_REQUIRED


class ChecksumMismatch(BadRequest):
    default_code = ErrorCode.CHECKSUM_MISMATCH


class IncompleteUpload(BadRequest):
    default_code = ErrorCode.INCOMPLETE_UPLOAD


class UploadStalled(ZzdError):
    """The client stopped sending mid-body; it may simply upload again."""

    http_status = 408
    default_code = ErrorCode.INCOMPLETE_UPLOAD
    retryable = True
