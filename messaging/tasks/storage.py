"""Task rows in the dialect each backend is fastest in: the set-based update of an escalation batch.

The task services decide; this module writes what needs the raw driver.
"""

from __future__ import annotations

import logging
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.dialect import is_postgres
from messaging.events import driver_in_transaction
from messaging.tasks.model import TaskRow
from messaging.tasks.schema import tasks

logger = logging.getLogger(__name__)

__all__ = ["insert_new_tasks", "tasks_in_one_statement", "update_tasks"]


async def update_tasks(conn: AsyncConnection, updates: list[dict[str, Any]]) -> None:
    """The batch's version-checked task updates: one set-based statement on PostgreSQL.

    Why: as an executemany, PostgreSQL runs one UPDATE per row (~0.1 ms each on
    a busy machine); joined to ``unnest`` of one array per column it is one
    statement. Column names and types come from the ``tasks`` table, never from input.
    """
    if not is_postgres(conn):
        await conn.execute(
            update(tasks).where(tasks.c.id == bindparam("_id"), tasks.c.version == bindparam("_version")), updates
        )
        return
    cols = [c for c in updates[0] if not c.startswith("_")]
    names = ["_id", "_version", *cols]
    types = ["BIGINT", "INTEGER", *(tasks.c[c].type.compile(dialect=conn.dialect) for c in cols)]
    sql = (
        f"UPDATE tasks AS t SET {', '.join(f'{c} = v.{c}' for c in cols)}"  # noqa: S608
        f" FROM unnest({', '.join(f'${i + 1}::{ty}[]' for i, ty in enumerate(types))}) AS v({', '.join(names)})"
        " WHERE t.id = v._id AND t.version = v._version"
    )
    driver = await driver_in_transaction(conn)
    status = await driver.execute(sql, *([u[n] for u in updates] for n in names))
    if int(status.rsplit(" ", 1)[1]) != len(updates):  # the caller holds the rows locked at these versions
        raise RuntimeError(f"task batch update matched {status!r} of {len(updates)} rows")


# New tasks (one per owner) with their history rows and accept timers, the category read with them.
# ``accept_due_at`` is the creation time plus the category's ``accept_within`` seconds, but never
# after ``due_at`` ($20, validated to lie ahead; LEAST skips a NULL), as ``Category.accept_by`` has it.
# The last SELECT has one row per task made, or one row of NULLs
# when the category exists but every task was already made (a retry), or none for an unknown category.
_PG_NEW_TASKS = """
WITH cat AS (
    SELECT key, name, rules FROM task_categories WHERE key = $1
),
made AS (
    INSERT INTO tasks (category, title, body, state, version, owner_position_id, owner_unit_id, pool,
        origin_unit_id, creator_person_id, creator_position_id, watchers, source, source_id, client_msg_id,
        escalation_level, accept_due_at, resolve_due_at, created_at, updated_at, due_at)
    SELECT cat.key, $2, $3, $4, 1, v.owner, v.unit, $5, v.origin, $6, $7, '[]', $8, $9, $10, 0,
        LEAST($11::timestamptz + make_interval(secs => (cat.rules::json ->> 'accept_within')::int), $20::timestamptz),
        NULL, $11, $11, $20
    FROM unnest($12::bigint[], $13::bigint[], $14::bigint[]) WITH ORDINALITY AS v(owner, unit, origin, o)
        CROSS JOIN cat
    ORDER BY v.o
    ON CONFLICT (creator_person_id, client_msg_id, owner_position_id) DO NOTHING
    RETURNING *
),
history AS (
    INSERT INTO task_events (task_id, version, action, from_state, to_state, actor_person_id, actor_position_id,
        at, comment, attachments, data)
    SELECT id, 1, $15, NULL, $4, $16, $17, $11, '', $18, $19 FROM made
    RETURNING id AS history_id, task_id
),
timers AS (
    INSERT INTO task_timers (task_id, kind, task_version, due_at, attempts)
    SELECT id, 'accept', 1, accept_due_at, 0 FROM made WHERE accept_due_at IS NOT NULL
)
SELECT cat.name AS category_name, cat.rules AS category_rules, made.*, history.history_id
FROM cat LEFT JOIN (made JOIN history ON history.task_id = made.id) ON true
ORDER BY made.id
"""


def tasks_in_one_statement(conn: AsyncConnection) -> bool:
    """Whether :func:`insert_new_tasks` can write a request's tasks on ``conn`` (PostgreSQL only).

    Asked here, where the driver-level statement lives, so that the task service
    stays free of dialect checks (tests/test_dialect_places.py).
    """
    return is_postgres(conn)


async def insert_new_tasks(
    conn: AsyncConnection,
    base: dict[str, Any],
    owners: list[tuple[int, int, int]],
    history: dict[str, Any],
    now: datetime,
) -> tuple[list[tuple[TaskRow, int]], tuple[str, str] | None]:
    """PostgreSQL: insert one task per ``(owner position, owner unit, origin unit)`` in one statement.

    Why one statement: creating a task was six round trips (category, task, history,
    timer, each built by SQLAlchemy); here it is one fixed statement sent straight
    to asyncpg, with each history row and accept timer written from the inserted
    rows. ``base`` holds the columns every task shares (as ``TaskService`` builds
    them: category, title, body, pool, creator, source, client_msg_id, due_at); ``history``
    the creation entry's ``action``, ``to_state``, actor, ``attachments`` and
    ``data`` (JSON text). Returns ``(task, history row id)`` per task made, owners
    already made by this ``client_msg_id`` skipped, and the category's ``(name,
    rules)``, ``None`` when there is no such category (nothing was written).
    """
    driver = await driver_in_transaction(conn)
    rows = await driver.fetch(
        _PG_NEW_TASKS, base["category"], base["title"], base["body"], history["to_state"], base["pool"],
        base["creator_person_id"], base["creator_position_id"], base["source"], base["source_id"],
        base["client_msg_id"], now, [o[0] for o in owners], [o[1] for o in owners], [o[2] for o in owners],
        history["action"], history["actor_person_id"], history["actor_position_id"], history["attachments"],
        history["data"], base["due_at"],
    )  # fmt: skip
    if not rows:
        return [], None
    made = [(TaskRow.from_row(SimpleNamespace(**dict(r))), int(r["history_id"])) for r in rows if r["id"] is not None]
    return made, (str(rows[0]["category_name"]), str(rows[0]["category_rules"]))
