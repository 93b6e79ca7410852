"""Walk the closed loop with real clients: report → task → accept → resolve with photo → verify → closed.

Usage (against a running server whose people already hold the positions)::

    .venv/bin/python scripts/demo_loop.py --url http://127.0.0.1:8000 \\
        --reporter LOGIN --owner LOGIN [--password PW] [--category river_litter]

``--reporter`` holds a grid-level position (专职网格员), ``--owner`` holds the
position the category routes the report to (for 河道垃圾 the 河长 of the
reporter's village). Both sign in over REST, the owner listens on the
WebSocket, and every step is printed with the time it took. ``run`` is the
same walk as a coroutine (tests/tasks/test_api.py drives it).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import struct
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

__all__ = ["LoopResult", "png", "run"]


def png(seed: int = 0, size: int = 16) -> bytes:
    """A small valid PNG (distinct per ``seed``), standing in for a phone photo."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes((seed + x + y) % 256 for x in range(size * 3)) for y in range(size))
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@dataclass
class LoopResult:
    report_id: int = 0
    task_id: int = 0
    steps: list[tuple[str, float]] = field(default_factory=list)
    owner_events: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


async def _token(h: httpx.AsyncClient, login: str, password: str) -> str:
    r = await h.post("/api/v1/auth/token", json={"grant_type": "password", "login": login, "password": password})
    r.raise_for_status()
    return str(r.json()["access_token"])


def _ok(r: httpx.Response) -> dict[str, Any]:
    if r.status_code >= 400:
        raise RuntimeError(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}")
    return r.json()  # type: ignore[no-any-return]


async def _upload(h: httpx.AsyncClient, auth: dict[str, str], data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    headers = {**auth, "Content-Type": "image/png", "X-Content-SHA256": digest}
    _ok(await h.post("/api/v1/uploads", content=data, headers=headers))
    return digest


async def _position(h: httpx.AsyncClient, auth: dict[str, str], role_keys: tuple[str, ...]) -> int:
    mine = _ok(await h.get("/api/v1/me/positions", headers=auth))["positions"]
    for p in mine:
        if p["role_key"] in role_keys:
            return int(p["id"])
    raise RuntimeError(f"none of {role_keys} among the person's positions")


async def _next_task_event(ws: Any, task_id: int, timeout: float) -> dict[str, Any]:
    """The owner's next ``task.*`` event about ``task_id``, passing over any other frame.

    Waits for that event, not for a fixed time: it returns as soon as the event
    arrives, and ``timeout`` only bounds how long a broken server can hang the walk.
    """
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            raw = await asyncio.wait_for(ws.recv(), left)
        except TimeoutError:
            break
        frame = json.loads(raw)
        if frame.get("type") == "event" and str(frame.get("kind", "")).startswith("task."):
            if frame["data"]["task"]["task_id"] == task_id:
                return dict(frame)
    raise RuntimeError(f"the owner got no task.* event for task {task_id} within {timeout:g} s")


async def run(
    url: str,
    reporter: str,
    owner: str,
    password: str,
    *,
    category: str = "river_litter",
    say: Any = print,
    timeout: float = 10.0,
) -> LoopResult:
    """The whole loop; raises on any step that does not do what the loop needs.

    ``timeout``: the most seconds one request or one awaited event may take (a
    test passes its scaled deadline, ``tests.waiting.scaled``, so a loaded machine
    widens it with every other test deadline).
    """
    res = LoopResult()
    t0 = time.perf_counter()

    def step(name: str) -> None:
        res.steps.append((name, time.perf_counter() - t0))
        say(f"{time.perf_counter() - t0:7.3f}s  {name}")

    ws_url = url.replace("http", "ws", 1) + "/ws"
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as h:
        rep_auth = {"Authorization": f"Bearer {await _token(h, reporter, password)}"}
        own_token = await _token(h, owner, password)
        own_auth = {"Authorization": f"Bearer {own_token}"}
        grid_pos = await _position(h, rep_auth, ("grid_worker", "grid_chief", "grid_volunteer"))
        async with websockets.connect(ws_url, max_size=2**20) as ws:
            await ws.send(json.dumps({"type": "hello", "v": 1, "token": own_token, "id": "h"}))
            hello = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            assert hello["type"] == "ok", hello
            step("owner connected over WebSocket")
            photo = await _upload(h, rep_auth, png(1))
            step("reporter uploaded a photo")
            report = _ok(
                await h.post(
                    "/api/v1/reports",
                    headers=rep_auth,
                    json={
                        "as_position": grid_pos, "client_msg_id": f"demo-{time.time_ns()}", "category": category,
                        "text": "河道里漂着一片垃圾，需要清理", "location": {"lat": 28.9701, "lon": 118.8593},
                        "photos": [photo],
                    },
                )
            )  # fmt: skip
            res.report_id, res.task_id = int(report["report_id"]), int(report["task_id"])
            step(f"report {res.report_id} filed; task {res.task_id} created")
            ev = await _next_task_event(ws, res.task_id, timeout)
            res.owner_events.append(ev)
            task = ev["data"]["task"]
            owner_pos = int(task["owner_position_id"])
            step(f"owner notified in real time ({ev['kind']}, owner position {owner_pos})")
            version = int(task["version"])

            async def act(who: dict[str, str], pos: int, action: str, **extra: Any) -> dict[str, Any]:
                nonlocal version
                body = {"as_position": pos, "action": action, "version": version, **extra}
                t = _ok(await h.post(f"/api/v1/tasks/{res.task_id}/actions", headers=who, json=body))
                version = int(t["version"])
                res.owner_events.append(await _next_task_event(ws, res.task_id, timeout))
                step(f"{action} → {t['state']} (v{version})")
                return t

            await act(own_auth, owner_pos, "accept")
            fix = await _upload(h, own_auth, png(2))
            await act(own_auth, owner_pos, "resolve", comment="已清理完毕", attachments=[fix])
            await act(rep_auth, grid_pos, "verify", comment="现场核实")
            await act(rep_auth, grid_pos, "close")
        res.final = _ok(await h.get(f"/api/v1/tasks/{res.task_id}", headers=rep_auth))
        r = await h.get(f"/api/v1/uploads/{fix}", headers=rep_auth)
        if r.status_code != 200 or hashlib.sha256(r.content).hexdigest() != fix:
            raise RuntimeError(f"the reporter cannot see the resolution photo: {r.status_code}")
        step("reporter sees the resolution photo")
        unit = report["grid_unit_id"]
        res.stats = _ok(await h.get("/api/v1/tasks/stats", headers=own_auth, params={"unit": f"#{unit}"}))
    history = " → ".join(e["action"] for e in res.final["history"])
    say(f"history: {history}")
    say(f"stats for the grid: {json.dumps(res.stats['total'], ensure_ascii=False)}")
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--reporter", required=True, help="login of a grid worker")
    p.add_argument("--owner", required=True, help="login of the holder of the routed position")
    p.add_argument("--password", default="")
    p.add_argument("--category", default="river_litter")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds one request or awaited event may take")
    a = p.parse_args(argv)
    res = asyncio.run(run(a.url, a.reporter, a.owner, a.password, category=a.category, timeout=a.timeout))
    return 0 if res.final.get("state") == "closed" else 1


if __name__ == "__main__":
    sys.exit(main())
