"""AsyncAPI 3.0 for ``/ws``, generated from the models the gateway and the domain use.

Client frames come from ``zzd.gateway.frames`` (the models that parse them),
the ``ok`` reply of each from the model that shapes it, events from
:data:`EVENTS` (``messaging.shapes`` and the REST schemas, the same models the
writers and readers use), error codes from ``kernel.errors.ErrorCode`` and
close codes from :data:`CLOSE_CODES`. A second channel, ``appStream``, is the
apps' event stream (``/api/v1/bot/stream``), written from
``zzd.gateway.stream_frames``. Served at ``/asyncapi.json`` beside
``/openapi.json``; ``tests/test_contract_asyncapi.py`` checks it against the
frame table and against real events, ``tests/apps/test_stream_contract.py``
the stream's channel against a real stream; ``scripts/api_docs.py`` renders
the stream's page from it (``docs/api/stream.md``, kept in step by ``--check``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kernel.errors import ErrorCode
from messaging import shapes
from zzd import __version__
from zzd.gateway.replies import REPLIES
from zzd.gateway.stream_frames import STREAM_CLIENT_FRAMES, STREAM_CLOSE_CODES, StreamEvent
from zzd.http.contract import operation, reply
from zzd.http.schemas.tasks import TaskChanged

__all__ = ["CLOSE_CODES", "EVENTS", "build_asyncapi", "asyncapi_route"]


#: Every event kind a person's stream carries, and its ``data``.
EVENTS: dict[str, type[BaseModel]] = {
    "message.new": shapes.MessageNew,
    "message.edited": shapes.MessageEdited,
    "message.recalled": shapes.MessageRecalled,
    "conversation.read": shapes.ConversationRead,
    "peer.read": shapes.PeerRead,
    "conversation.muted": shapes.ConversationMuted,
    "conversation.left": shapes.ConversationLeft,
    "notice.new": shapes.NoticeNew,
    "notice.remind": shapes.NoticeRemind,
    "notice.recalled": shapes.NoticeRecalled,
    "notice.progress": shapes.NoticeProgress,
    "notice.transferred": shapes.NoticeTransferred,
    "task.created": TaskChanged,
    "task.updated": TaskChanged,
    "positions.changed": shapes.PositionsChanged,
}

#: Close codes: (when, what the client should do). 4000–4499 may reconnect once fixed; 4500–4999 terminal.
CLOSE_CODES: dict[int, tuple[str, str]] = {
    1000: ("normal close", "nothing"),
    1001: ("server shutting down", "reconnect with jittered backoff, resume"),
    1002: ("a malformed WebSocket frame", "fix the client"),
    1003: ("a binary frame", "fix the client"),
    1007: ("a text frame that is not valid UTF-8", "fix the client"),
    1008: ("kept sending after rate_limited", "slow down, then reconnect and resume"),
    1009: ("a message over 64 KiB", "fix the client"),
    1011: ("internal error", "reconnect with backoff, resume"),
    1012: ("service restart (rolling deploy)", "reconnect with backoff, resume; resend an unanswered send"),
    1013: ("slow consumer or overloaded", "reconnect with backoff, resume from the last seq"),
    4400: ("the first frame was not a valid hello", "fix the client"),
    4401: ("token invalid or expired", "refresh the access token, reconnect, resume"),
    4408: ("no hello within the deadline", "reconnect"),
    4503: ("session revoked or account disabled", "do not reconnect; sign in again"),
    4509: ("replaced: too many sockets for this person; the oldest closes", "do not reconnect"),
}


class ErrorFrame(BaseModel):
    """The answer to a frame that failed (the connection stays open once authenticated)."""

    type: Literal["error"]
    ref: str | None = Field(description="the frame's id; null when it was too broken to read")
    code: str = Field(description="stable error code (x-error-codes)")
    message: str
    data: dict[str, Any] | None = None
    retryable: bool | None = None


def _schema(model: type[BaseModel], defs: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    for name, sub in schema.pop("$defs", {}).items():
        assert defs.get(name, sub) == sub, f"two schemas named {name}"
        defs[name] = sub
    key = key or model.__name__
    assert key not in defs or defs[key] == schema, f"two schemas named {key}"
    defs[key] = schema
    return {"$ref": f"#/components/schemas/{key}"}


def _frame_type(model: type[BaseModel]) -> list[str]:
    annotation = model.model_fields["type"].annotation
    return list(getattr(annotation, "__args__", ()))


def build_asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of the WebSocket protocol."""
    defs: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for frame, answer in REPLIES.items():
        name = frame.__name__
        messages[name] = {
            "name": name,
            "title": f"{' / '.join(_frame_type(frame))} (client → server)",
            "summary": (frame.__doc__ or name).strip().splitlines()[0],
            "payload": _schema(frame, defs, f"Client{name}"),
        }
        ok_model = type(f"{name}Ok", (BaseModel,), {
            "__annotations__": {"type": Literal["ok"], "ref": str, "data": answer},
            "__doc__": f"The answer to {name}.",
        })  # fmt: skip
        messages[f"{name}Ok"] = {"name": f"{name}Ok", "payload": _schema(ok_model, defs, f"Ok{name}")}
        operations[f"send{name}"] = {
            "action": "receive",
            "channel": {"$ref": "#/channels/ws"},
            "summary": f"The client sends {' / '.join(_frame_type(frame))}",
            "messages": [{"$ref": f"#/channels/ws/messages/{name}"}],
            "reply": {
                "channel": {"$ref": "#/channels/ws"},
                "messages": [
                    {"$ref": f"#/channels/ws/messages/{name}Ok"},
                    {"$ref": "#/channels/ws/messages/ErrorFrame"},
                ],
            },
        }
    messages["ErrorFrame"] = {"name": "ErrorFrame", "payload": _schema(ErrorFrame, defs)}
    event_refs = []
    for kind, model in EVENTS.items():
        key = "Event_" + kind.replace(".", "_")
        frame_model = type(key, (BaseModel,), {
            "__annotations__": {"type": Literal["event"], "seq": int, "kind": Literal[kind], "data": model},  # type: ignore[valid-type]
            "__doc__": (model.__doc__ or kind).strip(),
        })  # fmt: skip
        messages[key] = {"name": kind, "title": kind, "payload": _schema(frame_model, defs)}
        event_refs.append({"$ref": f"#/channels/ws/messages/{key}"})
    operations["receiveEvent"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/ws"},
        "summary": "The server pushes the person's events in seq order (each seq once per device, resumable)",
        "messages": event_refs,
    }
    stream_messages, stream_operations = _app_stream(defs)
    operations.update(stream_operations)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "ZZD WebSocket protocol",
            "version": __version__,
            "description": "One WebSocket at /ws; text frames, each one JSON object of at most 64 KiB. "
            "The first frame is hello with an access token (or the upgrade request carries it as "
            "Authorization: Bearer, checked before upgrading: HTTP 401 for a bad one). Reference: docs/protocol.md. "
            "The channel appStream is the apps' event stream at /api/v1/bot/stream (docs/webhooks.md, Stream mode; "
            "docs/api/stream.md).",
        },
        "defaultContentType": "application/json",
        "servers": {"zzd": {"host": "localhost:8000", "protocol": "ws", "pathname": "/"}},
        "channels": {
            "ws": {"address": "/ws", "messages": messages},
            "appStream": {
                "address": "/api/v1/bot/stream",
                "title": "The apps' event stream",
                "description": "An app (not a browser: any Origin is refused with HTTP 403 before the upgrade) "
                "opens it with its app token in the first frame (hello) and receives the deliveries of its stream "
                "subscriptions as event frames, at most window unacknowledged at a time; it acknowledges them by "
                "delivery_id. Text frames of one JSON object (64 KiB at most); answers echo the frame's id as ref. "
                "Reference: docs/webhooks.md (Stream mode).",
                "messages": stream_messages,
                "x-close-codes": [
                    {"code": code, "when": when, "client_should": then}
                    for code, (when, then) in STREAM_CLOSE_CODES.items()
                ],
            },
        },
        "operations": operations,
        "components": {
            "schemas": defs,
            "x-error-codes": sorted(str(c) for c in ErrorCode),
            "x-close-codes": [
                {"code": code, "when": when, "client_should": then} for code, (when, then) in CLOSE_CODES.items()
            ],
        },
    }


