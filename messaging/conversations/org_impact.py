"""What a structural org edit does to conversations, for the administrators' preview.

Why only counts: the edit itself changes no conversation row. Unit groups and
position members follow the tree through ``MemberReconciler`` once every
process has the change, and a retired position's thread stays readable by its
former holders (access is by assignment history). The preview says how many
would be touched: unit groups whose member sets change, and position threads
(and groups with a position member) of the positions involved.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from messaging.conversations.schema import conversation_positions
from messaging.schema import conversations

logger = logging.getLogger(__name__)

__all__ = ["conversation_impact"]

_CHUNK = 1000


async def conversation_impact(conn: AsyncConnection, position_ids: list[int], unit_ids: list[int]) -> dict[str, Any]:
    """``{"unit_groups": n, "position_threads": n}`` touched by an edit of these positions and units."""
    groups = threads = 0
    for i in range(0, len(unit_ids), _CHUNK):
        chunk = unit_ids[i : i + _CHUNK]
        groups += int(
            (
                await conn.execute(
                    select(func.count()).where(conversations.c.kind == "unit", conversations.c.unit_id.in_(chunk))
                )
            ).scalar_one()
        )
    for i in range(0, len(position_ids), _CHUNK):
        chunk = position_ids[i : i + _CHUNK]
        threads += int(
            (
                await conn.execute(
                    select(func.count(func.distinct(conversations.c.id))).where(
                        or_(
                            conversations.c.position_id.in_(chunk),
                            conversations.c.peer_position_id.in_(chunk),
                            conversations.c.id.in_(
                                select(conversation_positions.c.conversation_id).where(
                                    conversation_positions.c.position_id.in_(chunk)
                                )
                            ),
                        )
                    )
                )
            ).scalar_one()
        )
    return {"unit_groups": groups, "position_threads": threads}
