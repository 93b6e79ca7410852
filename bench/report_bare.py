"""Baseline for the report loop: upload, report and notification with no domain logic at all.

Same stack as zzd (uvicorn + Starlette, WebSocket ``websockets-sansio``,
uvloop) and the same shape of work across two processes, minus everything of
ZZD's own:
- ``POST /api/v1/uploads``: bench/upload_bare.py's handler (hash, write,
  fsync, rename; no auth, no checks, no database);
- ``POST /api/v1/reports``: parse the JSON, publish ``{to, task_id}`` on one
  Redis channel, answer 201 (no auth, routing, database or outbox; the body
  names the assignee and the task id because nothing here routes);
- ``/ws``: ``hello`` → ``ok`` (person id read from the unverified token);
  every process subscribes to the channel and pushes a ``task.created``-shaped
  event, padded to ``--frame`` bytes, to the assignee if connected here.

Run:  .venv/bin/python bench/report_bare.py --port 9000 --dir /tmp/up --channel c --frame 1200
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from bare_relay import person_of
from upload_bare import make_app as upload_app

REDIS_URL = "redis://127.0.0.1:6379/0"


def make_app(root: Path, channel: str, frame_len: int) -> Starlette:
    clients: dict[int, WebSocket] = {}
    redis = aioredis.from_url(REDIS_URL)
    inflight: set[asyncio.Task[None]] = set()

    def frame(task_id: int) -> str:
        data = {"task": {"task_id": task_id, "owner_position_id": 0, "state": "created"}, "pad": ""}
        base = json.dumps({"type": "event", "seq": 1, "kind": "task.created", "data": data})
        data["pad"] = "x" * max(0, frame_len - len(base))
        return json.dumps({"type": "event", "seq": 1, "kind": "task.created", "data": data})

    async def push(ws: WebSocket, text: str) -> None:
        with contextlib.suppress(Exception):
            await ws.send_text(text)

    async def subscriber() -> None:
        pubsub = redis.pubsub()
        await pubsub.subscribe(channel)
        async for msg in pubsub.listen():
            if msg.get("type") != "message":
                continue
            body = json.loads(msg["data"])
            ws = clients.get(int(body["to"]))
            if ws is not None:
                t = asyncio.create_task(push(ws, frame(int(body["task_id"]))))
                inflight.add(t)
                t.add_done_callback(inflight.discard)

    async def report(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        await redis.publish(channel, json.dumps({"to": body["to"], "task_id": body["task_id"]}))
        return JSONResponse({"report_id": body["task_id"], "task_id": body["task_id"]}, status_code=201)

    async def ws_endpoint(ws: WebSocket) -> None:
        await ws.accept()
        hello = json.loads(await ws.receive_text())
        me = person_of(hello["token"])
        clients[me] = ws
        await ws.send_text(json.dumps({"type": "ok", "ref": hello.get("id")}))
        try:
            while True:
                await ws.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            if clients.get(me) is ws:
                del clients[me]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(subscriber())
        yield
        task.cancel()

    routes = [*upload_app(root).routes, Route("/api/v1/reports", report, methods=["POST"])]
    return Starlette(routes=[*routes, WebSocketRoute("/ws", ws_endpoint)], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--frame", type=int, default=1200, help="bytes of the pushed event (zzd's task.created size)")
    args = parser.parse_args()
    uvicorn.run(
        make_app(args.dir, args.channel, args.frame),
        host="127.0.0.1",
        port=args.port,
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        backlog=2048,
        access_log=False,
        log_level="warning",
        loop="uvloop",
    )


if __name__ == "__main__":
    main()
