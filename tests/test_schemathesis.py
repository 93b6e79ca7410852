"""Schemathesis against ``/openapi.json``: no server errors, no response that contradicts the document.

A real server on SQLite (embedded default) with a small division tree and a
signed-in county head, in a thread of its own so schemathesis's synchronous
calls go over real HTTP. Examples per operation are bounded so the run stays
within a minute or two on CI (issue 10 item 5).
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from kernel.db.database import Database
from org_tree.importer import import_divisions
from org_tree.jurisdiction import SYSTEM
from org_tree.synthetic import generate_people
from tests.client import PASSWORD, new_person
from tests.conftest import make_settings, start_server
from tests.notices.conftest import write_divisions
from tests.org_server import slot
from tests.profiles import examples

EXAMPLES = examples(6)  # per operation (2 in the quick lane)


class ServedApp:
    """A uvicorn server running on its own event loop in a background thread."""

    def __init__(self, db_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.rs, self.task = self.call(start_server(make_settings(db_url, send_rate_per_minute=100_000)))

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def stop(self) -> None:
        self.rs.server.should_exit = True
        self.call(self._wait())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()  # else it is closed whenever it is collected, in some later test ("unclosed event loop")

    async def _wait(self) -> None:
        await self.task


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[tuple[str, str]]:
    folder = tmp_path_factory.mktemp("st")
    shutil.copy(sqlite_template, folder / "zzd.db")
    url = f"sqlite+aiosqlite:///{folder / 'zzd.db'}"

    async def tree() -> None:
        db = Database(url)
        try:
            await import_divisions(db, write_divisions(folder / "div", townships=1, villages=2), grids_per_village=1)
            await generate_people(db, seed=5)
        finally:
            await db.dispose()

    asyncio.run(tree())
    app = ServedApp(url)
    s = app.rs.services_obj

    async def seat() -> str:
        pid, lg = await new_person(s)
        idx = s.org_index.index
        await s.org.handover(SYSTEM, idx.position_id(slot(idx, "990101", "county_head")), pid)
        return lg

    lg = app.call(seat())
    r = httpx.post(
        f"{app.rs.http}/api/v1/auth/token", json={"grant_type": "password", "login": lg, "password": PASSWORD}
    )
    r.raise_for_status()
    try:
        yield app.rs.http, r.json()["access_token"]
    finally:
        app.stop()


@pytest.mark.timeout(900)  # ~60 operations × a bounded number of requests
def test_api_conforms_to_its_document(served: tuple[str, str]) -> None:
    """Every operation, a bounded number of generated requests each; all failures are reported together.

    (Schemathesis's own pytest integration does not run on pytest 9 yet, so the
    operations are walked here, each with its own Hypothesis run.)
    """
    base, token = served
    api = schemathesis.openapi.from_url(f"{base}/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    failures: list[str] = []
    ran = 0
    for result in api.get_all_operations():
        op = result.ok()
        if op.path == "/api/v1/auth/logout":
            continue  # would end the session every other example uses

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)  # fmt: skip
        @given(case=op.as_strategy())
        def run(case: Any) -> None:
            case.call_and_validate(
                base_url=base, headers={"Authorization": f"Bearer {token}"}, checks=checks, timeout=30
            )

        try:
            run()
        except Exception as exc:  # collect, so one run shows every operation that fails
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:1500]}")
        ran += 1
    assert ran >= 50
    assert not failures, "\n\n".join(failures)
