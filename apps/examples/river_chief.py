"""河长制 — a river-chief platform.

It subscribes to ``report.filed`` for the river category with a signed
webhook, verifies every request (bad signatures and stale or replayed
timestamps get 400 and change nothing), keeps its own record of each report
(a JSON-lines file, one line per report, deduplicated by event id), then
handles the report's task through the bot API: accepts it, and resolves it
with a photo from the field.

Run against a local server (an app over the subtree with ``events:report.filed``,
``report:read`` and ``task:act``; the server must allow the listen address
as a webhook target, e.g. ``ZZD_WEBHOOK_ALLOWED_NETWORKS='["127.0.0.0/8"]'``)::

    python -m apps.examples.river_chief --server http://127.0.0.1:8000 \\
        --client-id zzdapp_… --client-secret zzdsec_… --listen 127.0.0.1:9100 --records river.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from apps.sdk import AppClient, WebhookError, ZzdApiError, verify_webhook

logger = logging.getLogger("river_chief")

__all__ = ["RiverChief", "main"]

#: Stands in for the field officer's photo (a JPEG by its first bytes).
JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"


class RiverChief:
    def __init__(self, zzd: AppClient, records: Path) -> None:
        self.zzd = zzd
        self.records = records
        self.secret = ""
        self.seen: set[str] = set()
        if records.exists():
            self.seen = {json.loads(line)["event_id"] for line in records.read_text("utf-8").splitlines() if line}
        self._work: set[asyncio.Task[None]] = set()

    async def subscribe(self, url: str) -> dict[str, Any]:
        sub = await self.zzd.subscribe(["report.filed"], url=url, filters={"report_category": ["river_litter"]})
        self.secret = str(sub["secret"])
        return sub

    async def receive(self, request: Request) -> JSONResponse:
        body = await request.body()
        try:
            event = verify_webhook(self.secret, body, dict(request.headers))
        except WebhookError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if event["id"] not in self.seen:  # a retry of something already recorded: just say yes again
            self.seen.add(event["id"])
            task = asyncio.create_task(self.handle(event))
            self._work.add(task)
            task.add_done_callback(self._work.discard)
        return JSONResponse({"ok": True})

    async def handle(self, event: dict[str, Any]) -> None:
        """Record the report, then accept and resolve its task with a photo."""
        data = event["data"]
        report = await self.zzd.report(int(data["report_id"]))
        record = {"event_id": event["id"], "report_id": report["report_id"], "text": report["text"],
                  "location": report["location"], "task_id": report["task_id"]}  # fmt: skip
        with self.records.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        try:
            task = await self.zzd.task(int(report["task_id"]))
            task = await self.zzd.act(task["task_id"], "accept", task["version"], comment="河长制平台已受理")
            digest = await self.upload_photo()
            await self.zzd.act(task["task_id"], "resolve", task["version"], comment="已打捞清理",
                               attachments=[digest])  # fmt: skip
        except ZzdApiError as exc:  # someone acted first (stale_version), or it is no longer ours
            logger.warning("report %s: task not handled: %s", report["report_id"], exc)

    async def upload_photo(self) -> str:
        photo = JPEG_HEAD + secrets.token_bytes(2048)
        token = await self.zzd.token()
        async with httpx.AsyncClient(base_url=self.zzd.base_url) as h:
            r = await h.post(
                "/api/v1/bot/uploads",
                content=photo,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg",
                         "X-Content-SHA256": hashlib.sha256(photo).hexdigest()},
            )  # fmt: skip
        r.raise_for_status()
        return str(r.json()["digest"])


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="河长制 river-chief platform (example app)")
    ap.add_argument("--server", default="http://127.0.0.1:8000")
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret", required=True)
    ap.add_argument("--listen", default="127.0.0.1:9100", help="host:port of this platform's webhook receiver")
    ap.add_argument("--records", default="river-reports.jsonl", type=Path)
    args = ap.parse_args(argv)
    host, _, port = args.listen.rpartition(":")

    async def go() -> None:
        async with AppClient(args.server, args.client_id, args.client_secret) as zzd:
            chief = RiverChief(zzd, args.records)
            ready = asyncio.Event()

            @asynccontextmanager
            async def lifespan(app: Starlette) -> AsyncIterator[None]:
                ready.set()  # listening: now the subscription can name this address
                yield

            app = Starlette(routes=[Route("/zzd/events", chief.receive, methods=["POST"])], lifespan=lifespan)
            server = uvicorn.Server(uvicorn.Config(app, host=host, port=int(port), log_level="warning"))
            serving = asyncio.create_task(server.serve())
            waiting = asyncio.create_task(ready.wait())
            await asyncio.wait([serving, waiting], return_when=asyncio.FIRST_COMPLETED)
            if serving.done():
                serving.result()  # it could not start: say why
            sub = await chief.subscribe(f"http://{args.listen}/zzd/events")
            print(json.dumps({"listening": args.listen, "subscription_id": sub["id"]}), flush=True)
            await serving

    asyncio.run(go())


if __name__ == "__main__":
    main()
