"""Bad REST input: every refusal is a JSON error body, never a 500 or an HTML page (S19, S25 over HTTP)."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select

from messaging.schema import messages
from tests.client import login, new_people
from tests.conftest import RunningServer


def _json_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    err = r.json()["error"]
    assert isinstance(err["code"], str) and isinstance(err["message"], str), err
    return err


async def _count(server: RunningServer) -> int:
    async with server.services_obj.db.read() as conn:  # type: ignore[attr-defined]
        return int((await conn.execute(select(func.count()).select_from(messages))).scalar_one())


async def test_bad_bodies_get_400_json_and_store_nothing(server: RunningServer) -> None:
    s = server.services_obj  # type: ignore[attr-defined]
    (_, lg), (b_id, _) = await new_people(s, 2)
    tok = (await login(server.http, lg))["access_token"]
    auth = {"Authorization": f"Bearer {tok}"}
    good = '{"to": %d, "client_msg_id": "c1", "body": "hi"}' % b_id
    bad: list[tuple[str, bytes | str, str]] = [
        ("text/plain", good, "invalid_json"),
        ("application/x-www-form-urlencoded", "to=1&body=x", "invalid_json"),
        ("application/json", '{"to": ', "invalid_json"),
        ("application/json", '{"to": %d, "to": 1, "client_msg_id": "c", "body": "x"}' % b_id, "invalid_json"),
        ("application/json", '{"to": NaN, "client_msg_id": "c", "body": "x"}', "invalid_json"),
        ("application/json", '{"to": %d, "client_msg_id": "c", "body": "\\ud800"}' % b_id, "invalid_json"),
        ("application/json", "[" * 32768, "invalid_json"),
        ("application/json", b"\xff\xfe{}", "invalid_json"),
        ("application/json", '{"to": "%d", "client_msg_id": "c", "body": "x"}' % b_id, "invalid_body"),
        ("application/json", '{"to": true, "client_msg_id": "c", "body": "x"}', "invalid_body"),
        ("application/json", '{"to": %d.0, "client_msg_id": "c", "body": "x"}' % b_id, "invalid_body"),
        ("application/json", '{"to": %d, "client_msg_id": "c", "body": "x", "x": 1}' % b_id, "invalid_body"),
        ("application/json", '{"to": %d, "client_msg_id": "c", "body": "a\\u0000b"}' % b_id, "invalid_text"),
        ("application/json", '{"to": %d, "client_msg_id": "c", "body": "  "}' % b_id, "invalid_text"),
        ("application/json", '{"to": %d, "client_msg_id": "c", "body": "%s"}' % (b_id, "x" * 400_000), "bad_request"),
    ]
    before = await _count(server)
    async with httpx.AsyncClient() as c:
        for ctype, body, code in bad:
            r = await c.post(f"{server.http}/api/v1/messages", content=body, headers={**auth, "Content-Type": ctype})
            assert _json_error(r, 400)["code"] == code, (ctype, str(body)[:60], r.text[:200])
            r = await c.post(f"{server.http}/api/v1/auth/token", content=body, headers={"Content-Type": ctype})
            if ctype == "application/x-www-form-urlencoded":  # RFC 6749 5.2's body there (docs/apps.md)
                assert (r.status_code, r.json()["error"]) == (400, "invalid_request"), r.text
            else:
                _json_error(r, 400)
        assert await _count(server) == before
        r = await c.post(
            f"{server.http}/api/v1/messages", content=good, headers={**auth, "Content-Type": "application/json"}
        )
        assert r.status_code == 201, r.text
    assert await _count(server) == before + 1


async def test_unknown_route_is_404_json_and_wrong_method_405_json(server: RunningServer) -> None:
    async with httpx.AsyncClient() as c:
        assert _json_error(await c.get(f"{server.http}/api/v1/nope"), 404)["code"] == "not_found"
        assert _json_error(await c.get(f"{server.http}/api/v1/../../etc/passwd"), 404)
        for r in (
            await c.get(f"{server.http}/api/v1/auth/token"),
            await c.delete(f"{server.http}/api/v1/messages"),
            await c.post(f"{server.http}/api/v1/me"),
            await c.delete(f"{server.http}/api/v1/org/roles"),  # a read-only collection
        ):
            assert _json_error(r, 405)["code"] == "method_not_allowed"
            assert r.headers["allow"]


async def test_a_path_with_a_trailing_slash_is_404_json_not_a_redirect(server: RunningServer) -> None:
    """``/api/v1/me/`` answered 307 with an empty body and ``Location`` built from the request's ``Host``
    (Starlette's slash redirect): no JSON error, a POST bounced with its body to wherever ``Host`` said,
    and a client's token resent after it (found by the trust audit). No path of the API ends in a slash."""
    (_, lg), *_ = await new_people(server.services_obj, 1)  # type: ignore[attr-defined]
    tok = (await login(server.http, lg))["access_token"]
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {tok}", "Host": "evil.example"}) as c:
        for r in (
            await c.get(f"{server.http}/api/v1/me/"),
            await c.get(f"{server.http}/api/v1/org/roles/"),
            await c.post(f"{server.http}/api/v1/notices/", json={}),
        ):
            assert _json_error(r, 404)["code"] == "not_found"
            assert "location" not in r.headers
