"""The message as it travels: one model for history, the ``message.new`` event and the REST answers.

Before, a direct chat's ``message.new`` and a conversation's had different
payloads depending on which module wrote them. Now every writer (direct chat,
conversations, system notes) builds :class:`MessageNew` and every reader
(history, the REST schemas, the AsyncAPI document) uses :class:`Message`, so
a client handles one shape whatever kind of conversation it is in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from kernel.wire import WireModel, dumps, iso

__all__ = [
    "ConversationKind",
    "HistoryMessage",
    "Mentions",
    "Message",
    "MessageNew",
    "MessageSent",
    "ReplyRef",
    "Sender",
    "Shape",
]

ConversationKind = Literal["direct", "group", "position", "unit"]


@dataclass(frozen=True, slots=True)
class MessageSent:
    """The sender's answer to a send, direct chat or conversation alike (the REST ``Posted`` shape)."""

    message_id: int
    conversation_id: int
    created_at: datetime
    #: True when this (sender, client_msg_id) was already stored: nothing new was written.
    duplicate: bool
    #: The sender's own event seq for this message (None for duplicates).
    sender_seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "conversation_id": self.conversation_id,
            "created_at": iso(self.created_at),
            "duplicate": self.duplicate,
            "seq": self.sender_seq,
        }


class Shape(WireModel):
    """An event's ``data``: every field named (``extra="forbid"``), nothing undocumented slips out."""

    def text(self) -> str:
        """The stored event payload (JSON text) of the fields this event was built with.

        An optional field the producer left out stays out (``notice.remind``'s
        ``step`` or ``manual``, a label's ``via_position_id``), as the document says.
        """
        return dumps(self.model_dump(exclude_unset=True))


class Sender(Shape):
    id: int = Field(description="person id")
    name: str
    position_id: int | None = Field(None, description="the position written as (position threads), else null")


class ReplyRef(Shape):
    #: the quoted message's id
    id: int
    snippet: str = Field(description="the start of the quoted message (empty if recalled or not visible)")


class Mentions(Shape):
    #: person ids named
    persons: list[int] = Field(default_factory=list)
    #: position ids named (their holders count as mentioned)
    positions: list[int] = Field(default_factory=list)


class Message(Shape):
    """A stored message as every reader sees it (recalled: empty body, no attachments)."""

    #: the message's id
    id: int
    #: the conversation it is in
    conversation_id: int
    #: direct, group, position or unit
    conversation_kind: ConversationKind
    #: text, or system for a note (its system object says what happened)
    kind: Literal["text", "system"] = "text"
    #: who wrote it, and as which position
    sender: Sender
    #: the sender's id for it (a retry answers the same message)
    client_msg_id: str
    #: the text (empty when recalled)
    body: str
    #: when it was stored (UTC)
    created_at: datetime
    #: the message it answers (null: none)
    reply_to: ReplyRef | None = None
    #: persons and positions named (message.new and history say whether the reader is among them: mentioned)
    mentions: Mentions = Field(default_factory=Mentions)
    attachments: list[Any] = Field(default_factory=list, description="upload digests or attachment references")
    #: last edited by its sender (null: never)
    edited_at: datetime | None = None
    #: recalled by its sender (null: not)
    recalled_at: datetime | None = None
    recipient_id: int | None = Field(None, description="direct chats: the person written to")
    position_id: int | None = Field(None, description="position threads: the addressed position")
    peer_position_id: int | None = Field(None, description="position threads: the writing side's position")
    peer_person_id: int | None = Field(None, description="position threads: the person who opened it")
    system: dict[str, Any] | None = Field(
        None, description="system notes: what happened (event: created, renamed, members, handover, and its details)"
    )


class HistoryMessage(Message):
    """A message in history: as every reader sees it, plus whether it names the reader."""

    mentioned: bool = Field(
        False,
        description=(
            "its mentions name the caller, or a position the caller holds now (primary, deputy or acting);"
            " false for the caller's own messages, system notes and recalled ones"
        ),
    )


