"""Bulk provisioning (``zzd person import``): idempotent, all or nothing, one-time activation codes."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from kernel.audit import AuditQuery, query
from kernel.audit_verify import verify
from kernel.db.database import Database
from kernel.errors import BadRequest
from kernel.schema import persons
from org_tree.jurisdiction import SYSTEM
from org_tree.provisioning import apply_plan, plan_import
from tests.conftest import AUDIT_KEY, TEST_KEYS, RunningServer
from tests.org_server import auth, cli_env, seat, slot

HEADER = "login,name,phone,positions\n"
FILE = (
    HEADER
    + "zhang3,张三,13800000001,990101001001:village_secretary\n"
    + "li4,李四,,990101001001001:grid_worker:deputy;990101001001:河长\n"
    + "wang5,王五,+86 138-0000-0003,\n"
)


async def _count(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(persons))).scalar_one())


async def test_import_is_idempotent_all_or_nothing_and_codes_activate_once(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    idx = s.org_index.index
    before = await _count(s.db)
    # a bad line anywhere: every problem reported, nothing written
    bad = FILE + "zhang3,重复,,\n" + "x y,空格,,\n" + "z9,某,abc,\n" + "q1,某,,990101001001:no_such_role\n"
    plan = plan_import(idx, bad)
    assert [p.line for p in plan.problems] == [5, 6, 7, 8]
    with pytest.raises(BadRequest):
        await apply_plan(s.db, s.clock, idx, plan)
    assert await _count(s.db) == before
    # a held single position without --replace-holders: refused, nothing written
    with pytest.raises(BadRequest) as info:
        await apply_plan(s.db, s.clock, idx, plan_import(idx, FILE))
    assert "held by another person" in info.value.data["problems"][0]
    assert await _count(s.db) == before
    res = await apply_plan(s.db, s.clock, idx, plan_import(idx, FILE), replace_holders=True)
    assert (res.created, res.updated, res.assigned, res.handed_over) == (3, 0, 3, 2)
    assert [login for login, _ in res.codes] == ["zhang3", "li4", "wang5"]
    await s.org_index.refresh_if_changed()
    idx = s.org_index.index
    zhang = await s.persons.by_login("zhang3")
    sec = idx.position_id(slot(idx, "990101001001", "village_secretary"))
    assert s.org.get_position(SYSTEM, sec).holders == (zhang.id,)
    again = await apply_plan(s.db, s.clock, idx, plan_import(idx, FILE), replace_holders=True)
    assert (again.created, again.updated, again.unchanged, again.assigned, again.codes) == (0, 0, 3, 0, [])
    renamed = await apply_plan(s.db, s.clock, idx, plan_import(idx, FILE.replace("王五", "王五五")))
    assert (renamed.created, renamed.updated, renamed.unchanged) == (0, 1, 2)
    created, _ = await query(s.db, AuditQuery(action="person.created"))
    assert sorted(e["detail"]["login"] for e in created) == ["li4", "wang5", "zhang3"]
    assert (await verify(s.db, AUDIT_KEY)).ok
    # activation: the code sets the password once; a wrong code or a second use is refused alike
    codes = dict(res.codes)
    async with httpx.AsyncClient(base_url=rs.http) as h:
        r = await h.post("/api/v1/auth/token", json={"grant_type": "password", "login": "li4", "password": "x" * 10})
        assert r.status_code == 401  # no password yet
        wrong = await h.post("/api/v1/auth/activate", json={"login": "li4", "code": "nope", "password": "新密码-2026"})
        assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_grant")
        short = await h.post("/api/v1/auth/activate", json={"login": "li4", "code": codes["li4"], "password": "short"})
        assert short.status_code == 400
        r = await h.post(
            "/api/v1/auth/activate", json={"login": "li4", "code": codes["li4"], "password": "新密码-2026"}
        )
        assert r.status_code == 200 and r.json()["token_type"] == "Bearer", r.text
        assert (r.headers.get("cache-control"), r.headers.get("pragma")) == ("no-store", "no-cache")  # RFC 6749 5.1
        me = await h.get("/api/v1/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
        assert me.json()["login"] == "li4"
        again_r = await h.post(
            "/api/v1/auth/activate", json={"login": "li4", "code": codes["li4"], "password": "另一个密码-2026"}
        )
        assert again_r.json()["error"] == wrong.json()["error"]
        r = await h.post(
            "/api/v1/auth/token", json={"grant_type": "password", "login": "li4", "password": "新密码-2026"}
        )
        assert r.status_code == 200
        other = await h.post(
            "/api/v1/auth/activate", json={"login": "nobody", "code": codes["zhang3"], "password": "x" * 10}
        )
        assert other.json()["error"] == wrong.json()["error"]


def test_cli_import_writes_codes_once_and_reports_bad_lines(tmp_path: Path, sqlite_template: Path) -> None:
    from zzd.cli import main

    env = cli_env(tmp_path, sqlite_template, grids_per_village=1)
    src = tmp_path / "people.csv"
    src.write_text(FILE, encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(main, ["person", "import", str(src), "--no-progress"], env=env)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert (summary["created"], summary["assigned"]) == (3, 3)
    codes_file = Path(summary["codes_file"])
    assert oct(codes_file.stat().st_mode & 0o777) == "0o600"
    with codes_file.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["login"] for r in rows] == ["zhang3", "li4", "wang5"] and all(len(r["code"]) == 16 for r in rows)
    # a second run needs the codes file moved away first, then changes nothing
    res = runner.invoke(main, ["person", "import", str(src), "--no-progress"], env=env)
    assert res.exit_code != 0 and "exists" in res.output
    codes_file.rename(tmp_path / "sent.csv")
    res = runner.invoke(main, ["person", "import", str(src), "--no-progress"], env=env)
    assert res.exit_code == 0 and '"unchanged": 3' in res.output and not codes_file.exists()
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "ok1,甲,,\nbad login,乙,,\n", encoding="utf-8")
    res = runner.invoke(main, ["person", "import", str(bad), "--no-progress"], env=env)
    assert res.exit_code != 0 and "line 3" in res.output
    res = runner.invoke(main, ["person", "code", "--login", "wang5"], env=env)
    assert res.exit_code == 0 and len(json.loads(res.output)["code"]) == 16


async def test_cli_import_replacing_a_holder_hands_over_as_the_api_does(
    org_server: RunningServer, own_db_url: str, tmp_path: Path
) -> None:
    """``--replace-holders`` hands a position over as the API does: what its holder still owed through it
    goes to the new holder, and both are told (``positions.changed``). Until 2026-12-05 (广西 audit) the
    notice stayed owed by the holder the import had replaced, who no longer held the position (progress
    and pending named them, the new holder never had it), and nobody was told: the replaced holder's
    client went on offering the seat."""
    from zzd.cli import main

    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    grid = "990101001001001"
    pred, _, pos, pred_tok = await seat(rs, grid, "grid_worker")
    _, _, head_pos, head_tok = await seat(rs, "990101", "county_head")
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(pred_tok)) as h:
        me = (await h.get("/api/v1/me")).json()
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(head_tok)) as head:
        sent = await head.post("/api/v1/notices", json={"as_position": head_pos, "selector": f"pos:{pos}",
                                                        "client_msg_id": "imp-1", "title": "请上报"})  # fmt: skip
        assert sent.status_code == 201, sent.text
    src = tmp_path / "successor.csv"
    src.write_text(HEADER + f"succ1,接任者,,{grid}:grid_worker\n", encoding="utf-8")
    env = {"ZZD_DATABASE_URL": own_db_url, "ZZD_JWT_KEYS": TEST_KEYS}
    args = ["person", "import", str(src), "--replace-holders", "--no-progress"]
    res = await asyncio.to_thread(CliRunner().invoke, main, args, env=env)  # the CLI runs its own event loop
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["handed_over"] == 1
    succ = await s.persons.by_login("succ1")
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(head_tok)) as head:
        r = await head.get(f"/api/v1/notices/{sent.json()['notice_id']}/pending", params={"unit": grid})
        assert r.status_code == 200, r.text
        assert [i["person_id"] for i in r.json()["items"]] == [succ.id]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(pred_tok)) as h:
        page = (await h.get("/api/v1/sync", params={"epoch": me["epoch"], "since": me["last_seq"]})).json()
    told = [e["data"] for e in page["events"] if e["kind"] == "positions.changed"]
    assert told == [{"person_id": pred, "positions": [], "gained": [], "lost": [pos]}]
    with Path(json.loads(res.output)["codes_file"]).open(encoding="utf-8") as f:
        [code] = [row["code"] for row in csv.DictReader(f)]
    async with httpx.AsyncClient(base_url=rs.http) as h:
        r = await h.post("/api/v1/auth/activate", json={"login": "succ1", "code": code, "password": "接任者-2026-pw"})
        assert r.status_code == 200, r.text
        tok = r.json()["access_token"]
        page = (await h.get("/api/v1/sync", params={"since": 0}, headers=auth(tok))).json()
    [gained] = [e["data"] for e in page["events"] if e["kind"] == "positions.changed"]
    assert (gained["gained"], gained["lost"], [p["id"] for p in gained["positions"]]) == ([pos], [], [pos])
