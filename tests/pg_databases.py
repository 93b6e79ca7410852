"""Throw-away PostgreSQL databases for tests, made and dropped off the tests' own time.

About half the PostgreSQL tests get a database of their own, cloned from a
template (``CREATE DATABASE … TEMPLATE``) and dropped after. On a busy server
each of those statements takes about a second (a clone copies the template's
blocks; a drop waits for every backend to let go of the files), and a test
waited for both: minutes of a quick-lane run. One background thread per test
process now drops a finished test's database while the next tests run, and
clones the next database from a template as soon as one has been taken, so
the next test of that kind finds it ready. Names are fresh (``unique_name``),
so nothing ever waits for a drop; the session's end drops what is left over,
waits for all of it, and fails the run if a statement failed.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import asyncpg
import pytest

from tests.services import PG_HOST, PG_PORT, PG_USER, pg_url, require, unique_name
from zzd.migrate import upgrade

__all__ = ["pg_admin", "pg_session_finish", "temp_pg_database"]


def pg_admin(sql: str) -> None:
    """Run one statement on the server's ``postgres`` database (CREATE / DROP DATABASE)."""

    async def go() -> None:
        conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


class _Background:
    """The one thread that drops finished databases and clones spares, in the order asked."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._spares: dict[tuple[str, str], list[str]] = {}  # (prefix, template) → clones ready to take
        self.failures: list[str] = []

    def _submit(self, what: str, job: Callable[[], None]) -> None:
        def run() -> None:
            try:
                job()
            except Exception as exc:  # reported at the session's end
                self.failures.append(f"{what}: {exc!r}")

        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pg-databases", daemon=True)
            self._thread.start()
        self._jobs.put(run)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def drop(self, name: str) -> None:
        self._submit(f"drop {name}", lambda: pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def take(self, prefix: str, template: str) -> str | None:
        """A clone of ``template`` made ahead of time, or None when none is ready."""
        with self._lock:
            ready = self._spares.get((prefix, template))
            return ready.pop() if ready else None

    def prepare(self, prefix: str, template: str) -> None:
        """Clone ``template`` in the background for the next test that asks for one."""
        name = unique_name(prefix)

        def clone() -> None:
            pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            with self._lock:
                self._spares.setdefault((prefix, template), []).append(name)

        self._submit(f"clone {template} as {name}", clone)

    def finish(self) -> list[str]:
        """Drop the clones nobody took, wait for every job; what failed."""
        if self._thread is not None:
            self._submit("drop the unused clones", self._drop_spares)
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        return self.failures

    def _drop_spares(self) -> None:
        with self._lock:
            names = [n for ready in self._spares.values() for n in ready]
            self._spares.clear()
        for name in names:
            pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_background = _Background()


def pg_session_finish(session: pytest.Session) -> None:
    """At the session's end (``pytest_sessionfinish``): wait for the background work; a failure fails the run."""
    failures = _background.finish()
    if failures:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        session.config.get_terminal_writer().line("PostgreSQL test databases:\n" + "\n".join(failures))


@contextmanager
def temp_pg_database(prefix: str, *, template: str | None = None, migrate: bool = True) -> Iterator[str]:
    """A throw-away PostgreSQL database (migrated, or cloned from ``template``); yields its name.

    Dropped afterwards (in the background) even when the test fails; CI=true
    makes a missing server a failure. A clone may have been made ahead of time:
    a template never changes once built, so it is the same database.
    """
    require("postgres")
    name = _background.take(prefix, template) if template else None
    if name is None:
        name = unique_name(prefix)
        pg_admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    if template:
        _background.prepare(prefix, template)
    try:
        if migrate and template is None:
            upgrade(pg_url(name))
        yield name
    finally:
        _background.drop(name)
