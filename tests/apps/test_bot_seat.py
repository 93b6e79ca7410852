"""An app's bot position is the app's alone (found by the 江西 audit).

An administrator holding only ``assignments`` over the app's unit seated a person as the bot
position's deputy (or handed it over); that person then sent notices as the position, labelled with
the app's name, and received what was handed to the app, with no ``apps`` permission. Now seating
anyone there is refused (403, on record as ``admin.denied``) and nothing changes; other positions of
the unit are seated as before.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from click.testing import CliRunner

from apps.registry import BOT_ROLE
from kernel.audit import AuditQuery, query
from org_tree.jurisdiction import SYSTEM
from tests.apps.helpers import COUNTY, admin_token, make_app
from tests.client import login, new_person
from tests.conftest import TEST_KEYS, RunningServer
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


async def test_person_import_does_not_seat_anyone_in_a_bot_position(org_server: RunningServer, own_db_url: str,
                                                                    tmp_path: Path) -> None:  # fmt: skip
    """``zzd person import`` is the operator's, but the rule is the API's: a line seating someone as an
    app's bot is a bad line, and nothing of the file is written (it seated them: 江西 audit's leftover)."""
    from zzd.cli import main

    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    app = await make_app(rs, await admin_token(rs), name="河长制平台", scopes=["notice:send"])
    await s.org_index.refresh_if_changed()
    src = tmp_path / "people.csv"
    src.write_text(
        "login,name,phone,positions\n"
        f"ok1,甲,,{COUNTY}:county_head:deputy\n"
        f"bot1,冒充者,,{COUNTY}:{BOT_ROLE}:deputy\n"
        f"bot2,冒充者二,,{COUNTY}:应用机器人\n",
        encoding="utf-8",
    )
    env = {"ZZD_DATABASE_URL": own_db_url, "ZZD_JWT_KEYS": TEST_KEYS}
    res = await asyncio.to_thread(CliRunner().invoke, main, ["person", "import", str(src), "--no-progress"], env=env)
    assert res.exit_code != 0
    assert f"line 3: '{COUNTY}:{BOT_ROLE}:deputy': a position of role app_bot is held by what it was made for" in (
        res.output
    )
    assert f"line 4: '{COUNTY}:应用机器人': a position of role app_bot" in res.output
    assert "2 bad line(s); nothing was written" in res.output
    assert not (tmp_path / "people.codes.csv").exists()
    for login_ in ("ok1", "bot1", "bot2"):
        assert await s.persons.by_login(login_) is None
    view = s.org.get_position(SYSTEM, app["bot_position_id"])
    assert (view.holders, view.alternates) == ((app["bot_person_id"],), ())
