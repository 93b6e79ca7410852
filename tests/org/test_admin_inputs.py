"""What an administration console written from the docs sends, and the answers it must get.

Found by driving the org endpoints as a client that knows only docs/ (an audit on a
province nobody had tuned on): a unit named ``"#id"`` in a body, the field a bad body
names, and role names that would make one word mean two roles.
"""

from __future__ import annotations

from typing import Any

import httpx

from org_tree.jurisdiction import SYSTEM
from tests.client import login, new_person
from tests.conftest import RunningServer
from tests.org_server import auth, seat

COUNTY = "990101"
TOWN, OTHER_TOWN = "990101001", "990101002"
VILLAGE, OTHER_VILLAGE = "990101001001", "990101001002"


async def _admin(rs: RunningServer, unit: str | None, perms: set[str]) -> str:
    s = rs.services_obj  # type: ignore[attr-defined]
    pid, lg = await new_person(s, "管理员")
    await s.grants.grant(SYSTEM, pid, unit, frozenset(perms))
    return str((await login(rs.http, lg))["access_token"])


def _org_state(rs: RunningServer) -> tuple[Any, ...]:
    idx = rs.services_obj.org_index.index  # type: ignore[attr-defined]
    return idx.version, idx.unit_count(), idx.position_count()


async def test_a_bad_body_names_the_field_the_client_sent(org_server: RunningServer) -> None:
    """``data.field`` is a field of the body, never pydantic's name for one form of a union (``parent.int``)."""
    rs = org_server
    token = await _admin(rs, None, {"org", "roles"})
    head = await _seat_head(rs)
    calls: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/api/v1/org/units", {"parent": "", "name": "x"}, "parent"),
        ("POST", "/api/v1/org/units", {"parent": True, "name": "x"}, "parent"),
        ("POST", f"/api/v1/org/units/{VILLAGE}/move", {"parent": 1.5}, "parent"),
        ("POST", f"/api/v1/org/units/{VILLAGE}/merge", {"into": ""}, "into"),
        ("POST", f"/api/v1/org/units/{VILLAGE}/preview", {"action": "move", "target": []}, "target"),
        ("POST", "/api/v1/org/positions", {"unit": "", "role": "village_secretary"}, "unit"),
        ("POST", "/api/v1/org/preview", {"as_position": head, "selector": ""}, "selector"),
        ("POST", "/api/v1/org/preview", {"as_position": head, "selector": "x" * 4001}, "selector"),
        ("POST", "/api/v1/org/preview", {"as_position": head, "selector": "*@990101", "under": ""}, "under"),
        ("POST", "/api/v1/org/roles", {"key": "oa_a", "name": "甲", "levels": [True]}, "levels.0"),
    ]
    before = _org_state(rs)
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        for method, path, body, field in calls:
            r = await h.request(method, path, json=body)
            assert r.status_code == 400, (path, body, r.text)
            err = r.json()["error"]
            assert err["code"] == "invalid_body", (path, body, err)
            assert err["data"]["field"] == field, (path, body, err)
            assert [e["field"] for e in err["data"]["errors"]] == [field], err  # one entry per field
            assert f"invalid request body: {field}: " in err["message"], err
    assert _org_state(rs) == before


async def _seat_head(rs: RunningServer) -> int:
    _pid, _lg, position, _token = await seat(rs, COUNTY, "county_head")
    return position
