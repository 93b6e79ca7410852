"""Conversation rows in the dialect each backend is fastest in: a conversation's members in one row.

The conversation services decide; this module only reads.
"""

from __future__ import annotations

import json
import logging

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.dialect import is_postgres
from messaging.schema import conversation_members

logger = logging.getLogger(__name__)

__all__ = ["stored_members"]


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
