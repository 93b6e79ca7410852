"""Who may call each open-platform endpoint, route by route from the route tables (so a new route is
covered the day it is added): every ``/api/v1/bot/…`` route refuses no token, a person's token and the
token of a revoked secret with 401 before it reads its body; every ``/api/v1/apps…`` administration
route refuses an app's token with 401; and a person without the ``apps`` grant is shown nothing."""

from __future__ import annotations

import re

import httpx

from tests.apps.helpers import admin_token, app_token, make_app
from tests.conftest import RunningServer
from tests.org_server import auth, seat
from zzd.http import app_admin_routes, bot_routes, subscription_routes


def _calls(routes: list[object]) -> list[tuple[str, str]]:
    out = []
    for r in routes:
        path = re.sub(r"\{[^}]+\}", "1", r.path)  # type: ignore[attr-defined]
        out += [(m, path) for m in sorted(r.methods - {"HEAD"})]  # type: ignore[attr-defined]
    return out


BOT = _calls([*bot_routes.routes, *subscription_routes.routes])
ADMIN = _calls(app_admin_routes.routes)


async def test_every_bot_route_refuses_anything_but_a_live_app_token(platform_server: RunningServer) -> None:
    rs = platform_server
    admin = await admin_token(rs, None)
    made = await make_app(rs, admin, name="守门平台", scopes=["org:read"])
    live = (await app_token(rs, made["client_id"], made["client_secret"])).json()["access_token"]
    _, _, _, person = await seat(rs, "990101001001", "village_secretary")
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(admin)) as h:
        r = await h.post(f"/api/v1/apps/{made['id']}/secrets/{made['secret_id']}/revoke")
        assert r.status_code == 200, r.text
    assert len(BOT) >= 21
    async with httpx.AsyncClient(base_url=rs.http) as h:
        for method, path in BOT:
            for who, headers in (("nobody", {}), ("a person", auth(person)), ("a revoked app", auth(live))):
                r = await h.request(method, path, headers=headers, json={})
                assert r.status_code == 401, (method, path, who, r.text)
                assert r.json()["error"]["code"] in ("unauthorized", "invalid_client"), (method, path, who)


async def test_every_admin_route_refuses_app_tokens_and_shows_nothing_to_people_without_the_grant(
    platform_server: RunningServer,
) -> None:
    rs = platform_server
    admin = await admin_token(rs, None)
    made = await make_app(rs, admin, name="管理平台", scopes=["org:read"])
    app_tok = (await app_token(rs, made["client_id"], made["client_secret"])).json()["access_token"]
    _, _, _, person = await seat(rs, "990101001001", "village_secretary")
    assert len(ADMIN) >= 7
    async with httpx.AsyncClient(base_url=rs.http) as h:
        for method, path in ADMIN:
            real = path.replace("/apps/1", f"/apps/{made['id']}")
            for headers in ({}, auth(app_tok)):
                r = await h.request(method, real, headers=headers, json={})
                assert r.status_code == 401, (method, real, r.text)
        # a signed-in person without the apps grant: refused to create, and every app is as if unknown
        create = {"name": "冒名平台", "owning_unit": "990101", "subtree": "990101", "visibility": "*@990101",
                  "scopes": ["org:read"]}  # fmt: skip
        expect = {
            ("POST", "/api/v1/apps"): (403, create),
            ("GET", "/api/v1/apps/1"): (404, None),
            ("PATCH", "/api/v1/apps/1"): (404, {"disabled": True}),
            ("POST", "/api/v1/apps/1/secrets"): (404, {}),
            ("POST", "/api/v1/apps/1/secrets/1/revoke"): (404, {}),
        }
        assert set(expect) | {("GET", "/api/v1/apps"), ("GET", "/api/v1/me/apps")} == set(ADMIN)
        for (method, path), (status, body) in expect.items():
            real = path.replace("/apps/1", f"/apps/{made['id']}").replace("/secrets/1", f"/secrets/{made['secret_id']}")
            r = await h.request(method, real, headers=auth(person), json=body)
            assert r.status_code == status, (method, real, r.text)
        listed = await h.get("/api/v1/apps", headers=auth(person))
        assert (listed.status_code, listed.json()["apps"]) == (200, [])
        r = await h.get(f"/api/v1/apps/{made['id']}", headers=auth(admin))
        assert r.status_code == 200 and r.json()["disabled"] is False  # and nothing was changed by them
