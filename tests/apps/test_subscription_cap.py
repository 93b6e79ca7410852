"""An app holds at most ZZD_APP_MAX_SUBSCRIPTIONS active subscriptions (docs/webhooks.md), on both
backends: one more, made or re-enabled, is 409 and stores nothing; disabled ones do not count; two
creates racing for the last place do not both get it; another app's count is its own."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from tests.apps.conftest import platform
from tests.apps.helpers import admin_token, app_token, make_app
from tests.conftest import RunningServer
from tests.org_server import auth

STREAM = {"mode": "stream", "event_types": ["report.filed"]}


async def _app_client(rs: RunningServer, name: str) -> httpx.AsyncClient:
    made = await make_app(rs, await admin_token(rs, None), name=name, scopes=["events:report.filed"])
    tok = (await app_token(rs, made["client_id"], made["client_secret"])).json()["access_token"]
    return httpx.AsyncClient(base_url=rs.http, headers=auth(tok))


async def _subs(h: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await h.get("/api/v1/bot/subscriptions")
    assert r.status_code == 200, r.text
    return r.json()["subscriptions"]  # type: ignore[no-any-return]


async def test_one_more_active_subscription_than_the_cap_is_refused(own_db_url: str, tmp_path: Path) -> None:
    async with platform(own_db_url, tmp_path, app_max_subscriptions=2) as rs:
        async with await _app_client(rs, "河长制平台") as h, await _app_client(rs, "会议签到") as other:
            first = (await h.post("/api/v1/bot/subscriptions", json=STREAM)).json()
            assert (await h.post("/api/v1/bot/subscriptions", json=STREAM)).status_code == 201
            r = await h.post("/api/v1/bot/subscriptions", json=STREAM)
            assert r.status_code == 409, r.text
            assert r.json()["error"]["code"] == "conflict"
            assert r.json()["error"]["data"] == {"limit": 2, "active": 2}
            assert len(await _subs(h)) == 2  # nothing stored
            # another app counts its own
            assert (await other.post("/api/v1/bot/subscriptions", json=STREAM)).status_code == 201

            # a disabled one does not count; re-enabling it when full is the same refusal
            r = await h.patch(f"/api/v1/bot/subscriptions/{first['id']}", json={"status": "disabled"})
            assert r.status_code == 200, r.text
            assert (await h.post("/api/v1/bot/subscriptions", json=STREAM)).status_code == 201
            r = await h.patch(f"/api/v1/bot/subscriptions/{first['id']}", json={"status": "active"})
            assert r.status_code == 409, r.text
            assert r.json()["error"]["data"] == {"limit": 2, "active": 2}
            states = sorted(s["status"] for s in await _subs(h))
            assert states == ["active", "active", "disabled"]
            # disabling an active one is always allowed, and an active one set active again is no new place
            some_active = next(s for s in await _subs(h) if s["status"] == "active")
            r = await h.patch(f"/api/v1/bot/subscriptions/{some_active['id']}", json={"status": "active"})
            assert r.status_code == 200, r.text


async def test_two_creates_racing_for_the_last_place_do_not_both_get_it(own_db_url: str, tmp_path: Path) -> None:
    async with platform(own_db_url, tmp_path, app_max_subscriptions=2) as rs:
        async with await _app_client(rs, "河长制平台") as h:
            assert (await h.post("/api/v1/bot/subscriptions", json=STREAM)).status_code == 201
            answers = await asyncio.gather(*(h.post("/api/v1/bot/subscriptions", json=STREAM) for _ in range(4)))
            assert sorted(r.status_code for r in answers) == [201, 409, 409, 409]
            assert len(await _subs(h)) == 2
