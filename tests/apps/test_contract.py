"""The app platform's request contract, as an outside audit (2026-12-04) found it lacking: a unit is named
the same way in every field, a query parameter given twice is refused, every create tells a retry from a
first write, the token endpoint speaks RFC 6749 5.2 to OAuth2 clients, and ``events:*`` is not granted.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx

from tests.apps.helpers import COUNTY, VILLAGE, admin_token, app_token, make_app
from tests.client import PASSWORD, login, new_person
from tests.conftest import RunningServer
from tests.org_server import auth, seat, unit_id_at

TOKEN = "/api/v1/auth/token"


async def _app(rs: RunningServer, scopes: list[str], name: str = "契约应用") -> tuple[dict[str, Any], dict[str, str]]:
    made = await make_app(rs, await admin_token(rs), name=name, scopes=scopes)
    r = await app_token(rs, made["client_id"], made["client_secret"])
    assert r.status_code == 200, r.text
    return made, auth(r.json()["access_token"])


# ----------------------------------------------------------------------------------------- 1. units
async def test_a_unit_is_its_code_its_id_or_hash_id_in_every_field(org_server: RunningServer) -> None:
    rs = org_server
    county_id, village_id = unit_id_at(rs, COUNTY), unit_id_at(rs, VILLAGE)
    admin = await admin_token(rs, perms=frozenset({"apps", "grants"}))
    pid, _ = await new_person(rs.services_obj)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(admin)) as h:
        # The app's owning unit and subtree: "#id" as well as the code and the integer id.
        scopes = ["org:read", "notice:send", "events:report.filed"]
        body = {"name": "井号单位", "owning_unit": f"#{county_id}", "subtree": f"#{county_id}",
                "visibility": f"*@#{county_id}", "scopes": scopes}  # fmt: skip
        r = await h.post("/api/v1/apps", json=body)
        assert r.status_code == 201, r.text
        made = r.json()
        assert (made["owning_unit_id"], made["subtree_unit_id"]) == (county_id, county_id)
        # A grant's unit, the same three ways.
        for unit in (f"#{village_id}", village_id, VILLAGE):
            r = await h.post("/api/v1/admin/grants", json={"person_id": pid, "unit": unit, "perms": ["apps"]})
            assert r.status_code in (201, 409), (unit, r.text)
        # A malformed unit is a 400 that names the field and the forms it takes, whatever the field.
        for path, bad in (
            ("/api/v1/apps", {**body, "name": "坏单位", "subtree": "#x1"}),
            ("/api/v1/apps", {**body, "name": "坏单位", "owning_unit": "33-08"}),
            ("/api/v1/admin/grants", {"person_id": pid, "unit": "#", "perms": ["apps"]}),
        ):
            r = await h.post(path, json=bad)
            assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_body"), r.text
            assert "#17" in r.json()["error"]["message"], r.text
        r = await h.get("/api/v1/audit", params={"unit": "33-08"})
        err = r.json()["error"]
        assert (r.status_code, err["data"]["field"]) == (400, "unit"), r.text
        assert err["data"]["accepted"] == ["330802", "#17", 17]
    tok = (await app_token(rs, made["client_id"], made["client_secret"])).json()["access_token"]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        # The JSON selector form takes "#id" too (it used to refuse it while the text form took it).
        for selector in ({"unit_all": f"#{village_id}"}, {"unit_all": village_id}, f"*@#{village_id}"):
            r = await h.post("/api/v1/bot/audience/preview", json={"selector": selector})
            assert r.status_code == 200, (selector, r.text)
        r = await h.post("/api/v1/bot/audience/preview", json={"selector": {"unit_all": "#x"}})
        assert (r.status_code, r.json()["error"]["data"]["field"]) == (400, "selector"), r.text
        # The subscription filter and the bot's unit path, as before.
        sub = {"mode": "stream", "event_types": ["report.filed"], "filters": {"unit": f"#{village_id}"}}
        r = await h.post("/api/v1/bot/subscriptions", json=sub)
        assert (r.status_code, r.json()["filters"]) == (201, {"unit": village_id}), r.text
        r = await h.post("/api/v1/bot/subscriptions", json={**sub, "filters": {"unit": "9901 01"}})
        assert (r.status_code, r.json()["error"]["data"]["field"]) == (400, "unit"), r.text
        assert (await h.get(f"/api/v1/bot/org/units/%23{village_id}")).status_code == 200
        r = await h.get("/api/v1/bot/org/units/bad-code")
        assert (r.status_code, r.json()["error"]["data"]["field"]) == (400, "unit"), r.text


async def test_a_notice_reminder_takes_a_unit_id_as_every_body_does(org_server: RunningServer) -> None:
    rs = org_server
    _, _, head_pos, head = await seat(rs, COUNTY, "county_head")
    await seat(rs, VILLAGE, "village_secretary")
    village_id = unit_id_at(rs, VILLAGE)
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(head)) as h:
        notice = {"as_position": head_pos, "selector": f"*@{VILLAGE}", "client_msg_id": "n-unit", "title": "开会",
                  "ack_required": True}  # fmt: skip
        nid = (await h.post("/api/v1/notices", json=notice)).json()["notice_id"]
        r = await h.post(f"/api/v1/notices/{nid}/remind", json={"unit": village_id})
        assert r.status_code == 200, r.text
        # the same unit the other two ways: read as that unit, so reminded "less than a minute ago"
        for unit in (f"#{village_id}", VILLAGE):
            r = await h.post(f"/api/v1/notices/{nid}/remind", json={"unit": unit})
            assert (r.status_code, r.json()["error"]["code"]) == (429, "rate_limited"), (unit, r.text)
        r = await h.post(f"/api/v1/notices/{nid}/remind", json={"unit": "#-1"})
        assert (r.status_code, r.json()["error"]["data"]["field"]) == (400, "unit"), r.text


# ------------------------------------------------------------------------- 2. repeated parameters
async def test_a_query_parameter_given_twice_is_refused_naming_it(org_server: RunningServer) -> None:
    rs = org_server
    _, bot = await _app(rs, ["events:report.filed"])
    admin = auth(await admin_token(rs, perms=frozenset({"audit"})))
    async with httpx.AsyncClient(base_url=rs.http) as h:
        sid = (await h.post("/api/v1/bot/subscriptions", headers=bot,
                            json={"mode": "stream", "event_types": ["report.filed"]})).json()["id"]  # fmt: skip
        for path, headers, params, name in (
            (f"/api/v1/bot/subscriptions/{sid}/attempts", bot, [("limit", "10"), ("limit", "20")], "limit"),
            (f"/api/v1/bot/subscriptions/{sid}/deliveries", bot, [("state", "dead"), ("state", "pending")], "state"),
            ("/api/v1/audit", admin, [("since", "2026-12-01T00:00:00Z"), ("since", "2026-12-02T00:00:00Z")], "since"),
            ("/api/v1/admin/grants", admin, [("person_id", "1"), ("person_id", "2")], "person_id"),
        ):
            r = await h.get(path, headers=headers, params=params)
            assert r.status_code == 400, (path, r.text)
            err = r.json()["error"]
            assert (err["code"], err["data"]["field"], err["data"]["repeated"]) == ("bad_request", name, [name])
            # once is fine; a parameter the endpoint does not read is ignored, repeated or not
            r = await h.get(path, headers=headers, params=[params[0], ("colour", "a"), ("colour", "b")])
            assert r.status_code == 200, (path, r.text)


# ---------------------------------------------------------------------------------- 3. replays
async def test_every_create_answers_a_retry_as_a_replay(org_server: RunningServer) -> None:
    rs = org_server
    _, _, head_pos, head = await seat(rs, COUNTY, "county_head")
    _, _, w_pos, _ = await seat(rs, "990101001001001", "grid_worker")
    _, bot = await _app(rs, ["task:create", "notice:send"])
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(head)) as h:
        # with a 截止时间 (due_at), so that docs/api shows one: a replay answers it as first stored
        due = (datetime.now(UTC) + timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0)
        task = {
            "as_position": head_pos,
            "selector": f"pos:{w_pos}",
            "title": "巡查河道",
            "client_msg_id": "t-replay",
            "due_at": due.astimezone(timezone(timedelta(hours=8))).isoformat(),
        }
        notice = {"as_position": head_pos, "selector": f"pos:{w_pos}", "title": "开会", "client_msg_id": "n-replay"}
        nid = None
        for path, body in (("/api/v1/tasks", task), ("/api/v1/notices", notice)):
            first = await h.post(path, json=body)
            again = await h.post(path, json=body)
            assert (first.status_code, first.json()["duplicate"]) == (201, False), first.text
            assert "idempotent-replayed" not in first.headers
            assert (again.status_code, again.json()["duplicate"]) == (200, True), again.text
            assert again.headers["idempotent-replayed"] == "true"
            assert again.json() == {**first.json(), "duplicate": True}
            nid = first.json().get("notice_id", nid)
        # tasks for a notice's positions: the same
        body = {"as_position": head_pos, "client_msg_id": "nt-replay", "due_at": task["due_at"]}
        first = await h.post(f"/api/v1/notices/{nid}/tasks", json=body)
        again = await h.post(f"/api/v1/notices/{nid}/tasks", json=body)
        assert (first.status_code, again.status_code, again.json()["duplicate"]) == (201, 200, True), again.text
        assert again.json()["tasks"] == first.json()["tasks"]
        assert again.headers["idempotent-replayed"] == "true"
    async with httpx.AsyncClient(base_url=rs.http, headers=bot) as h:
        # the bot API: the first status and body again, with the header
        for path, body in (
            ("/api/v1/bot/tasks", {"selector": f"pos:{w_pos}", "title": "清理河道"}),
            ("/api/v1/bot/notices", {"selector": f"pos:{w_pos}", "title": "开会"}),
        ):
            first = await h.post(path, json=body, headers={"Idempotency-Key": path[-5:]})
            again = await h.post(path, json=body, headers={"Idempotency-Key": path[-5:]})
            assert first.status_code == again.status_code == 201, again.text
            assert again.json() == first.json() and first.json()["duplicate"] is False
            assert "idempotent-replayed" not in first.headers
            assert again.headers["idempotent-replayed"] == "true"


# ---------------------------------------------------------------------------------- 4. token errors
async def test_the_token_endpoint_words_errors_as_rfc_6749_for_form_requests(org_server: RunningServer) -> None:
    rs = org_server
    made, _ = await _app(rs, ["org:read"])
    _, lg = await new_person(rs.services_obj)  # type: ignore[attr-defined]
    await login(rs.http, lg)
    cid = made["client_id"]
    wrong = base64.b64encode(f"{cid}:zzdsec_wrong".encode()).decode()
    async with httpx.AsyncClient(base_url=rs.http) as h:
        for data, headers, status, code in (
            (
                {"grant_type": "client_credentials", "client_id": cid, "client_secret": "zzdsec_wrong"},
                {},
                401,
                "invalid_client",
            ),
            ({"grant_type": "client_credentials"}, {"Authorization": f"Basic {wrong}"}, 401, "invalid_client"),
            ({"grant_type": "password", "login": lg, "password": "wrong password"}, {}, 400, "invalid_grant"),
            ({"grant_type": "refresh_token", "refresh_token": "spent"}, {}, 400, "invalid_grant"),
            ({"grant_type": "implicit"}, {}, 400, "unsupported_grant_type"),
            ({"client_id": cid}, {}, 400, "invalid_request"),
            ({"grant_type": "client_credentials", "client_id": cid}, {}, 400, "invalid_request"),
        ):
            r = await h.post(TOKEN, data=data, headers=headers)
            body = r.json()
            assert (r.status_code, body["error"]) == (status, code), (data, r.text)
            assert isinstance(body["error_description"], str) and body["error_description"]
            assert body["error_detail"]["code"] and body["error_detail"]["message"] == body["error_description"]
            assert r.headers["cache-control"] == "no-store"
            if code == "invalid_client":
                assert r.headers["www-authenticate"] == 'Basic realm="zzd"'
        # A JSON request keeps the usual body; invalid_client is challenged with Basic there too.
        r = await h.post(TOKEN, json={"grant_type": "client_credentials", "client_id": cid, "client_secret": "x"})
        assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_client"), r.text
        assert r.headers["www-authenticate"] == 'Basic realm="zzd"'
        r = await h.post(TOKEN, json={"grant_type": "password", "login": lg, "password": "wrong password"})
        assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_grant"), r.text


async def test_every_token_answer_is_marked_no_store(org_server: RunningServer) -> None:
    """RFC 6749 5.1: an answer carrying tokens MUST say ``Cache-Control: no-store`` and ``Pragma: no-cache``.

    Only the form-encoded errors did; the answers with the credentials themselves (password, refresh,
    app and activation alike, JSON or form) could be kept by a cache on the way (found by the trust audit).
    """
    rs = org_server
    made, _ = await _app(rs, ["org:read"])
    _, lg = await new_person(rs.services_obj)  # type: ignore[attr-defined]
    app = {"grant_type": "client_credentials", "client_id": made["client_id"], "client_secret": made["client_secret"]}
    async with httpx.AsyncClient(base_url=rs.http) as h:
        answers = [
            await h.post(TOKEN, json={"grant_type": "password", "login": lg, "password": PASSWORD}),
            await h.post(TOKEN, data={"grant_type": "password", "login": lg, "password": PASSWORD}),
            await h.post(TOKEN, json=app),
            await h.post(TOKEN, data=app),
        ]
        refresh = answers[0].json()["refresh_token"]
        answers.append(await h.post(TOKEN, json={"grant_type": "refresh_token", "refresh_token": refresh}))
    for r in answers:
        assert r.status_code == 200 and r.json()["access_token"], r.text
        assert (r.headers.get("cache-control"), r.headers.get("pragma")) == ("no-store", "no-cache"), r.headers


async def test_the_published_contract_says_the_token_endpoint_takes_forms_and_answers_them_rfc_6749(
    org_server: RunningServer,
) -> None:
    """``/openapi.json`` said the token endpoint took JSON only and answered every error with ZZD's
    error object, so a client generated from it could neither send the form an OAuth2 library
    sends nor read the RFC 6749 answer it then gets. Every form-encoded error the server gives
    must fit the published ``OAuthError`` (fields and codes)."""
    rs = org_server
    made, _ = await _app(rs, ["org:read"])
    async with httpx.AsyncClient(base_url=rs.http) as h:
        doc = (await h.get("/openapi.json")).json()
        answers = [
            await h.post(TOKEN, data={"grant_type": "client_credentials", "client_id": made["client_id"]}),
            await h.post(TOKEN, data={"grant_type": "implicit"}),
            await h.post(TOKEN, data={"grant_type": "password", "login": "nobody", "password": "x"}),
            await h.post(TOKEN, data={"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"}),
        ]
    op = doc["paths"][TOKEN]["post"]
    assert set(op["requestBody"]["content"]) == {"application/json", "application/x-www-form-urlencoded"}
    schema = doc["components"]["schemas"]["OAuthError"]
    for r in answers:
        published = op["responses"][str(r.status_code)]["content"]["application/json"]["schema"]
        assert {"$ref": "#/components/schemas/OAuthError"} in published["oneOf"], (r.status_code, published)
        body = r.json()
        assert set(body) <= set(schema["properties"]) and set(schema["required"]) <= set(body), body
        assert body["error"] in schema["properties"]["error"]["enum"], body


# ----------------------------------------------------------------------------------- 5. events:*
async def test_events_star_is_not_granted_even_to_a_whole_tree_administrator(org_server: RunningServer) -> None:
    rs = org_server
    county, root = await admin_token(rs), await admin_token(rs, unit=None)
    for tok in (county, root):
        async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
            for scopes in (["events:*"], ["events:*.*"], ["org:read", "events:*"]):
                body = {"name": f"全部事件{scopes}{tok[-6:]}", "owning_unit": COUNTY, "subtree": COUNTY,
                        "visibility": f"*@{COUNTY}", "scopes": scopes}  # fmt: skip
                r = await h.post("/api/v1/apps", json=body)
                assert r.status_code == 400, r.text
                data = r.json()["error"]["data"]
                assert data["field"] == "scopes" and data["unknown"] == sorted(set(scopes) - {"org:read"})
                assert "events:task.*" in data["accepted"] and "events:*" not in data["accepted"]
    made, _ = await _app(rs, ["events:task.*"])
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(county)) as h:
        r = await h.patch(f"/api/v1/apps/{made['id']}", json={"scopes": ["events:*"]})
        assert (r.status_code, r.json()["error"]["data"]["unknown"]) == (400, ["events:*"]), r.text


async def test_a_client_credentials_request_may_name_a_scope_as_rfc_6749_allows(org_server: RunningServer) -> None:
    """RFC 6749 4.4.2: a client-credentials request may carry ``scope`` (OAuth2 client libraries often send
    it). The token carries the app's scopes whatever is asked, and the answer's ``scope`` says which (the
    RFC lets the server issue other scopes than asked, 3.3). Before, ``scope`` was an unknown field: 400."""
    rs = org_server
    made, _ = await _app(rs, ["org:read", "notice:send"], name="范围应用")
    basic = base64.b64encode(f"{made['client_id']}:{made['client_secret']}".encode()).decode()
    creds = {"client_id": made["client_id"], "client_secret": made["client_secret"]}
    async with httpx.AsyncClient(base_url=rs.http) as h:
        answers = [
            await h.post(TOKEN, data={"grant_type": "client_credentials", "scope": "org:read", **creds}),
            await h.post(TOKEN, json={"grant_type": "client_credentials", "scope": "org:read task:act", **creds}),
            await h.post(
                TOKEN,
                data={"grant_type": "client_credentials", "scope": ""},
                headers={"Authorization": f"Basic {basic}"},
            ),  # fmt: skip
        ]
        for r in answers:
            assert r.status_code == 200, r.text
            assert r.json()["scope"] == "notice:send org:read"
        r = await h.post(TOKEN, json={"grant_type": "client_credentials", "scope": ["org:read"], **creds})
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_body")
        r = await h.post(TOKEN, json={"grant_type": "client_credentials", "scope": "x" * 1001, **creds})
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_body")
