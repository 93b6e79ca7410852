"""The app event stream in ``/asyncapi.json`` (channel ``appStream``) against the code and a real stream.

Before, the AsyncAPI document described ``/ws`` only: the apps' stream (``/api/v1/bot/stream``) had
prose in docs/webhooks.md and no machine-readable contract (found by an outside audit). Static: every
frame the stream understands, every close code it uses and every example has its entry and validates.
Live, on both backends: a real app's stream is driven through hello, an event, ack, ping and the
errors, and every frame the server sent is validated against the served document; a bad hello's close
code is the documented one. Run with ``-s`` to see the frames (the models' examples come from them).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import websockets
from websockets.exceptions import ConnectionClosed

from tests.apps.helpers import admin_token, app_token, file_report, grid_worker, make_app
from tests.conftest import RunningServer
from tests.org_server import auth
from zzd.gateway.asyncapi import build_asyncapi
from zzd.gateway.closecodes import Close
from zzd.gateway.stream_frames import STREAM_CLIENT_FRAMES, STREAM_CLOSE_CODES

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 10.0


def _validator(doc: dict[str, Any], message: str) -> jsonschema_rs.Draft202012Validator:
    payload = doc["channels"]["appStream"]["messages"][message]["payload"]
    return jsonschema_rs.Draft202012Validator({**payload, "components": doc["components"]})


def _check(doc: dict[str, Any], message: str, frame: dict[str, Any]) -> None:
    errors = [e.message for e in _validator(doc, message).iter_errors(frame)]
    assert not errors, (message, errors[:3], frame)


def test_the_stream_channel_covers_its_frames_close_codes_and_examples() -> None:
    doc = build_asyncapi()
    channel = doc["channels"]["appStream"]
    assert channel["address"] == "/api/v1/bot/stream"
    # the frame types the stream's reader dispatches on (zzd/gateway/app_stream.py) are all documented
    source = (ROOT / "zzd" / "gateway" / "app_stream.py").read_text()
    understood = set(re.findall(r'kind == "([a-z]+)"', source)) | {"hello"}
    assert understood == set(STREAM_CLIENT_FRAMES), understood ^ set(STREAM_CLIENT_FRAMES)
    # every close code it uses after the upgrade (POLICY is answered as HTTP 403 before it) is listed
    used = {int(Close[name]) for name in re.findall(r"Close\.([A-Z_]+)", source)} - {int(Close.POLICY)}
    assert used <= set(STREAM_CLOSE_CODES), used - set(STREAM_CLOSE_CODES)
    assert {c["code"] for c in channel["x-close-codes"]} == set(STREAM_CLOSE_CODES)
    for name, message in channel["messages"].items():
        assert message["examples"], f"{name} has no example"
        for ex in message["examples"]:
            _check(doc, name, ex["payload"])
    stream_ops = [op for op in doc["operations"].values() if op["channel"]["$ref"] == "#/channels/appStream"]
    assert {m["$ref"].rsplit("/", 1)[1] for op in stream_ops for m in op["messages"]} == {
        *(f.__name__ for f, _ in STREAM_CLIENT_FRAMES.values()),
        "StreamEvent",
    }


async def test_a_real_stream_sends_what_the_served_document_says(platform_server: RunningServer) -> None:
    rs = platform_server
    admin = await admin_token(rs, None)
    made = await make_app(rs, admin, name="河长制平台", scopes=["events:report.filed"])
    tok = (await app_token(rs, made["client_id"], made["client_secret"])).json()["access_token"]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        r = await h.post("/api/v1/bot/subscriptions", json={"mode": "stream", "event_types": ["report.filed"]})
        assert r.status_code == 201, r.text
        doc = (await h.get("/asyncapi.json")).json()
    assert doc == build_asyncapi()
    url = f"ws://127.0.0.1:{rs.port}/api/v1/bot/stream"
    seen: list[tuple[str, dict[str, Any]]] = []

    async with websockets.connect(url) as ws:

        async def exchange(frame: dict[str, Any] | str, answer: str) -> dict[str, Any]:
            await ws.send(frame if isinstance(frame, str) else json.dumps(frame, ensure_ascii=False))
            got: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            seen.append((answer, got))
            return got

        hello = await exchange({"type": "hello", "id": "1", "v": 1, "token": tok}, "StreamHelloOk")
        assert hello["data"]["app_id"] == made["id"]
        await file_report(rs, await grid_worker(rs), "contract-1")
        event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        seen.append(("StreamEvent", event))
        assert event["type"] == "event" and event["event"]["type"] == "report.filed"
        assert (await exchange({"type": "ack", "id": "2", "delivery_ids": [event["delivery_id"]]}, "StreamAckOk"))[
            "data"
        ] == {"acked": 1}
        await exchange({"type": "ping", "id": "3"}, "StreamPingOk")
        await exchange({"type": "subscribe", "id": "4"}, "StreamError")
        await exchange({"type": "ack", "id": "5", "delivery_ids": []}, "StreamError")
        await exchange("{not json", "StreamError")
        await exchange({"type": "hello", "id": "6", "v": 1, "token": tok}, "StreamError")
    for message, frame in seen:
        print(message, json.dumps(frame, ensure_ascii=False))  # noqa: T201 - the examples' source
        _check(doc, message, frame)
    assert [f["code"] for m, f in seen if m == "StreamError"] == [
        "unknown_type",
        "invalid_frame",
        "invalid_json",
        "conflict",
    ]

    # a bad hello: an error frame, then the documented close
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "hello", "id": "7", "v": 2, "token": tok}))
        bad = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        _check(doc, "StreamError", bad)
        try:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == Close.BAD_HELLO
        assert Close.BAD_HELLO in STREAM_CLOSE_CODES
