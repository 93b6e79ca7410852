"""Keep client protocol errors out of the server's error log (RELIABILITY S17, S25).

uvicorn's WebSocket implementation answers a text frame holding invalid
UTF-8 correctly, with close 1007, but logs it with ``logger.exception``: a
full traceback at ERROR level that anyone can produce with two bytes. It is
the client's error, not ours, so it is logged at INFO without the traceback;
a real server error still reaches the log untouched.

Likewise uvicorn 0.54 logs "ASGI callable returned without completing
handshake" after a correct denial response (our 503 at capacity): it checks a
flag the denial path never sets. :func:`mark_denied` records, in the
connection task's context, that this socket was denied on purpose, and only
then is that line dropped (the denial itself is not logged either: see the end).

And a client that aborts its socket while the server is opening a PostgreSQL
connection for it (a hello's session check on a cold pool) cancels that
connect. asyncpg's TLS probe (``sslmode=prefer``, its default) then fails
its own future with ``ConnectionError("unexpected connection_lost() call")``
that nobody awaits any more, and asyncio reports it at ERROR, "Future
exception was never retrieved", when the future is collected (asyncpg issue
#1211; seen once in S16). Nothing was lost: the cancelled request is gone
with its client and the pool opens the next connection afresh. That record
is lowered to INFO as well; any other never-retrieved exception stays an error.

Last, uvicorn and the websockets library write two or three INFO lines for
every WebSocket handshake ("WebSocket /ws" [accepted], "connection open",
"connection rejected (503 …)"): an access log, which the server has off for
HTTP too (``access_log=False``). In a reconnect storm (S9: thousands of
handshakes and refusals a second) writing them was about a tenth of the
survivor's CPU, so they are dropped; a refusal the server decides is counted
in its metrics, and an origin refusal logs a line of its own.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

__all__ = ["PER_HANDSHAKE", "mark_denied", "quiet_client_protocol_errors"]

#: uvicorn messages that report a peer's malformed input, not a server fault.
CLIENT_ERRORS = frozenset({"Invalid UTF-8 sequence received from client."})
_AFTER_DENIAL = "ASGI callable returned without completing handshake."
#: uvicorn's and websockets' per-handshake access lines (format strings, as logged).
PER_HANDSHAKE = frozenset(
    {
        '%s - "WebSocket %s" [accepted]',
        '%s - "WebSocket %s" 403',
        '%s - "WebSocket %s" %d',
        "connection open",
        "connection rejected (%d %s)",
        "HTTP response sent (%d %s)",
    }
)
_denied: ContextVar[bool] = ContextVar("zzd_ws_denied", default=False)
#: asyncpg's TLS probe, failed by a connect that was cancelled (its task's client went away).
_CANCELLED_CONNECT = "unexpected connection_lost() call"


def mark_denied() -> None:
    """This WebSocket handshake is being answered with an HTTP denial response on purpose."""
    _denied.set(True)


def _cancelled_connect(record: logging.LogRecord) -> bool:
    """asyncio's report of asyncpg's unretrieved TLS-probe failure after a cancelled connect."""
    if record.name != "asyncio" or not record.exc_info:
        return False
    exc = record.exc_info[1]
    return type(exc) is ConnectionError and str(exc) == _CANCELLED_CONNECT


class _ClientErrorsAtInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.error" and (
            record.msg in PER_HANDSHAKE or (record.msg == _AFTER_DENIAL and _denied.get())
        ):
            return False
        if record.msg in CLIENT_ERRORS or _cancelled_connect(record):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


def quiet_client_protocol_errors() -> None:
    """Install the filter on uvicorn's error logger and asyncio's (once; safe to call again)."""
    for name in ("uvicorn.error", "asyncio"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _ClientErrorsAtInfo) for f in log.filters):
            log.addFilter(_ClientErrorsAtInfo())
