"""Bad, odd and hostile frames through a real socket, on SQLite and PostgreSQL (S19, S24, S25, S18a).

Every bad input gets a structured error on the *same* connection, the
connection keeps working, and nothing reaches the database.
"""

from __future__ import annotations

import json
import secrets
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from messaging.schema import conversation_members, conversations, messages, person_events
from tests.client import Client, connect_as, new_people
from tests.conftest import RunningServer
from tests.profiles import examples

COUNTED = (messages, person_events, conversations, conversation_members)


async def _counts(server: RunningServer) -> dict[str, int]:
    db = server.services_obj.db  # type: ignore[attr-defined]
    out: dict[str, int] = {}
    async with db.read() as conn:
        for t in COUNTED:
            out[t.name] = int((await conn.execute(select(func.count()).select_from(t))).scalar_one())
    return out


async def _pair(server: RunningServer) -> tuple[int, Client, int]:
    s = server.services_obj  # type: ignore[attr-defined]
    (a_id, a_login), (b_id, _) = await new_people(s, 2)
    a = await connect_as(server, a_login)
    return a_id, a, b_id


async def _assert_usable(c: Client) -> None:
    pong = await c.request({"type": "ping"})
    assert pong["type"] == "ok" and pong["data"] == {"pong": True}, pong
    assert c.closed is None


def _send(to: Any, body: Any = "hi", **extra: Any) -> dict[str, Any]:
    return {"type": "send", "to": to, "client_msg_id": secrets.token_hex(6), "body": body, **extra}


def _assert_error(reply: dict[str, Any], code: str | set[str], ref: str | None, what: str) -> None:
    codes = {code} if isinstance(code, str) else code
    assert reply["type"] == "error", f"{what}: {reply}"
    assert reply["ref"] == ref, f"{what}: {reply}"
    assert reply["code"] in codes, f"{what}: {reply}"
    assert isinstance(reply["message"], str) and reply["message"], f"{what}: {reply}"


