"""The direct chat's hot statements are planned as index probes on its own PostgreSQL pool.

Why: a prepared statement's kept plan (the generic plan, built on its sixth
use) was a sequential scan when it was first built on a small or never
analysed table, and it stayed one while the table grew: every send batch then
read all of ``conversations`` and ``person_streams`` several times (1.2 ms
of PostgreSQL CPU per chat message in ``bench/chat_load.py``, issue 15).
Here each hot statement's generic plan is read on a fresh database from the
chat pool and from the shared pool (the control, which still plans the
scans, so this test can fail).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kernel.db.database import Database
from messaging import chat_storage, events
from tests.conftest import FAST_PASSWORDS, make_settings
from zzd.services import Services

pytestmark = pytest.mark.postgres

#: name → (parameter types, statement) of every statement of a send batch that finds rows by key.
_HOT = {
    "people_and_chats": ("bigint[], text[], bigint[], bigint[], timestamptz", chat_storage._PG_PEOPLE_AND_CHATS),
    "direct": ("text[]", chat_storage._PG_DIRECT),
    "lock_conversations": ("bigint[]", chat_storage._PG_LOCK),
    "messages_and_events": (
        "bigint[], bigint[], text[], text[], timestamptz, bigint[], text[], bigint[], text, text[]",
        chat_storage._PG_MESSAGES_AND_EVENTS,
    ),
    "lock_heads": ("bigint[]", events._PG_LOCK_HEADS),
    "set_heads": ("bigint[], bigint[]", events._PG_SET_HEADS),
}
#: Statements of a send batch that only insert (their conflict checks probe the unique indexes,
#: which a plan does not show): no scan and no hash or merge join may appear in them either.
_INSERTS = {
    "new_direct": ("text[], bigint[], bigint[], timestamptz", chat_storage._PG_NEW_DIRECT),
}


def _nodes(plan: dict[str, Any]) -> list[str]:
    return [plan["Node Type"], *(n for child in plan.get("Plans", ()) for n in _nodes(child))]


async def _generic_plans(db: Database) -> dict[str, list[str]]:
    """Each hot statement's generic plan (what a prepared statement keeps), as its node types."""
    out: dict[str, list[str]] = {}
    async with db.write() as conn:
        await conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        for name, (types, sql) in (_HOT | _INSERTS).items():
            await conn.exec_driver_sql(f"PREPARE {name} ({types}) AS {sql}")
            literal = {"timestamptz": "now()", "text": "''"}
            args = ", ".join("'{}'" if t.endswith("[]") else literal[t.strip()] for t in types.split(","))
            raw = (await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) EXECUTE {name} ({args})")).scalar()
            await conn.exec_driver_sql(f"DEALLOCATE {name}")
            out[name] = _nodes((json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"])
        await conn.rollback()
    return out


async def test_hot_chat_statements_probe_indexes_on_a_fresh_database(own_pg_database: str) -> None:
    s = Services.build(make_settings(own_pg_database, db_chat_pool_size=2), passwords=FAST_PASSWORDS)
    assert s.chat_db is not None and s.chat_db is not s.db
    try:
        chat = await _generic_plans(s.chat_db)
        shared = await _generic_plans(s.db)
    finally:
        await s.chat_db.dispose()
        await s.db.dispose()
    scans = {"Seq Scan", "Hash Join", "Merge Join"}
    assert {name: sorted(scans & set(nodes)) for name, nodes in chat.items()} == {name: [] for name in _HOT | _INSERTS}
    for name in _HOT:
        assert any("Index" in n for n in chat[name]), (name, chat[name])
    # The control: the shared pool's planner still scans the fresh, never analysed tables.
    assert any(scans & set(nodes) for nodes in shared.values()), shared
