"""JSON logs carry the request and the person they were written for (issue 12 item 7)."""

from __future__ import annotations

import json
import logging

import httpx

from tests.client import login, new_person
from tests.conftest import RunningServer
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
