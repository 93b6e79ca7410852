"""The app registry and credentials over HTTP (issue 13 item 1), on both backends: who may manage apps,
secrets shown once and rotated with an overlap, revocation at the next request, and app tokens that
person endpoints refuse (and person tokens the bot API refuses)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
from click.testing import CliRunner

from kernel.audit import AuditQuery, query
from org_tree.jurisdiction import SYSTEM
from tests.apps.helpers import COUNTY, OTHER_COUNTY, admin_token, app_token, make_app
from tests.client import login, new_person
from tests.conftest import RunningServer
from tests.org_server import auth, cli_env


async def test_an_app_administrator_registers_an_app_and_the_app_gets_a_token(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    tok = await admin_token(rs)
    made = await make_app(rs, tok, name="河长制平台", scopes=["notice:send", "events:report.filed"])
    assert made["client_id"].startswith("zzdapp_") and made["client_secret"].startswith("zzdsec_")
    assert made["scopes"] == ["events:report.filed", "notice:send"]
    idx = s.org_index.index
    assert made["subtree_unit_id"] == idx.unit_id(idx.unit(COUNTY))
    # the bot identity: a position of role app_bot in the subtree's root unit, held by the bot person
    assert idx.holds(made["bot_person_id"], made["bot_position_id"])
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        got = (await h.get(f"/api/v1/apps/{made['id']}")).json()
        assert "client_secret" not in got and got["secrets"][0]["hint"].startswith("zzdsec_")
        assert [a["id"] for a in (await h.get("/api/v1/apps")).json()["apps"]] == [made["id"]]
    r = await app_token(rs, made["client_id"], made["client_secret"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "events:report.filed notice:send"
    app_tok = body["access_token"]
    async with httpx.AsyncClient(base_url=rs.http) as h:
        me = await h.get("/api/v1/bot/me", headers=auth(app_tok))
        assert me.status_code == 200 and me.json()["name"] == "河长制平台"
        assert me.json()["subtree_path"] == ["测试省", "甲市", "柯城区"]
        # HTTP Basic client authentication works too (RFC 6749 2.3.1)
        basic = base64.b64encode(f"{made['client_id']}:{made['client_secret']}".encode()).decode()
        r = await h.post(
            "/api/v1/auth/token", json={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
        )
        assert r.status_code == 200, r.text
        # form-encoded, as RFC 6749 (4.4.2) sends it and OAuth2 client libraries do; Basic or in the body
        form = {
            "grant_type": "client_credentials",
            "client_id": made["client_id"],
            "client_secret": made["client_secret"],
        }
        r = await h.post("/api/v1/auth/token", data=form)
        assert (r.status_code, r.json()["app_id"]) == (200, made["id"]), r.text
        r = await h.post("/api/v1/auth/token", data={"grant_type": "client_credentials"},
                         headers={"Authorization": f"Basic {basic}"})  # fmt: skip
        assert r.status_code == 200, r.text
        # one authentication method per request (RFC 6749 2.3): the body may repeat the Basic client id,
        # but a body naming another client, or carrying a secret, is refused, not silently ignored
        same = {"grant_type": "client_credentials", "client_id": made["client_id"]}
        r = await h.post("/api/v1/auth/token", data=same, headers={"Authorization": f"Basic {basic}"})
        assert r.status_code == 200, r.text
        # (a form-encoded request's errors are RFC 6749 5.2's: "error" a string, ZZD's object as "error_detail")
        for extra in ({"client_id": "zzdapp_another", "client_secret": "zzdsec_wrong"}, {"client_secret": "x"}):
            r = await h.post("/api/v1/auth/token", data={"grant_type": "client_credentials", **extra},
                             headers={"Authorization": f"Basic {basic}"})  # fmt: skip
            assert (r.status_code, r.json()["error"], r.json()["error_detail"]["code"]) == (
                400, "invalid_request", "bad_request"), r.text  # fmt: skip
        for raw, code in (
            (b"grant_type=client_credentials&grant_type=password", "invalid_request"),  # a parameter twice
            (b"grant_type=client_credentials&client_id", "invalid_request"),  # not name=value
            (b"grant_type=%ff", "unsupported_grant_type"),  # not UTF-8: no grant type ZZD knows
            (b"grant_type=implicit", "unsupported_grant_type"),
        ):
            r = await h.post("/api/v1/auth/token", content=raw,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
            assert (r.status_code, r.json()["error"], r.json()["error_detail"]["code"]) == (400, code, "invalid_body")
        r = await h.post("/api/v1/auth/token", data={**form, "client_secret": "zzdsec_wrong"})
        assert (r.status_code, r.json()["error"]) == (401, "invalid_client")
        # a client that sent Basic credentials is challenged with Basic (RFC 6749 5.2)
        wrong = base64.b64encode(f"{made['client_id']}:zzdsec_wrong".encode()).decode()
        r = await h.post("/api/v1/auth/token", data={"grant_type": "client_credentials"},
                         headers={"Authorization": f"Basic {wrong}"})  # fmt: skip
        assert (r.status_code, r.json()["error"]) == (401, "invalid_client")
        assert r.headers["www-authenticate"] == 'Basic realm="zzd"'
        # an app token is not a person token, and a person token is not an app token
        for path in ("/api/v1/me", "/api/v1/apps", "/api/v1/me/positions"):
            r = await h.get(path, headers=auth(app_tok))
            assert r.status_code == 401, (path, r.text)
        r = await h.get("/api/v1/bot/me", headers=auth(tok))
        assert r.status_code == 401
    items, _ = await query(s.db, AuditQuery(action="app.created"))
    assert items and items[0]["detail"]["app_id"] == made["id"]
    # The bot's position and seat are the app administrator's doing, on record as theirs: a null actor
    # reads as the command-line operator (docs/admin.md), as they did before the administration audit.
    creator = items[0]["actor_person_id"]
    assert creator is not None
    mine, _ = await query(s.db, AuditQuery(actor_person_id=creator))
    bot = {e["action"] for e in mine if e["detail"].get("position_id") == made["bot_position_id"]}
    assert bot == {"org.position_created", "org.handover"}, mine


async def test_ordinary_people_and_other_administrators_cannot_manage_the_app(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    tok = await admin_token(rs)
    made = await make_app(rs, tok, name="会议签到", scopes=["notice:send"])
    _, lg = await new_person(s)
    ordinary = (await login(rs.http, lg))["access_token"]
    other_admin = await admin_token(rs, OTHER_COUNTY)
    org_admin = await admin_token(rs, COUNTY, frozenset({"org", "assignments", "grants", "audit"}))
    app_tok = (await app_token(rs, made["client_id"], made["client_secret"])).json()["access_token"]
    spec = {"name": "x", "owning_unit": COUNTY, "subtree": COUNTY, "visibility": "*@990101", "scopes": []}
    app_id = made["id"]
    for who in (ordinary, other_admin, org_admin):
        async with httpx.AsyncClient(base_url=rs.http, headers=auth(who)) as h:
            r = await h.post("/api/v1/apps", json=spec)
            assert (r.status_code, r.json()["error"]["code"]) == (403, "no_grant")
            assert (await h.get("/api/v1/apps")).json()["apps"] == []
            assert (await h.get(f"/api/v1/apps/{app_id}")).status_code == 404
            assert (await h.patch(f"/api/v1/apps/{app_id}", json={"disabled": True})).status_code == 404
            assert (await h.post(f"/api/v1/apps/{app_id}/secrets", json={})).status_code == 404
            r = await h.post(f"/api/v1/apps/{app_id}/secrets/{made['secret_id']}/revoke")
            assert r.status_code == 404
    # a county administrator cannot make an app that addresses the other county
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        r = await h.post("/api/v1/apps", json={**spec, "subtree": OTHER_COUNTY})
        assert r.status_code == 403
        r = await h.post("/api/v1/apps", json={**spec, "scopes": ["root:all"]})
        assert (r.status_code, r.json()["error"]["data"]["unknown"]) == (400, ["root:all"])
        r = await h.post("/api/v1/apps", json={**spec, "scopes": ["events:task.exploded"]})
        assert r.status_code == 400
        r = await h.post("/api/v1/apps", json={**spec, "name": "会议签到"})
        assert r.status_code == 409
        # nor tell a position of the other county about its endpoints; the error names the field sent
        idx = s.org_index.index
        elsewhere = idx.position_id(next(iter(idx.unit_slots(idx.unit(OTHER_COUNTY)))))
        r = await h.post("/api/v1/apps", json={**spec, "owner_position_id": elsewhere})
        assert (r.status_code, r.json()["error"]["data"]) == (400, {"field": "owner_position_id"}), r.text
    # nor can an app call the registry about itself
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(app_tok)) as h:
        assert (await h.get(f"/api/v1/apps/{app_id}")).status_code == 401
        assert (await h.post(f"/api/v1/apps/{app_id}/secrets", json={})).status_code == 401
    items, _ = await query(s.db, AuditQuery(action="admin.denied"))
    assert any(i["detail"]["attempted"] == "app.create" for i in items)


async def test_another_countys_app_answers_404_and_the_attempt_is_audited(org_server: RunningServer) -> None:
    """Managing an app outside one's ``apps`` grant answered 404 with nothing on record (found by the
    administration audit), while docs/admin.md puts every refused administrative attempt on record."""
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    made = await make_app(rs, await admin_token(rs), name="河长巡河", scopes=["notice:send"])
    intruder, lg = await new_person(s, "邻县应用管理员")
    await s.grants.grant(SYSTEM, intruder, OTHER_COUNTY, frozenset({"apps"}))
    tok = (await login(rs.http, lg))["access_token"]
    app_id, missing = made["id"], made["id"] + 1000
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        for aid in (app_id, missing):
            calls = [
                await h.get(f"/api/v1/apps/{aid}"),
                await h.patch(f"/api/v1/apps/{aid}", json={"disabled": True}),
                await h.post(f"/api/v1/apps/{aid}/secrets", json={}),
                await h.post(f"/api/v1/apps/{aid}/secrets/{made['secret_id']}/revoke"),
            ]
            # The same answer for someone else's app and for no app: ids tell nothing.
            assert [(r.status_code, r.json()) for r in calls] == [(404, {"error": {
                "code": "not_found", "message": "no such app", "data": {"app_id": aid}}})] * 4  # fmt: skip
    denied, _ = await query(s.db, AuditQuery(actor_person_id=intruder, action="admin.denied"))
    county = s.org_index.index.unit(COUNTY)
    got = sorted((e["detail"]["attempted"], e["detail"]["permission"], e["detail"]["app_id"], e["unit_id"])
                 for e in denied)  # fmt: skip
    unit_id = s.org_index.index.unit_id(county)
    assert got == sorted((a, "apps", app_id, unit_id) for a in
                         ("app.read", "app.updated", "app.secret_rotated", "app.secret_revoked")), denied  # fmt: skip
    assert not (await s.apps.get(SYSTEM, app_id)).disabled


async def test_rotation_overlaps_and_revocation_stops_tokens_at_the_next_request(org_server: RunningServer) -> None:
    rs = org_server
    tok = await admin_token(rs)
    made = await make_app(rs, tok, name="轮换", scopes=["org:read"])
    old_tok = (await app_token(rs, made["client_id"], made["client_secret"])).json()["access_token"]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        r = await h.post(f"/api/v1/apps/{made['id']}/secrets", json={"overlap_seconds": 3600})
        assert r.status_code == 201, r.text
        second = r.json()
        assert second["client_secret"] != made["client_secret"] and second["previous_secrets_expire_at"]
    async with httpx.AsyncClient(base_url=rs.http) as h:
        # during the overlap both secrets and the old token work
        assert (await app_token(rs, made["client_id"], made["client_secret"])).status_code == 200
        assert (await h.get("/api/v1/bot/me", headers=auth(old_tok))).status_code == 200
    new_tok = (await app_token(rs, made["client_id"], second["client_secret"])).json()["access_token"]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        r = await h.post(f"/api/v1/apps/{made['id']}/secrets/{made['secret_id']}/revoke")
        assert r.status_code == 200, r.text
        assert (await h.post(f"/api/v1/apps/{made['id']}/secrets/{made['secret_id']}/revoke")).status_code == 404
        secrets = (await h.get(f"/api/v1/apps/{made['id']}")).json()["secrets"]
        assert [x["active"] for x in secrets] == [False, True]
    async with httpx.AsyncClient(base_url=rs.http) as h:
        r = await h.get("/api/v1/bot/me", headers=auth(old_tok))
        assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_client")
        r = await app_token(rs, made["client_id"], made["client_secret"])
        assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_client")
        assert (await h.get("/api/v1/bot/me", headers=auth(new_tok))).status_code == 200
        # a rotation without overlap ends the current secret at once
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        third = (await h.post(f"/api/v1/apps/{made['id']}/secrets", json={"overlap_seconds": 0})).json()
    async with httpx.AsyncClient(base_url=rs.http) as h:
        assert (await h.get("/api/v1/bot/me", headers=auth(new_tok))).status_code == 401
        assert (await app_token(rs, made["client_id"], third["client_secret"])).status_code == 200
    # On record in the request's own terms: the overlap in seconds, each rotation with its new secret.
    rotated, _ = await query(rs.services_obj.db, AuditQuery(action="app.secret_rotated"))  # type: ignore[attr-defined]
    mine = sorted((e["detail"]["secret_id"], e["detail"]["overlap_seconds"]) for e in rotated)
    assert mine == [(second["secret_id"], 3600), (third["secret_id"], 0)]
    # disabling the app refuses even fresh secrets
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        # an empty change names the fields PATCH takes, by the names the body uses
        r = await h.patch(f"/api/v1/apps/{made['id']}", json={})
        assert (r.status_code, r.json()["error"]["data"]) == (
            400, {"fields": ["scopes", "visibility", "disabled", "rate_per_minute"]}
        )  # fmt: skip
        assert (await h.patch(f"/api/v1/apps/{made['id']}", json={"disabled": True})).json()["disabled"] is True
    r = await app_token(rs, made["client_id"], third["client_secret"])
    assert r.status_code == 401
    # wrong secrets and unknown clients read the same
    r1 = await app_token(rs, made["client_id"], "zzdsec_wrong")
    r2 = await app_token(rs, "zzdapp_nobody", "zzdsec_wrong")
    assert r1.status_code == r2.status_code == 401 and r1.json() == r2.json()


def test_cli_creates_lists_rotates_and_disables_apps(tmp_path: Path, sqlite_template: Path) -> None:
    from zzd.cli import main

    env = cli_env(tmp_path, sqlite_template)
    runner = CliRunner()
    args = ["app", "create", "--name", "签到", "--unit", COUNTY, "--subtree", COUNTY, "--visible", "*@990101"]
    res = runner.invoke(main, [*args, "--scope", "notice:send"], env=env)
    assert res.exit_code == 0, res.output
    made = json.loads(res.output)
    assert made["client_secret"].startswith("zzdsec_") and made["scopes"] == ["notice:send"]
    res = runner.invoke(main, [*args, "--scope", "bogus"], env=env)
    assert res.exit_code != 0 and "unknown scope" in res.output
    # A malformed unit is a usage error naming the option (it was "not found"); #id is accepted.
    for bad in ("#", "33-08", "#x"):
        res = runner.invoke(main, [*args[:4], "--unit", bad, *args[6:], "--scope", "notice:send"], env=env)
        assert res.exit_code == 2 and "--unit" in res.output and "#17" in res.output, res.output
    res = runner.invoke(main, [*args[:6], "--subtree", "#", *args[8:], "--scope", "notice:send"], env=env)
    assert res.exit_code == 2 and "--subtree" in res.output, res.output
    listed = [json.loads(line) for line in runner.invoke(main, ["app", "list"], env=env).output.splitlines()]
    assert [a["id"] for a in listed] == [made["id"]] and "client_secret" not in listed[0]
    rot = json.loads(runner.invoke(main, ["app", "rotate", str(made["id"]), "--overlap", "0"], env=env).output)
    assert rot["client_secret"] != made["client_secret"]
    res = runner.invoke(main, ["app", "disable", str(made["id"])], env=env)
    assert json.loads(res.output)["disabled"] is True
    res = runner.invoke(main, ["app", "revoke-secret", str(made["id"]), str(rot["secret_id"])], env=env)
    assert json.loads(res.output)["revoked"] is True


async def test_the_workbench_shows_an_app_only_to_positions_its_visibility_reaches(org_server: RunningServer) -> None:
    from tests.org_server import seat

    rs = org_server
    tok = await admin_token(rs)
    made = await make_app(rs, tok, name="河长工作台", scopes=["org:read"], visibility="village_secretary@990101/**")
    _, _, _, inside = await seat(rs, "990101001001", "village_secretary")
    _, _, _, other_role = await seat(rs, "990101001001", "village_director")
    _, _, _, other_county = await seat(rs, "990102001001", "village_secretary")
    for who, expected in ((inside, [made["id"]]), (other_role, []), (other_county, []), (tok, [])):
        async with httpx.AsyncClient(base_url=rs.http, headers=auth(who)) as h:
            r = await h.get("/api/v1/me/apps")
        assert r.status_code == 200, r.text
        assert [a["id"] for a in r.json()["apps"]] == expected
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        assert (await h.patch(f"/api/v1/apps/{made['id']}", json={"disabled": True})).status_code == 200
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(inside)) as h:
        assert (await h.get("/api/v1/me/apps")).json()["apps"] == []  # a disabled app leaves the workbench
    app_tok = (await app_token(rs, made["client_id"], made["client_secret"])).json()
    assert app_tok["error"]["code"] == "invalid_client"


async def test_an_owning_units_administrator_cannot_widen_an_app_over_a_larger_subtree(
    org_server: RunningServer,
) -> None:
    """An app owned by a township but working over the whole county was made by someone with ``apps`` over
    both. The township's administrator manages it (disable, narrow, rotate), but adding a scope or widening
    its 可见范围 past the township needs ``apps`` over the subtree, as creating such an app does. Before, the
    township's administrator gave it ``notice:send`` and notified the whole county through it."""
    rs = org_server
    township = COUNTY + "001"
    whole = await admin_token(rs, None)
    local = await admin_token(rs, township)
    app = await make_app(rs, whole, name="委托平台", scopes=["org:read"], visibility=f"*@{township}",
                         owning_unit=township)  # fmt: skip
    assert (app["owning_unit_id"], app["subtree_unit_id"]) != (None, None)
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(local)) as h:
        r = await h.post("/api/v1/apps", json={"name": "乡镇自建", "owning_unit": township, "subtree": COUNTY,
                                               "visibility": f"*@{township}", "scopes": ["org:read"]})  # fmt: skip
        assert (r.status_code, r.json()["error"]["code"]) == (403, "no_grant")
        for change in ({"scopes": ["org:read", "notice:send"]}, {"visibility": f"*@{COUNTY}"}):
            r = await h.patch(f"/api/v1/apps/{app['id']}", json=change)
            assert (r.status_code, r.json()["error"]["code"]) == (403, "no_grant"), (change, r.text)
        r = await h.get(f"/api/v1/apps/{app['id']}")
        assert (r.json()["scopes"], r.json()["visibility"]) == (["org:read"], f"*@{township}")
        # what stays the owning unit's: narrowing, disabling, the 可见范围 inside the township
        r = await h.patch(f"/api/v1/apps/{app['id']}", json={"scopes": [], "visibility": f"*@{township}001"})
        assert (r.status_code, r.json()["scopes"]) == (200, []), r.text
        r = await h.patch(f"/api/v1/apps/{app['id']}", json={"disabled": True})
        assert (r.status_code, r.json()["disabled"]) == (200, True)
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(whole)) as h:
        r = await h.patch(f"/api/v1/apps/{app['id']}", json={"scopes": ["notice:send"], "visibility": f"*@{COUNTY}"})
        assert (r.status_code, r.json()["scopes"]) == (200, ["notice:send"]), r.text
    rows, _ = await query(rs.services_obj.db, AuditQuery(action="admin.denied"))  # type: ignore[attr-defined]
    assert sum(1 for e in rows if e["detail"].get("attempted") == "app.updated") == 2
