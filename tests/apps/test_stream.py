"""Stream mode over a real WebSocket (issue 13 item 4), on both backends: the same events as webhooks,
acknowledged by id, sent again after a reconnect when unacknowledged; revocation closes the stream within
a second; bad hellos, person tokens and browsers are refused."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.apps.helpers import admin_token, app_token, file_report, grid_worker, make_app
from tests.apps.receiver import receiver
from tests.conftest import RunningServer
from tests.org_server import auth, seat
from tests.waiting import scaled, wait_until

TIMEOUT = 10.0


def _url(rs: RunningServer) -> str:
    return f"ws://127.0.0.1:{rs.port}/api/v1/bot/stream"


async def _stream_app(rs: RunningServer, admin: str, name: str) -> tuple[dict[str, Any], str]:
    made = await make_app(rs, admin, name=name, scopes=["events:report.filed", "events:task.*"])
    tok = (await app_token(rs, made["client_id"], made["client_secret"])).json()["access_token"]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        r = await h.post("/api/v1/bot/subscriptions", json={"mode": "stream", "event_types": ["report.filed"]})
        assert r.status_code == 201, r.text
    return made, tok


async def _open(rs: RunningServer, tok: str) -> tuple[Any, dict[str, Any]]:
    ws = await websockets.connect(_url(rs))
    await ws.send(json.dumps({"type": "hello", "id": "h", "v": 1, "token": tok}))
    return ws, json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def _next_event(ws: Any) -> dict[str, Any]:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if frame["type"] == "event":
            return frame  # type: ignore[no-any-return]


async def test_stream_and_webhook_get_the_same_event_and_unacked_ones_come_again(
    platform_server: RunningServer,
) -> None:
    rs = platform_server
    s = rs.services_obj  # type: ignore[attr-defined]
    admin = await admin_token(rs, None)
    made, tok = await _stream_app(rs, admin, "内网平台")
    hook_app = await make_app(rs, admin, name="外网平台", scopes=["events:report.filed"])
    hook_tok = (await app_token(rs, hook_app["client_id"], hook_app["client_secret"])).json()["access_token"]
    async with receiver() as rec:
        async with httpx.AsyncClient(base_url=rs.http, headers=auth(hook_tok)) as h:
            r = await h.post("/api/v1/bot/subscriptions", json={"mode": "webhook", "url": rec.base + "/h",
                                                                "event_types": ["report.filed"]})  # fmt: skip
            rec.secrets["/h"] = [r.json()["secret"]]
        ws, hello = await _open(rs, tok)
        assert hello["type"] == "ok" and hello["data"]["app_id"] == made["id"]
        report = await file_report(rs, await grid_worker(rs), "s1")
        first = await _next_event(ws)
        assert first["event"]["type"] == "report.filed" and first["event"]["data"]["report_id"] == report["report_id"]
        await wait_until(lambda: len(rec.delivered("/h")) == 1, what="the webhook")
        assert rec.delivered("/h")[0].headers["webhook-id"] == first["event"]["id"]  # the same event, both modes
        # not acknowledged: after a reconnect it comes again, same event id
        await ws.close()
        ws, _ = await _open(rs, tok)
        again = await _next_event(ws)
        assert (again["delivery_id"], again["event"]["id"]) == (first["delivery_id"], first["event"]["id"])
        assert again["attempt"] == 2
        await ws.send(json.dumps({"type": "ack", "id": "a1", "delivery_ids": [again["delivery_id"]]}))
        assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)) == {"type": "ok", "ref": "a1",
                                                                           "data": {"acked": 1}}  # fmt: skip
        await ws.send(json.dumps({"type": "ack", "id": "a2", "delivery_ids": [again["delivery_id"]]}))
        assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["data"] == {"acked": 0}
        for bad, code in (
            ({"type": "ack", "id": "a3", "delivery_ids": ["x"]}, "invalid_frame"),
            ({"type": "ack", "id": "a4", "delivery_ids": [1], "more": 1}, "invalid_frame"),
            ({"type": "subscribe", "id": "a5"}, "unknown_type"),
        ):
            await ws.send(json.dumps(bad))
            reply = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            assert (reply["type"], reply["code"]) == ("error", code)
        await ws.send("{not json")
        reply = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert (reply["ref"], reply["code"]) == (None, "invalid_json")
        for fid in ("p\x00", "p\n", "p\x85"):  # a control character in the id: refused, not echoed (河南 audit)
            await ws.send(json.dumps({"type": "ping", "id": fid}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            assert (reply["type"], reply["ref"], reply["code"]) == ("error", None, "invalid_frame"), reply
        await ws.send(json.dumps({"type": "ping", "id": "p"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["data"] == {"pong": True}
        await ws.close()
        # another connection of the app is not sent the acknowledged event again
        ws, _ = await _open(rs, tok)
        await file_report(rs, await grid_worker(rs), "s2")
        nxt = await _next_event(ws)
        assert nxt["event"]["id"] != first["event"]["id"]
        await ws.close()
        await s.delivery.idle()


async def test_revoking_the_secret_closes_the_stream_within_a_second(platform_server: RunningServer) -> None:
    rs = platform_server
    admin = await admin_token(rs, None)
    made, tok = await _stream_app(rs, admin, "撤销平台")
    ws, hello = await _open(rs, tok)
    assert hello["type"] == "ok"
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(admin)) as h:
        r = await h.post(f"/api/v1/apps/{made['id']}/secrets/{made['secret_id']}/revoke")
        assert r.status_code == 200
    revoked_at = time.monotonic()
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    assert time.monotonic() - revoked_at < scaled(1.0)  # "within a second", widened on a loaded machine
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4503


async def test_bad_hellos_person_tokens_and_browsers_are_refused(platform_server: RunningServer) -> None:
    rs = platform_server
    admin = await admin_token(rs, None)
    _, tok = await _stream_app(rs, admin, "握手平台")
    _, _, _, person = await seat(rs, "990101001001", "village_secretary")
    for first, code in (
        ({"type": "hello", "id": "1", "v": 1, "token": person}, 4401),
        ({"type": "hello", "id": "1", "v": 1, "token": "nonsense"}, 4401),
        ({"type": "hello", "id": "1", "v": 2, "token": tok}, 4400),
        ({"type": "ping", "id": "1"}, 4400),
        # the token is part of the hello (no Authorization header is read here): without it, a bad hello
        ({"type": "hello", "id": "1", "v": 1}, 4400),
        ({"type": "hello", "id": "1", "v": 1, "token": None}, 4400),
    ):
        ws = await websockets.connect(_url(rs))
        await ws.send(json.dumps(first))
        err = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert (err["type"], err["ref"]) == ("error", "1"), (first, err)  # the id was readable: echoed
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code, first
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(_url(rs), origin="https://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403


async def test_a_second_hello_is_a_conflict_and_a_binary_frame_closes_1003(platform_server: RunningServer) -> None:
    """The stream follows /ws's conventions (docs/protocol.md): ``conflict`` for a second hello, and a
    binary frame closes the connection with 1003, before the hello or after it."""
    rs = platform_server
    admin = await admin_token(rs, None)
    _, tok = await _stream_app(rs, admin, "二进制平台")
    ws, hello = await _open(rs, tok)
    assert hello["type"] == "ok"
    await ws.send(json.dumps({"type": "hello", "id": "again", "v": 1, "token": tok}))
    reply = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert (reply["type"], reply["ref"], reply["code"]) == ("error", "again", "conflict")
    await ws.send(b"\x00binary")
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
    ws = await websockets.connect(_url(rs))
    await ws.send(b"\x00binary")
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003


async def test_an_ack_reaches_only_stream_deliveries_the_app_was_sent(platform_server: RunningServer) -> None:
    """An ``ack`` marks delivered only what a stream sent: a webhook delivery of the same app, or a stream
    delivery never sent (its subscription disabled), stays pending and is still sent later. Before, any
    pending delivery of the app was acknowledged by id, so a guessed or mistaken id lost a webhook event."""
    rs = platform_server
    s = rs.services_obj  # type: ignore[attr-defined]
    admin = await admin_token(rs, None)
    made, tok = await _stream_app(rs, admin, "确认平台")
    async with receiver() as rec, httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        r = await h.post("/api/v1/bot/subscriptions", json={"mode": "webhook", "url": rec.base + "/w",
                                                            "event_types": ["report.filed"]})  # fmt: skip
        hook = r.json()
        rec.secrets["/w"] = [hook["secret"]]
        stream_sub = (await h.get("/api/v1/bot/subscriptions")).json()["subscriptions"][0]
        for sub in (hook, stream_sub):
            r = await h.patch(f"/api/v1/bot/subscriptions/{sub['id']}", json={"status": "disabled"})
            assert r.status_code == 200, r.text
        await file_report(rs, await grid_worker(rs), "ack-only-sent")

        async def pending(sub: dict[str, Any]) -> list[int]:
            r = await h.get(f"/api/v1/bot/subscriptions/{sub['id']}/deliveries", params={"state": "pending"})
            return [d["delivery_id"] for d in r.json()["deliveries"]]

        async def unsent_both() -> list[int]:
            hooked, streamed = await pending(hook), await pending(stream_sub)
            return hooked + streamed if hooked and streamed else []

        unsent = await wait_until(unsent_both, what="a pending delivery on each subscription")
        assert len(unsent) == 2
        ws, hello = await _open(rs, tok)
        assert hello["type"] == "ok"
        await ws.send(json.dumps({"type": "ack", "id": "a", "delivery_ids": unsent}))
        assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)) == {"type": "ok", "ref": "a",
                                                                          "data": {"acked": 0}}  # fmt: skip
        assert await pending(hook) + await pending(stream_sub) == unsent
        r = await h.patch(f"/api/v1/bot/subscriptions/{hook['id']}", json={"status": "active"})
        assert r.status_code == 200, r.text
        await wait_until(lambda: len(rec.delivered("/w")) == 1, what="the webhook event, not lost to the ack")
        await ws.close()
    await s.delivery.idle()


async def test_the_stream_lives_as_long_as_its_token_with_the_leeway_as_ws_does(platform_server: RunningServer) -> None:
    """A token is good until its expiry plus ``ZZD_JWT_LEEWAY`` (REST and /ws, docs/protocol.md 4401); so is
    the stream opened with it. Before, the stream closed at the bare expiry, so a hello with a token inside
    the leeway was answered ``ok`` and the socket closed 4401 at once. One past the leeway is refused."""
    from datetime import timedelta

    rs = platform_server
    s = rs.services_obj  # type: ignore[attr-defined]
    admin = await admin_token(rs, None)
    made, _ = await _stream_app(rs, admin, "宽限平台")
    leeway = s.settings.jwt_leeway
    assert leeway >= 5
    inside = s.tokens.issue_app(made["id"], made["secret_id"], timedelta(seconds=-2))
    ws, hello = await _open(rs, inside)
    assert hello["type"] == "ok"
    await asyncio.sleep(scaled(1.2))  # beyond the guard's recheck (0.5 s), well inside the leeway
    await ws.send(json.dumps({"type": "ping", "id": "p"}))
    assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)) == {"type": "ok", "ref": "p", "data": {"pong": True}}
    await ws.close()
    past = s.tokens.issue_app(made["id"], made["secret_id"], timedelta(seconds=-(leeway + 5)))
    ws, err = await _open(rs, past)
    assert (err["type"], err["code"]) == ("error", "token_expired")
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
