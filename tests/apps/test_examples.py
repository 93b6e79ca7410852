"""The two example apps, each started with its one command against a served ZZD, end to end over real
HTTP and WebSocket; and the SDK's webhook verification against forged, stale and replayed requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from apps.sdk import AppClient, WebhookError, verify_webhook
from tests.apps.helpers import VILLAGE, admin_token, file_report, grid_worker, make_app
from tests.conftest import RunningServer, free_port
from tests.org_server import seat
from tests.waiting import scaled, wait_until


async def _run(*args: str) -> asyncio.subprocess.Process:
    """The example as its user runs it: without the suite's asyncio debug mode, whose slow-callback
    warnings (on a loaded machine) would be mixed into the JSON lines the example prints."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
    )


@pytest.mark.slow  # multi-process: the example runs as its own Python process, as its user runs it
async def test_meeting_checkin_counts_arrivals_from_the_notice_progress(platform_server: RunningServer) -> None:
    rs = platform_server
    s = rs.services_obj  # type: ignore[attr-defined]
    admin = await admin_token(rs, None)
    made = await make_app(rs, admin, name="会议签到", scopes=["notice:send"])
    a, *_ = await seat(rs, VILLAGE, "village_secretary")
    b, *_ = await seat(rs, "990101001002", "village_secretary")
    stranger = (await s.persons.create("路人")).id
    proc = await _run("apps.examples.meeting_checkin", "--server", rs.http, "--client-id", made["client_id"],
                      "--client-secret", made["client_secret"], "--selector", "village_secretary@990101/**",
                      "--title", "明早九点开会", "--attendee", str(a), "--attendee", str(stranger),
                      "--attendee", str(b))  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), scaled(60))
    assert proc.returncode == 0, out.decode()
    steps = [json.loads(line) for line in out.decode().splitlines()]
    assert steps[0]["step"] == "notified"
    assert [(x["step"], x["checked_in"]) for x in steps[1:]] == [("checked_in", 1), ("not_found", 1), ("checked_in", 2)]
    assert steps[-1]["invited"] >= 2


@pytest.mark.slow  # multi-process: the example runs as its own Python process, as its user runs it
async def test_the_river_chief_platform_records_accepts_and_resolves_with_a_photo(
    platform_server: RunningServer, tmp_path: Path
) -> None:
    rs = platform_server
    s = rs.services_obj  # type: ignore[attr-defined]
    admin = await admin_token(rs, None)
    made = await make_app(rs, admin, name="河长制平台",
                          scopes=["events:report.filed", "report:read", "task:act"])  # fmt: skip
    port, records = free_port(), tmp_path / "river.jsonl"
    proc = await _run("apps.examples.river_chief", "--server", rs.http, "--client-id", made["client_id"],
                      "--client-secret", made["client_secret"], "--listen", f"127.0.0.1:{port}",
                      "--records", str(records))  # fmt: skip
    try:
        assert proc.stdout is not None
        first = json.loads(await asyncio.wait_for(proc.stdout.readline(), scaled(30)))
        assert first["listening"] == f"127.0.0.1:{port}"
        worker = await grid_worker(rs)
        river = await file_report(rs, worker, "r-river")
        await file_report(rs, worker, "r-building", category="illegal_building")  # not the platform's category

        async def resolved() -> bool:
            t = await s.tasks.get(worker[0], river["task_id"])
            return bool(t["state"] == "resolved")

        await wait_until(resolved, timeout=30, what="the platform resolving the task")
        lines = [json.loads(x) for x in records.read_text("utf-8").splitlines()]
        assert [x["report_id"] for x in lines] == [river["report_id"]]  # its own record, once
        t = await s.tasks.get(worker[0], river["task_id"])
        last = t["history"][-1] if "history" in t else t["events"][-1]
        assert last["attachments"] and last["actor"]["person_id"] == made["bot_person_id"]
        # the platform's receiver refuses unsigned and forged requests
        async with httpx.AsyncClient() as h:
            body = json.dumps({"id": "x", "type": "report.filed", "data": {}})
            fake = {"webhook-id": "x", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,AAAA"}
            r = await h.post(f"http://127.0.0.1:{port}/zzd/events", content=body, headers=fake)
            assert r.status_code == 400
            r = await h.post(f"http://127.0.0.1:{port}/zzd/events", content=body)
            assert r.status_code == 400
    finally:
        proc.terminate()
        await proc.wait()


def _signed(secret: str, body: str, at: float, msg_id: str = "evt-1") -> dict[str, str]:
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(at, UTC)
    sig = Webhook(secret).sign(msg_id, when, body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at)), "webhook-signature": sig}


