"""Requests, settings and the message shape shared by the conversation modules.

Validation happens here, before any database work, so a bad request changes
nothing and gets a clear error naming the field.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from kernel.errors import BadRequest, ErrorCode
from kernel.hexids import lower_hex_ref
from kernel.text import check_text
from kernel.wire import check_message_client_id, iso
from messaging.shapes import MessageSent

if TYPE_CHECKING:
    from messaging.conversations.access import ConversationRow

logger = logging.getLogger(__name__)

__all__ = [
    "ConversationConfig",
    "GroupTooLarge",
    "PostRequest",
    "PostResult",
    "iso",
    "message_dict",
    "names_reader",
    "validate_post",
]

MAX_BODY_CHARS = 5_000
MAX_MENTIONS = 50
MAX_ATTACHMENTS = 20
SNIPPET_CHARS = 80
MAX_HISTORY_PAGE = 100
_ATTACHMENT_REF = re.compile(r"^[A-Za-z0-9_.:\-/+=]{1,128}$")


@dataclass(frozen=True, slots=True)
class ConversationConfig:
    #: Most persons an ad-hoc group may hold.
    max_group_size: int = 500
    #: "Who has read" is answered for conversations of up to this many readers.
    read_list_max: int = 200
    edit_window: timedelta = timedelta(minutes=15)
    recall_window: timedelta = timedelta(hours=24)


class GroupTooLarge(BadRequest, code=ErrorCode.GROUP_TOO_LARGE):
    """A group would exceed ``max_group_size``: code ``group_too_large`` on every path."""


@dataclass(frozen=True, slots=True)
class PostRequest:
    """A message to a conversation by id, or to a position (opening the thread on first use)."""

    sender_id: int
    client_msg_id: str
    body: str
    conversation_id: int | None = None
    to_position_id: int | None = None
    #: Write as this held position (position threads: opens the position-to-position thread).
    as_position_id: int | None = None
    reply_to: int | None = None
    mention_persons: tuple[int, ...] = ()
    mention_positions: tuple[int, ...] = ()
    attachments: tuple[str, ...] = ()


#: The answer to a post: the same shape as a direct send's.
PostResult = MessageSent


def _ids(values: tuple[int, ...], name: str) -> tuple[int, ...]:
    if len(values) > MAX_MENTIONS:
        raise BadRequest(f"at most {MAX_MENTIONS} {name}", data={"field": name})
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 2**53:
            raise BadRequest(f"{name} must be positive integers", data={"field": name})
    return tuple(dict.fromkeys(values))


def validate_post(req: PostRequest) -> PostRequest:
    """Reject bad input before anything touches the database."""
    check_message_client_id(req.client_msg_id)
    if (req.conversation_id is None) == (req.to_position_id is None):
        raise BadRequest("give exactly one of conversation_id and to_position", data={"field": "conversation_id"})
    check_text(req.body, field="body", max_chars=MAX_BODY_CHARS, allow_empty=bool(req.attachments))
    if len(req.attachments) > MAX_ATTACHMENTS:
        raise BadRequest(f"at most {MAX_ATTACHMENTS} attachments", data={"field": "attachments"})
    for ref in req.attachments:
        if not isinstance(ref, str) or not _ATTACHMENT_REF.fullmatch(ref):
            raise BadRequest(
                "attachments are ids or digests of 1-128 characters of A-Z a-z 0-9 _ . : - / + =",
                data={"field": "attachments"},
            )
    return PostRequest(
        req.sender_id,
        req.client_msg_id,
        req.body,
        req.conversation_id,
        req.to_position_id,
        req.as_position_id,
        req.reply_to,
        _ids(req.mention_persons, "mention_persons"),
        _ids(req.mention_positions, "mention_positions"),
        tuple(dict.fromkeys(str(lower_hex_ref(a)) for a in req.attachments)),  # a digest in either case: lower
    )


def message_dict(
    row: Any,
    sender_name: str,
    reply: dict[str, Any] | None,
    conversation: ConversationRow,
    direct_pair: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """A stored message as clients see it in history: the fields of its ``message.new``
    (``messaging/shapes.py``, less the recipient's own ``mentioned``/``muted``); recalled: no body.

    ``direct_pair``: the two persons of a direct chat (``recipient_id`` is the one who did not send).
    """
    recalled = row.recalled_at is not None
    sender_id = int(row.sender_id)
    thread = conversation.kind == "position"
    system = getattr(row, "system", None)
    recipient = None
    if direct_pair is not None:
        recipient = direct_pair[1] if sender_id == direct_pair[0] else direct_pair[0]
    return {
        "id": int(row.id),
        "conversation_id": int(row.conversation_id),
        "conversation_kind": conversation.kind,
        "kind": row.kind or "text",
        "sender": {
            "id": sender_id,
            "name": sender_name,
            "position_id": None if row.sender_position_id is None else int(row.sender_position_id),
        },
        "client_msg_id": row.client_msg_id,
        "body": "" if recalled else row.body,
        "created_at": iso(row.created_at),
        "reply_to": reply,
        "mentions": json.loads(row.mentions) if row.mentions else {"persons": [], "positions": []},
        "attachments": [] if recalled or not row.attachments else json.loads(row.attachments),
        "edited_at": iso(row.edited_at),
        "recalled_at": iso(row.recalled_at),
        "recipient_id": recipient,
        "position_id": conversation.position_id if thread else None,
        "peer_position_id": conversation.peer_position_id if thread else None,
        "peer_person_id": conversation.peer_person_id if thread else None,
        "system": json.loads(system) if system else None,
    }


def names_reader(mentions: str | None, sender_id: int, reader_id: int, held: Collection[int]) -> bool:
    """Whether a stored message's ``mentions`` (its JSON text) name the reader: by person, or by a
    position the reader holds now (any kind: ``held``). Never their own message.

    History's ``mentioned`` and the inbox's ``unread_mentions`` read it, so both agree with the
    ``message.new`` flag, which names the holders of the positions at the send.
    """
    if not mentions or sender_id == reader_id:
        return False
    named = json.loads(mentions)
    return reader_id in named.get("persons", ()) or any(p in held for p in named.get("positions", ()))


def snippet(body: str, recalled: bool) -> str:
    return "" if recalled else body[:SNIPPET_CHARS]
