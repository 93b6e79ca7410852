"""``app.updated`` says what changed from what to what (found by the 江西 audit).

The entry named only the fields (``"changed": ["scopes"]``): an auditor read that an app's scopes
changed, not that it was given ``report:read``, nor how far its 可见范围 was widened.
"""

from __future__ import annotations

import httpx

from kernel.audit import AuditQuery, query
from tests.apps.helpers import COUNTY, admin_token, make_app
from tests.conftest import RunningServer
from tests.org_server import auth


async def test_an_app_update_records_each_field_before_and_after(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    tok = await admin_token(rs)
    app = await make_app(rs, tok, name="河长制平台", scopes=["org:read"], visibility=f"河长@{COUNTY}/**")
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        wider = {"scopes": ["org:read", "report:read"], "visibility": f"村书记@{COUNTY}/**"}
        r = await h.patch(f"/api/v1/apps/{app['id']}", json=wider)
        assert r.status_code == 200, r.text
        r = await h.patch(f"/api/v1/apps/{app['id']}", json={"disabled": True, "rate_per_minute": 60})
        assert r.status_code == 200, r.text
    items, _ = await query(s.db, AuditQuery(action="app.updated"))
    assert [e["detail"] for e in reversed(items)] == [
        {
            "app_id": app["id"],
            "changed": ["scopes", "visibility"],
            "before": {"scopes": ["org:read"], "visibility": f"河长@{COUNTY}/**"},
            "after": {"scopes": ["org:read", "report:read"], "visibility": f"村书记@{COUNTY}/**"},
        },
        {
            "app_id": app["id"],
            "changed": ["disabled", "rate_per_minute"],
            "before": {"disabled": False, "rate_per_minute": 600},
            "after": {"disabled": True, "rate_per_minute": 60},
        },
    ]