async def test_bad_frames_get_structured_errors_keep_the_connection_and_store_nothing(server: RunningServer) -> None:
    a_id, a, b_id = await _pair(server)
    before = await _counts(server)

    # Raw texts that are not valid JSON (or are JSON traps): no usable id, so ref is null.
    raw_cases: list[tuple[str, str]] = [
        ("malformed", '{"type": "send", "id": "m1", "to": '),
        ("trailing garbage", '{"type": "ping", "id": "m2"} xyz'),
        ("NaN", '{"type":"send","id":"n1","to":%d,"client_msg_id":"c","body":"x","extra":NaN}' % b_id),
        ("Infinity as to", '{"type":"send","id":"n2","to":Infinity,"client_msg_id":"c","body":"x"}'),
        ("duplicate keys", '{"type":"send","id":"d1","to":%d,"to":%d,"client_msg_id":"c","body":"x"}' % (b_id, a_id)),
        ("5000-digit int", '{"type":"send","id":"i1","to":%s,"client_msg_id":"c","body":"x"}' % ("9" * 5000)),
        ("deep nesting", "[" * 10_000 + "]" * 10_000),
        ("unclosed deep nesting", "[" * 32768),
        ("lone surrogate in the id", '{"type":"send","id":"u\\ud800","to":%d,"client_msg_id":"c","body":"x"}' % b_id),
        ("empty text", ""),
        ("whitespace text", " \n\t "),
    ]
    for what, text in raw_cases:
        await a.send_raw(text)
        _assert_error(await a.reply("None"), "invalid_json", None, what)
        await _assert_usable(a)

    # A lone surrogate escape in a text field (a JS client that cut a text inside an emoji): still
    # invalid JSON, but the id is readable, so the reply names it (docs/protocol.md: ref is null only
    # when the id cannot be read). It was null, and the client waited for an answer to u1 for ever.
    for fid, text in [
        ("u1", '{"type":"send","id":"u1","to":%d,"client_msg_id":"c","body":"a\\ud800b"}' % b_id),
        ("u2", '{"type":"send","id":"u2","to":%d,"client_msg_id":"c","body":"\\udc00"}' % b_id),
        ("u3", '{"type":"notice_ack","id":"u3","notice_id":1,"reply":"\\ud83d"}'),
    ]:
        await a.send_raw(text)
        _assert_error(await a.reply(fid), "invalid_json", fid, f"lone surrogate ({fid})")
        await _assert_usable(a)

    # Valid JSON, invalid frames: the reply names the frame id.
    frame_cases: list[tuple[str, dict[str, Any] | list[Any], str]] = [
        ("not an object", [1, 2, 3], "invalid_frame"),
        ("unknown type", {"type": "drop_tables", "id": "t1"}, "unknown_type"),
        ("type not a string", {"type": 5, "id": "t2"}, "unknown_type"),
        ("missing to", {"type": "send", "id": "f1", "client_msg_id": "c", "body": "x"}, "invalid_frame"),
        ("missing body", {"type": "send", "id": "f2", "to": b_id, "client_msg_id": "c"}, "invalid_frame"),
        ("missing client_msg_id", {"type": "send", "id": "f3", "to": b_id, "body": "x"}, "invalid_frame"),
        ("string to", {**_send(str(b_id)), "id": "w1"}, "invalid_frame"),
        ("bool to", {**_send(True), "id": "w2"}, "invalid_frame"),
        ("float to", {**_send(float(b_id)), "id": "w3"}, "invalid_frame"),
        ("to > 2**53", {**_send(2**53 + 1), "id": "w4"}, "invalid_frame"),
        ("negative to", {**_send(-b_id), "id": "w5"}, "invalid_frame"),
        ("null to", {**_send(None), "id": "w6"}, "invalid_frame"),
        ("list body", {**_send(b_id, ["x"]), "id": "w7"}, "invalid_frame"),
        ("int body", {**_send(b_id, 7), "id": "w8"}, "invalid_frame"),
        ("extra field", {**_send(b_id, "x", sender_id=a_id), "id": "e1"}, "invalid_frame"),
        ("NUL in body", {**_send(b_id, "a\x00b"), "id": "b1"}, "invalid_text"),
        ("empty body", {**_send(b_id, ""), "id": "b2"}, "invalid_text"),
        ("whitespace body", {**_send(b_id, " \t\n\u3000 "), "id": "b3"}, "invalid_text"),
        ("5001-char body", {**_send(b_id, "x" * 5001), "id": "b4"}, "invalid_frame"),
        ("bad client_msg_id", {**_send(b_id), "client_msg_id": "a b/../c", "id": "b5"}, "invalid_frame"),
        ("unknown recipient", {**_send(2**53 - 7), "id": "nf1"}, "not_found"),
        ("second hello", {"type": "hello", "id": "h2", "v": 1, "token": "x"}, "conflict"),
        ("sync epoch too long", {"type": "sync", "id": "s1", "since": 0, "epoch": "e" * 33}, "invalid_frame"),
        ("history limit 0", {"type": "history", "id": "s2", "with_person": b_id, "limit": 0}, "invalid_frame"),
        # docs/protocol.md's bad_request row names these frame refusals (a client expected invalid_frame).
        ("to a person with attachments", {**_send(b_id, "x", attachments=["a1"]), "id": "br1"}, "bad_request"),
        ("conversations cursor", {"type": "conversations", "id": "br2", "cursor": "zz"}, "bad_request"),
        ("missing type", {"id": "ut1"}, "unknown_type"),
    ]
    for what, frame, code in frame_cases:
        ref = frame.get("id") if isinstance(frame, dict) else None
        await a.send_raw(json.dumps(frame))
        reply = await a.reply(str(ref))
        _assert_error(reply, code, ref, what)
        if code == "invalid_frame" and isinstance(frame, dict):
            data = reply.get("data", {})
            assert data.get("field") or (data.get("errors") and all(e["field"] for e in data["errors"])), reply
        await _assert_usable(a)

    protocol = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    [row] = [line for line in protocol.splitlines() if line.startswith("| `bad_request` |")]
    assert "Frames get it too" in row and '`data.field: "to"`' in row, row
    [row] = [line for line in protocol.splitlines() if line.startswith("| `unknown_type` |")]
    assert "missing or non-string" in row, row

    assert await _counts(server) == before, "a rejected frame reached the database"
    # The same connection still sends; and the counting does see writes.
    ok = await a.send_message(b_id, "after all that")
    assert ok["type"] == "ok", ok
    after = await _counts(server)
    assert after["messages"] == before["messages"] + 1
    await a.close()


