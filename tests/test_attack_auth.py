"""Forged, expired and odd tokens; revocation; refresh rotation; Origin (S20, S21, S22), on both backends."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import jwt
import jwt.warnings
import pytest
import websockets
from argon2 import PasswordHasher

from tests.client import PASSWORD, Client, login, new_people, new_person
from tests.conftest import TEST_KEYS, RunningServer, make_settings, serving

KID, _, _SECRET = TEST_KEYS.partition(":")
KEY = _SECRET.encode()
ISS, AUD = "zzd", "zzd-clients"
PROTOCOL_MD = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def _serve(settings: Any) -> AbstractAsyncContextManager[RunningServer]:
    """Like conftest's ``server``, but a shutdown hung by stuck connection handlers fails instead of hanging."""
    return serving(settings, stop_within=5)


@pytest.fixture
async def server(db_url: str) -> AsyncIterator[RunningServer]:
    async with _serve(make_settings(db_url)) as rs:
        yield rs


@pytest.fixture
async def strict_server(db_url: str) -> AsyncIterator[RunningServer]:
    """No clock-skew leeway, so a token minted to expire in 2 s closes the socket in about 2 s."""
    async with _serve(make_settings(db_url, jwt_leeway=0)) as rs:
        yield rs


@pytest.fixture
async def origin_server(db_url: str) -> AsyncIterator[RunningServer]:
    async with _serve(make_settings(db_url, allowed_origins=["https://gov.example"])) as rs:
        yield rs


# --- helpers -----------------------------------------------------------------------


async def _session(server: RunningServer) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """A person logged in: (person_id, token response, claims of its access token)."""
    pid, lg = await new_person(server.services_obj)  # type: ignore[attr-defined]
    tok = await login(server.http, lg)
    claims = jwt.decode(tok["access_token"], options={"verify_signature": False})
    return pid, tok, claims


