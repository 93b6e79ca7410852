"""``GatewayProtocol`` and ``strict_loads`` as plain objects: no sockets, no event loop (S19, S21a, S25)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kernel.errors import BadRequest, Unauthorized, Unavailable
from zzd.gateway.closecodes import Close
from zzd.gateway.frames import Hello, Send
from zzd.gateway.jsonsafe import strict_loads
from zzd.gateway.protocol import GatewayProtocol, State

HELLO = json.dumps({"type": "hello", "id": "h1", "v": 1, "token": "tok"})


def _frames(p: GatewayProtocol) -> list[dict[str, Any]]:
    return [json.loads(f) for f in p.data_to_send()]


def _ready(now: float = 100.0, *, expires_at: float = 1000.0, leeway: float = 0.0) -> GatewayProtocol:
    p = GatewayProtocol(now=now, auth_timeout=10.0, leeway=leeway)
    [req] = p.receive_text(HELLO)
    assert isinstance(req.frame, Hello) and req.ref == "h1"
    assert p.state is State.AUTHENTICATING
    p.authenticated("h1", {"person_id": 7}, expires_at=expires_at)
    assert _frames(p) == [{"type": "ok", "ref": "h1", "data": {"person_id": 7}}]
    assert p.state is State.READY and p.close_with is None
    return p


# --- hello ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        json.dumps({"type": "ping", "id": "p1"}),
        json.dumps({"type": "send", "id": "s1", "to": 2, "client_msg_id": "c", "body": "hi"}),
        json.dumps({"type": "hello", "id": "h1", "v": 2, "token": "t"}),
        "not json",
        "[]",
    ],
)
def test_anything_but_a_valid_hello_first_is_an_error_then_close_4400(first: str) -> None:
    p = GatewayProtocol(now=0.0, auth_timeout=10.0)
    assert p.receive_text(first) == []
    [err] = _frames(p)
    assert err["type"] == "error" and isinstance(err["code"], str) and err["message"]
    assert p.close_with is not None and p.close_with[0] == Close.BAD_HELLO == 4400
    assert p.state is State.CLOSED
    # Nothing more is processed once closed.
    assert p.receive_text(HELLO) == [] and p.data_to_send() == []


def test_hello_first_frame_error_carries_ref() -> None:
    p = GatewayProtocol(now=0.0, auth_timeout=10.0)
    p.receive_text(json.dumps({"type": "ping", "id": "p1"}))
    [err] = _frames(p)
    assert err["ref"] == "p1" and err["code"] == "unauthorized"


def _closes_only_at(p: GatewayProtocol, deadline: float, just_before: float, state: State, code: Close) -> None:
    """``p``'s next deadline is ``deadline``: at ``just_before`` still open in ``state``, at it closed with ``code``."""
    assert p.next_deadline() == deadline
    p.check_deadlines(just_before)
    assert p.close_with is None and p.state is state
    p.check_deadlines(deadline)
    assert p.close_with is not None and p.close_with[0] == code


def test_hello_deadline_closes_4408_only_when_reached() -> None:
    p = GatewayProtocol(now=50.0, auth_timeout=10.0)
    _closes_only_at(p, 60.0, 59.99, State.AWAIT_HELLO, Close.AUTH_TIMEOUT)
    assert Close.AUTH_TIMEOUT == 4408
    assert p.state is State.CLOSED


def test_a_hello_that_arrived_in_time_is_not_cut_off_while_the_server_checks_it() -> None:
    p = GatewayProtocol(now=0.0, auth_timeout=5.0)
    assert len(p.receive_text(HELLO)) == 1
    assert p.next_deadline() is None
    p.check_deadlines(60.0)
    assert p.close_with is None and p.state is State.AUTHENTICATING


def test_frame_while_authenticating_is_refused_without_a_second_request() -> None:
    p = GatewayProtocol(now=0.0, auth_timeout=5.0)
    assert len(p.receive_text(HELLO)) == 1
    assert p.receive_text(json.dumps({"type": "ping", "id": "p2"})) == []
    [err] = _frames(p)
    assert err["ref"] == "p2" and err["code"] == "conflict"
    assert p.close_with is None


