"""S16: the global WebSocket cap (503), ignoring ``rate_limited`` (1008), a bad-token handshake flood.

(a), the per-person cap, is ``tests/test_limits.py`` (one process) and the
cross-process slot test. The flood runs against a real ``zzd serve``
process, so the flood's client work does not share the server's event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import statistics
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.http11 import Response

from tests.client import Client, connect_as, login, new_people, new_person
from tests.conftest import LogRecords, RunningServer, make_settings, serving
from tests.procs import zzd_processes
from tests.rawws import RawSocket, frame
from tests.test_reconnect_storm_s9 import _people_with_tokens
from tests.waiting import wait_until
from zzd.config import Settings
from zzd.gateway.logfilter import PER_HANDSHAKE

FLOOD_RATE = 500  # handshakes per second (the bar's rate)
FLOOD_S = float(os.environ.get("ZZD_S16_FLOOD_S", "5"))  # CI slice; the bar's scale: ZZD_S16_FLOOD_S=20
BYSTANDERS = 20


@asynccontextmanager
async def _serving_raw(settings: Settings) -> AsyncIterator[tuple[RunningServer, list[RawSocket]]]:
    """The served app and a list for the test's raw sockets, each aborted before the server stops."""
    raws: list[RawSocket] = []
    async with serving(settings) as rs:
        try:
            yield rs, raws
        finally:
            for r in raws:
                r.abort()


async def _shed(rs: RunningServer) -> Response:
    """A WebSocket handshake refused with 503 ``unavailable``; its response, for the Retry-After."""
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(rs.ws)
    response = refused.value.response
    assert response.status_code == 503
    assert json.loads(response.body)["error"]["code"] == "unavailable"
    return response


async def test_websockets_above_the_global_limit_get_503_at_the_handshake(db_url: str, server_log: LogRecords) -> None:
    async with _serving_raw(make_settings(db_url, limit_concurrency=10)) as (rs, raws):
        # Sockets count from the upgrade, before any hello: a flood of idle sockets hits the cap too.
        raws += [await RawSocket.open(rs.port) for _ in range(10)]
        assert (await _shed(rs)).headers["Retry-After"] == "5"
        async with httpx.AsyncClient() as http:  # HTTP is not refused by the WebSocket cap
            assert (await http.get(f"{rs.http}/healthz")).status_code == 200
        raws.pop().abort()
        s = rs.services_obj  # type: ignore[attr-defined]
        assert s.metrics.ws_refused.labels("full")._value.get() == 1
        await wait_until(lambda: s.hub.open_sockets < 10, what="the server to count the aborted socket out")
        _, lg = await new_person(s)
        c = await connect_as(rs, lg)  # room again
        assert c.hello["person_id"]
        await c.close()
        # A connect cancelled by the aborted socket is logged at INFO (zzd/gateway/logfilter.py).
        assert server_log.errors() == []


async def test_handshakes_beyond_the_pending_hellos_are_shed_with_503(db_url: str, server_log: LogRecords) -> None:
    """S9's "shed, not stall": with ``max_pending_hellos`` hellos unanswered, the next upgrade gets 503 at once.

    Neither the refusals nor the accepted handshakes write a log line each (a storm's CPU went to them).
    """
    uvicorn_log = logging.getLogger("uvicorn.error")
    level = uvicorn_log.level
    async with _serving_raw(make_settings(db_url, max_pending_hellos=2)) as (rs, raws):
        # As `zzd serve` runs by default (the test server runs at WARNING, and uvicorn's logging
        # set-up replaced the handlers its loggers had when the server started).
        uvicorn_log.setLevel(logging.INFO)
        uvicorn_log.addHandler(server_log)
        try:
            s = rs.services_obj  # type: ignore[attr-defined]
            _, lg = await new_person(s)
            token = (await login(rs.http, lg))["access_token"]
            raws += [await RawSocket.open(rs.port) for _ in range(2)]  # upgraded, hello not sent yet
            assert (await _shed(rs)).headers["Retry-After"] == "1"  # busy, not full: come back soon
            # One pending socket's hello is answered: it stops counting, and a new handshake is admitted.
            hello = json.dumps({"type": "hello", "id": "h", "v": 1, "token": token}).encode()
            raws[0].send(frame(0x1, hello))
            opcode, payload = await raws[0].read_frame()
            assert opcode == 0x1 and json.loads(payload)["type"] == "ok", payload
            await wait_until(lambda: s.hub.pending_hellos == 1, what="the answered hello to stop counting")
            c = await Client.connect(rs.ws, token)
            assert s.hub.pending_hellos == 1 and s.hub.open_sockets == 3
            await c.close()
            raws.pop().abort()  # a pending socket that goes away frees its place too
            await wait_until(lambda: s.hub.pending_hellos == 0, what="the aborted socket to stop counting")
            per_handshake = PER_HANDSHAKE | {"ASGI callable returned without completing handshake."}
            assert [r.getMessage() for r in server_log.records if r.msg in per_handshake] == []
            assert s.metrics.ws_refused.labels("busy")._value.get() == 1  # counted instead
        finally:
            uvicorn_log.setLevel(level)
            uvicorn_log.removeHandler(server_log)


