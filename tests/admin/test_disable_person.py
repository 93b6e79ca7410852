"""Disabling a person (``PATCH /api/v1/org/persons/{id}`` with ``disabled``; the CLI: test_cli_accounts.py).

Found by the admin audit: docs/protocol.md closes a disabled account's sockets with 4503, but
nothing let an administrator or the operator disable one — a departed official kept signing in.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from kernel.audit import AuditQuery, query
from org_tree.jurisdiction import SYSTEM
from tests.client import PASSWORD, Client, new_person
from tests.conftest import RunningServer
from tests.org_server import auth, seat

TOWN, VILLAGE, OTHER_COUNTY = "990101001", "990101001001", "990102"


async def _admin(rs: RunningServer, unit: str | None, perms: set[str]) -> tuple[int, str]:
    s = rs.services_obj  # type: ignore[attr-defined]
    pid, lg = await new_person(s, "管理员")
    await s.grants.grant(SYSTEM, pid, unit, frozenset(perms))
    async with httpx.AsyncClient(base_url=rs.http) as h:
        r = await h.post("/api/v1/auth/token", json={"grant_type": "password", "login": lg, "password": PASSWORD})
    return pid, str(r.json()["access_token"])


async def _director_and_admin(rs: RunningServer) -> tuple[Any, int, int, str]:
    """The services, a village director's person id, and an ``assignments`` administrator of the town (id, token)."""
    who, _, _, _ = await seat(rs, VILLAGE, "village_director")
    admin_id, admin = await _admin(rs, TOWN, {"assignments"})
    return rs.services_obj, who, admin_id, admin  # type: ignore[attr-defined]


async def test_an_administrator_disables_a_holder_and_every_session_ends(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    who, who_login, _pos, who_token = await seat(rs, VILLAGE, "village_secretary")
    async with httpx.AsyncClient(base_url=rs.http) as h:
        r = await h.post("/api/v1/auth/token",
                         json={"grant_type": "password", "login": who_login, "password": PASSWORD})  # fmt: skip
        refresh = r.json()["refresh_token"]
    ws = await Client.connect(rs.ws, who_token)
    admin_id, admin = await _admin(rs, TOWN, {"assignments"})
    _, outsider = await _admin(rs, OTHER_COUNTY, {"assignments"})
    async with httpx.AsyncClient(base_url=rs.http) as h:
        # others: like an unknown id; a bad value: 400; oneself: 403 — and nothing changes
        r = await h.patch(f"/api/v1/org/persons/{who}", json={"disabled": True}, headers=auth(outsider))
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
        r = await h.patch(f"/api/v1/org/persons/{who}", json={"disabled": "yes"}, headers=auth(admin))
        assert r.status_code == 400 and r.json()["error"]["data"]["field"] == "disabled", r.text
        r = await h.patch(f"/api/v1/org/persons/{admin_id}", json={"disabled": True}, headers=auth(admin))
        assert r.status_code in (403, 404), r.text
        assert not (await s.persons.get(who)).disabled
        assert (await h.get("/api/v1/me", headers=auth(who_token))).status_code == 200
        # the administrator over the holder's unit
        r = await h.patch(f"/api/v1/org/persons/{who}", json={"disabled": True}, headers=auth(admin))
        assert r.status_code == 200, r.text
        assert r.json()["disabled"] is True
        assert (await ws.wait_closed())[0] == 4503
        assert (await h.get("/api/v1/me", headers=auth(who_token))).status_code == 403
        r = await h.post("/api/v1/auth/token", json={"grant_type": "refresh_token", "refresh_token": refresh})
        assert r.status_code == 401, r.text
        r = await h.post("/api/v1/auth/token",
                         json={"grant_type": "password", "login": who_login, "password": PASSWORD})  # fmt: skip
        assert r.status_code == 401, r.text
        # enabled again: a new sign-in works (the old sessions stay ended)
        r = await h.patch(f"/api/v1/org/persons/{who}", json={"disabled": False}, headers=auth(admin))
        assert r.status_code == 200 and r.json()["disabled"] is False, r.text
        r = await h.post("/api/v1/auth/token",
                         json={"grant_type": "password", "login": who_login, "password": PASSWORD})  # fmt: skip
        assert r.status_code == 200, r.text
        assert (await h.get("/api/v1/me", headers=auth(who_token))).status_code == 403
    entries, _ = await query(s.db, AuditQuery(actor_person_id=admin_id))
    actions = [(e["action"], e["outcome"]) for e in reversed(entries)]
    assert ("person.disabled", "ok") in actions and ("person.enabled", "ok") in actions
    disabled = next(e for e in entries if e["action"] == "person.disabled")
    assert disabled["detail"]["person_id"] == who and disabled["detail"]["sessions_ended"] >= 2


async def test_a_bad_phone_names_its_field_and_changes_nothing(org_server: RunningServer) -> None:
    """docs/org-structure.md: a bad body is a 400 with ``data.field`` (a phone that is not digits had none)."""
    s, who, _, admin = await _director_and_admin(org_server)
    before = await s.persons.get(who)
    async with httpx.AsyncClient(base_url=org_server.http, headers=auth(admin)) as h:
        for phone in ("abc", "1" * 33):
            r = await h.patch(f"/api/v1/org/persons/{who}", json={"name": "新名字", "phone": phone})
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error["code"] in ("bad_request", "invalid_body") and error["data"]["field"] == "phone", error
    assert await s.persons.get(who) == before


async def test_a_disabled_account_cannot_activate(org_server: RunningServer) -> None:
    """Found by the admin audit: activation answered 200 with (dead) tokens for a disabled account, used up
    the code and wrote ``auth.login``; it now answers like a wrong code, and the code still works once the
    account is enabled again."""
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    who, lg = await new_person(s, "停用者")
    await s.org.change_person(SYSTEM, who, disabled=True)
    code, _ = await s.persons.issue_code(who, timedelta(days=1))
    body = {"login": lg, "code": code, "password": "new-pass-2026"}
    async with httpx.AsyncClient(base_url=rs.http) as h:
        r = await h.post("/api/v1/auth/activate", json=body)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_grant", r.text
        logins, _ = await query(s.db, AuditQuery(action="auth.login", actor_person_id=who))
        assert logins == []
        await s.org.change_person(SYSTEM, who, disabled=False)
        r = await h.post("/api/v1/auth/activate", json=body)
        assert r.status_code == 200, r.text


async def test_a_patch_that_changes_nothing_writes_nothing(org_server: RunningServer) -> None:
    """Found by the administration audit: ``PATCH /api/v1/org/persons/{id}`` with ``{}`` (or the same name)
    answered 200 and wrote a ``person.updated`` entry that changed nothing, and bumped the org version."""
    s, who, admin_id, admin = await _director_and_admin(org_server)
    before = await s.persons.get(who)
    async with httpx.AsyncClient(base_url=org_server.http, headers=auth(admin)) as h:
        for body in ({}, {"name": before.name}, {"disabled": False}):
            r = await h.patch(f"/api/v1/org/persons/{who}", json=body)
            assert r.status_code == 200 and r.json()["name"] == before.name, (body, r.text)
    entries, _ = await query(s.db, AuditQuery(actor_person_id=admin_id))
    assert [e["action"] for e in entries if not e["action"].startswith("auth.")] == [], entries
    assert await s.persons.get(who) == before
