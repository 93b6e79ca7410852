"""The frames of the app event stream (``/api/v1/bot/stream``, ``zzd.gateway.app_stream``), as models.

The AsyncAPI document (``zzd.gateway.asyncapi``, channel ``appStream``) is written from these, and the
stream builds its ``ok`` answers with them, so the document and the socket cannot drift apart; the
``event`` frame is built by ``apps.stream`` (the domain, which may not import the shell) and is
checked against :class:`StreamEvent` on a real stream by ``tests/apps/test_stream_contract.py``.
Each model's ``examples`` were recorded from a real stream (that test prints them again with ``-s``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from apps.model import EVENT_TYPES
from zzd.gateway.frames import FrameId  # echoed as ``ref``: 1-64 characters, no control characters

__all__ = [
    "STREAM_CLIENT_FRAMES",
    "StreamAckData",
    "StreamHelloData",
    "StreamPingData",
    "STREAM_CLOSE_CODES",
    "StreamAck",
    "StreamAckOk",
    "StreamEvent",
    "StreamHello",
    "StreamHelloOk",
    "StreamPing",
    "StreamPingOk",
    "WebhookEvent",
]

_STRICT = ConfigDict(extra="forbid")


class StreamHello(BaseModel):
    """The first frame: the app's token (client credentials, docs/apps.md). No Authorization header is read."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"type": "hello", "id": "1", "v": 1, "token": "<app token>"}]}
    )
    type: Literal["hello"]
    id: FrameId
    v: Literal[1]
    token: str = Field(description="the app's access token (POST /api/v1/auth/token, grant_type client_credentials)")


class StreamAck(BaseModel):
    """Acknowledge events once they are safely handled, by ``delivery_id`` (again or unknown: counted 0)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"type": "ack", "id": "2", "delivery_ids": [1]}]}
    )
    type: Literal["ack"]
    id: FrameId
    delivery_ids: list[Annotated[int, Field(ge=1, le=2**53 - 1)]] = Field(min_length=1, max_length=1000)


class StreamPing(BaseModel):
    """A keep-alive the app may send; answered ``{"pong": true}``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"type": "ping", "id": "3"}]})
    type: Literal["ping"]
    id: FrameId


class StreamHelloData(BaseModel):
    model_config = _STRICT
    protocol: Literal[1]
    app_id: int
    name: str = Field(description="the app's name")
    window: int = Field(description="at most this many unacknowledged events are in flight on this connection")


class StreamAckData(BaseModel):
    model_config = _STRICT
    acked: int = Field(description="how many of the ids this acknowledgement marked delivered (a repeat counts 0)")


class StreamPingData(BaseModel):
    model_config = _STRICT
    pong: Literal[True]


class StreamHelloOk(BaseModel):
    """The answer to hello: the stream is open; events follow."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"type": "ok", "ref": "1", "data": {"protocol": 1, "app_id": 1, "name": "河长制平台", "window": 100}}
            ]
        },
    )
    type: Literal["ok"]
    ref: str
    data: StreamHelloData


class StreamAckOk(BaseModel):
    """The answer to ack."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"type": "ok", "ref": "2", "data": {"acked": 1}}]}
    )
    type: Literal["ok"]
    ref: str
    data: StreamAckData


class StreamPingOk(BaseModel):
    """The answer to ping."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"type": "ok", "ref": "3", "data": {"pong": True}}]}
    )
    type: Literal["ok"]
    ref: str
    data: StreamPingData


class WebhookEvent(BaseModel):
    """Exactly a webhook's body (docs/webhooks.md): the same ``id`` for webhook and stream subscribers."""

    model_config = _STRICT
    id: str = Field(description="the event's id (a UUID): deduplicate by it; the same on every attempt")
    type: Literal[EVENT_TYPES] = Field(description="the outbox event type (docs/events.md)")  # type: ignore[valid-type]
    timestamp: str = Field(description="when the change happened, UTC", json_schema_extra={"format": "date-time"})
    data: dict[str, Any] = Field(description="the event's payload, as docs/events.md lists it per type")


class StreamEvent(BaseModel):
    """One delivery of an event to the app: acknowledge it by ``delivery_id``; unacknowledged, it comes again."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "event",
                    "delivery_id": 1,
                    "subscription_id": 1,
                    "attempt": 1,
                    "event": {
                        "id": "b238fd0e-76bc-4ed8-a994-f2230b70f9a7",
                        "type": "report.filed",
                        "timestamp": "2026-12-05T02:34:43.211159Z",
                        "data": {
                            "report_id": 1,
                            "reporter": {"person_id": 251, "position_id": 100},
                            "grid_unit_id": 25,
                            "category": "river_litter",
                            "text": "河里有垃圾 contract-1",
                            "location": {"lat": 28.9, "lon": 118.8},
                            "beyond_capacity": False,
                            "photos": [],
                            "task_id": 1,
                            "created_at": "2026-12-05T02:34:43.211159Z",
                            "routed_to": 35,
                            "escalation_level": 0,
                        },
                    },
                }
            ]
        },
    )
    type: Literal["event"]
    delivery_id: int = Field(description="acknowledge by this")
    subscription_id: int = Field(description="the stream subscription it matched")
    attempt: int = Field(description="1, then one more each time it is sent again unacknowledged")
    event: WebhookEvent


#: The frames an app sends, by ``type``.
STREAM_CLIENT_FRAMES: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "hello": (StreamHello, StreamHelloOk),
    "ack": (StreamAck, StreamAckOk),
    "ping": (StreamPing, StreamPingOk),
}

#: How the stream closes: (when, what the app should do). The same numbers as /ws where they overlap.
STREAM_CLOSE_CODES: dict[int, tuple[str, str]] = {
    1001: ("server shutting down", "reconnect with jittered backoff; unacknowledged events come again"),
    1003: ("a binary frame", "fix the client"),
    1009: ("a message over 64 KiB", "fix the client"),
    4400: ("the first frame was not {type: hello, id, v: 1, token}", "fix the client"),
    4401: ("the token is not an app's valid token, or it expired on an open stream", "get a new token, reconnect"),
    4408: ("no hello within the deadline (ZZD_WS_AUTH_TIMEOUT)", "reconnect and send hello first"),
    4503: ("the app's secret was revoked or rotated out, or the app disabled", "do not reconnect with this secret"),
}