async def test_a_frame_id_with_a_control_character_is_refused_and_not_echoed(server: RunningServer) -> None:
    """Audit (河南): a frame ``id`` holding NUL (or another control character) was accepted, acted on
    and echoed back as ``ref``. Now it is ``invalid_frame`` with ``ref: null`` and nothing changes."""
    _, a, b_id = await _pair(server)
    before = await _counts(server)
    for fid in ("a\x00b", "\x00", "x\ny", "tab\t", "esc\x1b[31m", "del\x7f", "nel\x85"):
        for frame in (_send(b_id, "带控制字符的 id", id=fid), {"type": "ping", "id": fid}):
            await a.send_raw(json.dumps(frame))
            reply = await a.reply("None")
            _assert_error(reply, "invalid_frame", None, repr(fid))
            assert [e["field"] for e in reply["data"]["errors"]] == ["id"], reply
            await _assert_usable(a)
    assert await _counts(server) == before, "a frame with a control character in its id was acted on"
    ok = await a.request({"type": "ping", "id": "普通-id_1.2"})  # printable ids, CJK included, still echo
    assert ok["type"] == "ok", ok
    await a.close()


async def test_frame_over_64_kib_closes_1009(server: RunningServer) -> None:
    _, a, b_id = await _pair(server)
    await a.send_raw(json.dumps(_send(b_id, "x" * 70_000) | {"id": "big"}))
    code, _ = await a.wait_closed()
    assert code == 1009
    await a.close()


async def test_frame_just_under_limit_gets_an_error_not_a_close(server: RunningServer) -> None:
    _, a, b_id = await _pair(server)
    await a.send_raw(json.dumps(_send(b_id, "x" * 60_000) | {"id": "big"}))
    _assert_error(await a.reply("big"), "invalid_frame", "big", "60k body")
    await _assert_usable(a)
    await a.close()


async def test_binary_frame_closes_1003(server: RunningServer) -> None:
    _, a, b_id = await _pair(server)
    before = await _counts(server)
    await a.send_raw(json.dumps(_send(b_id, "in binary")).encode())
    code, _ = await a.wait_closed()
    assert code == 1003
    assert await _counts(server) == before
    await a.close()


async def test_binary_frame_before_hello_closes_1003(server: RunningServer) -> None:
    ws = await websockets.connect(server.ws)
    try:
        await ws.send(b"\x00\x01")
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1003
    finally:
        await ws.close()


INJECTION = [
    "'; DROP TABLE messages;--",
    "%",
    "_",
    "\\",
    "$1",
    "{{7*7}}",
    "<script>alert(1)</script>",
    '{"type":"send","to":1}',
    "' OR '1'='1",
    "%" * 2000,
    "_%\\%\\_'\"`;",
]
UNICODE = [
    "\u202eevil\u202c.txt",  # RTL override
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",  # ZWJ family emoji
    "\U0001d11e \U0001f600 \U00020000",  # astral: music clef, emoji, CJK ext B
    unicodedata.normalize("NFD", "Ångström 한국어 é"),  # NFD: must not be recomposed
    "line\u2028separator\u2029para",
    "\ufeffBOM first",
    "zero\u200bwidth\u200c\u200dend",
    "e" + "\u0301" * 1000,  # a 1,001-code-point grapheme cluster
    "张三 李四\r\n\ttab",
]


