"""WebSocket close codes and what a client should do on each (docs/protocol.md).

Ranges follow centrifuge's convention: 4000–4499 the client may reconnect
(after fixing what the code says), 4500–4999 it must not reconnect on its
own. Standard codes keep their RFC 6455 meaning.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Close"]


class Close(IntEnum):
    NORMAL = 1000
    #: Server shutting down: reconnect (to another process) with jitter, resume.
    GOING_AWAY = 1001
    #: Binary frame where text was expected.
    UNSUPPORTED_DATA = 1003
    #: Policy violation (e.g. persistent abuse of rate limits).
    POLICY = 1008
    INTERNAL_ERROR = 1011
    #: Rolling restart: reconnect with backoff, resume.
    SERVICE_RESTART = 1012
    #: Slow consumer or overload: reconnect with backoff, resume from last seq.
    TRY_AGAIN_LATER = 1013
    #: Token invalid or expired: refresh the access token, reconnect, resume.
    UNAUTHORIZED = 4401
    #: No valid hello within the deadline: reconnect.
    AUTH_TIMEOUT = 4408
    #: The first frame was not a valid hello: fix the client (terminal in practice).
    BAD_HELLO = 4400
    #: Session revoked or account disabled: log in again (no automatic reconnect).
    FORBIDDEN = 4503
    #: Replaced: this person opened more sockets than allowed; do not reconnect.
    REPLACED = 4509
