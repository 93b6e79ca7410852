"""S17 and S18 on a raw socket: malformed, huge and compressed frames.

Frames are built byte by byte (``tests/rawws.py``), so the cases no client
library would send are sent. For each: the close code of the bar within 1 s,
no traceback at ERROR level, no effect on a normal client connected beside
it, and memory bounded (a header declaring 2^63 bytes is refused on the
header; 64 fragments of 63 KiB stop at the 64 KiB limit; a ping flood is
answered without growing the process).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.client import Client, connect_as, login, new_people, new_person
from tests.conftest import LogRecords, RunningServer, make_settings, serving
from tests.faults import rss_bytes
from tests.rawws import RawSocket, frame

TEXT, CONT, CLOSE, PING = 0x1, 0x0, 0x8, 0x9
HELLO_START = b'{"type":"hello","v":1,"token":"\xe6\xb5'  # ends inside a 3-byte UTF-8 character

S17 = {
    "unmasked client frame": ([frame(TEXT, b'{"type":"ping"}', masked=False)], 1002),
    "RSV1 set": ([frame(TEXT, b"{}", rsv=0b100)], 1002),
    "RSV2 and RSV3 set": ([frame(TEXT, b"{}", rsv=0b011)], 1002),
    "reserved opcode 3": ([frame(0x3, b"")], 1002),
    "reserved opcode 0xB": ([frame(0xB, b"")], 1002),
    "fragmented ping": ([frame(PING, b"x", fin=False)], 1002),
    "ping payload of 126 bytes": ([frame(PING, b"x" * 126)], 1002),
    "close code 1005": ([frame(CLOSE, struct.pack("!H", 1005))], 1002),
    "close code 999": ([frame(CLOSE, struct.pack("!H", 999))], 1002),
    "close code 5000": ([frame(CLOSE, struct.pack("!H", 5000))], 1002),
    "continuation without a start": ([frame(CONT, b"x")], 1002),
    "invalid UTF-8 in a text frame": ([frame(TEXT, b"\xff\xfe")], 1007),
    "invalid UTF-8 across a fragment boundary": ([frame(TEXT, HELLO_START, fin=False), frame(CONT, b'A"}')], 1007),
}
S18 = {
    "(a) a 2 MiB text message": ([frame(TEXT, b"a" * (2 << 20))], 1009),
    "(b) a header declaring 2^63 bytes": ([frame(TEXT, b"", declared_length=2**63)], 1009),
    "(b) a header declaring 2^63 - 1 bytes": ([frame(TEXT, b"", declared_length=2**63 - 1)], 1009),
    "(c) 64 fragments of 63 KiB": (
        [frame(TEXT if i == 0 else CONT, b"a" * (63 << 10), fin=i == 63) for i in range(64)],
        1009,
    ),
}


@pytest.fixture
async def sqlite_server(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[RunningServer]:
    """Frame handling is the same on both backends: SQLite only."""
    shutil.copy(sqlite_template, tmp_path / "zzd.db")
    async with serving(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'zzd.db'}")) as rs:
        yield rs


async def _bystander(rs: RunningServer) -> tuple[Client, int]:
    s = rs.services_obj  # type: ignore[attr-defined]
    (_, lg), (other, _) = await new_people(s, 2)
    return await connect_as(rs, lg), other


async def _close_code_of(rs: RunningServer, frames: list[bytes], *, authenticated_with: str | None = None) -> int:
    raw = await RawSocket.open(rs.port)
    try:
        if authenticated_with is not None:
            hello = json.dumps({"type": "hello", "id": "h", "v": 1, "token": authenticated_with}).encode()
            raw.send(frame(TEXT, hello))
            opcode, payload = await asyncio.wait_for(raw.read_frame(), 5)
            assert opcode == TEXT and json.loads(payload)["type"] == "ok", payload
        for f in frames:
            raw.send(f)
        return await raw.close_code(timeout=1.0)  # the bar: closed within 1 s
    finally:
        raw.abort()


@pytest.mark.parametrize("case", list(S17) + list(S18))
async def test_malformed_or_huge_frame_gets_the_close_code_of_the_bar(
    sqlite_server: RunningServer, server_log: LogRecords, case: str
) -> None:
    frames, expected = {**S17, **S18}[case]
    bystander, other = await _bystander(sqlite_server)
    _, lg = await new_person(sqlite_server.services_obj)  # type: ignore[attr-defined]
    token = (await login(sqlite_server.http, lg))["access_token"]
    # Before the hello and after it: the frame layer answers the same either way.
    assert await _close_code_of(sqlite_server, frames) == expected, case
    assert await _close_code_of(sqlite_server, frames, authenticated_with=token) == expected, case
    assert server_log.errors() == [], case
    assert (await bystander.send_message(other, "still here"))["type"] == "ok"
    assert bystander.closed is None
    await bystander.close()


async def test_deflate_offer_is_declined_so_a_compressed_frame_is_a_protocol_error(
    sqlite_server: RunningServer,
) -> None:
    raw = await RawSocket.open(
        sqlite_server.port, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    )
    try:
        assert "sec-websocket-extensions" not in raw.headers  # S18 (d): deflate off
        # The bomb: 1 MiB of zeros deflated to ~1 KiB, sent with RSV1 as if compression were on.
        import zlib

        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        bomb = c.compress(b"\0" * (1 << 20)) + c.flush(zlib.Z_SYNC_FLUSH)
        assert len(bomb) < 2048
        raw.send(frame(TEXT, bomb, rsv=0b100))
        assert await raw.close_code(timeout=1.0) == 1002
    finally:
        raw.abort()


async def test_huge_frames_leave_memory_bounded(sqlite_server: RunningServer) -> None:
    """S18: 20 attempts of each huge case; the process grows by at most 1 MiB per attempt."""
    for frames, _ in S18.values():  # warm up: first-use allocations are not growth
        await _close_code_of(sqlite_server, frames)
    before = rss_bytes()
    attempts = 0
    for _ in range(20):
        for frames, expected in S18.values():
            assert await _close_code_of(sqlite_server, frames) == expected
            attempts += 1
    grown = rss_bytes() - before
    print(f"\nS18: {attempts} huge-frame attempts, RSS {before >> 20} MiB → +{grown / 2**20:.1f} MiB")
    assert grown <= attempts * (1 << 20)


async def test_ping_flood_is_answered_and_bounded(sqlite_server: RunningServer, server_log: LogRecords) -> None:
    """S17: 10,000 pings in about a second; every one answered, RSS within 5 MB, others unaffected."""
    bystander, other = await _bystander(sqlite_server)
    raw = await RawSocket.open(sqlite_server.port)
    ping = frame(PING, b"p" * 16)
    before = rss_bytes()
    pongs = 0

    async def read_pongs() -> None:
        nonlocal pongs
        while pongs < 10_000:
            opcode, _ = await raw.read_frame()
            pongs += opcode == 0xA

    reader = asyncio.create_task(read_pongs())
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(100):  # 100 bursts of 100, paced to 10,000/s
        raw.send(ping * 100)
        await raw.writer.drain()
        if (ahead := t0 + (i + 1) / 100 - loop.time()) > 0:
            await asyncio.sleep(ahead)
    await asyncio.wait_for(reader, 30)
    grown = rss_bytes() - before
    flood_s = loop.time() - t0
    reply = await bystander.send_message(other, "during the flood's tail")
    print(f"\nS17: 10,000 pings answered in {flood_s:.2f} s, RSS +{grown / 2**20:.1f} MiB")
    assert reply["type"] == "ok"
    assert grown <= 5 * (1 << 20)
    assert server_log.errors() == []
    raw.abort()
    await bystander.close()
