"""Sign-outs are audited (who, which session, from which), and seen only as the audit rules allow, on both backends.

Before, ``POST /api/v1/auth/logout``, ``DELETE /api/v1/auth/sessions/{session}`` (a lost phone signed
out from the desk) and a session ended because its spent refresh token came back wrote nothing to the
audit log, though sign-ins did (found by an outside audit). The entries carry no unit, as sign-ins:
whole-tree auditors see them, a county's auditor does not, and the person without an audit grant is
refused the log.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import jwt

from kernel.sessions import public_id
from org_tree.jurisdiction import SYSTEM
from tests.client import login, new_person
from tests.conftest import RunningServer
from tests.org_server import auth, org_server  # noqa: F401 - the fixture


def _sid(tok: dict[str, Any]) -> str:
    return str(jwt.decode(tok["access_token"], options={"verify_signature": False})["sid"])


async def _entries(rs: RunningServer, tok: str, person_id: int) -> httpx.Response:
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        return await h.get("/api/v1/audit", params={"actor": person_id})


async def test_sign_outs_are_audited_and_only_whole_tree_auditors_see_them(org_server: RunningServer) -> None:  # noqa: F811
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    pid, lg = await new_person(s)
    phone, desk, laptop, tablet = [await login(rs.http, lg) for _ in range(4)]
    async with httpx.AsyncClient(base_url=rs.http) as h:
        lost = public_id(_sid(phone))
        r = await h.delete(f"/api/v1/auth/sessions/{lost}", headers=auth(desk["access_token"]))
        assert r.status_code == 200, r.text
        again = await h.delete(f"/api/v1/auth/sessions/{lost}", headers=auth(desk["access_token"]))
        assert again.status_code == 404  # nothing ended: nothing recorded
        r = await h.post("/api/v1/auth/logout", headers=auth(laptop["access_token"]))
        assert r.status_code == 200, r.text
        # the tablet's refresh token is copied: its second use ends the session
        first = await h.post("/api/v1/auth/token", json={"grant_type": "refresh_token",
                                                         "refresh_token": tablet["refresh_token"]})  # fmt: skip
        assert first.status_code == 200, first.text
        reused = await h.post("/api/v1/auth/token", json={"grant_type": "refresh_token",
                                                          "refresh_token": tablet["refresh_token"]})  # fmt: skip
        assert reused.status_code == 401

    whole, whole_login = await new_person(s, "省审计员")
    await s.grants.grant(SYSTEM, whole, None, frozenset({"audit"}))
    r = await _entries(rs, (await login(rs.http, whole_login))["access_token"], pid)
    assert r.status_code == 200, r.text
    got = [e for e in r.json()["entries"] if e["action"] != "auth.login"]
    assert [(e["action"], e["actor_person_id"], e["unit_id"]) for e in got] == [
        ("auth.session_revoked", pid, None),  # newest first: the reuse, the logout, the remote sign-out
        ("auth.logout", pid, None),
        ("auth.session_revoked", pid, None),
    ]
    assert got[0]["detail"] == {"session": public_id(_sid(tablet)), "reason": "refresh_token_reused"}
    assert got[1]["detail"] == {"session": public_id(_sid(laptop)), "addr": "127.0.0.1"}
    assert got[2]["detail"] == {"session": lost, "by_session": public_id(_sid(desk)), "addr": "127.0.0.1"}
    # the ids are those the sessions list shows, never a sid an access token carries
    assert not {_sid(t) for t in (phone, desk, laptop, tablet)} & set(json.dumps(got).replace('"', " ").split())

    county, county_login = await new_person(s, "区审计员")
    await s.grants.grant(SYSTEM, county, "990101", frozenset({"audit"}))
    r = await _entries(rs, (await login(rs.http, county_login))["access_token"], pid)
    assert r.status_code == 200 and r.json()["entries"] == [], r.text  # no unit: not a county's to read
    r = await _entries(rs, desk["access_token"], pid)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "no_grant")  # one's own entries need a grant too