def _claims(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    c = {
        "sub": base["sub"],
        "sid": base["sid"],
        "iss": ISS,
        "aud": AUD,
        "iat": now - 5,
        "nbf": now - 5,
        "exp": now + 300,
        "jti": "forged-jti",
    }
    for k, v in changes.items():
        if v is _DROP:
            c.pop(k, None)
        else:
            c[k] = v
    return c


_DROP = object()


def _mint(claims: dict[str, Any], key: bytes = KEY, alg: str = "HS256", **headers: Any) -> str:
    with warnings.catch_warnings():
        # HS384/HS512 with the 40-byte test key: PyJWT warns about the key length.
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": KID, **headers})


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _hand_signed(header: dict[str, Any], claims: dict[str, Any], key: bytes = KEY) -> str:
    signing_input = f"{_b64(header)}.{_b64(claims)}"
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


def _flip(token: str, part: int) -> str:
    segs = token.split(".")
    s = segs[part]
    i = len(s) // 2
    segs[part] = s[:i] + ("A" if s[i] != "A" else "B") + s[i + 1 :]
    return ".".join(segs)


def _bad_tokens(base: dict[str, Any], good: str) -> list[tuple[str, str]]:
    now = int(time.time())
    cases: list[tuple[str, str]] = [
        ("alg none", jwt.encode(_claims(base), None, algorithm="none", headers={"kid": KID})),
        ("alg none, hand-made", f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': KID})}.{_b64(_claims(base))}."),
        ("alg NONE with signature", f"{_b64({'alg': 'NONE', 'kid': KID})}.{_b64(_claims(base))}.c2ln"),
        ("HS512 with the right key", _mint(_claims(base), alg="HS512")),
        ("HS384 with the right key", _mint(_claims(base), alg="HS384")),
        ("wrong key", _mint(_claims(base), key=b"w" * 40)),
        ("unknown kid", jwt.encode(_claims(base), KEY, algorithm="HS256", headers={"kid": "t2"})),
        ("no kid", jwt.encode(_claims(base), KEY, algorithm="HS256")),
        ("kid path", jwt.encode(_claims(base), KEY, algorithm="HS256", headers={"kid": "../../dev/null"})),
        ("kid sql", jwt.encode(_claims(base), KEY, algorithm="HS256", headers={"kid": "' OR 1=1--"})),
        ("kid int", _hand_signed({"alg": "HS256", "typ": "JWT", "kid": 1}, _claims(base))),
        ("kid list", _hand_signed({"alg": "HS256", "typ": "JWT", "kid": [KID]}, _claims(base))),
        ("payload byte flipped", _flip(good, 1)),
        ("signature byte flipped", _flip(good, 2)),
        ("header byte flipped", _flip(good, 0)),
        ("signature stripped", good.rsplit(".", 1)[0] + "."),
        ("payload swapped", ".".join([good.split(".")[0], _b64(_claims(base, sub="1")), good.split(".")[2]])),
        ("expired beyond leeway", _mint(_claims(base, iat=now - 600, nbf=now - 600, exp=now - 60))),
        ("nbf in the future", _mint(_claims(base, nbf=now + 120))),
        ("iat in the future", _mint(_claims(base, iat=now + 120))),
        ("wrong aud", _mint(_claims(base, aud="zzd-admin"))),
        ("aud list", _mint(_claims(base, aud=[AUD, "other"]))),
        ("aud prefix", _mint(_claims(base, aud="zzd-client"))),
        ("iss prefix", _mint(_claims(base, iss="zz"))),
        ("iss suffix", _mint(_claims(base, iss="zzd.evil"))),
        ("iss superstring", _mint(_claims(base, iss="xzzd"))),
        ("iss case", _mint(_claims(base, iss="ZZD"))),
        ("iss padded", _mint(_claims(base, iss=" zzd"))),
        ("sub not numeric", _mint(_claims(base, sub="1 OR 1=1"))),
        ("sub int", _mint(_claims(base, sub=int(base["sub"])))),
        ("jku header", _mint(_claims(base), jku="https://evil.example/jwks.json")),
        ("jwk header", _mint(_claims(base), jwk={"kty": "oct", "k": _b64({"x": 1})})),
        ("x5u header", _mint(_claims(base), x5u="https://evil.example/cert.pem")),
        ("x5c header", _mint(_claims(base), x5c=["MIIB"])),
        ("crit header", _mint(_claims(base), crit=["exp"])),
        ("garbage", "not.a.jwt"),
        ("empty segments", ".."),
    ]
    for claim in ("exp", "iat", "nbf", "sub", "aud", "iss", "jti", "sid"):
        cases.append((f"missing {claim}", _mint(_claims(base, **{claim: _DROP}))))
    return cases


async def _ws_hello(server: RunningServer, token: str, **kw: Any) -> tuple[list[dict[str, Any]], int | None]:
    """Send a hello; return the frames received and the close code."""
    frames: list[dict[str, Any]] = []
    async with websockets.connect(server.ws, max_size=2**20, **kw) as ws:
        await ws.send(json.dumps({"type": "hello", "id": "h", "v": 1, "token": token}))
        try:
            async with asyncio.timeout(3):
                async for raw in ws:
                    frames.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        except TimeoutError:
            return frames, None  # the server never closed the socket
        return frames, ws.close_code


async def _ws_upgrade(server: RunningServer, token: str) -> Any:
    """The HTTP response to an upgrade carrying ``token`` in its Authorization header (None: upgraded)."""
    try:
        async with websockets.connect(server.ws, additional_headers={"Authorization": f"Bearer {token}"}):
            return None
    except websockets.InvalidStatus as refused:
        return refused.response


async def _me(server: RunningServer, token: str) -> httpx.Response:
    async with httpx.AsyncClient() as c:
        return await c.get(f"{server.http}/api/v1/me", headers={"Authorization": f"Bearer {token}"})


def _is_json_error(r: httpx.Response, status: int, code: str | None = None) -> bool:
    if r.status_code != status or not r.headers.get("content-type", "").startswith("application/json"):
        return False
    err = r.json().get("error", {})
    return (
        isinstance(err.get("code"), str)
        and isinstance(err.get("message"), str)
        and (code is None or err["code"] == code)
    )


# --- S20: forged and odd tokens ------------------------------------------------------


async def test_correctly_minted_token_is_accepted_as_a_control(server: RunningServer) -> None:
    pid, tok, base = await _session(server)
    forged_ok = _mint(_claims(base))
    frames, _ = await _ws_hello_accept(server, forged_ok)
    assert frames[0]["type"] == "ok" and frames[0]["data"]["person_id"] == pid
    r = await _me(server, forged_ok)
    assert r.status_code == 200 and r.json()["id"] == pid


async def _ws_hello_accept(server: RunningServer, token: str) -> tuple[list[dict[str, Any]], None]:
    async with websockets.connect(server.ws) as ws:
        await ws.send(json.dumps({"type": "hello", "id": "h", "v": 1, "token": token}))
        return [json.loads(await ws.recv())], None


async def test_forged_and_odd_tokens_are_rejected_on_ws_and_rest(server: RunningServer) -> None:
    _, tok, base = await _session(server)
    failures: list[str] = []
    cases = _bad_tokens(base, tok["access_token"])
    ws_results = await asyncio.gather(*(_ws_hello(server, token) for _, token in cases))
    for (name, token), (frames, code) in zip(cases, ws_results, strict=True):
        expired = name == "expired beyond leeway"
        if (
            code != 4401
            or len(frames) != 1
            or frames[0].get("type") != "error"
            or frames[0].get("ref") != "h"
            or frames[0].get("code") != ("token_expired" if expired else "unauthorized")
        ):
            failures.append(f"WS {name}: close={code} frames={frames}")
        # The same token in the upgrade request: HTTP 401 before any upgrade (tests/test_handshake_auth.py).
        up = await _ws_upgrade(server, token)
        if (
            up is None
            or up.status_code != 401
            or json.loads(up.body)["error"]["code"] != ("token_expired" if expired else "unauthorized")
            or up.headers.get("WWW-Authenticate") != "Bearer"
        ):
            failures.append(f"WS upgrade {name}: {up and (up.status_code, up.body[:200])}")
        r = await _me(server, token)
        if not _is_json_error(r, 401, "token_expired" if expired else "unauthorized"):
            failures.append(f"REST {name}: {r.status_code} {r.text[:200]}")
        elif r.headers.get("www-authenticate", "").lower() != "bearer":
            failures.append(f"REST {name}: no WWW-Authenticate: Bearer")
        # The rejection must not leak anything about the person.
        if base["sub"] in r.text or any(base["sub"] in json.dumps(f) for f in frames):
            failures.append(f"{name}: response mentions the person id")
    assert failures == []


async def test_oversized_tokens_are_rejected(server: RunningServer) -> None:
    _, _, base = await _session(server)
    big_kid = jwt.encode(_claims(base), KEY, algorithm="HS256", headers={"kid": "x" * 10_000})
    assert len(big_kid) > 8192
    # Over the 8 KiB cap: the hello frame itself is invalid (bad client, 4400) or refused as a token (4401).
    frames, code = await _ws_hello(server, big_kid)
    assert code in (4400, 4401) and frames and frames[0]["type"] == "error", (code, frames)
    assert _is_json_error(await _me(server, big_kid), 401, "unauthorized")
    padded = _mint(_claims(base, pad="p" * 9000))
    assert _is_json_error(await _me(server, padded), 401, "unauthorized")

    one_mb = "a" * (1 << 20)
    # A 1 MB hello is over the 64 KiB frame limit: closed 1009 before any parsing.
    frames, code = await _ws_hello(server, one_mb)
    assert code == 1009 and frames == []
    async with httpx.AsyncClient() as c:
        try:
            r = await c.get(f"{server.http}/api/v1/me", headers={"Authorization": f"Bearer {one_mb}"})
        except httpx.HTTPError:
            r = None  # the HTTP parser dropping a 1 MB header line is a rejection too
    assert r is None or r.status_code in (400, 401, 413, 431), r.status_code
    if r is not None and r.status_code == 401:
        assert _is_json_error(r, 401)
    # The server is still fine afterwards.
    pid, tok, _ = await _session(server)
    assert (await _me(server, tok["access_token"])).json()["id"] == pid


async def test_missing_or_malformed_authorization_header_is_401_json(server: RunningServer) -> None:
    _, tok, _ = await _session(server)
    async with httpx.AsyncClient() as c:
        for headers in (
            {},
            {"Authorization": ""},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer x"},
            {"Authorization": f"Basic {tok['access_token']}"},
            {"Authorization": tok["access_token"]},
        ):
            r = await c.get(f"{server.http}/api/v1/me", headers=headers)
            assert _is_json_error(r, 401, "unauthorized"), (headers, r.status_code, r.text)
            assert r.headers.get("www-authenticate", "").lower() == "bearer"


async def test_token_expiring_on_an_open_socket_closes_it_4401(strict_server: RunningServer) -> None:
    server = strict_server
    _, tok, base = await _session(server)
    exp = int(time.time()) + 3
    short = _mint(_claims(base, exp=exp))
    c = await Client.connect(server.ws, short)
    assert (await c.request({"type": "ping"}))["type"] == "ok"
    code, _ = await c.wait_closed(timeout=10)
    closed_at = time.time()
    assert code == 4401
    assert closed_at >= exp - 0.05, "closed before the token expired"
    assert closed_at <= exp + 2, "closed too late after expiry (leeway 0)"
    await c.close()
    # Re-auth with the token from login works again.
    c2 = await Client.connect(server.ws, tok["access_token"])
    assert c2.closed is None
    await c2.close()
    # protocol.md tells a client author so: a socket lives as long as its token (a client from the docs
    # alone took the 4401 row for a hello refusal only)
    [row] = [r for r in PROTOCOL_MD.read_text().splitlines() if r.startswith("| 4401 |")]
    assert "on an open socket the moment its access token expires" in row


# --- S21: revocation and refresh ---------------------------------------------------------


async def _post_token(server: RunningServer, body: Any, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient() as c:
        return await c.post(f"{server.http}/api/v1/auth/token", json=body, **kw)


async def test_logout_closes_that_sessions_sockets_4503_and_refuses_its_tokens(server: RunningServer) -> None:
    s = server.services_obj  # type: ignore[attr-defined]
    pid, lg = await new_person(s)
    t1 = await login(server.http, lg)
    t2 = await login(server.http, lg)  # a second session of the same person (another device)
    a1 = await Client.connect(server.ws, t1["access_token"])
    a2 = await Client.connect(server.ws, t1["access_token"])
    other = await Client.connect(server.ws, t2["access_token"])
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{server.http}/api/v1/auth/logout", headers={"Authorization": f"Bearer {t1['access_token']}"})
    assert r.status_code == 200 and r.json() == {"revoked": True}
    assert (await a1.wait_closed(timeout=5))[0] == 4503
    assert (await a2.wait_closed(timeout=5))[0] == 4503
    # The other session is untouched.
    assert (await other.request({"type": "ping"}))["type"] == "ok"
    # New hello with the revoked session's (unexpired) access token: refused.
    frames, code = await _ws_hello(server, t1["access_token"])
    assert code == 4503 and frames and frames[0]["type"] == "error" and frames[0]["code"] == "forbidden"
    r = await _me(server, t1["access_token"])
    assert _is_json_error(r, 403, "forbidden"), r.text
    # Its refresh token is dead too.
    r = await _post_token(server, {"grant_type": "refresh_token", "refresh_token": t1["refresh_token"]})
    assert _is_json_error(r, 401, "invalid_grant"), r.text
    assert (await _me(server, t2["access_token"])).status_code == 200
    for c in (a1, a2, other):
        await c.close()


async def test_refresh_token_reuse_revokes_the_session(server: RunningServer) -> None:
    _, lg = await new_person(server.services_obj)  # type: ignore[attr-defined]
    t = await login(server.http, lg)
    r1 = await _post_token(server, {"grant_type": "refresh_token", "refresh_token": t["refresh_token"]})
    assert r1.status_code == 200, r1.text
    rotated = r1.json()
    assert rotated["refresh_token"] != t["refresh_token"]
    assert (await _me(server, rotated["access_token"])).status_code == 200
    # Replaying the first refresh token: refused, and the whole session is revoked.
    again = await _post_token(server, {"grant_type": "refresh_token", "refresh_token": t["refresh_token"]})
    assert _is_json_error(again, 401, "invalid_grant"), again.text
    r3 = await _post_token(server, {"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]})
    assert _is_json_error(r3, 401, "invalid_grant"), r3.text
    assert (await _me(server, rotated["access_token"])).status_code == 403
    assert (await _me(server, t["access_token"])).status_code == 403


async def test_refresh_token_reuse_closes_the_sessions_open_sockets(db_url: str) -> None:
    """Reuse means the refresh token was stolen: the session's live sockets must go too (S21c), at once.

    The reuse revoked the session in the database and left its sockets to the hub's safety poll: up to
    5 s at the default, while a logout or a disabled account closes them in milliseconds (found by the
    trust audit: 2.8 s on a server). Now the reuse is announced like a logout; the safety poll here is
    a minute, so only the announcement can close the socket within the deadline.
    """
    async with _serve(make_settings(db_url, safety_poll_interval=60)) as server:
        _, lg = await new_person(server.services_obj)  # type: ignore[attr-defined]
        t = await login(server.http, lg)
        ws = await Client.connect(server.ws, t["access_token"])
        assert (
            await _post_token(server, {"grant_type": "refresh_token", "refresh_token": t["refresh_token"]})
        ).status_code == 200
        reuse = await _post_token(server, {"grant_type": "refresh_token", "refresh_token": t["refresh_token"]})
        assert reuse.status_code == 401
        code, _ = await ws.wait_closed(timeout=1)
        assert code == 4503
        await ws.close()


async def test_unknown_and_odd_refresh_tokens_are_invalid_grant(server: RunningServer) -> None:
    for rt in ("nope", "x" * 256, "' OR 1=1--", "%", "\u202e"):
        r = await _post_token(server, {"grant_type": "refresh_token", "refresh_token": rt})
        assert _is_json_error(r, 401, "invalid_grant"), (rt, r.text)
    r = await _post_token(server, {"grant_type": "refresh_token", "refresh_token": "x" * 257})
    assert _is_json_error(r, 400), r.text


async def test_wrong_password_unknown_login_and_disabled_person_get_the_same_error(server: RunningServer) -> None:
    s = server.services_obj  # type: ignore[attr-defined]
    (pid, lg), (dis_id, dis_lg) = await new_people(s, 2)
    await s.persons.set_disabled(dis_id, True)
    bodies = []
    for login_name, pw in ((lg, PASSWORD + "x"), ("nobody-" + lg, PASSWORD), (dis_lg, PASSWORD), (lg, "")):
        r = await _post_token(server, {"grant_type": "password", "login": login_name, "password": pw})
        bodies.append((r.status_code, r.json()))
    wrong, unknown, disabled, empty = bodies
    assert wrong == unknown == disabled, bodies
    assert wrong[0] == 401 and wrong[1]["error"]["code"] == "invalid_grant"
    assert empty[0] == 400  # an empty password is a malformed request, not a guess
    # The right password still works for the enabled person.
    r = await _post_token(server, {"grant_type": "password", "login": lg, "password": PASSWORD})
    assert r.status_code == 200 and r.json()["person_id"] == pid


async def test_a_hash_of_another_cost_is_replaced_at_the_next_good_sign_in(server: RunningServer) -> None:
    """Hashes made with an older default still verify, and are re-hashed at the server's cost."""
    s = server.services_obj  # type: ignore[attr-defined]
    pid, lg = await new_person(s)
    old = PasswordHasher(time_cost=1, memory_cost=2048, parallelism=2).hash(PASSWORD)
    await s.persons.set_password_hash(pid, old)
    r = await _post_token(server, {"grant_type": "password", "login": lg, "password": PASSWORD + "x"})
    assert r.status_code == 401
    assert (await s.persons.get(pid)).password_hash == old  # a wrong guess changes nothing
    r = await _post_token(server, {"grant_type": "password", "login": lg, "password": PASSWORD})
    assert r.status_code == 200
    new = (await s.persons.get(pid)).password_hash
    assert new != old and not s.passwords.needs_rehash(new)
    r = await _post_token(server, {"grant_type": "password", "login": lg, "password": PASSWORD})
    assert r.status_code == 200 and (await s.persons.get(pid)).password_hash == new


async def test_disabling_a_person_refuses_their_existing_tokens(server: RunningServer) -> None:
    s = server.services_obj  # type: ignore[attr-defined]
    pid, tok, _ = await _session(server)
    assert (await _me(server, tok["access_token"])).status_code == 200
    await s.persons.set_disabled(pid, True)
    assert _is_json_error(await _me(server, tok["access_token"]), 403, "forbidden")
    frames, code = await _ws_hello(server, tok["access_token"])
    assert code == 4503 and frames[0]["code"] == "forbidden"
    r = await _post_token(server, {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})
    assert _is_json_error(r, 401, "invalid_grant")


# --- S22: Origin ----------------------------------------------------------------------


async def _handshake_status(server: RunningServer, origin: str | None) -> int:
    kw: dict[str, Any] = {} if origin is None else {"origin": origin}
    try:
        async with websockets.connect(server.ws, **kw) as ws:
            await ws.send(json.dumps({"type": "ping", "id": "p"}))  # proves the upgrade happened
            return 101
    except websockets.InvalidStatus as exc:
        return exc.response.status_code


@pytest.mark.parametrize("origin", ["https://evil.example", "https://gov.example", "null", "http://127.0.0.1"])
async def test_any_origin_is_refused_with_403_when_none_is_allowed(server: RunningServer, origin: str) -> None:
    assert await _handshake_status(server, origin) == 403


async def test_own_origin_upgrades_unless_turned_off_and_lookalikes_do_not(server: RunningServer, db_url: str) -> None:
    own = f"http://127.0.0.1:{server.port}"
    assert await _handshake_status(server, own) == 101  # the page this server served
    for near in (
        f"https://127.0.0.1:{server.port}",
        f"http://127.0.0.1:{server.port + 1}",
        f"http://localhost:{server.port}",
    ):
        assert await _handshake_status(server, near) == 403, near
    async with _serve(make_settings(db_url, allow_own_origin=False)) as rs:
        assert await _handshake_status(rs, f"http://127.0.0.1:{rs.port}") == 403


async def test_missing_origin_upgrades(server: RunningServer) -> None:
    assert await _handshake_status(server, None) == 101


async def test_origin_allowlist_is_exact(origin_server: RunningServer) -> None:
    server = origin_server
    assert await _handshake_status(server, "https://gov.example") == 101
    assert await _handshake_status(server, None) == 101
    refused: dict[str, int] = {}
    for origin in (
        "https://gov.example.evil.com",
        "https://evil.gov.example",
        "https://GOV.example:444",
        "https://gov.example:443x",
        "http://gov.example",
        "https://gov.example/",
        "https://gov.examplex",
        "https://gov.example@evil.com",
        "null",
        "",
        "https://evil.example",
    ):
        refused[origin] = await _handshake_status(server, origin)
    assert refused == dict.fromkeys(refused, 403)
    # Refused before the upgrade, so nothing was authenticated: a valid token does not help.
    _, tok, _ = await _session(server)
    with pytest.raises(websockets.InvalidStatus) as info:
        await Client.connect(server.ws, tok["access_token"], origin="https://evil.example")
    assert info.value.response.status_code == 403
