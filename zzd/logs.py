"""Logging: plain text for a terminal, or one JSON object per line for a log pipeline.

``ZZD_LOG_FORMAT=json`` writes ``{"ts", "level", "logger", "msg", "request_id",
"method", "path", "person_id", "exc"}`` per record. The request fields come
from a context variable the HTTP middleware (``zzd.http.observe``) sets for
each request (``X-Request-ID`` when the client sends one, else a fresh id,
echoed in the answer) and ``authenticate`` completes with the person, so any
log line written while serving a request names it, including tracebacks of
failures in work it started.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from typing import Any

from kernel.wire import dumps

__all__ = ["QUIET_LIBRARIES", "REQUEST", "JsonFormatter", "configure_logging", "set_person"]

#: The request being served in this task (and the tasks it starts), for log records.
REQUEST: ContextVar[dict[str, Any] | None] = ContextVar("zzd_request", default=None)


def set_person(person_id: int) -> None:
    """Name the authenticated person in the current request's log context."""
    ctx = REQUEST.get()
    if ctx is not None:
        ctx["person_id"] = person_id


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ctx = REQUEST.get()
        if ctx:
            out.update(ctx)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return dumps(out)


#: Libraries whose INFO lines are one per request: WARNING and up only.
QUIET_LIBRARIES = ("httpx", "httpcore")


def configure_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request it makes at INFO (the notifier's; webhooks, sent with aiohttp now, were
    # one line per attempt, whose record is the delivery log, docs/webhooks.md): CPU and noise.
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
