"""What every layer writes the same way on the wire: JSON, instants, client message ids.

One encoder (orjson) writes every event payload and WebSocket frame: it is
several times faster than ``json.dumps`` on the fan-out path, writes UTF-8
without escaping (as ``ensure_ascii=False`` did) and writes datetimes itself,
always as RFC 3339 in UTC with ``Z`` (a naive datetime, as SQLite returns
them, is UTC). So no module keeps its own date helper.

``client_msg_id`` is defined here once: the REST bodies and WebSocket frames
use :data:`ClientMsgId` as their field type, and the domain checks the same
pattern with :func:`check_client_msg_id` for callers that bypass the edge.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, StringConstraints

from kernel.errors import BadRequest

__all__ = [
    "CLIENT_MSG_ID_PATTERN",
    "ClientMsgId",
    "WireModel",
    "check_client_msg_id",
    "check_message_client_id",
    "dumpb",
    "dumps",
    "iso",
    "loads",
]

#: 1–64 characters of A–Z a–z 0–9 ``_ . : -`` (a UUID, a ULID or ``device:counter`` all fit).
CLIENT_MSG_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"
ClientMsgId = Annotated[str, StringConstraints(pattern=CLIENT_MSG_ID_PATTERN)]
_CLIENT_MSG_ID = re.compile(CLIENT_MSG_ID_PATTERN)
_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


class WireModel(BaseModel):
    """A response or event shape: every field named, nothing extra slips out unnoticed.

    The base of the REST answers (``zzd/http/schemas``) and of the events'
    ``data`` (``messaging.shapes``): one rule for everything that leaves.
    """

    model_config = ConfigDict(extra="forbid")


def check_client_msg_id(value: object) -> str:
    """``value`` when it is a valid client message id, else ``BadRequest`` naming the field."""
    if not isinstance(value, str) or not _CLIENT_MSG_ID.fullmatch(value):
        raise BadRequest(
            "client_msg_id must be 1-64 characters of A-Z a-z 0-9 _ . : -", data={"field": "client_msg_id"}
        )
    return value


#: The keys of system notes (``sys:<conversation>:v<org version>:m``, ``…:p<position>``, ``…:created``):
#: ``client_msg_id`` is unique per sender and a note is written as a person, so a client's message
#: with such a key would take the note's place and the note (with the events sent with it) is dropped.
SYSTEM_KEY_PREFIX = "sys:"


def check_message_client_id(value: object) -> str:
    """:func:`check_client_msg_id` for a chat message of any kind, which may not take a system note's key.

    One check for the direct chat and the conversations alike: until the 湖南 audit only a
    conversation post refused the prefix, and ``POST /api/v1/messages`` stored it.
    """
    key = check_client_msg_id(value)
    if key.startswith(SYSTEM_KEY_PREFIX):
        raise BadRequest(f"client_msg_id may not start with {SYSTEM_KEY_PREFIX}", data={"field": "client_msg_id"})
    return key


def dumpb(obj: Any) -> bytes:
    """JSON bytes of ``obj`` (dicts, lists, dataclasses, datetimes)."""
    return orjson.dumps(obj, option=_OPTIONS)


def dumps(obj: Any) -> str:
    """JSON text of ``obj`` (event payloads are stored as text)."""
    return orjson.dumps(obj, option=_OPTIONS).decode()


def loads(data: str | bytes) -> Any:
    return orjson.loads(data)


def iso(dt: datetime | None) -> str | None:
    """An instant as the wire writes it (``2026-12-02T08:30:00.123456Z``), for rows and keys that need text."""
    return None if dt is None else orjson.dumps(dt, option=_OPTIONS)[1:-1].decode()
