"""The client protocol as a state machine with no sockets and no awaits.

Text goes in with :meth:`GatewayProtocol.receive_text`; requests the adapter
must carry out come back; frames to send are collected from
:meth:`data_to_send`, and a decision to close from :attr:`close_with`. Time is
passed in, so deadlines test without sleeping (docs/style.md practice 2, after
``websockets.protocol``).

States: ``AWAIT_HELLO`` (only a ``hello`` is accepted, before a deadline) →
``AUTHENTICATING`` (the adapter checks the token) → ``READY`` → ``CLOSED``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydantic import ValidationError

from kernel.errors import BadRequest, ErrorCode, ZzdError
from kernel.wire import dumps
from zzd.gateway.closecodes import Close
from zzd.gateway.frames import (
    FRAME_TYPES,
    Conversations,
    Edit,
    Hello,
    History,
    NoticeReceipt,
    Ping,
    Read,
    Recall,
    Send,
    Sync,
    echoable_id,
    parse_frame,
)
from zzd.gateway.jsonsafe import LoneSurrogate, strict_loads

logger = logging.getLogger(__name__)

__all__ = ["GatewayProtocol", "Request", "State"]

RequestFrame = Hello | Send | Edit | Recall | Sync | History | Read | Conversations | NoticeReceipt | Ping


class State(Enum):
    AWAIT_HELLO = "await_hello"
    AUTHENTICATING = "authenticating"
    READY = "ready"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Request:
    """A validated frame the adapter must act on, then answer via ``reply``/``fail``."""

    frame: RequestFrame

    @property
    def ref(self) -> str:
        return self.frame.id


def _dumps(obj: dict[str, Any]) -> str:
    return dumps(obj)


def _readable_id(obj: object) -> str | None:
    """The frame's ``id`` when it can be echoed as ``ref`` (``echoable_id``)."""
    return echoable_id(obj.get("id")) if isinstance(obj, dict) else None


class GatewayProtocol:
    __slots__ = ("_expires_at", "_hello_deadline", "_leeway", "_out", "close_with", "state")

    def __init__(self, *, now: float, auth_timeout: float, leeway: float = 0.0) -> None:
        self.state = State.AWAIT_HELLO
        self._hello_deadline = now + auth_timeout
        self._leeway = leeway
        #: When the access token stops being valid (monotonic time); set on auth.
        self._expires_at: float | None = None
        self._out: list[str] = []
        #: (code, reason) once the protocol has decided the connection must close.
        self.close_with: tuple[int, str] | None = None

    # --- input ---------------------------------------------------------------

    def receive_text(self, text: str) -> list[Request]:
        if self.state is State.CLOSED:
            return []
        ref = None
        try:
            try:
                obj = strict_loads(text)
            except LoneSurrogate as err:
                ref = _readable_id(err.value)
                raise
            ref = _readable_id(obj)
            frame = self._validate(obj)
        except ZzdError as err:
            if self.state is State.AWAIT_HELLO:
                self._error(ref, err)
                self._close(Close.BAD_HELLO, "first frame must be a valid hello")
            else:
                self._error(ref, err)
            return []
        if self.state is State.AWAIT_HELLO:
            if not isinstance(frame, Hello):
                self._error(ref, BadRequest("authenticate first with a hello frame", code=ErrorCode.UNAUTHORIZED))
                self._close(Close.BAD_HELLO, "first frame must be a valid hello")
                return []
            self.state = State.AUTHENTICATING
            return [Request(frame)]
        if self.state is State.AUTHENTICATING:
            self._error(ref, BadRequest("wait for the hello reply", code=ErrorCode.CONFLICT))
            return []
        if isinstance(frame, Hello):
            self._error(ref, BadRequest("already authenticated", code=ErrorCode.CONFLICT))
            return []
        if isinstance(frame, Ping):
            self.reply(frame.id, {"pong": True})
            return []
        return [Request(frame)]

    def receive_bytes(self) -> None:
        """Binary frames are not part of the protocol."""
        self._close(Close.UNSUPPORTED_DATA, "binary frames are not supported")

    @staticmethod
    def _validate(obj: object) -> RequestFrame:
        if not isinstance(obj, dict):
            raise BadRequest("a frame must be a JSON object", code=ErrorCode.INVALID_FRAME)
        ftype = obj.get("type")
        if not isinstance(ftype, str) or ftype not in FRAME_TYPES:
            raise BadRequest("unknown frame type", code=ErrorCode.UNKNOWN_TYPE, data={"known": sorted(FRAME_TYPES)})
        try:
            return parse_frame(obj)
        except ValidationError as exc:
            fields = [
                {"field": ".".join(str(p) for p in e["loc"][1:]) or "frame", "problem": e["msg"]}
                for e in exc.errors(include_url=False, include_input=False)[:5]
            ]
            raise BadRequest("invalid frame", code=ErrorCode.INVALID_FRAME, data={"errors": fields}) from exc

    # --- results from the adapter -----------------------------------------------

    def authenticated(self, ref: str, data: dict[str, Any], *, expires_at: float) -> None:
        """The hello's token was good; ``expires_at`` is monotonic time."""
        self.state = State.READY
        self._expires_at = expires_at
        self.reply(ref, data)

    def auth_failed(self, ref: str, err: ZzdError) -> None:
        self._error(ref, err)
        if err.http_status in (429, 503):  # the server is busy, the credentials may be fine: come back later
            code = Close.TRY_AGAIN_LATER
        else:
            code = Close.FORBIDDEN if err.http_status == 403 else Close.UNAUTHORIZED
        self._close(code, err.message[:100])

    def reply(self, ref: str, data: dict[str, Any]) -> None:
        self._out.append(_dumps({"type": "ok", "ref": ref, "data": data}))

    def fail(self, ref: str | None, err: ZzdError) -> None:
        self._error(ref, err)

    def fail_and_close(self, ref: str | None, err: ZzdError, code: int, reason: str) -> None:
        """Answer with the error, then close (e.g. 1008 for a client that ignores ``rate_limited``)."""
        self._error(ref, err)
        self._close(code, reason)

    def _error(self, ref: str | None, err: ZzdError) -> None:
        self._out.append(_dumps({"type": "error", "ref": ref, **err.to_dict()}))

    # --- time ------------------------------------------------------------------

    def check_deadlines(self, now: float) -> None:
        """Close if the hello is late or the access token has expired.

        The deadline is for the client's hello to arrive (a socket that never
        speaks must not hold a slot). Once it has arrived, checking it is the
        server's work: during a reconnect storm on a busy host that took more
        than the deadline, and closing then (S9 under load) threw away a
        well-behaved client's hello only to have it reconnect into the same
        queue. A check that hangs is bounded by the database's own timeouts.
        """
        if self.state is State.AWAIT_HELLO and now >= self._hello_deadline:
            self._close(Close.AUTH_TIMEOUT, "no hello in time")
        elif self.state is State.READY and self._expires_at is not None and now >= self._expires_at + self._leeway:
            self._close(Close.UNAUTHORIZED, "access token expired")

    def next_deadline(self) -> float | None:
        if self.state is State.AWAIT_HELLO:
            return self._hello_deadline
        if self.state is State.READY and self._expires_at is not None:
            return self._expires_at + self._leeway
        return None

    # --- output ----------------------------------------------------------------

    def data_to_send(self) -> list[str]:
        out, self._out = self._out, []
        return out

    def _close(self, code: int, reason: str) -> None:
        if self.close_with is None:
            self.close_with = (int(code), reason)
        self.state = State.CLOSED
