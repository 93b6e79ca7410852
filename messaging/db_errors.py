"""Turn database outages into retryable client errors, and retry lock conflicts.

During a PostgreSQL restart (S6) a request must fail fast with a clear
"retry" rather than hang or return a 500; a deadlock or serialization
failure between two processes is retried transparently.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from kernel.db.held import OUTAGE_SQLSTATE_CLASSES
from kernel.errors import Unavailable

logger = logging.getLogger(__name__)

__all__ = ["as_unavailable", "with_db_retry"]

T = TypeVar("T")

_RETRY_SQLSTATES = {"40001", "40P01"}  # serialization_failure, deadlock_detected


def _is_lock_conflict(exc: BaseException) -> bool:
    if isinstance(exc, IntegrityError):
        return False
    if not isinstance(exc, DBAPIError):
        # Raised by the driver itself: bulk paths send COPY and array statements on the raw connection.
        return getattr(exc, "sqlstate", None) in _RETRY_SQLSTATES
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "__cause__", None), "sqlstate", None)
    return state in _RETRY_SQLSTATES


async def with_db_retry(fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` (one whole transaction), retrying lock conflicts; outages become ``Unavailable``.

    The first attempt runs without tenacity: its retry objects form reference
    cycles (the retrying object, its thread-local iteration state and the
    attempt's state refer to each other), so every transaction left about 40
    objects for the cyclic collector, the largest share of a chat send's
    garbage (gc.DEBUG_SAVEALL over 200 sends). Only a lock conflict, which is
    rare, enters tenacity, which replays that first failure as its attempt 1:
    the attempts and waits are tenacity's as before.
    """
    try:
        try:
            return await fn()
        except Exception as exc:
            if not _is_lock_conflict(exc):
                raise
            first: BaseException | None = exc
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_is_lock_conflict),
            stop=stop_after_attempt(4),
            wait=wait_random_exponential(multiplier=0.01, max=0.2),
            reraise=True,
        ):
            with attempt:
                if first is not None:
                    failed, first = first, None
                    raise failed
                return await fn()
    except IntegrityError:
        raise
    except PoolTimeout as exc:
        # Every pooled connection is busy for longer than pool_timeout: overload,
        # not a bug, so the client gets the retryable 503 rather than a 500 (S9).
        logger.warning("database pool exhausted: %s", exc)
        raise Unavailable("database busy, retry shortly") from exc
    except (DBAPIError, OSError, TimeoutError) as exc:
        if isinstance(exc, DBAPIError) and not (exc.connection_invalidated or _is_outage(exc)):
            raise
        logger.warning("database unavailable: %s", exc)
        raise Unavailable("database unavailable, retry shortly") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def as_unavailable(exc: BaseException) -> Unavailable | None:
    """The retryable 503 for a database that is away or full, for paths outside ``with_db_retry``.

    The shell's last-resort handlers (REST and WebSocket) ask this before
    answering 500: the sign-in and hello paths read sessions directly, and in
    a reconnect storm on a shared PostgreSQL they met "too many clients"
    (S9), which is the server's condition, not the client's bug.
    """
    if isinstance(exc, PoolTimeout):
        return Unavailable("database busy, retry shortly")
    if isinstance(exc, (OSError, TimeoutError)) or (
        isinstance(exc, DBAPIError)
        and not isinstance(exc, IntegrityError)
        and (exc.connection_invalidated or _is_outage(exc))
    ):
        return Unavailable("database unavailable, retry shortly")
    return None


# SQLSTATE classes of a server going away, not yet back or full: 08 connection
# exception, 53 insufficient resources ("too many clients already"), 57
# operator intervention (admin/crash shutdown, "the database system is
# starting up / shutting down"). Seen during `pg_ctl restart` (S6) and S9.
# The held connection's list (kernel.db.held), so both paths call the same errors an outage.
def _is_outage(exc: DBAPIError) -> bool:
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "__cause__", None), "sqlstate", None)
    if isinstance(state, str) and state[:2] in OUTAGE_SQLSTATE_CLASSES:
        return True
    text = f"{type(orig).__name__} {orig}".lower()
    return any(
        w in text
        for w in (
            "connection", "closed", "timeout", "cannot connect", "shutdown", "shutting down", "starting up",
            "terminat", "locked", "canceling", "too many clients",
        )
    )  # fmt: skip