def test_token_expiry_closes_4401_after_expires_at_plus_leeway() -> None:
    p = _ready(expires_at=200.0, leeway=5.0)
    _closes_only_at(p, 205.0, 204.9, State.READY, Close.UNAUTHORIZED)
    assert Close.UNAUTHORIZED == 4401
    # A hello deadline that passed after auth does not matter.
    q = _ready(now=0.0, expires_at=10_000.0)
    q.check_deadlines(500.0)
    assert q.close_with is None


def test_auth_failed_closes_4401_or_4503() -> None:
    p = GatewayProtocol(now=0.0, auth_timeout=5.0)
    p.receive_text(HELLO)
    p.auth_failed("h1", Unauthorized("invalid access token"))
    [err] = _frames(p)
    assert err == {"type": "error", "ref": "h1", "code": "unauthorized", "message": "invalid access token"}
    assert p.close_with == (4401, "invalid access token")

    from kernel.errors import Forbidden

    q = GatewayProtocol(now=0.0, auth_timeout=5.0)
    q.receive_text(HELLO)
    q.auth_failed("h1", Forbidden("session is no longer active"))
    assert q.close_with is not None and q.close_with[0] == 4503


# --- ready ---------------------------------------------------------------------------


def test_ping_gets_pong_without_an_adapter_request() -> None:
    p = _ready()
    assert p.receive_text(json.dumps({"type": "ping", "id": "p9"})) == []
    assert _frames(p) == [{"type": "ok", "ref": "p9", "data": {"pong": True}}]


def test_unknown_type_is_an_error_and_the_connection_stays_usable() -> None:
    p = _ready()
    assert p.receive_text(json.dumps({"type": "launch_missiles", "id": "x1"})) == []
    [err] = _frames(p)
    assert err["type"] == "error" and err["ref"] == "x1" and err["code"] == "unknown_type"
    assert "send" in err["data"]["known"]
    assert p.close_with is None and p.state is State.READY
    [req] = p.receive_text(json.dumps({"type": "send", "id": "s1", "to": 2, "client_msg_id": "c", "body": "hi"}))
    assert isinstance(req.frame, Send) and req.frame.to == 2


@pytest.mark.parametrize(
    ("frame", "fields"),
    [
        ({"type": "send", "id": "a", "to": "2", "client_msg_id": "c", "body": "x"}, {"to"}),
        ({"type": "send", "id": "a", "to": True, "client_msg_id": "c", "body": "x"}, {"to"}),
        ({"type": "send", "id": "a", "to": 2.0, "client_msg_id": "c", "body": "x"}, {"to"}),
        ({"type": "send", "id": "a", "to": 2**53 + 1, "client_msg_id": "c", "body": "x"}, {"to"}),
        ({"type": "send", "id": "a", "to": 0, "client_msg_id": "c", "body": "x"}, {"to"}),
        ({"type": "send", "id": "a", "to": 2, "body": "x"}, {"client_msg_id"}),
        ({"type": "send", "id": "a", "to": 2, "client_msg_id": "c", "body": 5}, {"body"}),
        ({"type": "send", "id": "a", "to": 2, "client_msg_id": "c", "body": "x", "admin": True}, {"admin"}),
        ({"type": "send", "id": "a", "to": 2, "client_msg_id": "c", "body": "x" * 5001}, {"body"}),
        ({"type": "history", "id": "a", "limit": 101}, {"limit"}),
        ({"type": "sync", "id": "a"}, {"since"}),
    ],
)
def test_invalid_fields_are_invalid_frame_naming_the_field(frame: dict[str, Any], fields: set[str]) -> None:
    p = _ready()
    assert p.receive_text(json.dumps(frame)) == []
    [err] = _frames(p)
    assert err["type"] == "error" and err["ref"] == "a" and err["code"] == "invalid_frame"
    named = {e["field"] for e in err["data"]["errors"]}
    assert fields <= named, named
    assert p.close_with is None and p.state is State.READY


