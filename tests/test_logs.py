"""JSON logs name the request and person; a client's abort is no server error (issue 12 item 7)."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx

from tests.client import login, new_person
from tests.conftest import LogRecords, RunningServer
from zzd.gateway.logfilter import quiet_client_protocol_errors
from zzd.logs import JsonFormatter


async def test_a_log_line_written_while_serving_names_request_and_person(server: RunningServer) -> None:
    s = server.services_obj  # type: ignore[attr-defined]
    pid, lg = await new_person(s)
    token = (await login(server.http, lg))["access_token"]
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter().format(record))

    probe = logging.getLogger("zzd.http.common")
    keep = Keep(level=logging.INFO)
    probe.addHandler(keep)
    level = probe.level
    probe.setLevel(logging.INFO)
    original = s.persons.get

    async def logged_get(person_id: int) -> object:
        probe.info("reading person %s", person_id)  # written inside the request, after authentication
        return await original(person_id)

    s.persons.get = logged_get
    try:
        async with httpx.AsyncClient() as h:
            r = await h.get(
                f"{server.http}/api/v1/me", headers={"Authorization": f"Bearer {token}", "X-Request-ID": "req-42"}
            )
    finally:
        s.persons.get = original
        probe.removeHandler(keep)
        probe.setLevel(level)
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-42"
    [line] = [json.loads(x) for x in lines if "reading person" in x]
    assert line["request_id"] == "req-42" and line["person_id"] == pid
    assert (line["method"], line["path"], line["level"]) == ("GET", "/api/v1/me", "info")
    assert line["ts"].endswith("Z")


async def test_a_connect_cancelled_by_a_client_abort_is_not_logged_as_an_error(server_log: LogRecords) -> None:
    """asyncpg's unretrieved TLS-probe failure after a cancelled connect is INFO; other lost futures stay errors."""
    quiet_client_protocol_errors()
    loop = asyncio.get_running_loop()
    log = logging.getLogger("asyncio")
    level = log.level
    log.setLevel(logging.INFO)
    try:
        for exc in (ConnectionError("unexpected connection_lost() call"), ConnectionError("reset by peer")):
            lost = loop.create_future()
            lost.set_exception(exc)
            # What Future.__del__ reports for a failed future nobody awaited.
            loop.call_exception_handler(
                {"message": "Future exception was never retrieved", "exception": exc, "future": lost}
            )
            lost.exception()
    finally:
        log.setLevel(level)
    lowered = [r for r in server_log.records if r.name == "asyncio" and r.levelno == logging.INFO]
    assert len(lowered) == 1 and lowered[0].exc_info is None
    errors = server_log.errors()
    assert len(errors) == 1 and errors[0].startswith("asyncio: Future exception was never retrieved"), errors


def test_webhook_requests_are_not_logged_one_line_each_at_info() -> None:
    """httpx's per-request INFO line would be one log line per webhook attempt (their record is the delivery log)."""
    from zzd.logs import QUIET_LIBRARIES, configure_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in QUIET_LIBRARIES})
    try:
        configure_logging("info")
        assert logging.getLogger("zzd.http.common").isEnabledFor(logging.INFO)
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
        configure_logging("error")
        assert not logging.getLogger("httpx").isEnabledFor(logging.WARNING)
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for name, lvl in saved[2].items():
            logging.getLogger(name).setLevel(lvl)