class MessageNew(Message):
    """The ``message.new`` event: the message plus what is particular to this recipient."""

    mentioned: bool = Field(False, description="this recipient is mentioned (by name or position)")
    muted: bool = Field(False, description="this recipient muted the conversation: deliver quietly")

    def text(self) -> str:
        """The stored event payload (JSON text, every field present)."""
        return dumps(self.model_dump())


class MessageEdited(Shape):
    message_id: int
    conversation_id: int
    edited_at: datetime
    body: str


class MessageRecalled(Shape):
    message_id: int
    conversation_id: int
    recalled_at: datetime
    #: when the message was last edited before the recall (null: never edited), as history says
    edited_at: datetime | None


class ConversationRead(Shape):
    """The person's own read marker moved (from another of their devices)."""

    conversation_id: int
    last_read_message_id: int


class PeerRead(ConversationRead):
    """The other member of a direct chat read up to ``last_read_message_id``."""

    person_id: int


class ConversationMuted(Shape):
    conversation_id: int
    muted: bool


class ConversationLeft(Shape):
    """Removed from a group, or no longer holding the position a unit group or thread came through."""

    conversation_id: int


class NoticeSender(Shape):
    person_id: int
    position_id: int


class NoticeLabel(Shape):
    """One position the notice reaches this person through."""

    position_id: int = Field(description="the addressed position")
    role: str | None = Field(None, description="its role's name")
    unit: str | None = Field(None, description="its unit's name")
    via_position_id: int | None = Field(
        None,
        description=(
            "standing in for a vacant position: the position this person holds (the addressed one itself"
            " for its deputy or acting holder); null for a holder"
        ),
    )
    reason: Literal["deputy", "acting", "unit_head", "superior"] | None = Field(
        None, description="why this person receives for a vacant position (null for a holder)"
    )


class NoticeHead(Shape):
    """What every view of a notice starts with."""

    notice_id: int
    title: str
    priority: Literal["normal", "urgent"]
    ack_required: bool
    deadline: datetime | None
    created_at: datetime
    sender: NoticeSender


class NoticeNew(NoticeHead):
    """A notice reached this person (the body is fetched with ``GET /api/v1/notices/{id}``)."""

    positions: list[NoticeLabel]
    transferred: bool | None = Field(None, description="true: passed to this person with a position's handover")


class NoticeRemind(NoticeNew):
    """A reminder: an urgent notice (DING) still unread (``step`` of the ladder), or the sender's
    manual reminder to those under a unit who still owe (``manual``, ``by``, ``unit_id``; no ``step``)."""

    step: int | None = Field(
        None,
        description="DING ladder: the step's place in the ladder, counted from 0 (the default ladder's "
        "reminder after 30 minutes is step 0; its escalation, step 1, goes out of band as "
        "Idempotency-Key notice-<id>-step-1); absent on a manual reminder",
    )
    manual: bool | None = Field(None, description="true: the sender reminded by hand")
    by: int | None = Field(None, description="manual: the person who reminded")
    unit_id: int | None = Field(None, description="manual: the unit whose recipients were reminded")


class NoticeRecalled(Shape):
    notice_id: int
    recalled_at: datetime


class NoticeProgress(Shape):
    """To the sender, at most every few seconds while receipts change: the notice-wide totals."""

    notice_id: int
    receipts: int
    delivered: int
    read: int
    acked: int


class NoticeTransferred(Shape):
    """To a former holder: these unread notices passed to the position's new holder."""

    notice_id: int
    position_ids: list[int]
    to_person_id: int


class HeldPosition(Shape):
    """A position one holds, as ``GET /api/v1/me/positions`` lists it."""

    #: the position's id (position_id elsewhere)
    id: int
    #: its role's key (grid_worker)
    role_key: str
    #: its role's name (专职网格员)
    role: str
    #: its unit's id
    unit_id: int
    #: unit names from the province down to its unit
    unit_path: list[str]
    pool: bool = Field(description="a pool position: any holder may take work offered to it")
    holders: list[int] = Field(description="primary holders' person ids (empty: vacant)")
    alternates: list[Annotated[list[int | Literal["deputy", "acting"]], Field(min_length=2, max_length=2)]] = Field(
        description='[person id, "deputy" | "acting"] pairs'
    )
    title: str | None = Field(default=None, description="the title it was created with (副书记), else null")


