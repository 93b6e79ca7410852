"""Answers of direct chat, conversations, groups, history, the inbox and ``/api/v1/sync``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from messaging.shapes import ConversationKind, HistoryMessage, Message
from zzd.http.contract import WireModel

__all__ = [
    "EventPage",
    "GroupView",
    "History",
    "Inbox",
    "MessageChanged",
    "MessageView",
    "Muted",
    "Posted",
    "ReadBy",
    "ReadMarker",
]


class Posted(WireModel):
    """A message stored (201), or the one already stored under this ``client_msg_id`` (200)."""

    #: the stored message's id
    message_id: int
    #: the conversation it is in (a direct chat is opened by its first message)
    conversation_id: int
    #: when it was stored (UTC)
    created_at: datetime
    duplicate: bool = Field(description="true: a retry; nothing new was written")
    seq: int | None = Field(description="the sender's event sequence number for it (null on a duplicate)")


#: The stored message as every reader sees it (history adds whether it names the caller,
#: ``mentioned``; the ``message.new`` event adds the recipient's ``mentioned`` and ``muted``):
#: one definition, in messaging/shapes.py.
MessageView = Message


class History(WireModel):
    conversation_id: int | None = Field(description="null: no direct chat with that person yet (WebSocket with_person)")
    messages: list[HistoryMessage] = Field(description="newest first")
    next_before: int | None = Field(description="pass as before= for the next (older) page")


class LastMessage(WireModel):
    #: the message's id
    id: int
    #: who wrote it
    sender: ReplyRefSender
    #: text, or system for a note (joined, left, renamed, handover)
    kind: Literal["text", "system"]
    #: the body's first 80 characters (empty when recalled)
    snippet: str
    #: when it was stored (UTC)
    created_at: datetime
    #: true: its sender recalled it
    recalled: bool


class ReplyRefSender(WireModel):
    #: the person's id
    id: int
    #: their name
    name: str


LastMessage.model_rebuild()


class InboxItem(WireModel):
    #: the conversation's id (conversation_id everywhere else)
    id: int
    #: direct, group, position (a position thread) or unit (a unit group)
    kind: ConversationKind
    #: a group's or unit group's title; null for direct chats and position threads
    title: str | None
    #: the newest message's id (null: none yet)
    last_message_id: int | None
    #: the caller's read marker (0: nothing read); moved by read, never back
    last_read_message_id: int
    #: the caller muted it (their message.new events say muted: true)
    muted: bool
    via_position_id: int | None = Field(description="position threads: the caller's position in it")
    #: messages after the marker, leaving out the caller's own, system notes and recalled ones
    unread: int
    #: of those unread messages, the ones whose mentions name the caller or a position they hold now (有人@我)
    unread_mentions: int
    #: the newest message (null: none yet)
    last_message: LastMessage | None
    peer_id: int | None = Field(default=None, description="direct chats: the other person")
    position_id: int | None = Field(default=None, description="position threads: the addressed position")
    #: position threads: the position the other side wrote as (null: a person opened it)
    peer_position_id: int | None = None
    #: position threads: the person who opened it (null: opened as a position)
    peer_person_id: int | None = None
    unit_id: int | None = Field(default=None, description="unit groups: the unit")


class PositionUnread(WireModel):
    position_id: int
    unread_on_page: int


class Inbox(WireModel):
    conversations: list[InboxItem]
    positions: list[PositionUnread] = Field(description="unread counts of this page per held position")
    next_cursor: str | None = Field(description="pass as cursor= for the next page")


class StoredEvent(WireModel):
    #: the caller's event number: one more per event, across devices and processes
    seq: int
    kind: str = Field(description="event kind (docs/events.md; AsyncAPI at /asyncapi.json)")
    #: the event's data, one shape per kind (docs/protocol.md, /asyncapi.json)
    data: dict[str, Any]


class EventPage(WireModel):
    #: the stream's epoch: keep it with the last seq you processed; another one means reload
    epoch: str
    #: in seq order, each seq one more than the one before
    events: list[StoredEvent]
    #: pass as since= next time: the last seq on this page (since itself when there are none)
    next_since: int
    limited: bool = Field(description="true: more events wait; ask again with since=next_since")
    #: the last seq written for the caller; caught up when next_since equals it
    last_seq: int


class MessageChanged(WireModel):
    """An edit (``edited_at`` and ``body``) or a recall (``recalled_at``, and the ``edited_at`` of the
    message's last edit before it: null when it was never edited, as history says)."""

    message_id: int
    conversation_id: int
    edited_at: datetime | None = None
    body: str | None = None
    recalled_at: datetime | None = None


class ReadMarker(WireModel):
    conversation_id: int
    last_read_message_id: int


class ReadBy(WireModel):
    message_id: int
    read: list[int] = Field(description="person ids who have read it (sender excluded)")
    unread: list[int]


class Muted(WireModel):
    conversation_id: int
    muted: bool


class Member(WireModel):
    person_id: int
    role: Literal["owner", "admin"] | None
    derived: bool = Field(description="true: a member through a position, not by name")


class GroupView(WireModel):
    id: int
    kind: Literal["group", "unit"]
    title: str
    owner_id: int | None
    members: list[Member]
    position_ids: list[int]
    unit_id: int | None = None
    depth: int | None = None