def _message(model: type[BaseModel], defs: dict[str, Any], title: str) -> dict[str, Any]:
    """A message of ``model``, with the examples its model carries (recorded from a real stream)."""
    extra = model.model_config.get("json_schema_extra")
    examples = extra.get("examples", []) if isinstance(extra, dict) else []
    assert isinstance(examples, list)
    return {
        "name": model.__name__,
        "title": title,
        "summary": (model.__doc__ or model.__name__).strip().splitlines()[0],
        "payload": _schema(model, defs),
        "examples": [{"payload": ex} for ex in examples],
    }


def _app_stream(defs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The messages and operations of the channel ``appStream`` (``/api/v1/bot/stream``)."""
    ref = "#/channels/appStream"
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for kind, (frame, answer) in STREAM_CLIENT_FRAMES.items():
        messages[frame.__name__] = _message(frame, defs, f"{kind} (app → server)")
        messages[answer.__name__] = _message(answer, defs, f"the answer to {kind}")
        operations[f"stream{kind.capitalize()}"] = {
            "action": "receive",
            "channel": {"$ref": ref},
            "summary": f"The app sends {kind}",
            "messages": [{"$ref": f"{ref}/messages/{frame.__name__}"}],
            "reply": {
                "channel": {"$ref": ref},
                "messages": [{"$ref": f"{ref}/messages/{answer.__name__}"}, {"$ref": f"{ref}/messages/StreamError"}],
            },
        }
    messages["StreamEvent"] = _message(StreamEvent, defs, "event (server → app)")
    messages["StreamError"] = {
        "name": "StreamError",
        "title": "error",
        "summary": "A frame that failed: invalid_frame, invalid_json, unknown_type, conflict (a second hello); "
        "after a bad hello the stream closes (4400/4401)",
        "payload": {"$ref": "#/components/schemas/ErrorFrame"},
        "examples": [
            {
                "payload": {
                    "type": "error",
                    "ref": "4",
                    "code": "unknown_type",
                    "message": "this stream understands ping and ack",
                }
            }
        ],  # fmt: skip
    }
    operations["streamEvents"] = {
        "action": "send",
        "channel": {"$ref": ref},
        "summary": "The server sends the app's due deliveries, in outbox order per report or task",
        "messages": [{"$ref": f"{ref}/messages/StreamEvent"}],
    }
    return messages, operations


class AsyncApiDocument(BaseModel):
    """The AsyncAPI document itself (free-form JSON)."""

    model_config = {"extra": "allow"}


def asyncapi_route() -> Route:
    document: dict[str, Any] = {}

    @operation({200: AsyncApiDocument}, public=True, tag="meta")
    async def asyncapi(request: Request) -> Response:
        """The AsyncAPI 3.0 document of the WebSocket protocol at /ws."""
        if not document:
            document.update(build_asyncapi())
        return reply(AsyncApiDocument, document)

    return Route("/asyncapi.json", asyncapi, methods=["GET"])
