"""Telling an app's owner that one of its webhook endpoints was disabled.

Why a message to the owning position's thread: the people answerable for the
app sit in that position (and its successor after a handover inherits the
thread), and a position thread needs no jurisdiction — it is how anyone
writes to an office. The disabling itself is audited in its own transaction
(``apps.delivery``); this message follows it.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from apps.schema import apps
from apps.subscriptions import Subscription
from kernel.clock import Clock
from kernel.db.database import Database
from messaging.conversations.model import PostRequest
from messaging.conversations.service import ConversationService

logger = logging.getLogger(__name__)

__all__ = ["EndpointAlarm"]


class EndpointAlarm:
    def __init__(self, db: Database, clock: Clock, conversations: ConversationService) -> None:
        self._db = db
        self._clock = clock
        self._conversations = conversations

    async def __call__(self, sub: Subscription, reason: str) -> None:
        async with self._db.read() as conn:
            app = (await conn.execute(select(apps).where(apps.c.id == sub.app_id))).one()
        if app.owner_position_id is None:
            logger.warning("app %s endpoint %s disabled (%s); the app has no owner position", app.name, sub.id, reason)
            return
        text = (
            f"【{app.name}】的事件推送地址已停用：{sub.url}\n原因：{reason}\n"
            f"修复后由应用重新启用（PATCH /api/v1/bot/subscriptions/{sub.id}），期间的事件不会丢失。"
        )
        await self._conversations.post(
            PostRequest(
                sender_id=int(app.bot_person_id),
                client_msg_id=f"endpoint-disabled:{sub.id}:{int(self._clock.now().timestamp())}",
                body=text,
                to_position_id=int(app.owner_position_id),
            )
        )