async def test_ignoring_rate_limited_closes_1008_and_nothing_acked_is_lost(db_url: str) -> None:
    async with serving(make_settings(db_url, send_rate_per_minute=5, send_abuse_after=3)) as rs:
        s = rs.services_obj  # type: ignore[attr-defined]
        (_, lg), (b_id, _) = await new_people(s, 2)
        token = (await login(rs.http, lg))["access_token"]
        a = await Client.connect(rs.ws, token)
        acked = []
        for i in range(5):
            acked.append((await a.send_message(b_id, f"m{i}", client_msg_id=f"m{i}"))["data"]["message_id"])
        refused = [await a.send_message(b_id, f"x{i}", client_msg_id=f"x{i}") for i in range(3)]
        assert [r["code"] for r in refused] == ["rate_limited"] * 3  # each refusal is answered
        code, reason = await a.wait_closed()
        assert (code, reason) == (1008, "rate limit ignored")
        b = await Client.connect(rs.ws, token)  # reconnecting is allowed; the history holds what was acked
        hist = await b.request({"type": "history", "with_person": b_id})
        assert sorted(m["id"] for m in hist["data"]["messages"]) == sorted(acked)
        await b.close()


def _p99(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100)[98]


@pytest.mark.slow
@pytest.mark.parametrize("where", ["hello", "handshake"])
async def test_bad_token_handshake_flood_is_refused_and_others_keep_working(
    sqlite_template: Path, tmp_path: Path, where: str
) -> None:
    """The forged token in the hello (upgraded, then closed 4401) or in the upgrade's header (401, no socket)."""
    shutil.copy(sqlite_template, tmp_path / "zzd.db")
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'zzd.db'}"
    people = await _people_with_tokens(db_url, BYSTANDERS)
    async with zzd_processes(db_url, "memory://", 1) as (server,):
        # The bystanders ping from a process of their own (tests/bystanders.py says why).
        bystanders = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.bystanders", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert bystanders.stdin is not None and bystanders.stdout is not None
        bystanders.stdin.write(json.dumps({"url": server.ws, "tokens": [tok for _, tok in people]}).encode() + b"\n")
        ready = await asyncio.wait_for(bystanders.stdout.readline(), 60)
        assert ready == b"ready\n", ready
        await asyncio.sleep(FLOOD_S)  # the baseline window: as long as the flood
        flood = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.flood", "--port", str(server.port), "--rate", str(FLOOD_RATE),
            "--seconds", str(FLOOD_S), *(["--at-handshake"] if where == "handshake" else []),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(flood.communicate(), 120)
        result = json.loads(out)
        outcomes, handshakes, flood_s = result["outcomes"], result["handshakes"], result["seconds"]
        pinged, _ = await asyncio.wait_for(bystanders.communicate(b"stop\n"), 60)
        report = json.loads(pinged)
        baseline = [rtt for sent, rtt in report["samples"] if sent < result["started"]]
        during = [rtt for sent, rtt in report["samples"] if result["started"] <= sent <= result["ended"]]
        print(
            f"\nS16d ({where}): {handshakes} bad-token handshakes in {flood_s:.1f} s "
            f"({handshakes / flood_s:.0f}/s): {outcomes}; "
            f"bystanders' ping p99 {_p99(baseline) * 1000:.1f} ms before, {_p99(during) * 1000:.1f} ms during "
            f"({_p99(during) / _p99(baseline):.2f}x), {len(baseline)} and {len(during)} round trips"
        )
        if where == "handshake":  # the bar's "0 accepted upgrades": every one refused with 401
            assert outcomes == {"401": handshakes}, outcomes
        else:
            # Every one refused at the hello (4401), or, while ZZD_MAX_PENDING_HELLOS hellos are in progress,
            # shed at the handshake with 503 (S9: shed, not stall): none authenticated, none left unanswered.
            assert set(outcomes) <= {"4401", "503"} and sum(outcomes.values()) == handshakes, outcomes
            assert outcomes.get("4401", 0) > 0
        assert report["closed"] == [] and bystanders.returncode == 0  # no bystander closed
        assert not any("Traceback" in line for line in server.log)
