"""What each request frame of docs/protocol.md does: frame → service call → reply data.

``connection.py`` is the socket adapter (reader, bounded writer, catch-up);
for every request the sans-I/O protocol parsed it calls :func:`handle`, which
runs the request, counts it, and queues the reply or the error frame on the
protocol. Nothing here touches the socket, so the handlers run in tests with
a protocol and a :class:`Peer` of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from kernel.errors import (
    BadRequest,
    ErrorCode,
    Forbidden,
    NotFound,
    RateLimited,
    ResyncRequired,
    Unauthorized,
    ZzdError,
)
from kernel.wire import loads
from messaging.chat import SendRequest
from messaging.conversations.model import PostRequest
from messaging.db_errors import as_unavailable
from messaging.events import EventLog
from zzd.auth.tokens import AccessClaims
from zzd.gateway.closecodes import Close
from zzd.gateway.frames import Conversations, Edit, Hello, History, NoticeReceipt, Read, Recall, Send, Sync
from zzd.gateway.protocol import GatewayProtocol, Request
from zzd.gateway.replies import shape
from zzd.http.common import check_send_rate

if TYPE_CHECKING:
    from zzd.services import Services

logger = logging.getLogger(__name__)

__all__ = ["Peer", "conversation_post", "dispatch", "handle", "hello"]


class Peer(Protocol):
    """What the handlers need of the connection they answer (``Connection``)."""

    person_id: int
    protocol: GatewayProtocol
    #: The access token the upgrade request carried (already checked then), or None.
    handshake_token: str | None

    def listen(self, person_id: int, session_id: str) -> None:
        """Take this person's live events from now on (before the stream position is read)."""
        ...

    def claim(self) -> None:
        """The session is good: take a place under the person's socket cap."""
        ...

    def unlisten(self) -> None:
        """The hello was refused: take no more events."""
        ...

    def authenticated(self, ref: str, data: dict[str, Any], *, expires_at: float, start: int, last_seq: int) -> None:
        """Answer the hello and start delivering from ``start`` (catching up to ``last_seq``)."""
        ...


async def handle(s: Services, peer: Peer, req: Request) -> None:
    """Run one request; its reply or error frame goes to ``peer.protocol`` (the connection flushes it)."""
    frame = req.frame
    m = s.metrics
    started = s.clock.monotonic()
    try:
        if isinstance(frame, Hello):
            await hello(s, peer, frame)
        else:
            peer.protocol.reply(req.ref, shape(frame, await dispatch(s, peer.person_id, frame)))
            if isinstance(frame, Send):
                m.send_seconds.observe(s.clock.monotonic() - started)
        m.frame(frame.type, "ok")
    except ZzdError as err:
        _failed(s, peer, req, err)
    except Exception as exc:
        busy = as_unavailable(exc)
        if busy is not None:  # the database is away or full: retryable, as on REST
            logger.warning("request %s: %s (%r)", type(frame).__name__, busy.message, exc)
            _failed(s, peer, req, busy)
            return
        m.frame(frame.type, "internal_error")
        logger.exception("request %s failed", type(frame).__name__)
        peer.protocol.fail(req.ref, ZzdError("internal error", code=ErrorCode.INTERNAL))


def _failed(s: Services, peer: Peer, req: Request, err: ZzdError) -> None:
    s.metrics.frame(req.frame.type, str(err.code))
    if isinstance(req.frame, Hello):
        peer.protocol.auth_failed(req.ref, err)
    elif isinstance(err, RateLimited) and s.rate_limiter.persisting(peer.person_id, s.clock.monotonic()):
        peer.protocol.fail_and_close(req.ref, err, Close.POLICY, "rate limit ignored")
    else:
        peer.protocol.fail(req.ref, err)


async def hello(s: Services, peer: Peer, frame: Hello) -> None:
    """Authenticate the socket, subscribe it, and tell the client where its stream stands."""
    token = frame.token if frame.token is not None else peer.handshake_token
    if token is None:
        raise Unauthorized("no access token: put it in the hello or in the upgrade's Authorization header")
    claims: AccessClaims = s.tokens.verify(token)
    person_id = claims.person_id
    # Listen first, then read the stream position (decision 7): the session and the position are
    # one statement, shared with the other hellos waiting at the moment (a reconnect storm). Only
    # a good session then claims a place under the per-person cap.
    peer.listen(person_id, claims.session_id)
    try:
        state = await s.hellos.hello(claims.session_id, person_id)
    except BaseException:
        peer.unlisten()
        raise
    if state is None:
        peer.unlisten()
        raise Forbidden("session is no longer active")
    peer.claim()
    resumed = False
    reason = None
    start = state.last_seq
    if frame.resume is not None:
        try:
            EventLog.check_cursor(state, epoch=frame.resume.epoch, since=frame.resume.since)
            start, resumed = frame.resume.since, True
        except ResyncRequired as err:
            reason = err.message
    remaining = claims.expires_at - s.clock.now().timestamp()
    data: dict[str, Any] = {
        "protocol": 1,
        "person_id": person_id,
        "epoch": state.epoch,
        "last_seq": state.last_seq,
        "resumed": resumed,
    }
    if reason is not None:
        data["resync_required"] = reason
    peer.authenticated(frame.id, data, expires_at=s.clock.monotonic() + remaining, start=start, last_seq=state.last_seq)