def test_missing_or_bad_id_gives_error_with_null_ref() -> None:
    p = _ready()
    p.receive_text(json.dumps({"type": "ping"}))
    p.receive_text(json.dumps({"type": "ping", "id": "x" * 65}))
    p.receive_text(json.dumps({"type": "ping", "id": 5}))
    errs = _frames(p)
    assert [e["ref"] for e in errs] == [None, None, None]
    assert all(e["code"] == "invalid_frame" for e in errs)
    assert p.close_with is None


def test_binary_frame_closes_1003() -> None:
    p = _ready()
    p.receive_bytes()
    assert p.close_with is not None and p.close_with[0] == Close.UNSUPPORTED_DATA == 1003
    assert p.state is State.CLOSED


def test_second_hello_is_an_error_not_a_reauth() -> None:
    p = _ready()
    assert p.receive_text(json.dumps({"type": "hello", "id": "h2", "v": 1, "token": "other"})) == []
    [err] = _frames(p)
    assert err["type"] == "error" and err["ref"] == "h2" and err["code"] == "conflict"
    assert p.close_with is None and p.state is State.READY


def test_invalid_json_while_ready_keeps_the_connection() -> None:
    p = _ready()
    p.receive_text('{"type": "ping", "id": "p1"')
    [err] = _frames(p)
    assert err["code"] == "invalid_json" and err["ref"] is None
    assert p.close_with is None


# --- strict_loads ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"a": NaN}',
        '{"a": Infinity}',
        '{"a": -Infinity}',
        "NaN",
        '{"to": 1, "to": 2}',
        '{"x": {"a": 1, "a": 1}}',
        '{"a": ' + "9" * 5000 + "}",
        "[" * 10_000 + "]" * 10_000,
        "[" * 32768,
        '{"a":' * 10_000 + "1" + "}" * 10_000,
        '"\\ud800"',
        '{"body": "x\\ud800y"}',
        '{"\\udfff": 1}',
        "",
        "   ",
        "{",
    ],
    ids=lambda t: repr(t[:20]),
)
def test_strict_loads_rejects_traps_as_invalid_json(text: str) -> None:
    with pytest.raises(BadRequest) as info:
        strict_loads(text)
    assert info.value.code == "invalid_json"


def test_strict_loads_accepts_what_it_should() -> None:
    assert strict_loads('{"a": [1, 2.5, "\\ud83d\\ude00", null, true], "b": {"c": "[{"}}') == {
        "a": [1, 2.5, "\U0001f600", None, True],
        "b": {"c": "[{"},
    }
    # Brackets inside strings do not count towards depth.
    assert strict_loads(json.dumps({"s": "[" * 1000})) == {"s": "[" * 1000}
    assert strict_loads("[" * 32 + "]" * 32) is not None


def test_protocol_maps_json_traps_to_invalid_json_frames() -> None:
    for text in ('{"type":"ping","id":"n","x":NaN}', '{"type":"ping","id":"d","id":"e"}', "[" * 32768):
        p = _ready()
        assert p.receive_text(text) == []
        [err] = _frames(p)
        assert err["type"] == "error" and err["code"] == "invalid_json"
        assert p.close_with is None


def test_a_hello_refused_because_the_server_is_busy_closes_1013_not_4401() -> None:
    """The credentials may be fine: the client comes back later instead of refreshing its token."""
    p = GatewayProtocol(now=0.0, auth_timeout=5.0)
    [req] = p.receive_text(HELLO)
    p.auth_failed(req.ref, Unavailable("database unavailable, retry shortly"))
    [err] = _frames(p)
    assert err["code"] == "unavailable" and err["retryable"] is True
    assert p.close_with is not None and p.close_with[0] == Close.TRY_AGAIN_LATER == 1013
