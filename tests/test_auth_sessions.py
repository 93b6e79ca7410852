"""One's own sign-in sessions (登录设备管理): list them, sign one out (a lost phone), on both backends.

Over real HTTP and WebSocket. The safety poll is a minute here, so a socket closed within a second was
closed by the ``revoke_session`` announcement, as a logout's are, not by the poll.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest

from kernel.sessions import public_id
from tests.client import PASSWORD, Client, login, new_person
from tests.conftest import RunningServer, make_settings, serving

SESSIONS = "/api/v1/auth/sessions"


@pytest.fixture
async def server(db_url: str) -> AsyncIterator[RunningServer]:
    async with serving(make_settings(db_url, safety_poll_interval=60), stop_within=5) as rs:
        yield rs


def _auth(tok: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok['access_token']}"}


def _sid(tok: dict[str, Any]) -> str:
    return str(jwt.decode(tok["access_token"], options={"verify_signature": False})["sid"])


async def _list(h: httpx.AsyncClient, tok: dict[str, Any]) -> list[dict[str, Any]]:
    r = await h.get(SESSIONS, headers=_auth(tok))
    assert r.status_code == 200, r.text
    return list(r.json()["sessions"])


async def _refresh(h: httpx.AsyncClient, tok: dict[str, Any]) -> httpx.Response:
    return await h.post(
        "/api/v1/auth/token", json={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]}
    )


def _error(r: httpx.Response, status: int, code: str) -> bool:
    return (
        r.status_code == status
        and r.headers["content-type"].startswith("application/json")
        and (r.json()["error"]["code"] == code and isinstance(r.json()["error"]["message"], str))
    )


async def test_a_person_lists_their_sessions_and_signs_the_lost_phone_out(server: RunningServer) -> None:
    s = server.services_obj  # type: ignore[attr-defined]
    _, lg = await new_person(s)
    phone = await login(server.http, lg)  # signed in first: the phone that is lost
    desk = await login(server.http, lg)
    async with httpx.AsyncClient(base_url=server.http) as h:
        listed = await _list(h, desk)
        assert [x["id"] for x in listed] == [public_id(_sid(desk)), public_id(_sid(phone))]  # newest first
        assert [x["current"] for x in listed] == [True, False]
        assert all(x["last_refreshed_at"] == x["created_at"] for x in listed)  # neither renewed yet
        assert [x["current"] for x in await _list(h, phone)] == [False, True]
        # The ids are not the sid the tokens carry, so an answer here leaks no token's content.
        assert not {_sid(phone), _sid(desk)} & {x["id"] for x in listed}
        renewed = await _refresh(h, phone)
        assert renewed.status_code == 200, renewed.text
        phone = renewed.json()
        again = {x["id"]: x for x in await _list(h, desk)}
        assert again[public_id(_sid(phone))]["last_refreshed_at"] > again[public_id(_sid(phone))]["created_at"]

        lost = await Client.connect(server.ws, phone["access_token"])
        kept = await Client.connect(server.ws, desk["access_token"])
        r = await h.delete(f"{SESSIONS}/{public_id(_sid(phone))}", headers=_auth(desk))
        assert r.status_code == 200 and r.json() == {"revoked": True}, r.text
        assert (await lost.wait_closed(timeout=1))[0] == 4503
        assert _error(await _refresh(h, phone), 401, "invalid_grant")
        assert _error(await h.get("/api/v1/me", headers=_auth(phone)), 403, "forbidden")
        # The desk goes on: its socket, its token, its list (now the desk alone).
        assert (await kept.request({"type": "ping"}))["type"] == "ok"
        assert [x["id"] for x in await _list(h, desk)] == [public_id(_sid(desk))]
        # Signed out already: the same 404 as an id never seen (a repeat learns nothing more).
        gone = await h.delete(f"{SESSIONS}/{public_id(_sid(phone))}", headers=_auth(desk))
        assert _error(gone, 404, "not_found"), gone.text
        # The current session may sign itself out: a logout.
        r = await h.delete(f"{SESSIONS}/{public_id(_sid(desk))}", headers=_auth(desk))
        assert r.status_code == 200, r.text
        assert (await kept.wait_closed(timeout=1))[0] == 4503
        assert _error(await h.get(SESSIONS, headers=_auth(desk)), 403, "forbidden")
    for c in (lost, kept):
        await c.close()


async def test_another_persons_session_is_404_and_untouched(server: RunningServer) -> None:
    s = server.services_obj  # type: ignore[attr-defined]
    _, lg_a = await new_person(s)
    _, lg_b = await new_person(s)
    a, b = await login(server.http, lg_a), await login(server.http, lg_b)
    b_ws = await Client.connect(server.ws, b["access_token"])
    async with httpx.AsyncClient(base_url=server.http) as h:
        before = await _list(h, b)
        for probe in (public_id(_sid(b)), "0" * 32):  # someone else's, and one no one has: alike
            r = await h.delete(f"{SESSIONS}/{probe}", headers=_auth(a))
            assert _error(r, 404, "not_found") and r.json()["error"]["message"] == "no such session", r.text
        # The raw sid (readable in any access token) names no session here, not even one's own.
        r = await h.delete(f"{SESSIONS}/{_sid(a)}", headers=_auth(a))
        assert _error(r, 404, "not_found"), r.text
        assert await _list(h, b) == before
        assert [x["id"] for x in await _list(h, a)] == [public_id(_sid(a))]  # a sees only their own
        assert (await b_ws.request({"type": "ping"}))["type"] == "ok"
        assert (await _refresh(h, b)).status_code == 200
    await b_ws.close()


async def test_bad_session_ids_are_400_and_change_nothing(server: RunningServer) -> None:
    _, lg = await new_person(server.services_obj)  # type: ignore[attr-defined]
    tok = await login(server.http, lg)
    async with httpx.AsyncClient(base_url=server.http) as h:
        before = await _list(h, tok)
        for bad in ("1", "9" * 40, "g" * 32, "0" * 31, "0" * 33, "x" * 4000, "%E2%80%AE" + "0" * 31):
            r = await h.delete(f"{SESSIONS}/{bad}", headers=_auth(tok))
            assert _error(r, 400, "bad_request") and r.json()["error"]["data"] == {"field": "session"}, (bad, r.text)
        # hex in either case is well-formed (kernel.hexids): no such session, as a lower-case unknown one
        assert _error(await h.delete(f"{SESSIONS}/{'A' * 32}", headers=_auth(tok)), 404, "not_found")
        assert await _list(h, tok) == before


async def test_no_token_and_app_tokens_are_refused(server: RunningServer) -> None:
    s = server.services_obj  # type: ignore[attr-defined]
    _, lg = await new_person(s)
    tok = await login(server.http, lg)
    # An app's token as the token endpoint issues one (client credentials): the app audience, not a person's.
    app = {"access_token": s.tokens.issue_app(1, 1, timedelta(minutes=5))}
    async with httpx.AsyncClient(base_url=server.http) as h:
        target = f"{SESSIONS}/{public_id(_sid(tok))}"
        for headers in ({}, _auth(app)):
            assert _error(await h.get(SESSIONS, headers=headers), 401, "unauthorized")
            assert _error(await h.delete(target, headers=headers), 401, "unauthorized")
        assert len(await _list(h, tok)) == 1


async def _sign_in(h: httpx.AsyncClient, lg: str, headers: dict[str, Any], **body: Any) -> dict[str, Any]:
    r = await h.post(
        "/api/v1/auth/token",
        json={"grant_type": "password", "login": lg, "password": PASSWORD, **body},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_each_session_shows_how_its_device_named_itself(server: RunningServer) -> None:
    """登录设备管理 needs to say which device each session is: before, the list had no label at all."""
    _, lg = await new_person(server.services_obj)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(base_url=server.http) as h:
        app = await _sign_in(h, lg, {"User-Agent": "Mozilla/5.0"}, client_label="华为 Mate 60 · 浙政钉 3.2")
        browser = await _sign_in(h, lg, {"User-Agent": "Mozilla/5.0 (Windows NT 10.0) Chrome/131.0"})
        # a UTF-8 User-Agent (the bytes on the wire) is read as UTF-8, not as Latin-1 mojibake
        native = await _sign_in(h, lg, {"User-Agent": "浙政钉/3.2 (iPhone; iOS 18.1)".encode()})
        anonymous = await _sign_in(h, lg, {"User-Agent": ""})
        listed = {x["id"]: x for x in await _list(h, app)}
        assert {k: v["client_label"] for k, v in listed.items()} == {
            public_id(_sid(app)): "华为 Mate 60 · 浙政钉 3.2",  # the body's label before the User-Agent
            public_id(_sid(browser)): "Mozilla/5.0 (Windows NT 10.0) Chrome/131.0",
            public_id(_sid(native)): "浙政钉/3.2 (iPhone; iOS 18.1)",
            public_id(_sid(anonymous)): None,
        }
        assert [x["current"] for x in listed.values()].count(True) == 1 and listed[public_id(_sid(app))]["current"]

        # a renewal records what the device says now (the browser upgraded); one that says nothing keeps it
        r = await h.post("/api/v1/auth/token", headers={"User-Agent": "Mozilla/5.0 (Windows NT 10.0) Chrome/132.0"},
                         json={"grant_type": "refresh_token", "refresh_token": browser["refresh_token"]})  # fmt: skip
        assert r.status_code == 200, r.text
        r = await h.post("/api/v1/auth/token", headers={"User-Agent": ""},
                         json={"grant_type": "refresh_token", "refresh_token": r.json()["refresh_token"]})  # fmt: skip
        assert r.status_code == 200, r.text
        renewal = {
            "grant_type": "refresh_token",
            "refresh_token": app["refresh_token"],
            "client_label": "华为 Mate 60 · 浙政钉 3.3",
        }
        r = await h.post("/api/v1/auth/token", headers={"User-Agent": "x"}, json=renewal)
        assert r.status_code == 200, r.text
        again = {x["id"]: x for x in await _list(h, anonymous)}
        assert again[public_id(_sid(browser))]["client_label"] == "Mozilla/5.0 (Windows NT 10.0) Chrome/132.0"
        assert again[public_id(_sid(browser))]["last_refreshed_at"] > again[public_id(_sid(browser))]["created_at"]
        assert again[public_id(_sid(app))]["client_label"] == "华为 Mate 60 · 浙政钉 3.3"
        assert again[public_id(_sid(anonymous))]["current"]


async def test_a_client_label_is_cleaned_and_bounded(server: RunningServer) -> None:
    """What a device says of itself is shown to its owner beside their other sessions: no NUL (PostgreSQL
    refuses one, SQLite keeps it), no bidi override or zero-width to disguise it, no line breaks, no
    unbounded User-Agent; a label over the documented 100 characters in the body is refused."""
    _, lg = await new_person(server.services_obj)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(base_url=server.http) as h:
        tricky = await _sign_in(h, lg, {}, client_label="我的\u0000手机\u202e\u200b 新\n\t款 ")
        long_agent = await _sign_in(h, lg, {"User-Agent": " ".join(["Mozilla/5.0", *["(KHTML, like Gecko)"] * 200])})
        listed = {x["id"]: x["client_label"] for x in await _list(h, tricky)}
        assert listed[public_id(_sid(tricky))] == "我的手机 新 款"
        cut = listed[public_id(_sid(long_agent))]
        assert len(cut) == 100 and cut.startswith("Mozilla/5.0 (KHTML, like Gecko)") and cut.endswith("…")
        r = await h.post("/api/v1/auth/token", json={"grant_type": "password", "login": lg, "password": PASSWORD,
                                                     "client_label": "长" * 101})  # fmt: skip
        assert _error(r, 400, "invalid_body"), r.text
        assert len(await _list(h, tricky)) == 2  # the refused sign-in opened nothing


async def test_a_new_password_by_activation_code_signs_every_old_session_out(server: RunningServer) -> None:
    """A code for someone who already signed in is a reset (``zzd person code``: a forgotten password, a
    lost phone). Setting the new password ends every session of the old one — its socket closes with
    4503, its access and refresh tokens stop working — and the new session is the only one; the audit
    entry says how many ended. Before, the lost phone stayed signed in (200 to /me and to a refresh)."""
    from kernel.audit import AuditQuery, query

    s = server.services_obj  # type: ignore[attr-defined]
    pid, lg = await new_person(s)
    phone = await login(server.http, lg)
    other, other_login = await new_person(s)  # someone else's session is not touched
    theirs = await login(server.http, other_login)
    code, _ = await s.persons.issue_code(pid, timedelta(days=1))
    async with httpx.AsyncClient(base_url=server.http) as h:
        lost = await Client.connect(server.ws, phone["access_token"])
        bystander = await Client.connect(server.ws, theirs["access_token"])
        r = await h.post("/api/v1/auth/activate", json={"login": lg, "code": code, "password": "换了新密码-2026"})
        assert r.status_code == 200, r.text
        fresh = r.json()
        assert (await lost.wait_closed(timeout=2))[0] == 4503
        assert _error(await _refresh(h, phone), 401, "invalid_grant")
        assert _error(await h.get("/api/v1/me", headers=_auth(phone)), 403, "forbidden")
        assert [x["id"] for x in await _list(h, fresh)] == [public_id(_sid(fresh))]
        assert (await h.get("/api/v1/me", headers=_auth(fresh))).json()["id"] == pid
        r = await h.post("/api/v1/auth/token", json={"grant_type": "password", "login": lg, "password": PASSWORD})
        assert _error(r, 401, "invalid_grant")  # the old password is gone too
        assert (await bystander.request({"type": "ping"}))["type"] == "ok"
        assert (await h.get("/api/v1/me", headers=_auth(theirs))).status_code == 200
    entries, _ = await query(s.db, AuditQuery(action="auth.activated"))
    assert [(e["actor_person_id"], e["detail"]["sessions_ended"]) for e in entries] == [(pid, 1)]
    for c in (lost, bystander):
        await c.close()