async def dispatch(s: Services, person_id: int, frame: Any) -> dict[str, Any]:
    """The reply data of one authenticated request frame."""
    handler = _HANDLERS.get(type(frame))
    if handler is None:  # pragma: no cover - the protocol filters types
        raise NotFound("unsupported frame")
    return await handler(s, person_id, frame)


async def _send(s: Services, person_id: int, frame: Send) -> dict[str, Any]:
    check_send_rate(s, person_id)
    if frame.to is not None and _is_plain_direct(frame):
        result = await s.chat.send(SendRequest(person_id, frame.to, frame.client_msg_id, frame.body))
        return result.to_dict()
    return (await s.conversations.post(conversation_post(person_id, frame))).to_dict()


async def _edit(s: Services, person_id: int, frame: Edit) -> dict[str, Any]:
    check_send_rate(s, person_id, "edits")  # an event to every reader, as a send is
    return await s.conversations.edit(person_id, frame.message_id, frame.body)


async def _recall(s: Services, person_id: int, frame: Recall) -> dict[str, Any]:
    check_send_rate(s, person_id, "edits")
    return await s.conversations.recall(person_id, frame.message_id)


async def _sync(s: Services, person_id: int, frame: Sync) -> dict[str, Any]:
    page = await s.events.read(person_id, epoch=frame.epoch, since=frame.since, limit=frame.limit)
    return {
        "epoch": page.epoch,
        "events": [{"seq": q, "kind": k, "data": loads(p)} for q, k, p in page.events],
        "next_since": page.next_since,
        "limited": page.limited,
        "last_seq": page.last_seq,
    }


async def _history(s: Services, person_id: int, frame: History) -> dict[str, Any]:
    cid = frame.conversation_id
    if cid is None and frame.with_person is not None:
        cid = await s.chat.direct_conversation_id(person_id, frame.with_person)
        if cid is None:
            if not await s.persons.existing({frame.with_person}):  # as a send to that person answers
                raise NotFound("no such person", data={"person_id": frame.with_person})
            return {"conversation_id": None, "messages": [], "next_before": None}
    if cid is None:  # the frame gives exactly one of the two (frames.History)
        raise AssertionError("a history frame without conversation_id or with_person")
    items, next_before = await s.conversations.history(person_id, cid, before=frame.before, limit=frame.limit)
    return {"conversation_id": cid, "messages": items, "next_before": next_before}


async def _read(s: Services, person_id: int, frame: Read) -> dict[str, Any]:
    marker = await s.conversations.mark_read(person_id, frame.conversation_id, frame.message_id)
    return {"conversation_id": frame.conversation_id, "last_read_message_id": marker}


async def _conversations(s: Services, person_id: int, frame: Conversations) -> dict[str, Any]:
    return await s.conversations.inbox(person_id, cursor=frame.cursor, limit=frame.limit)


async def _notice_receipt(s: Services, person_id: int, frame: NoticeReceipt) -> dict[str, Any]:
    if frame.type != "notice_ack":
        # Refused, not ignored: a notice_read naming one position marked every position read, and a
        # reply given with it was dropped without a word (until 2026-12-05, 河北 audit).
        for name in ("position_id", "reply"):
            if getattr(frame, name) is not None:
                raise BadRequest(f"{name} goes with notice_ack only", data={"field": name})
    if frame.type == "notice_delivered":
        states = await s.notices.mark_delivered(person_id, frame.notice_id)
    elif frame.type == "notice_read":
        states = await s.notices.mark_read(person_id, frame.notice_id)
    else:
        states = await s.notices.acknowledge(
            person_id, frame.notice_id, position_id=frame.position_id, reply=frame.reply
        )
    return {"notice_id": frame.notice_id, "receipts": [r.to_dict() for r in states]}


_HANDLERS: dict[type, Callable[[Services, int, Any], Awaitable[dict[str, Any]]]] = {
    Send: _send,
    Edit: _edit,
    Recall: _recall,
    Sync: _sync,
    History: _history,
    Read: _read,
    Conversations: _conversations,
    NoticeReceipt: _notice_receipt,
}


def _is_plain_direct(frame: Send) -> bool:
    """A ``send`` with ``to`` and none of the issue-5 fields: the direct-chat path, as before."""
    extras = (frame.conversation_id, frame.to_position, frame.as_position, frame.reply_to)
    if any(x is not None for x in extras) or frame.mention_persons or frame.mention_positions or frame.attachments:
        raise BadRequest(
            "to a person, send text only; use conversation_id for replies, mentions and attachments",
            data={"field": "to"},
        )
    return True


def conversation_post(person_id: int, frame: Send) -> PostRequest:
    return PostRequest(
        person_id,
        frame.client_msg_id,
        frame.body,
        conversation_id=frame.conversation_id,
        to_position_id=frame.to_position,
        as_position_id=frame.as_position,
        reply_to=frame.reply_to,
        mention_persons=tuple(frame.mention_persons),
        mention_positions=tuple(frame.mention_positions),
        attachments=tuple(frame.attachments),
    )
