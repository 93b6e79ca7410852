"""The access token in the upgrade request (``Authorization: Bearer``), checked before the upgrade.

Why: with the token only in the hello, every handshake is upgraded before
its token is read, so a flood of bad tokens (S16 d) costs the server a socket
each and the bar's "0 accepted upgrades" could not hold. A client that sends
the token with the upgrade gets HTTP 401 for a bad one and never a socket;
its hello may then leave the token out. The whole S20 battery of forged
tokens is also tried at the handshake (``tests/test_attack_auth.py``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any

import httpx
import pytest
import websockets

from tests.client import login, new_person
from tests.conftest import RunningServer, make_settings, serving
from tests.flood import FORGED
from tests.waiting import scaled


async def _upgrade_refused(server: RunningServer, authorization: str) -> Any:
    """The HTTP response refusing an upgrade that carried ``authorization``."""
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(server.ws, additional_headers={"Authorization": authorization})
    return refused.value.response


async def _hello(ws: Any, frame: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    """Send a hello; its reply, and the close code if the server then closed the socket."""
    await ws.send(json.dumps(frame))
    reply = json.loads(await ws.recv())
    if reply["type"] == "ok":
        return reply, None
    with pytest.raises(websockets.ConnectionClosed):
        await ws.recv()
    return reply, ws.close_code


async def test_a_token_in_the_upgrade_authenticates_a_hello_without_one(db_url: str) -> None:
    async with serving(make_settings(db_url)) as rs:
        s = rs.services_obj  # type: ignore[attr-defined]
        pid, lg = await new_person(s)
        token = (await login(rs.http, lg))["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        async with websockets.connect(rs.ws, additional_headers=headers) as ws:
            reply, _ = await _hello(ws, {"type": "hello", "id": "h", "v": 1})
            assert reply["data"]["person_id"] == pid
            await ws.send(json.dumps({"type": "ping", "id": "p"}))
            assert json.loads(await ws.recv()) == {"type": "ok", "ref": "p", "data": {"pong": True}}
        # The scheme is case-insensitive (RFC 9110); a hello that carries the token as well is fine.
        async with websockets.connect(rs.ws, additional_headers={"Authorization": f"bearer {token}"}) as ws:
            reply, _ = await _hello(ws, {"type": "hello", "id": "h", "v": 1, "token": token})
            assert reply["data"]["person_id"] == pid


async def test_a_bad_token_in_the_upgrade_gets_401_and_no_socket(db_url: str) -> None:
    async with serving(make_settings(db_url)) as rs:
        s = rs.services_obj  # type: ignore[attr-defined]
        cases = [f"Bearer {FORGED}", "Basic dXNlcjpwdw==", "Bearer", "Bearer   ", FORGED]
        for authorization in cases:
            response = await _upgrade_refused(rs, authorization)
            assert response.status_code == 401, (authorization, response.status_code)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            error = json.loads(response.body)["error"]
            assert error["code"] == "unauthorized" and error["message"], (authorization, error)
        assert s.metrics.ws_refused.labels("unauthorized")._value.get() == len(cases)
        assert s.hub.open_sockets == 0 and s.hub.pending_hellos == 0  # never upgraded, never counted


async def test_a_hello_without_a_token_anywhere_is_closed_4401(db_url: str) -> None:
    async with serving(make_settings(db_url)) as rs, websockets.connect(rs.ws) as ws:
        reply, code = await _hello(ws, {"type": "hello", "id": "h", "v": 1})
        assert reply["type"] == "error" and reply["ref"] == "h" and reply["code"] == "unauthorized"
        assert code == 4401


async def test_a_revoked_session_passes_the_upgrade_but_not_the_hello(db_url: str) -> None:
    """The upgrade checks the token itself (no I/O); the session is checked at the hello, as always."""
    async with serving(make_settings(db_url)) as rs:
        _, lg = await new_person(rs.services_obj)  # type: ignore[attr-defined]
        tok = await login(rs.http, lg)
        bearer = {"Authorization": f"Bearer {tok['access_token']}"}
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{rs.http}/api/v1/auth/logout", headers=bearer)
        assert r.status_code == 200
        async with websockets.connect(rs.ws, additional_headers=bearer) as ws:
            reply, code = await _hello(ws, {"type": "hello", "id": "h", "v": 1})
        assert reply["type"] == "error" and code == 4503


async def test_an_upgrade_with_a_header_line_too_long_is_answered_431_and_closed(db_url: str) -> None:
    """A header line over websockets' 8 KiB limit (a 9 KB token, or the cookies a browser sends) got no
    answer at all: websockets wrote its 431 into a buffer uvicorn never sent, and the socket stayed open
    until the client gave up (福建 audit). Now the 431 is sent and the connection closed."""
    async with serving(make_settings(db_url)) as rs:
        host, port = rs.http.removeprefix("http://").rsplit(":", 1)
        for header in (f"Authorization: Bearer {'a' * 9000}", f"Cookie: c={'b' * 9000}"):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                (
                    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                    f"Sec-WebSocket-Version: 13\r\n{header}\r\n\r\n"
                ).encode()
            )
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), scaled(10))  # everything, up to the server's close
            writer.close()
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 431 ") and b"content-type: application/json" in head, answer[:300]
            assert json.loads(body)["error"] == {
                "code": "bad_request",
                "message": "header fields too large (at most 8192 bytes a line)",
            }