def test_webhook_verification_refuses_forged_stale_and_future_requests() -> None:
    secret, other = "whsec_" + "Zm9vYmFyYmF6cXV4" * 2, "whsec_" + "cXV4YmF6YmFyZm9v" * 2
    body = json.dumps({"id": "evt-1", "type": "report.filed", "timestamp": "2026-12-02T09:00:00Z", "data": {}})
    now = time.time()
    assert verify_webhook(secret, body.encode(), _signed(secret, body, now))["id"] == "evt-1"
    assert verify_webhook([other, secret], body.encode(), _signed(secret, body, now))["type"] == "report.filed"
    cases: list[tuple[str, dict[str, Any], bytes]] = [
        ("wrong secret", _signed(other, body, now), body.encode()),
        ("altered body", _signed(secret, body, now), body.replace("report", "rep0rt").encode()),
        ("stale (replayed 10 minutes later)", _signed(secret, body, now - 600), body.encode()),
        ("from the future", _signed(secret, body, now + 600), body.encode()),
        ("id swapped", {**_signed(secret, body, now), "webhook-id": "evt-2"}, body.encode()),
        ("no headers", {}, body.encode()),
    ]
    for what, headers, raw in cases:
        with pytest.raises(WebhookError, match=r".") as refused:
            verify_webhook(secret, raw, headers)
        assert refused.type is WebhookError, what


async def test_the_sdk_refreshes_tokens_and_consumes_the_stream(platform_server: RunningServer) -> None:
    rs = platform_server
    admin = await admin_token(rs, None)
    made = await make_app(rs, admin, name="流式平台", scopes=["events:report.filed"])
    async with AppClient(rs.http, made["client_id"], made["client_secret"]) as zzd:
        await zzd.subscribe(["report.filed"])
        first_token = await zzd.token()
        assert (await zzd.me())["name"] == "流式平台"
        await zzd.token(fresh=True)
        assert await zzd.token() != first_token
        report = await file_report(rs, await grid_worker(rs), "sdk-1")
        got: list[dict[str, Any]] = []

        async def consume() -> None:
            async with contextlib.aclosing(zzd.stream()) as events:  # closes the socket on leaving
                async for ev in events:
                    got.append(ev.event)
                    await ev.ack()
                    return

        await asyncio.wait_for(consume(), scaled(20))
        assert got[0]["data"]["report_id"] == report["report_id"]


async def test_the_sdk_reads_units_by_id_and_pages_the_delivery_log(platform_server: RunningServer) -> None:
    """What docs/apps.md and docs/webhooks.md offer, through the SDK's typed methods: a unit by code,
    ``#id`` or id (a bare ``#`` in a URL starts its fragment), and both logs paged back by ``before``."""
    rs = platform_server
    admin = await admin_token(rs, None)
    made = await make_app(rs, admin, name="分页平台", scopes=["events:report.filed", "org:read"])
    async with AppClient(rs.http, made["client_id"], made["client_secret"]) as zzd:
        by_code = await zzd.unit(VILLAGE)
        assert (await zzd.unit(f"#{by_code['id']}"))["code"] == VILLAGE
        assert (await zzd.unit(by_code["id"]))["code"] == VILLAGE
        sub = await zzd.subscribe(["report.filed"])
        for key in ("page-1", "page-2", "page-3"):
            await file_report(rs, await grid_worker(rs), key)
        got: list[Any] = []

        async def consume() -> None:
            async with contextlib.aclosing(zzd.stream()) as events:
                async for ev in events:
                    got.append(ev)
                    await ev.ack()
                    if len(got) == 3:
                        await asyncio.sleep(0.1)  # the acknowledgements leave
                        return

        await asyncio.wait_for(consume(), scaled(20))
        newest = await zzd.deliveries(sub["id"], 2)
        rest = await zzd.deliveries(sub["id"], 2, before=newest[-1]["delivery_id"])
        assert len(newest) == 2 and len(rest) == 1
        assert {d["delivery_id"] for d in newest + rest} == {ev.delivery_id for ev in got}
        log = await zzd.attempts(sub["id"], 2)
        older = await zzd.attempts(sub["id"], 2, before=log[-1]["attempt_id"])
        assert len(log) + len(older) == 3


async def test_the_sdk_manages_subscriptions_and_downloads_report_photos(platform_server: RunningServer) -> None:
    """The SDK's typed calls for what docs/webhooks.md and docs/apps.md offer beyond the basics:
    a subscription read, disabled and enabled, its signing secret rotated, a report's photo fetched."""
    from apps.sdk import ZzdApiError
    from tests.apps.helpers import file_report_with_photo
    from tests.apps.receiver import receiver

    rs = platform_server
    s = rs.services_obj  # type: ignore[attr-defined]
    admin = await admin_token(rs, None)
    made = await make_app(rs, admin, name="照片平台", scopes=["events:report.filed", "report:read"])
    async with receiver() as rec, AppClient(rs.http, made["client_id"], made["client_secret"]) as zzd:
        sub = await zzd.subscribe(["report.filed"], url=rec.base + "/p")
        assert (await zzd.set_subscription_status(sub["id"], "disabled"))["status"] == "disabled"
        assert (await zzd.subscription(sub["id"]))["status"] == "disabled"
        assert (await zzd.set_subscription_status(sub["id"], "active"))["status"] == "active"
        rotated = await zzd.rotate_signing_secret(sub["id"], overlap_seconds=60)
        assert rotated["secret"].startswith("whsec_") and rotated["secret"] != sub["secret"]
        photo, digest = await file_report_with_photo(rs, "sdk-photo")
        assert await zzd.download(digest) == photo
        with pytest.raises(ZzdApiError) as missing:
            await zzd.download("0" * 64)
        assert (missing.value.status, missing.value.code) == (404, "not_found")
        await s.delivery.idle()
