"""The message as it travels: one model for history, the ``message.new`` event and the REST answers.

Before, a direct chat's ``message.new`` and a conversation's had different
payloads depending on which module wrote them. Now every writer (direct chat,
conversations, system notes) builds :class:`MessageNew` and every reader
(history, the REST schemas, the AsyncAPI document) uses :class:`Message`, so
a client handles one shape whatever kind of conversation it is in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kernel.wire import dumps

__all__ = ["ConversationKind", "Mentions", "Message", "MessageNew", "ReplyRef", "Sender"]

ConversationKind = Literal["direct", "group", "position", "unit"]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Sender(_Shape):
    id: int = Field(description="person id")
    name: str
    position_id: int | None = Field(None, description="the position written as (position threads), else null")


class ReplyRef(_Shape):
    id: int
    snippet: str = Field(description="the start of the quoted message (empty if recalled or not visible)")


class Mentions(_Shape):
    persons: list[int] = Field(default_factory=list)
    positions: list[int] = Field(default_factory=list)


class Message(_Shape):
    """A stored message as every reader sees it (recalled: empty body, no attachments)."""

    id: int
    conversation_id: int
    conversation_kind: ConversationKind
    kind: Literal["text", "system"] = "text"
    sender: Sender
    client_msg_id: str
    body: str
    created_at: datetime
    reply_to: ReplyRef | None = None
    mentions: Mentions = Field(default_factory=Mentions)
    attachments: list[Any] = Field(default_factory=list, description="upload digests or attachment references")
    edited_at: datetime | None = None
    recalled_at: datetime | None = None
    recipient_id: int | None = Field(None, description="direct chats: the person written to")
    position_id: int | None = Field(None, description="position threads: the addressed position")
    peer_position_id: int | None = Field(None, description="position threads: the writing side's position")
    peer_person_id: int | None = Field(None, description="position threads: the person who opened it")
    system: dict[str, Any] | None = Field(None, description="system notes: what happened (joined, left, renamed)")


class MessageNew(Message):
    """The ``message.new`` event: the message plus what is particular to this recipient."""

    mentioned: bool = Field(False, description="this recipient is mentioned (by name or position)")
    muted: bool = Field(False, description="this recipient muted the conversation: deliver quietly")

    def text(self) -> str:
        """The stored event payload (JSON text, every field present)."""
        return dumps(self.model_dump())
