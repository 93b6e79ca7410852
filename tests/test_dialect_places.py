"""SQL that differs between SQLite and PostgreSQL stays in its places (issue 11 item 3).

``kernel/db/dialect.py`` holds the generic differences; statements written for
one driver live in one storage module per domain. Everywhere else a service
reads as domain logic: it never asks which database it runs on. This is the
lint Synapse lacks (60 ``isinstance(…, PostgresEngine)`` checks in 22 storage
files, docs/style.md), done the way Zulip's semgrep rules guard their boundaries.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = ("kernel", "org_tree", "messaging", "apps")
#: The storage modules: the only places that may ask for the dialect.
PLACES = {
    "kernel/db/dialect.py",
    "kernel/db/database.py",
    "kernel/db/base.py",
    "messaging/events.py",
    "messaging/chat_storage.py",
    "messaging/txn_end.py",
    "messaging/notices/storage.py",
    "messaging/tasks/storage.py",
    "messaging/conversations/storage.py",
    "org_tree/bulk.py",
}
ASKS_FOR_DIALECT = re.compile(
    r"is_postgres\(|\.is_sqlite\b|dialect\.name|postgresql\.insert|sqlite\.insert|PostgresEngine"
)


def _modules() -> list[Path]:
    return sorted(p for d in DOMAIN for p in (ROOT / d).rglob("*.py"))


def test_only_the_storage_modules_ask_which_database_they_run_on() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in _modules()
        if str(path.relative_to(ROOT)) not in PLACES
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if ASKS_FOR_DIALECT.search(line) and not line.lstrip().startswith("#")
    ]
    assert found == [], "dialect checks outside the storage modules:\n" + "\n".join(found)


def test_the_listed_places_exist_and_the_scan_sees_the_domain() -> None:
    modules = {str(p.relative_to(ROOT)) for p in _modules()}
    assert PLACES <= modules
    assert len(modules) > 100  # the scan reads the real tree, not an empty folder
