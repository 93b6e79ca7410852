"""Acting as a position one does not hold: one refusal, the same everywhere a client names ``as_position``.

The Gansu docs-only client met three spellings of the refused position in
``data`` (``as_position``, ``as_position_id``, ``actor_position_id``) for the
same 403 ``forbidden``; every route now names it as the request did.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.client import Client
from tests.conftest import RunningServer
from tests.org_server import auth, position_at, seat

GRID = "990101001001001"


async def test_a_position_not_held_is_refused_alike_on_every_route(org_server: RunningServer) -> None:
    rs = org_server
    _, _, mine, tok = await seat(rs, GRID, "grid_worker")
    theirs = position_at(rs, "990101", "county_head")
    sel = {"as_position": theirs, "selector": f"pos:{mine}"}
    calls = [
        ("/api/v1/org/preview", sel),
        ("/api/v1/org/resolve", sel),
        ("/api/v1/notices/preview", sel),
        ("/api/v1/notices", {**sel, "client_msg_id": "np-1", "title": "t"}),
        ("/api/v1/tasks", {**sel, "client_msg_id": "tp-1", "title": "t"}),
        (f"/api/v1/positions/{mine}/messages", {"as_position": theirs, "client_msg_id": "mp-1", "body": "x"}),
        # The 湖南 audit: writing to a position as that same position, not held, answered
        # 400 "a position cannot open a thread with itself" before the holding was checked.
        (f"/api/v1/positions/{theirs}/messages", {"as_position": theirs, "client_msg_id": "mp-2", "body": "x"}),
        ("/api/v1/reports", {"as_position": theirs, "client_msg_id": "rp-1", "category": "river_litter",
                             "text": "x", "location": {"lat": 28.9, "lon": 118.8}}),
    ]  # fmt: skip
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        for path, body in calls:
            r = await h.post(path, json=body)
            assert r.status_code == 403, (path, r.text)
            assert r.json()["error"] == {"code": "forbidden", "message": "you do not hold that position",
                                         "data": {"as_position": theirs}}, path  # fmt: skip
        r = await h.post(
            f"/api/v1/positions/{mine}/messages", json={"as_position": mine, "client_msg_id": "mp-3", "body": "x"}
        )
        assert (r.status_code, r.json()["error"]["data"]) == (400, {"field": "as_position"}), r.text  # held: itself
    ws = await Client.connect(rs.ws, tok)
    try:
        m = await ws.request(
            {"type": "send", "to_position": mine, "as_position": theirs, "client_msg_id": "w", "body": "x"}
        )
        assert (m["code"], m["data"]) == ("forbidden", {"as_position": theirs}), m
        protocol = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
        [row] = [line for line in protocol.splitlines() if line.startswith("| `forbidden` |")]
        assert "`data.as_position` names it" in row
    finally:
        await ws.close()


async def test_out_of_scope_names_the_acting_position_as_the_request_did(org_server: RunningServer) -> None:
    rs = org_server
    _, _, mine, tok = await seat(rs, GRID, "grid_worker")
    secretary = position_at(rs, "990101001001", "village_secretary")
    body = {"as_position": mine, "selector": "村书记@990101001001", "client_msg_id": "oos-1", "title": "t"}
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        r = await h.post("/api/v1/notices", json=body)
    err = r.json()["error"]
    assert (r.status_code, err["code"]) == (403, "out_of_scope")
    assert err["data"] == {"as_position": mine, "out_of_scope": ["村书记@990101001001"], "count": 1,
                           "positions": [secretary]}  # fmt: skip
