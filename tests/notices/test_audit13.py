"""河北 audit (2026-12-05): what a client written from docs/ met with notices on a province nobody tuned on."""

from __future__ import annotations

import httpx

from messaging.notices import validate_compose
from tests.conftest import RunningServer
from tests.notices.conftest import CITY, World
from tests.org_server import auth, seat

SEL = f"grid_worker@{CITY}/** | grid_volunteer@{CITY}/** | river_chief@{CITY}/** | village_secretary@{CITY}/**"


async def test_a_notice_to_nobody_is_refused_and_nothing_is_stored(org_server: RunningServer) -> None:
    """An exclusion that takes away everything was sent (201, 0 receipts) as a notice to nobody."""
    rs = org_server
    _, _, head_pos, tok = await seat(rs, "990101", "county_head")
    _, _, grid_pos, _ = await seat(rs, "990101001001001", "grid_worker")
    nobody = f"pos:{grid_pos} - pos:{grid_pos}"
    async with httpx.AsyncClient(base_url=rs.http) as h:
        pv = await h.post(
            "/api/v1/notices/preview", headers=auth(tok), json={"as_position": head_pos, "selector": nobody}
        )
        assert pv.status_code == 200 and pv.json()["positions"] == 0  # the preview shows it first
        body = {
            "as_position": head_pos,
            "selector": nobody,
            "client_msg_id": "empty-1",
            "title": "空",
            "priority": "urgent",
        }
        r = await h.post("/api/v1/notices", headers=auth(tok), json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"] == {
            "code": "bad_request",
            "message": "the selector addresses no position",
            "data": {"field": "selector"},
        }
        # Nothing stored: the same client_msg_id is still free for the notice meant.
        r = await h.post("/api/v1/notices", headers=auth(tok), json={**body, "selector": f"pos:{grid_pos}"})
        assert r.status_code == 201 and r.json()["duplicate"] is False and r.json()["receipts"] == 1


async def test_pending_pages_are_as_long_as_the_documented_limit(world: World) -> None:
    """``limit`` takes up to 500 (docs/api/notices.md) but pages were cut at 200 without a word."""
    w = world
    person, position = w.governor()
    res = await w.send(person, position, validate_compose(client_msg_id="p500", title="t", body="b", selector=SEL))
    assert res.receipts > 500
    page = await w.svc.pending(person, res.notice_id, unit=CITY, missing="read", limit=500)
    assert len(page.items) == 500 and page.next_after == page.items[-1]["receipt_id"]
    rest = await w.svc.pending(person, res.notice_id, unit=CITY, missing="read", after=page.next_after, limit=500)
    assert len(page.items) + len(rest.items) == min(res.receipts, 1000)
