"""``/api/v1/auth``: log in, refresh, log out, activate, one's sessions; and ``/api/v1/me``.

Sign-in and activation are throttled per login and per client address
(``zzd.auth.throttle``) before any password is hashed, and the hashing itself
is bounded (``zzd.auth.passwords``). Sign-ins, failed sign-ins, activations
and sign-outs (a logout, a session signed out from another) are audited.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import unquote

from pydantic import StringConstraints
from starlette.requests import Request
from starlette.responses import Response

from kernel.audit import AuditEntry, record
from kernel.errors import BadRequest, ErrorCode, NotFound, Unauthorized, ZzdError
from kernel.hexids import lower_hex
from kernel.sessions import IssuedSession, RefreshReused, public_id
from kernel.text import MAX_LABEL, check_text
from org_tree.people import normalize_login
from zzd.http.actors import current_person
from zzd.http.common import (
    NO_STORE,
    error_response,
    is_form,
    json_body,
    json_or_form_body,
    oauth_error,
    services_of,
)
from zzd.http.contract import BodyModel, Endpoints, reply
from zzd.http.schemas.auth import AppToken, Me, SessionList, TokenAnswer, Tokens
from zzd.http.schemas.common import Revoked

if TYPE_CHECKING:
    from zzd.services import Services

__all__ = ["routes"]

api = Endpoints(tag="auth")


class TokenRequest(BodyModel):
    #: password: sign in with login and password; refresh_token: renew with refresh_token (each works once);
    #: client_credentials: an app (docs/apps.md)
    grant_type: Literal["password", "refresh_token", "client_credentials"]
    #: grant_type password: the person's login
    login: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    #: grant_type password: their password
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    #: grant_type refresh_token: the refresh_token of the last answer
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    #: Apps (``client_credentials``): the client id and secret, here or as HTTP Basic credentials.
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    #: Apps (``client_credentials``): the secret that goes with client_id.
    client_secret: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    #: Apps (``client_credentials``): the scopes asked for, space-separated (RFC 6749 4.4.2; OAuth2 client
    #: libraries send it). Taken and not used: the token carries the app's scopes, named in the answer's scope.
    scope: Annotated[str, StringConstraints(max_length=1000)] | None = None
    #: password, refresh_token: how this device names itself in the list of one's sessions (登录设备管理),
    #: e.g. "华为 Mate 60 · 浙政钉 3.2"; without it the request's User-Agent is kept. Cleaned: controls,
    #: bidi and zero-width characters dropped, whitespace collapsed. A renewal without either keeps the label.
    client_label: Annotated[str, StringConstraints(max_length=MAX_LABEL)] | None = None


class ActivateRequest(BodyModel):
    login: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    #: The one-time code from ``zzd person import``.
    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    #: The password the person chooses (8–256 characters).
    password: Annotated[str, StringConstraints(min_length=8, max_length=256)]
    #: As for ``POST /api/v1/auth/token``: how this device names itself (else its User-Agent).
    client_label: Annotated[str, StringConstraints(max_length=MAX_LABEL)] | None = None


def client_address(request: Request) -> str:
    """The peer address (a reverse proxy in front should be the only peer, and pass one client per connection)."""
    return request.client.host if request.client is not None else "unknown"


def client_label(request: Request, given: str | None) -> str | None:
    """The label a sign-in or renewal gives its session: the body's ``client_label``, else the User-Agent.

    The header arrives decoded as Latin-1 (HTTP's bytes); a UTF-8 User-Agent (a Chinese app name) is
    decoded again as UTF-8. Cut to a few hundred characters here, before the store cleans it
    (:func:`kernel.text.clean_label`) and keeps at most 100.
    """
    if given is not None and given.strip():
        return given
    agent = request.headers.get("user-agent")
    if agent is None:
        return None
    agent = agent[: 4 * MAX_LABEL]
    try:
        return agent.encode("latin-1").decode("utf-8")
    except UnicodeError:  # not UTF-8 after all (or cut inside a character): as it came
        return agent


def _login_key(login: str) -> str:
    """The sign-in throttle's key for ``login``: the login as the lookup reads it (``normalize_login``).

    Keyed as sent, "li4" + U+200B signed in as li4 with a counter of its own, so appending invisible
    characters gave any number of fresh per-login limits (found by the trust audit).
    """
    try:
        return normalize_login(login)[:64]
    except BadRequest:  # no login can be spelled so: counted under what was sent
        return login.strip().lower()[:64]


def _no_store(answer: Response) -> Response:
    """RFC 6749 5.1: an answer carrying tokens must not be kept by any cache on the way. Only the
    form-encoded errors said so (:func:`oauth_error`); the answers with the credentials did not."""
    answer.headers.update(NO_STORE)
    return answer


def _token_answer(s: Services, issued: IssuedSession) -> Response:
    """A sign-in's answer (password, refresh or activation alike): a new access token beside the session's refresh."""
    return _no_store(
        reply(
            TokenAnswer,
            {
                "access_token": s.tokens.issue(issued.person_id, issued.session_id),
                "token_type": "Bearer",
                "expires_in": s.tokens.ttl_seconds,
                "refresh_token": issued.refresh_token,
                "person_id": issued.person_id,
            },
        )
    )


async def _audit(s: Services, entry: AuditEntry) -> None:
    async with s.db.write() as conn:
        await record(conn, entry, s.clock.now())


def _basic(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, sep, pw = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unauthorized("malformed Basic credentials", code=ErrorCode.INVALID_CLIENT) from exc
    if not sep:
        raise Unauthorized("malformed Basic credentials", code=ErrorCode.INVALID_CLIENT)
    return unquote(user), unquote(pw)


async def _client_credentials(s: Services, request: Request, body: TokenRequest) -> Response:
    """OAuth2 client credentials (RFC 6749 4.4): an app token with the app audience."""
    basic = _basic(request)
    if basic is not None and (body.client_secret is not None or body.client_id not in (None, basic[0])):
        # RFC 6749 2.3: one authentication method per request. Before, the body's were silently
        # ignored: a body naming another app (with any secret) got a token for the Basic one.
        raise BadRequest("send the client credentials once: as HTTP Basic or in the body",
                         data={"fields": ["client_id", "client_secret"]})  # fmt: skip
    client_id, secret = basic or (body.client_id, body.client_secret)
    if not client_id or not secret:
        raise BadRequest("client_id and client_secret are required", data={"fields": ["client_id", "client_secret"]})
    addr, key = client_address(request), "client:" + client_id[:64]
    await s.throttle.attempt(key, addr)
    try:
        app, secret_id = await s.apps.authenticate_client(client_id, secret)
    except Unauthorized:
        await s.throttle.failed(addr)
        await _audit(s, AuditEntry("app.token_failed", outcome="failed", detail={"client_id": key, "addr": addr}))
        raise
    await s.throttle.succeeded(key)
    ttl = timedelta(seconds=s.settings.app_token_ttl)
    return _no_store(
        reply(
            AppToken,
            {
                "access_token": s.tokens.issue_app(app.id, secret_id, ttl),
                "token_type": "Bearer",
                "expires_in": s.settings.app_token_ttl,
                "scope": " ".join(sorted(app.scopes)),
                "app_id": app.id,
            },
        )
    )


#: The challenge of an ``invalid_client`` answer: the client authentication this endpoint takes.
BASIC_CHALLENGE = 'Basic realm="zzd"'


@api.route(
    "POST", "/api/v1/auth/token", {200: Tokens}, body=TokenRequest, errors=(401, 429), public=True, oauth_form=True
)
async def token(request: Request) -> Response:
    """Sign in (password), renew (refresh_token; each works once), or an app's token (client_credentials).

    The body is JSON, or form-encoded (``application/x-www-form-urlencoded``, each field at most
    once) as RFC 6749 sends token requests and OAuth2 client libraries do; a form-encoded
    request's errors are worded as RFC 6749 5.2 words them (:func:`oauth_error`).
    """
    try:
        return await _token(request)
    except ZzdError as exc:
        answer = oauth_error(exc) if is_form(request) else error_response(exc)
        if exc.code == ErrorCode.INVALID_CLIENT:
            # RFC 6749 5.2: invalid_client is challenged with the scheme the endpoint takes for
            # client authentication (HTTP Basic, 2.3.1), not Bearer, which it does not take.
            answer.headers["WWW-Authenticate"] = BASIC_CHALLENGE
        return answer


async def _token(request: Request) -> Response:
    s = services_of(request)
    body = await json_or_form_body(request, TokenRequest)  # JSON, or form-encoded as RFC 6749 sends it
    if body.grant_type == "client_credentials":
        return await _client_credentials(s, request, body)
    if body.grant_type == "password":
        if body.login is None or body.password is None:
            raise BadRequest("login and password are required", data={"fields": ["login", "password"]})
        addr, key = client_address(request), _login_key(body.login)
        await s.throttle.attempt(key, addr)
        person = await s.persons.by_login(body.login)
        async with s.passwords.slot():
            # Checked again inside the slot, so concurrent guesses cannot all pass before one is counted.
            await s.throttle.check_address(addr)
            good = await s.passwords.verify(person.password_hash if person else None, body.password)
            if not good:
                await s.throttle.failed(addr)
        if person is None or not good or person.disabled:
            who = person.id if person is not None else None
            await _audit(s, AuditEntry("auth.login_failed", who, outcome="failed", detail={"login": key, "addr": addr}))
            raise Unauthorized("wrong login or password", code=ErrorCode.INVALID_GRANT)
        await s.throttle.succeeded(key)
        if person.password_hash is not None and s.passwords.needs_rehash(person.password_hash):
            async with s.passwords.slot():
                await s.persons.set_password_hash(person.id, await s.passwords.hash(body.password))
        issued = await s.sessions.open(
            person.id,
            client_label=client_label(request, body.client_label),
            audit=AuditEntry("auth.login", person.id, detail={"addr": addr}),
        )
    else:
        if body.refresh_token is None:
            raise BadRequest("refresh_token is required", data={"fields": ["refresh_token"]})
        try:
            issued = await s.sessions.rotate(body.refresh_token, client_label=client_label(request, body.client_label))
        except RefreshReused as exc:
            await s.announce({"t": "revoke_session", "sid": exc.session_id})  # as a logout: sockets close with 4503
            raise
    return _token_answer(s, issued)


@api.route("POST", "/api/v1/auth/logout", {200: Revoked})
async def logout(request: Request) -> Response:
    """Revoke the caller's session; its sockets on every process close with 4503. Audited (``auth.logout``)."""
    s, claims = await current_person(request)
    mine = public_id(claims.session_id)
    entry = AuditEntry("auth.logout", claims.person_id, detail={"session": mine, "addr": client_address(request)})
    await s.sessions.revoke(claims.session_id, audit=entry)
    await s.announce({"t": "revoke_session", "sid": claims.session_id})
    return reply(Revoked, {"revoked": True})


@api.route("GET", "/api/v1/auth/sessions", {200: SessionList})
async def sessions(request: Request) -> Response:
    """The caller's sign-ins that still work (their devices), newest first; ``current`` marks this one.

    A person's own list only (an app token is refused: not a person's). The ids are derived from the
    sessions, not the ``sid`` the access tokens carry, and work only with DELETE below, for their owner.
    """
    s, claims = await current_person(request)
    mine = await s.sessions.active_sessions(claims.person_id)
    return reply(
        SessionList,
        {
            "sessions": [
                {
                    "id": public_id(x.session_id),
                    "created_at": x.created_at,
                    "last_refreshed_at": x.last_refreshed_at,
                    "expires_at": x.expires_at,
                    "client_label": x.client_label,
                    "current": x.session_id == claims.session_id,
                }
                for x in mine
            ]
        },
    )


@api.route("DELETE", "/api/v1/auth/sessions/{session}", {200: Revoked}, errors=(400, 404))
async def revoke_session(request: Request) -> Response:
    """Sign out one of the caller's own sessions (a lost phone): as a logout of it, wherever it is.

    Revoked in the database (its access and refresh tokens stop working) and announced, so its
    sockets on every process close with 4503 at once. Only the caller's sessions that still work
    can be named: another person's, an unknown one and one already signed out all answer the same
    404, so nothing can be learnt by probing (a repeated DELETE is therefore 404, not 200). The
    current session may be named: that is a logout. Audited (``auth.session_revoked``: the session and
    the caller's own, ``by_session``; docs/admin.md), only when a session was ended.
    """
    s, claims = await current_person(request)
    public = lower_hex(request.path_params["session"], 32)  # either case, as every hex value (kernel.hexids)
    if public is None:
        raise BadRequest("session: 32 hex digits, as GET /api/v1/auth/sessions shows it", data={"field": "session"})
    # Who (the actor), which session (``session``) and from which (``by_session``, the caller's own; the
    # same id when one signs this session out), as the list shows them: never a sid, which tokens carry.
    detail = {"session": public, "by_session": public_id(claims.session_id), "addr": client_address(request)}
    sid = await s.sessions.revoke_own(
        claims.person_id, public, audit=AuditEntry("auth.session_revoked", claims.person_id, detail=detail)
    )
    if sid is None:
        raise NotFound("no such session", data={"field": "session"})
    await s.announce({"t": "revoke_session", "sid": sid})
    return reply(Revoked, {"revoked": True})


@api.route("POST", "/api/v1/auth/activate", {200: TokenAnswer}, body=ActivateRequest, errors=(401, 429), public=True)
async def activate(request: Request) -> Response:
    """Set one's password with the one-time activation code; answers like a sign-in.

    Public (the code is the credential), throttled like sign-in. Every earlier session of the person
    ends (a code after a lost phone signs the phone out), announced so its sockets close.
    """
    s = services_of(request)
    body = await json_body(request, ActivateRequest)
    addr, key = client_address(request), _login_key(body.login)
    await s.throttle.attempt(key, addr)
    try:
        async with s.passwords.slot():
            await s.throttle.check_address(addr)
            try:
                person = await s.persons.check_activation(body.login, body.code)
            except Unauthorized:
                await s.throttle.failed(addr)
                raise
    except Unauthorized:
        await _audit(s, AuditEntry("auth.activation_failed", outcome="failed", detail={"login": key, "addr": addr}))
        raise
    check_text(body.password, field="password", max_chars=256)
    hashed = await s.passwords.hash(body.password)
    ended = await s.persons.activate(
        person.id, body.code, hashed, AuditEntry("auth.activated", person.id, detail={"addr": addr})
    )
    for sid in ended:  # the old password's sessions: their sockets close with 4503 on every process
        await s.announce({"t": "revoke_session", "sid": sid})
    await s.throttle.succeeded(key)
    issued = await s.sessions.open(
        person.id,
        client_label=client_label(request, body.client_label),
        audit=AuditEntry("auth.login", person.id, detail={"addr": addr}),
    )
    return _token_answer(s, issued)


@api.route("GET", "/api/v1/me", {200: Me})
async def me(request: Request) -> Response:
    """The signed-in person and the position of their event stream."""
    s, claims = await current_person(request)
    person = await s.persons.get(claims.person_id)
    state = await s.events.state(person.id)
    return reply(
        Me,
        {"id": person.id, "login": person.login, "name": person.name, "epoch": state.epoch, "last_seq": state.last_seq},
    )


routes = api.routes