@pytest.mark.parametrize("ensure_ascii", [False, True], ids=["utf8", "escaped"])
async def test_injection_and_unicode_bodies_round_trip_byte_identical(
    server: RunningServer, ensure_ascii: bool
) -> None:
    a_id, a, b_id = await _pair(server)
    bodies = INJECTION + UNICODE
    sent: list[int] = []
    for i, body in enumerate(bodies):
        frame = _send(b_id, body) | {"id": f"s{i}"}
        await a.send_raw(json.dumps(frame, ensure_ascii=ensure_ascii))
        reply = await a.reply(f"s{i}")
        assert reply["type"] == "ok", (body[:40], reply)
        sent.append(reply["data"]["message_id"])
    hist = await a.request({"type": "history", "with_person": b_id, "limit": 100})
    got = list(reversed(hist["data"]["messages"]))
    assert [m["id"] for m in got] == sent
    for m, body in zip(got, bodies, strict=True):
        assert m["body"].encode("utf-8") == body.encode("utf-8"), (body[:40], m["body"][:40])
    # Stored bytes too, not just what the API hands back.
    db = server.services_obj.db  # type: ignore[attr-defined]
    async with db.read() as conn:
        rows = (await conn.execute(select(messages.c.id, messages.c.body).where(messages.c.id.in_(sent)))).all()
    stored = {r.id: r.body for r in rows}
    assert [stored[i] for i in sent] == bodies
    # The sender's own live echo carries the same bytes.
    evs = await a.wait_events(len(bodies))
    echoed = {e["data"]["id"]: e["data"]["body"] for e in evs if e["kind"] == "message.new"}
    assert [echoed[i] for i in sent] == bodies
    await a.close()


async def test_a_body_of_only_invisible_characters_is_empty(server: RunningServer) -> None:
    """Zero-width spaces, a BOM or bidi controls alone are an empty body, like spaces alone.

    Before, ``"\u200b"`` was stored and delivered (the 河南 audit): a message that shows
    nothing, while ``"\u3000"`` was refused as empty. Visible text with them is kept as sent.
    """
    _, a, b_id = await _pair(server)
    for i, body in enumerate(["\u200b", "\ufeff", "\u202e\u202c", " \u200b\u200c\u200d\u3000", "\u2066\u2069\n"]):
        frame = _send(b_id, body) | {"id": f"e{i}"}
        await a.send_raw(json.dumps(frame))
        r = await a.reply(f"e{i}")
        _assert_error(r, "invalid_text", f"e{i}", repr(body))
        assert r["data"] == {"field": "body"}
    hist = await a.request({"type": "history", "with_person": b_id})
    assert hist["data"]["messages"] == []
    ok = await a.send_message(b_id, "\u200b好\u200b")
    assert ok["type"] == "ok", ok
    await a.close()


async def test_body_of_exactly_5000_code_points_is_accepted(server: RunningServer) -> None:
    _, a, b_id = await _pair(server)
    body = "\U0001f600" * 5000  # 5,000 code points, 20,000 UTF-8 bytes
    r = await a.send_message(b_id, body)
    assert r["type"] == "ok", r
    hist = await a.request({"type": "history", "with_person": b_id})
    assert hist["data"]["messages"][0]["body"] == body
    await a.close()


# --- fuzz ------------------------------------------------------------------------------

_KEYS = st.sampled_from(
    [
        "type",
        "id",
        "to",
        "body",
        "client_msg_id",
        "since",
        "epoch",
        "limit",
        "conversation_id",
        "with_person",
        "before",
        "message_id",
        "v",
        "token",
        "resume",
    ]
) | st.text(max_size=8)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "\x00", "%", "1", "-1", "ping", "send"])
)
_JSON = st.recursive(
    _SCALARS, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(_KEYS, kids, max_size=4), max_leaves=12
)
_TYPES = st.sampled_from(["send", "sync", "history", "read", "conversations", "ping", "hello"]) | st.text(max_size=10)


