"""Receipts mean what they say (issue 12 item 5), through the public API on a real server.

"Delivered" is a device having the notice: the server records it when it has
written the notice's event to an open socket, or answered a sync page that
carried it, without the client saying anything; it is never the number that
read it. ``progress?unit=X`` gives X's own totals under X's name, and the
whole notice's totals separately.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.client import Client
from tests.conftest import RunningServer
from tests.org_server import auth, seat
from tests.waiting import wait_until
from zzd.gateway.asyncapi import EVENTS


async def _progress(h: httpx.AsyncClient, nid: int, **params: str) -> dict[str, Any]:
    r = await h.get(f"/api/v1/notices/{nid}/progress", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_delivered_counts_devices_that_have_it_not_readers(org_server: RunningServer) -> None:
    rs = org_server
    _, _, head_pos, mgr_tok = await seat(rs, "990101", "county_head")
    online_id, _, _, online_tok = await seat(rs, "990101001001001", "grid_worker")
    offline_id, _, _, offline_tok = await seat(rs, "990101001002001", "grid_worker")
    online = await Client.connect(rs.ws, online_tok)  # never sends notice_delivered or notice_read
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(mgr_tok)) as h:
        r = await h.post("/api/v1/notices", json={"as_position": head_pos, "selector": "专职网格员@990101/**",
                                                  "client_msg_id": "d-1", "title": "台风预警"})  # fmt: skip
        assert r.status_code == 201, r.text
        nid = r.json()["notice_id"]
        [ev] = await online.wait_events(1)
        assert ev["kind"] == "notice.new"
        EVENTS["notice.new"].model_validate(ev["data"])

        async def delivered(n: int) -> dict[str, Any] | None:
            p = await _progress(h, nid)
            return p if p["notice_total"]["delivered"] == n else None

        p = await wait_until(lambda: delivered(1), what="the socket's delivery recorded")
        assert p["notice_total"]["read"] == 0  # delivered is not read
        async with httpx.AsyncClient(base_url=rs.http, headers=auth(offline_tok)) as w:
            mine = (await w.get(f"/api/v1/notices/{nid}")).json()
            assert mine["receipts"][0]["delivered_at"] is None  # opening the notice over REST is not sync

            async def synced() -> list[str]:
                # Offline recipients' events are written by the fan-out's sweep, after the send's answer.
                page = (await w.get("/api/v1/sync", params={"since": 0})).json()
                # (The seat itself came first: a positions.changed, docs/protocol.md "Events".)
                return [e["kind"] for e in page["events"] if e["kind"] != "positions.changed"]

            assert await wait_until(synced, what="the offline recipient's notice.new") == ["notice.new"]
        p = await wait_until(lambda: delivered(2), what="the sync page's delivery recorded")
        assert p["notice_total"]["read"] == 0 and p["notice_total"]["receipts"] > 2
        pending = (await h.get(f"/api/v1/notices/{nid}/pending", params={"unit": "990101"})).json()
        assert {online_id, offline_id} <= {i["person_id"] for i in pending["items"]}  # delivered, still unread
    await online.close()


async def test_progress_of_a_unit_is_that_units_own_numbers(org_server: RunningServer) -> None:
    rs = org_server
    _, _, head_pos, mgr_tok = await seat(rs, "990101", "county_head")
    w_id, _, _, w_tok = await seat(rs, "990101001001001", "grid_worker")
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(mgr_tok)) as h:
        r = await h.post("/api/v1/notices", json={"as_position": head_pos, "selector": "专职网格员@990101001/**",
                                                  "client_msg_id": "u-1", "title": "乡镇通知"})  # fmt: skip
        nid = r.json()["notice_id"]
        async with httpx.AsyncClient(base_url=rs.http, headers=auth(w_tok)) as w:
            assert (await w.post(f"/api/v1/notices/{nid}/read")).is_success
        whole = await _progress(h, nid)
        everyone = whole["notice_total"]
        assert everyone["read"] == 1 and everyone["receipts"] == whole["total"]["receipts"]
        village = await _progress(h, nid, unit="990101001001")
        assert village["total"]["code"] == "990101001001"
        assert village["total"]["receipts"] == sum(c["receipts"] for c in village["by_child"]) < everyone["receipts"]
        assert village["total"]["read"] == 1 and village["notice_total"] == everyone
        assert village["elsewhere"] == everyone["receipts"] - village["total"]["receipts"]
        # A township the notice never addressed: zeros under its own name, not the notice's totals.
        other = await _progress(h, nid, unit="990101002")
        assert other["total"]["code"] == "990101002" and other["total"]["name"]
        assert (other["total"]["receipts"], other["total"]["read"], other["by_child"]) == (0, 0, [])
        assert other["notice_total"] == everyone and other["elsewhere"] == everyone["receipts"]
