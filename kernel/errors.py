"""The one error model of ZZD, shared by every layer.

Domain code raises :class:`ZzdError` subclasses; the shell (``zzd``) maps them
to an HTTP status with a JSON body, or to a WebSocket error frame. If a client
should not see it, it is not a ``ZzdError`` (it is a bug and becomes a 500 /
close 1011 with the details only in the log).

Exception tree::

    ZzdError
    ├── BadRequest          400  malformed or invalid input
    ├── Unauthorized        401  missing, invalid or expired credentials
    ├── Forbidden           403  authenticated but not allowed
    ├── NotFound            404  missing *or* not visible to the actor
    ├── Conflict            409  state changed underneath (retry after re-read)
    ├── RateLimited         429  slow down
    ├── ResyncRequired      409  the event stream cannot be resumed from the cursor
    └── Unavailable         503  a dependency is down; safe to retry the same request
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "BadRequest",
    "Conflict",
    "ErrorCode",
    "Forbidden",
    "NotFound",
    "RateLimited",
    "ResyncRequired",
    "Unauthorized",
    "Unavailable",
    "ZzdError",
]


class ErrorCode(StrEnum):
    """Stable, documented error codes; clients switch on these, never on text."""

    BAD_REQUEST = "bad_request"
    INVALID_JSON = "invalid_json"
    INVALID_FRAME = "invalid_frame"
    #: A REST request body that does not match its schema (the WebSocket's is ``invalid_frame``).
    INVALID_BODY = "invalid_body"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_TEXT = "invalid_text"
    INVALID_LOCATION = "invalid_location"
    UNAUTHORIZED = "unauthorized"
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 - an error code, not a secret
    INVALID_GRANT = "invalid_grant"
    FORBIDDEN = "forbidden"
    OUT_OF_SCOPE = "out_of_scope"
    NO_GRANT = "no_grant"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNKNOWN_CATEGORY = "unknown_category"
    CONFLICT = "conflict"
    STALE_VERSION = "stale_version"
    #: An ad-hoc group would exceed its size limit (a 400).
    GROUP_TOO_LARGE = "group_too_large"
    INVALID_TRANSITION = "invalid_transition"
    ALREADY_EXISTS = "already_exists"
    RATE_LIMITED = "rate_limited"
    RESYNC_REQUIRED = "resync_required"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal_error"
    # Uploads (messaging/attachments).
    UNKNOWN_ATTACHMENT = "unknown_attachment"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    LENGTH_REQUIRED = "length_required"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    INCOMPLETE_UPLOAD = "incomplete_upload"
    # The open platform (apps/, docs/apps.md).
    INVALID_CLIENT = "invalid_client"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    ADDRESS_NOT_ALLOWED = "address_not_allowed"


class ZzdError(Exception):
    """An error the client is meant to see.

    Args:
        message: human-readable explanation (English; clients localise by code).
        code: overrides the class default code.
        data: structured fields a client can act on (e.g. which field was bad).
    """

    http_status: int = 400
    default_code: ErrorCode = ErrorCode.BAD_REQUEST
    #: True when the very same request may succeed if simply sent again later.
    retryable: bool = False

    def __init_subclass__(
        cls, *, status: int | None = None, code: ErrorCode | None = None, retryable: bool | None = None, **kw: Any
    ) -> None:
        """Declare a subclass's status, code and retryability in its ``class`` line (one table row per error).

        What is not given is inherited, so ``class X(BadRequest, code=...)`` stays a 400.
        """
        super().__init_subclass__(**kw)
        if status is not None:
            cls.http_status = status
        if code is not None:
            cls.default_code = code
        if retryable is not None:
            cls.retryable = retryable

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.data = data or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": str(self.code), "message": self.message}
        if self.data:
            body["data"] = self.data
        if self.retryable:
            body["retryable"] = True
        return body


class BadRequest(ZzdError, status=400, code=ErrorCode.BAD_REQUEST):
    """Malformed or invalid input."""


class Unauthorized(ZzdError, status=401, code=ErrorCode.UNAUTHORIZED):
    """Missing, invalid or expired credentials."""


class Forbidden(ZzdError, status=403, code=ErrorCode.FORBIDDEN):
    """Authenticated but not allowed."""


class NotFound(ZzdError, status=404, code=ErrorCode.NOT_FOUND):
    """Missing *or* not visible to the actor (the two are not told apart, so nothing leaks)."""


class Conflict(ZzdError, status=409, code=ErrorCode.CONFLICT):
    """State changed underneath: re-read, then retry."""


class RateLimited(ZzdError, status=429, code=ErrorCode.RATE_LIMITED, retryable=True):
    """Slow down; ``data`` may carry ``retry_after``."""


class ResyncRequired(ZzdError, status=409, code=ErrorCode.RESYNC_REQUIRED):
    """The event stream cannot be resumed from the cursor: fetch a fresh state."""


class Unavailable(ZzdError, status=503, code=ErrorCode.UNAVAILABLE, retryable=True):
    """A dependency is down; the same request is safe to send again."""
