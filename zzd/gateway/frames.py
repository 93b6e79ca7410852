"""Typed client frames, validated at the edge (docs/protocol.md).

Each frame is a JSON object with ``type`` and a client-chosen ``id`` that the
reply echoes as ``ref``. Unknown fields, wrong types and out-of-range numbers
are refused: pydantic strict mode, no coercion.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, TypeAdapter, model_validator

from kernel.wire import ClientMsgId

__all__ = [
    "ClientFrame",
    "FRAME_ID_PATTERN",
    "FRAME_TYPES",
    "PROTOCOL_VERSION",
    "FrameId",
    "echoable_id",
    "parse_frame",
]

PROTOCOL_VERSION = 1
SafeInt = Annotated[int, Field(ge=0, le=2**53)]
PosInt = Annotated[int, Field(ge=1, le=2**53)]
#: No control characters (C0, DEL, C1) in a frame id: it is echoed as ``ref``, and a NUL in it
#: was accepted and sent back (the 河南 audit). Such a frame is ``invalid_frame`` with ``ref: null``.
FRAME_ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
FrameId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=FRAME_ID_PATTERN)]


def echoable_id(value: object) -> str | None:
    """A frame ``id`` that may be echoed as ``ref``: a string of at most 64 characters, valid
    Unicode, without control characters; None otherwise (the error's ``ref`` is then null)."""
    if not isinstance(value, str) or len(value) > 64 or _CONTROL.search(value):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate in the id itself: nothing to echo
        return None
    return value


_EMPTY: dict[str, JsonValue] = {"default": []}


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    id: FrameId


class Resume(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    epoch: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    since: SafeInt


class Hello(_Frame):
    type: Literal["hello"]
    v: Literal[1]
    #: The access token; may be left out when the upgrade request carried it (``Authorization: Bearer``).
    token: Annotated[str, StringConstraints(min_length=1, max_length=8192)] | None = None
    #: Resume the event stream after ``since``; omit to start live from now.
    resume: Resume | None = None


class Send(_Frame):
    """A message: to a person (``to``, direct chat), a conversation, or a position (docs/conversations.md)."""

    type: Literal["send"]
    #: Recipient person id (direct chat).
    to: PosInt | None = None
    conversation_id: PosInt | None = None
    to_position: PosInt | None = None
    as_position: PosInt | None = None
    client_msg_id: ClientMsgId
    #: Required; may be "" when attachments are given.
    body: Annotated[str, StringConstraints(max_length=5000)]
    reply_to: PosInt | None = None
    # default_factory, not ``= []``: pydantic deep-copies a mutable default for every frame
    # (a tenth of a send's parse); the documented default stays [].
    mention_persons: Annotated[list[PosInt], Field(max_length=50, default_factory=list, json_schema_extra=_EMPTY)]
    mention_positions: Annotated[list[PosInt], Field(max_length=50, default_factory=list, json_schema_extra=_EMPTY)]
    attachments: Annotated[
        list[Annotated[str, StringConstraints(max_length=128)]],
        Field(max_length=20, default_factory=list, json_schema_extra=_EMPTY),
    ]

    @model_validator(mode="after")
    def _one_target(self) -> Send:
        # No generator: this runs for every frame a client sends (py-spy: as long as the rest of its validation).
        if (self.to is None) + (self.conversation_id is None) + (self.to_position is None) != 2:
            raise ValueError("give exactly one of to, conversation_id, to_position")
        return self


class Edit(_Frame):
    type: Literal["edit"]
    message_id: PosInt
    body: Annotated[str, StringConstraints(max_length=5000)]


class Recall(_Frame):
    type: Literal["recall"]
    message_id: PosInt


class Sync(_Frame):
    type: Literal["sync"]
    epoch: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    since: SafeInt
    limit: Annotated[int, Field(ge=1, le=500)] = 500


class History(_Frame):
    type: Literal["history"]
    conversation_id: PosInt | None = None
    #: Direct chat with this person, instead of a conversation id.
    with_person: PosInt | None = None
    before: PosInt | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 50

    @model_validator(mode="after")
    def _one_conversation(self) -> History:
        if (self.conversation_id is None) == (self.with_person is None):
            raise ValueError("give exactly one of conversation_id, with_person")
        return self


class Read(_Frame):
    type: Literal["read"]
    conversation_id: PosInt
    message_id: PosInt


class Conversations(_Frame):
    type: Literal["conversations"]
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    #: ``next_cursor`` of the previous page.
    cursor: Annotated[str, StringConstraints(max_length=40)] | None = None


class NoticeReceipt(_Frame):
    """``notice_delivered`` / ``notice_read`` / ``notice_ack`` for a notice the person received."""

    type: Literal["notice_delivered", "notice_read", "notice_ack"]
    notice_id: PosInt
    #: For ``notice_ack``: acknowledge for this one position (default: all of them).
    position_id: PosInt | None = None
    reply: Annotated[str, StringConstraints(max_length=2000)] | None = None


class Ping(_Frame):
    type: Literal["ping"]


ClientFrame = Annotated[
    Hello | Send | Edit | Recall | Sync | History | Read | Conversations | NoticeReceipt | Ping,
    Field(discriminator="type"),
]
FRAME_TYPES = frozenset(
    {
        "hello",
        "send",
        "edit",
        "recall",
        "sync",
        "history",
        "read",
        "conversations",
        "notice_delivered",
        "notice_read",
        "notice_ack",
        "ping",
    }
)

_adapter: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)


def parse_frame(
    obj: object,
) -> Hello | Send | Edit | Recall | Sync | History | Read | Conversations | NoticeReceipt | Ping:
    """Validate a decoded JSON value as a client frame (raises pydantic ``ValidationError``)."""
    return _adapter.validate_python(obj)