@st.composite
def _frames(draw: st.DrawFn) -> object:
    obj: dict[str, Any] = draw(st.dictionaries(_KEYS, _JSON, max_size=6))
    if draw(st.booleans()):
        obj["type"] = draw(_TYPES)
    if draw(st.integers(0, 9)) > 0:
        obj["id"] = draw(st.text(min_size=1, max_size=10) | st.integers() | st.none())
    if draw(st.integers(0, 19)) == 0:
        return draw(_JSON)  # sometimes not an object at all
    return obj


FUZZED_FRAMES = examples(250)


async def test_fuzzed_frames_always_get_ok_or_structured_error(server: RunningServer) -> None:
    a_id, a, b_id = await _pair(server)
    ws = a.ws
    a._reader.cancel()  # read the socket directly: replies come back in request order
    try:
        await a._reader
    except BaseException:  # noqa: BLE001 - the cancelled reader
        pass
    seen = {"ok": 0, "error": 0}

    async def one(frame: object) -> None:
        text = json.dumps(frame)  # may contain NaN/Infinity: the server must refuse those too
        await ws.send(text)
        while True:
            try:
                raw = await ws.recv()
            except websockets.ConnectionClosed as exc:
                rcvd = exc.rcvd
                raise AssertionError(f"closed {rcvd and rcvd.code} after {text[:200]!r}") from exc
            reply = json.loads(raw)
            if reply.get("type") != "event":
                break
        assert reply["type"] in ("ok", "error"), reply
        if reply["type"] == "error":
            assert isinstance(reply["code"], str) and reply["code"] != "internal_error", (text[:200], reply)
            assert isinstance(reply["message"], str)
            assert "ref" in reply
        try:
            json.dumps(frame, allow_nan=False)
            strict_json = True
        except ValueError:
            strict_json = False  # NaN/Infinity: invalid JSON, so no trusted id (ref is null)
            assert reply["type"] == "error" and reply["code"] == "invalid_json" and reply["ref"] is None, reply
        if strict_json and isinstance(frame, dict) and isinstance(frame.get("id"), str) and len(frame["id"]) <= 64:
            # An id with a control character is refused unread, never echoed (docs/protocol.md "Frames")
            control = any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in frame["id"])
            assert reply["ref"] == (None if control else frame["id"]), (text[:200], reply)
            assert not control or reply["type"] == "error", (text[:200], reply)
        seen[reply["type"]] += 1

    @settings(
        max_examples=FUZZED_FRAMES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(frame=_frames())
    async def check(frame: object) -> None:
        await one(frame)

    # Hypothesis drives the coroutine on the running loop's thread via this adapter.
    await _run_hypothesis(check)
    assert seen["error"] > FUZZED_FRAMES * 2 // 5  # 100 of CI's 250: most fuzzed frames are refused
    # Still alive and usable at the end.
    await ws.send(json.dumps({"type": "ping", "id": "last"}))
    while True:
        last = json.loads(await ws.recv())
        if last.get("type") != "event":
            break
    assert last == {"type": "ok", "ref": "last", "data": {"pong": True}}
    await ws.close()


async def _run_hypothesis(test: Any) -> None:
    """Run an async ``@given`` test on the current loop from a worker thread."""
    import asyncio

    loop = asyncio.get_running_loop()

    def sync_runner(coro: Any) -> None:
        asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    test.hypothesis.inner_test = _wrap(test.hypothesis.inner_test, sync_runner)
    await asyncio.to_thread(test)


def _wrap(inner: Any, runner: Any) -> Any:
    def wrapped(*args: Any, **kwargs: Any) -> None:
        runner(inner(*args, **kwargs))

    return wrapped
