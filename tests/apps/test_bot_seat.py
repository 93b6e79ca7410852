"""An app's bot position is the app's alone (found by the 江西 audit).

An administrator holding only ``assignments`` over the app's unit seated a person as the bot
position's deputy (or handed it over); that person then sent notices as the position, labelled with
the app's name, and received what was handed to the app, with no ``apps`` permission. Now seating
anyone there is refused (403, on record as ``admin.denied``) and nothing changes; other positions of
the unit are seated as before.
"""

from __future__ import annotations

import httpx

from kernel.audit import AuditQuery, query
from org_tree.jurisdiction import SYSTEM
from tests.apps.helpers import COUNTY, admin_token, make_app
from tests.client import login, new_person
from tests.conftest import RunningServer
from tests.org_server import auth, position_at


async def test_nobody_is_seated_in_an_apps_bot_position(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    app = await make_app(rs, await admin_token(rs), name="河长制平台", scopes=["notice:send"])
    bot_pos = app["bot_position_id"]
    seater, seater_login = await new_person(s, "人事管理员")
    await s.grants.grant(SYSTEM, seater, COUNTY, frozenset({"assignments"}))
    tok = str((await login(rs.http, seater_login))["access_token"])
    impostor, _ = await new_person(s, "冒充者")
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        refused = [
            await h.post(f"/api/v1/org/positions/{bot_pos}/assignments", json={"person_id": impostor, "kind": kind})
            for kind in ("deputy", "acting", "primary")
        ]
        refused.append(await h.post(f"/api/v1/org/positions/{bot_pos}/handover", json={"person_id": impostor}))
        for r in refused:
            assert r.status_code == 403, r.text
            assert r.json()["error"]["code"] == "forbidden"
            assert r.json()["error"]["data"] == {"position_id": bot_pos, "role": "app_bot"}
        # Any other position of the unit: seated as before.
        other = position_at(rs, COUNTY, "county_head")
        r = await h.post(f"/api/v1/org/positions/{other}/assignments", json={"person_id": impostor, "kind": "deputy"})
        assert r.status_code == 201, r.text
    view = s.org.get_position(SYSTEM, bot_pos)
    assert (view.holders, view.alternates) == ((app["bot_person_id"],), ())
    denied, _ = await query(s.db, AuditQuery(actor_person_id=seater, action="admin.denied"))
    assert sorted(e["detail"]["attempted"] for e in denied) == ["org.assigned"] * 3 + ["org.handover"]
    assert all(e["detail"]["role"] == "app_bot" and e["detail"]["position_id"] == bot_pos for e in denied)
