"""The ``data`` of the ``ok`` answer to each client frame: one model each, shaping what is sent.

``handlers.handle`` passes every answer through :func:`shape`, so a field the
model does not name fails (in the tests) instead of reaching a client
undocumented; the AsyncAPI document (``zzd.gateway.asyncapi``) is written from
the same models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from zzd.gateway import frames
from zzd.http.contract import WireModel
from zzd.http.schemas.chat import EventPage, History, Inbox, MessageChanged, Posted, ReadMarker
from zzd.http.schemas.notices import Receipt

__all__ = ["REPLIES", "HelloData", "shape"]


class HelloData(WireModel):
    protocol: Literal[1]
    person_id: int
    epoch: str
    last_seq: int
    resumed: bool = Field(description="true: every event after resume.since follows, then live ones")
    resync_required: str | None = Field(None, description="why the cursor could not be resumed: reload state")


class NoticeReceiptOk(WireModel):
    notice_id: int
    receipts: list[Receipt]


class Pong(WireModel):
    pong: Literal[True]


#: The ``data`` of the ``ok`` reply to each client frame.
REPLIES: dict[type[BaseModel], type[BaseModel]] = {
    frames.Hello: HelloData,
    frames.Send: Posted,
    frames.Edit: MessageChanged,
    frames.Recall: MessageChanged,
    frames.Sync: EventPage,
    frames.History: History,
    frames.Read: ReadMarker,
    frames.Conversations: Inbox,
    frames.NoticeReceipt: NoticeReceiptOk,
    frames.Ping: Pong,
}


#: Answers sent as they are when they carry exactly their model's fields (see :func:`shape`).
_AS_IS: dict[type[BaseModel], frozenset[str]] = {frames.Send: frozenset(Posted.model_fields)}
#: Answers with every field of their model, ``null`` where the change has none, as REST answers them:
#: an edit's ``recalled_at``, a recall's ``body``. Until the 湖南 audit the frames left those out.
_EVERY_FIELD: frozenset[type[BaseModel]] = frozenset({frames.Edit, frames.Recall})


def shape(frame: BaseModel, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` checked against the frame's answer model (only the fields it carries are sent).

    A ``send``'s answer (``SendResult.to_dict``: ints, a bool and an
    already-written instant) is sent as it is when its keys are exactly the
    model's: validating and dumping it again was a twentieth of a chat
    message's server time. A key too many or too few still goes through the
    model, and fails there.
    """
    fields = _AS_IS.get(type(frame))
    if fields is not None and data.keys() == fields:
        return data
    model = REPLIES[type(frame)]
    return model.model_validate(data).model_dump(mode="json", exclude_unset=type(frame) not in _EVERY_FIELD)
