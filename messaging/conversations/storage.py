"""Conversation rows in the dialect each backend is fastest in: a conversation's members in one row,
and a group message's pending fan-out rows (written, claimed and counted in one statement each).

The conversation services decide; this module only runs the statements.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.dialect import chunks, driver_fetch, is_postgres
from messaging.events import driver_in_transaction
from messaging.schema import conversation_members

logger = logging.getLogger(__name__)

__all__ = ["claim_pending", "insert_pending", "remaining_pending", "stored_members"]


_PG_PENDING = """
INSERT INTO message_fanout_pending (conversation_id, person_id, message_id, flags)
SELECT $1, p, $2, f FROM unnest($3::bigint[], $4::smallint[]) AS v(p, f)
"""
_SQLITE_PENDING = """
INSERT INTO message_fanout_pending (conversation_id, person_id, message_id, flags)
SELECT ?, json_extract(value, '$[0]'), ?, json_extract(value, '$[1]') FROM json_each(?)
"""
# The claim: lock the persons' pending rows of the conversation up to the message in
# (person, message) order, delete them and return them, so exactly those events are written.
_PG_CLAIM = """
WITH c AS MATERIALIZED (
    SELECT person_id, message_id FROM message_fanout_pending
    WHERE conversation_id = $1 AND person_id = ANY($2::bigint[]) AND message_id <= $3
    ORDER BY person_id, message_id FOR UPDATE
)
DELETE FROM message_fanout_pending AS p USING c
WHERE p.conversation_id = $1 AND p.person_id = c.person_id AND p.message_id = c.message_id
RETURNING p.person_id, p.message_id, p.flags
"""
_SQLITE_CLAIM = """
DELETE FROM message_fanout_pending
WHERE conversation_id = ? AND person_id IN (SELECT value FROM json_each(?)) AND message_id <= ?
RETURNING person_id, message_id, flags
"""
_PG_REMAINING = "SELECT person_id FROM message_fanout_pending WHERE message_id = $1 ORDER BY person_id"
_SQLITE_REMAINING = "SELECT person_id FROM message_fanout_pending WHERE message_id = ? ORDER BY person_id"


async def stored_members(conn: AsyncConnection, conversation_id: int) -> tuple[set[int], set[int]]:
    """(members, members who muted it) of a conversation with member rows, in one row of two aggregates.

    Why aggregated: a 2,078-member group's rows fetched one by one through
    SQLAlchemy's async cursor cost ~2 ms of a send's Python, and the muted
    members were a second query; one row holding two arrays costs neither.
    """
    cm = conversation_members
    mine = cm.c.conversation_id == conversation_id
    if is_postgres(conn):
        row = (
            await conn.execute(
                select(
                    func.array_agg(cm.c.person_id), func.array_agg(cm.c.person_id).filter(cm.c.muted.is_(True))
                ).where(mine)
            )
        ).one()
        return {int(p) for p in row[0] or ()}, {int(p) for p in row[1] or ()}
    every, muted = func.json_group_array(cm.c.person_id), func.json_group_array(cm.c.person_id)
    arrays = (await conn.execute(select(every, muted.filter(cm.c.muted.is_(True))).where(mine))).one()
    return {int(p) for p in json.loads(arrays[0])}, {int(p) for p in json.loads(arrays[1])}


async def insert_pending(
    conn: AsyncConnection, conversation_id: int, message_id: int, rows: Sequence[tuple[int, int]]
) -> None:
    """One pending row per ``(person, flags)``, in the send's transaction (one statement, arrays)."""
    driver = await driver_in_transaction(conn)
    if is_postgres(conn):
        await driver.execute(_PG_PENDING, conversation_id, message_id, [p for p, _ in rows], [f for _, f in rows])
    else:
        await driver.execute(_SQLITE_PENDING, (conversation_id, message_id, json.dumps(rows)))


async def claim_pending(
    conn: AsyncConnection, conversation_id: int, persons: list[int], upto: int
) -> list[tuple[int, int, int]]:
    """Delete and return the persons' pending rows of the conversation up to ``upto``: (person, message, flags)."""
    driver = await driver_in_transaction(conn)
    out: list[tuple[int, int, int]] = []
    for part in chunks(persons, 100_000):
        rows = await driver_fetch(conn, driver, _PG_CLAIM, _SQLITE_CLAIM, conversation_id, part, upto)
        out.extend((int(p), int(m), int(f)) for p, m, f in rows)
    return out


async def remaining_pending(conn: AsyncConnection, message_id: int) -> list[int]:
    """The persons a message still has pending rows for, in order."""
    driver = (await conn.get_raw_connection()).driver_connection
    return [int(r[0]) for r in await driver_fetch(conn, driver, _PG_REMAINING, _SQLITE_REMAINING, message_id)]
