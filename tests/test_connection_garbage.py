"""A WebSocket connection, once closed, is freed by reference counting (issue 16, S16 (d)).

Why: two reference cycles used to outlive every connection until the cyclic
collector found them: uvicorn's HTTP protocol and its ``httptools`` parser
after the upgrade (``zzd/gateway/httpproto.py``), and websockets' sans-I/O
protocol and its parser generator (``zzd/gateway/wsproto.py``). Under a flood
of 500 bad-token handshakes a second they made the server's young
collections 7-12 ms pauses, the whole of the bystanders' p99 rise. The test
turns the collector off and waits for every server-side protocol object of
the closed connections to be gone; with either cycle back, they never go.
"""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.server import ServerProtocol

from tests.client import Client
from tests.conftest import make_settings, serving
from tests.flood import FORGED
from tests.rawws import RawSocket, frame
from tests.test_reconnect_storm_s9 import _people_with_tokens
from tests.waiting import wait_until
from zzd.gateway.wsproto import BatchingWebSocketProtocol


def _live_connection_objects() -> list[object]:
    kinds = (HttpToolsProtocol, BatchingWebSocketProtocol, ServerProtocol)
    return [o for o in gc.get_objects() if issubclass(type(o), kinds)]  # type(): weak proxies refuse isinstance


async def test_closed_websockets_are_freed_without_the_collector(
    sqlite_template: Path, tmp_path: Path, no_collector: None
) -> None:
    shutil.copy(sqlite_template, tmp_path / "zzd.db")
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'zzd.db'}"
    ((_, token),) = await _people_with_tokens(db_url, 1)
    async with serving(make_settings(db_url)) as rs:
        before = len(_live_connection_objects())  # none yet: the server has served nothing
        for _ in range(5):  # a forged token: refused at the hello, closed 4401
            raw = await RawSocket.open(rs.port)
            raw.send(frame(0x1, json.dumps({"type": "hello", "id": "h", "v": 1, "token": FORGED}).encode()))
            assert await raw.close_code() == 4401
            raw.abort()
        for _ in range(3):  # a good hello, then the client closes cleanly
            c = await Client.connect(rs.ws, token)
            assert c.hello["person_id"]
            await c.close()
        for _ in range(3):  # a foreign origin: refused before the upgrade (HTTP 403)
            with pytest.raises(AssertionError, match=" 403 "):
                await RawSocket.open(rs.port, "Origin: https://evil.example\r\n")

        def freed() -> bool:
            return len(_live_connection_objects()) <= before

        await wait_until(freed, what="the closed connections' protocol objects to be freed")