class PositionsChanged(Shape):
    """To a person whose seats changed (assigned, assignment ended, handover, position or unit retired), or
    whose positions read differently (a unit above them renamed, moved or merged: nothing gained or lost)."""

    person_id: int
    positions: list[HeldPosition] = Field(description="every position they hold now, after the change")
    gained: list[int] = Field(description="position ids they now hold (primary, after a handover)")
    lost: list[int] = Field(description="position ids they no longer hold")


__all__ += [
    "ConversationLeft",
    "HeldPosition",
    "PositionsChanged",
    "ConversationMuted",
    "ConversationRead",
    "MessageEdited",
    "MessageRecalled",
    "NoticeHead",
    "NoticeLabel",
    "NoticeNew",
    "NoticeProgress",
    "NoticeRecalled",
    "NoticeRemind",
    "NoticeTransferred",
    "PeerRead",
    "Source",
    "TaskActor",
    "TaskChanged",
    "TaskState",
    "TaskTransition",
    "TaskView",
]


# --- tasks (``task.created``, ``task.updated``; the same task and transition shapes as the REST answers)

TaskState = Literal["created", "accepted", "in_progress", "resolved", "verified", "closed", "cancelled"]


class TaskActor(Shape):
    #: the person who acted
    person_id: int
    #: the position they acted as
    position_id: int | None


class Source(Shape):
    kind: str = Field(description="direct | notice | report")
    #: the notice's or report's id (null for a direct task)
    id: int | None


class TaskView(Shape):
    """What every party's event and the API show (the body comes with GET /api/v1/tasks/{task_id})."""

    #: the task's id
    task_id: int
    #: its category key (GET /api/v1/tasks/categories)
    category: str
    #: its title
    title: str
    #: created, accepted, in_progress, resolved, verified, closed or cancelled (docs/tasks.md)
    state: TaskState
    version: int = Field(description="send it back with the next action (409 stale_version otherwise)")
    #: the position that owns it now (its holders act on the owner side)
    owner_position_id: int
    #: the owner position's unit
    owner_unit_id: int
    pool: list[int] = Field(description="positions offered a shared task (any of them may accept)")
    #: where the matter arose (a report's grid; else the first owner's unit): what GET /api/v1/tasks/stats counts by
    origin_unit_id: int
    #: who created it and as which position (the creator side)
    creator: TaskActor
    #: what it came from
    source: Source
    #: how many times it climbed to a position above (0: never)
    escalation_level: int
    #: while created: escalated when not accepted by then
    accept_due_at: datetime | None
    #: while accepted or in progress: escalated when not resolved by then
    resolve_due_at: datetime | None
    #: when it was created (UTC)
    created_at: datetime
    #: its last change
    updated_at: datetime
    #: when the current owner accepted it (null: not yet; cleared when it goes back to created)
    accepted_at: datetime | None
    #: when it was resolved (null: not yet, or returned by the creator)
    resolved_at: datetime | None
    #: closed (null: not yet)
    closed_at: datetime | None
    #: the creator's 截止时间: resolved by then (resolve_due_at is it once accepted; null: the category's windows)
    due_at: datetime | None


class TaskTransition(Shape):
    """One transition of a task."""

    #: the task's version this change made
    version: int
    #: create, accept, start, resolve, verify, close, return, reject, reassign, cancel, comment or escalate
    action: str
    #: the state before (null for create)
    from_state: TaskState | None
    #: the state after
    to_state: TaskState
    actor: TaskActor | None = Field(description="null: the server (timers, escalation)")
    #: when (UTC)
    at: datetime
    #: the actor's comment
    comment: str | None
    #: sha256 digests of photos attached to this change
    attachments: list[Any]
    #: what else the change records (a report's id, an escalation's from_owner, to_owner, rule and reason)
    data: dict[str, Any]


class TaskChanged(Shape):
    """``task.created`` / ``task.updated`` to everyone involved (and the outbox's ``task.*``)."""

    task: TaskView
    event: TaskTransition = Field(description="the transition, as in the task's history")
    urgent: bool | None = Field(None, description="true on a DING escalation")
