"""Operational surface: health, readiness, metrics, and revocation enforced without the broker."""

from __future__ import annotations

import httpx

from tests.client import connect_as, new_people, new_person
from tests.conftest import RunningServer, make_settings, serving


async def test_health_ready_and_metrics(server: RunningServer) -> None:
    s = server.services_obj  # type: ignore[attr-defined]
    (a_id, a_login), (b_id, _) = await new_people(s, 2)
    c = await connect_as(server, a_login)
    await c.send_message(b_id, "counted")
    async with httpx.AsyncClient() as h:
        assert (await h.get(f"{server.http}/healthz")).json() == {"status": "ok"}
        ready = (await h.get(f"{server.http}/readyz")).json()
        assert ready["status"] == "ready" and ready["checks"] == {"database": "ok", "broker": "ok"}
        text = (await h.get(f"{server.http}/metrics")).text
    assert "zzd_ws_connections 1.0" in text
    assert 'zzd_ws_frames_total{outcome="ok",type="send"} 1.0' in text
    assert "zzd_send_commit_seconds_count 1.0" in text
    # Per route by template (bounded labels), method and status; counters end in _total.
    assert 'zzd_http_requests_total{method="GET",route="/readyz",status="200"} 1.0' in text
    assert 'zzd_http_request_seconds_count{method="GET",route="/healthz"} 1.0' in text
    assert "zzd_wakeups_published_total " in text and "zzd_broker_reconnects_total 0.0" in text
    assert "zzd_notice_deliveries_total 0.0" in text
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE") and line.endswith("counter")]
    assert len(names) >= 8 and all(n.endswith("_total") for n in names), names
    async with httpx.AsyncClient() as h:
        await h.get(f"{server.http}/api/v1/notices/99", headers={"Authorization": "Bearer x"})
        text = (await h.get(f"{server.http}/metrics")).text
    assert 'route="/api/v1/notices/{notice_id:int}",status="401"} 1.0' in text
    await c.close()


async def test_revoked_session_is_closed_by_the_safety_poll_even_without_announcement(db_url: str) -> None:
    async with serving(make_settings(db_url, safety_poll_interval=0.2)) as rs:
        s = rs.services_obj  # type: ignore[attr-defined]
        _, lg = await new_person(s)
        c = await connect_as(rs, lg)
        sid = next(iter(s.hub.connections())).session_id
        await s.sessions.revoke(sid)  # straight to the database: no broker message
        code, _ = await c.wait_closed(timeout=5)
        assert code == 4503


async def test_openapi_document_lists_every_rest_route_with_its_body_schema(server: RunningServer) -> None:
    async with httpx.AsyncClient() as h:
        doc = (await h.get(f"{server.http}/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path, method in [
        ("/api/v1/auth/token", "post"),
        ("/api/v1/messages", "post"),
        ("/api/v1/org/preview", "post"),
        ("/api/v1/org/positions/{position_id}/handover", "post"),
        ("/api/v1/notices", "post"),
        ("/api/v1/notices/{notice_id}/progress", "get"),
    ]:
        assert method in paths[path], (path, method)
    send = paths["/api/v1/notices"]["post"]
    ref = send["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert "selector" in doc["components"]["schemas"][ref]["properties"]
    assert send["security"] == [{"bearer": []}]
    assert "security" not in paths["/api/v1/auth/token"]["post"]
