"""Bad inputs found by the outside audit on 江西 (province 36), run against PostgreSQL and Redis.

Each was answered ``500 internal_error`` on PostgreSQL (which refuses a NUL in a text parameter
outright) and a clean 4xx on SQLite, so the SQLite-only schemathesis run never saw them. Each test
runs on both backends: the answer is a JSON error naming the field, and nothing is written.
"""

from __future__ import annotations

import base64

import httpx

from kernel.audit import AuditQuery, query
from org_tree.jurisdiction import SYSTEM
from tests.client import login, new_person
from tests.conftest import RunningServer
from tests.org_server import auth


async def test_a_client_id_with_a_nul_is_an_unknown_client(server: RunningServer) -> None:
    """The token endpoint takes anyone's request: a NUL in ``client_id`` reached PostgreSQL (500)."""
    s = server.services_obj  # type: ignore[attr-defined]
    basic = base64.b64encode(b"zzdapp_%00:zzdsec_x").decode()
    async with httpx.AsyncClient(base_url=server.http) as h:
        answers = [
            await h.post(
                "/api/v1/auth/token",
                json={"grant_type": "client_credentials", "client_id": "zzdapp_\u0000", "client_secret": "zzdsec_x"},
            ),
            await h.post(
                "/api/v1/auth/token",
                content=b"grant_type=client_credentials&client_id=zzdapp_%00&client_secret=zzdsec_x",
                headers={"content-type": "application/x-www-form-urlencoded"},
            ),
            await h.post(
                "/api/v1/auth/token",
                json={"grant_type": "client_credentials"},
                headers={"authorization": f"Basic {basic}"},
            ),
        ]
    json_answer, form_answer, basic_answer = answers
    assert (json_answer.status_code, json_answer.json()["error"]["code"]) == (401, "invalid_client"), json_answer.text
    assert (form_answer.status_code, form_answer.json()["error"]) == (401, "invalid_client"), form_answer.text
    assert (basic_answer.status_code, basic_answer.json()["error"]["code"]) == (401, "invalid_client")
    assert all(a.headers["www-authenticate"] == 'Basic realm="zzd"' for a in answers)
    failed, _ = await query(s.db, AuditQuery(action="app.token_failed"))
    assert len(failed) == 3  # each on record, as a wrong secret is


async def _admin(server: RunningServer, perms: frozenset[str]) -> str:
    s = server.services_obj  # type: ignore[attr-defined]
    pid, lg = await new_person(s, "省管理员")
    await s.grants.grant(SYSTEM, pid, None, perms)
    return str((await login(server.http, lg))["access_token"])


async def test_an_audit_query_for_an_action_no_entry_can_have_is_refused(server: RunningServer) -> None:
    """``GET /api/v1/audit?action=%00`` answered 500 on PostgreSQL; an action is a dotted lower-case name."""
    tok = await _admin(server, frozenset({"audit"}))
    async with httpx.AsyncClient(base_url=server.http, headers=auth(tok)) as h:
        for bad in ("%00", "org.handover%00", "ORG.HANDOVER", "org handover"):
            r = await h.get(f"/api/v1/audit?action={bad}")
            assert r.status_code == 400, (bad, r.text)
            assert r.json()["error"]["data"]["field"] == "action", r.text
        r = await h.get("/api/v1/audit?action=admin.granted")
        assert r.status_code == 200, r.text
        assert [e["action"] for e in r.json()["entries"]] == ["admin.granted"]


async def test_a_category_name_with_a_nul_is_refused_and_nothing_stored(server: RunningServer) -> None:
    """``PUT /api/v1/tasks/categories/{key}`` stored the name unchecked: a NUL answered 500 on PostgreSQL."""
    s = server.services_obj  # type: ignore[attr-defined]
    tok = await _admin(server, frozenset({"settings"}))
    body = {"name": "河道\u0000垃圾", "accept_within": 60, "resolve_within": 600, "escalation": "head_above"}
    async with httpx.AsyncClient(base_url=server.http, headers=auth(tok)) as h:
        r = await h.put("/api/v1/tasks/categories/nul_name", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"] == {"code": "invalid_text", "message": "name contains NUL", "data": {"field": "name"}}
        listed = (await h.get("/api/v1/tasks/categories")).json()["categories"]
    assert "nul_name" not in {c["key"] for c in listed}
    put, _ = await query(s.db, AuditQuery(action="settings.category_put"))
    assert put == []
