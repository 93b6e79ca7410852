"""Record real REST exchanges of the test servers as documentation examples (opt-in).

With ``ZZD_RECORD_EXAMPLES=<file>`` set, every test server appends one JSON line
per ``/api/v1`` exchange: method, route template, query, request body, status
and answer. ``scripts/api_docs.py --merge <file>`` picks one per operation
into ``docs/api/examples.json``, from which docs/api/ is rendered. Off by
default: nothing is recorded in ordinary runs.
"""

from __future__ import annotations

import json
import os
from typing import Any

from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["maybe_record"]


def maybe_record(app: ASGIApp, routes: list[Any]) -> ASGIApp:
    """``app`` wrapped in a recorder when ``ZZD_RECORD_EXAMPLES`` names a file, else ``app`` itself."""
    target = os.environ.get("ZZD_RECORD_EXAMPLES")
    if not target:
        return app
    http_routes = [r for r in routes if isinstance(r, Route)]

    async def recorder(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/v1"):
            await app(scope, receive, send)
            return
        template = next((r.path for r in http_routes if r.matches(scope)[0] == Match.FULL), None)
        sent: dict[str, Any] = {"body": b""}
        got: list[bytes] = []

        async def rcv() -> Message:
            msg = await receive()
            if msg["type"] == "http.request":
                got.append(msg.get("body", b""))
            return msg

        async def snd(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                sent["status"] = msg["status"]
                sent["type"] = dict(msg.get("headers", [])).get(b"content-type", b"").decode()
            elif msg["type"] == "http.response.body":
                sent["body"] += msg.get("body", b"")
            await send(msg)

        await app(scope, rcv, snd)
        if template is None or not sent.get("type", "").startswith("application/json"):
            return
        raw = b"".join(got)
        headers = {k.decode().lower(): v.decode(errors="replace") for k, v in scope.get("headers", [])}
        upload: dict[str, Any] | None = None
        try:
            request = json.loads(raw) if raw else None
        except ValueError:
            if not headers.get("content-type", "").startswith("image/"):
                return
            # a raw upload: its headers and size stand for the bytes (docs/uploads.md)
            request = None
            upload = {
                "content_type": headers["content-type"],
                "bytes": len(raw),
                "sha256": headers.get("x-content-sha256", ""),
            }
        line = {
            "method": scope["method"],
            "path": template,
            "url": scope["path"],
            "query": scope.get("query_string", b"").decode(errors="replace"),
            "request": request,
            "status": sent.get("status"),
            "response": json.loads(sent["body"]),
            **({"upload": upload} if upload else {}),
        }
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")

    return recorder
