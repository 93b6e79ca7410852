"""The webhook receivers of ``bench/apps_fanout.py``, in a process of their own.

Run by the orchestrator: ``python bench/apps_receivers.py --port N``. Why a
separate process: the receivers answer ~200 requests/s in the full run; in the
orchestrator's event loop (beside the report filing, the chat client and the
stream consumers) they were the bottleneck of the whole measurement, and of
its bare baseline too (20 posts/s, p50 6.4 s on a loaded machine).

``POST /appN`` records the first arrival time (``time.time()``, the same
clock as the orchestrator's) of each report id; ``/app0`` answers after 2 s,
``/app1`` fails every other request. ``POST /bare/…`` (the baseline) only
answers. ``GET /stats`` returns ``{"first": {path: {report_id: t}}, "count":
{path: n}}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import defaultdict

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SLOW, FLAKY = "/app0", "/app1"

first: dict[str, dict[int, float]] = defaultdict(dict)
count: dict[str, int] = defaultdict(int)
flip = 0


async def hook(request: Request) -> Response:
    global flip
    at = time.time()
    path = request.url.path
    try:
        body = json.loads(await request.body())
    except ClientDisconnect:
        return Response(status_code=499)
    count[path] += 1
    if not path.startswith("/bare"):
        first[path].setdefault(int(body["data"]["report_id"]), at)
    if path == SLOW:
        await asyncio.sleep(2.0)
    if path == FLAKY:
        flip += 1
        if flip % 2:
            return Response(status_code=500)
    return Response(b"{}", media_type="application/json")


async def stats(_: Request) -> Response:
    return JSONResponse({"first": first, "count": count})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    app = Starlette(routes=[Route("/stats", stats, methods=["GET"]), Route("/{p:path}", hook, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="error", access_log=False, backlog=2048)


if __name__ == "__main__":
    main()
