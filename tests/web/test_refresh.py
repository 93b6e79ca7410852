"""The access token's refresh in a real browser when it fails: the early refresh (a minute before
the token expires) tried again after a 5xx or a lost request, a 429 waited out as long as it
asks (early, and after a socket's 4401), and a refusal for good ending the session with the
unsent message kept for after signing in again.

Each test runs a server of its own; where the refresh must meet a 429 or be lost on the way, the
page reaches that server through a gateway in front of it (``tests/web/gateway.py``), as a
deployment's load balancer would stand; a 5xx is the server's own (its database locked).
"""

from __future__ import annotations

import re
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.web.conftest import (
    Web,
    chat_with_zhou,
    kept_through_sign_in,
    own_server_page,
    send_message,
    sign_in,
    use_refresh_token_elsewhere,
)
from tests.web.gateway import Answer, Gateway, Hold, Lose
from tests.web.world import ServeProcess

#: Either way the page learns that its session ended (see the test that uses it).
ENDED = re.compile("登录已过期，请重新登录|会话已结束（已在别处退出，或账号已停用），请重新登录")

#: A 65-s access token: the early refresh runs 5 s after sign-in (a minute early, at least 5 s),
#: a minute before the token runs out.
SHORT = {"ZZD_ACCESS_TOKEN_TTL": "65"}
SESSION = "JSON.parse(localStorage.getItem('zzd.session'))"
RENEWED = "(old) => JSON.parse(localStorage.getItem('zzd.session') || 'null')?.refresh !== old"
LIMITED = {"code": "rate_limited", "message": "too many requests", "retryable": True}


@contextmanager
def _through_gateway(
    browser: Any, server: ServeProcess, login: str, gateway: Gateway
) -> Iterator[tuple[Any, list[str]]]:
    """``login``'s page on ``server`` (started here), reached through ``gateway``."""
    gateway.start()
    try:
        with own_server_page(browser, server, login, gateway.base) as (page, errors):
            yield page, errors
    finally:
        gateway.stop()


def _renewed_before_expiry(page: Any, first: dict[str, Any]) -> dict[str, Any]:
    """Waits until the page stores new tokens, at the latest 2 s before ``first`` runs out."""
    left = first["expiresAt"] - page.evaluate("Date.now()") - 2_000
    assert left > 0, "the access token ran out before the wait began"
    page.wait_for_function(RENEWED, arg=first["refresh"], timeout=left)
    now: dict[str, Any] = page.evaluate(SESSION)
    assert now["expiresAt"] > first["expiresAt"]
    return now


def _refused(page: Any) -> list[str]:
    """The 401s the page gets from now on (none: no request met an expired token)."""
    out: list[str] = []
    page.on("response", lambda r: out.append(r.url) if r.status == 401 else None)
    return out


def test_an_early_refresh_answered_5xx_is_tried_again_before_the_token_runs_out(
    browser: Any, web: Web, tmp_path: Path
) -> None:
    """The early refresh met a 5xx (the server's database locked: a 503 ``unavailable``, a 500
    before the lock's error was recognised, tests/test_sqlite_locked.py) and was not tried again: the
    access token ran out, and the next request using it was refused (401) before a refresh. It
    is now tried again on the reconnect's back-off and the new tokens are in before the old
    ones run out, with no request refused and the session untouched. The gateway holds the
    early refresh until the test has locked the database, so the failure is certain."""
    server = ServeProcess(web.world, tmp_path, **SHORT)
    gateway = Gateway(server.port)
    gateway.plan.append(Hold())
    db = web.world.db_url.removeprefix("sqlite+aiosqlite:///")
    with _through_gateway(browser, server, "zhou", gateway) as (page, errors):
        refused = _refused(page)
        first = page.evaluate(SESSION)
        assert gateway.held.wait(30)  # the early refresh
        lock = sqlite3.connect(db, timeout=60, isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")  # the refresh's write waits, then the server answers 5xx
            with page.expect_response(lambda r: r.url.endswith("/api/v1/auth/token"), timeout=60_000) as answer:
                gateway.release()
            assert answer.value.status >= 500
        finally:
            lock.close()
        _renewed_before_expiry(page, first)
        statuses = [r.status or 0 for r in gateway.refreshes]
        assert min(statuses[:-1]) >= 500 and statuses[-1] == 200, statuses
        expect(page.locator("[data-status=online]")).to_be_visible()
        assert refused == []
        assert not errors, errors


def test_an_early_refresh_answered_429_waits_as_long_as_asked(browser: Any, web: Web, tmp_path: Path) -> None:
    """A 429 to the early refresh was taken like any failure — not tried again at all. It now
    waits as long as the answer asks, whether the gateway says it in ``Retry-After`` only or
    the body's ``data.retry_after`` does (the server sends both), not the back-off's 0.5 s and
    1 s; the session is never ended by it, and the tokens are renewed before they run out."""
    server = ServeProcess(web.world, tmp_path, **SHORT)
    gateway = Gateway(server.port)
    gateway.plan.extend(
        [
            Answer(429, {"Retry-After": "3"}, {"error": LIMITED}),
            Answer(429, {}, {"error": {**LIMITED, "data": {"retry_after": 3}}}),
        ]
    )
    with _through_gateway(browser, server, "zhou", gateway) as (page, errors):
        refused = _refused(page)
        _renewed_before_expiry(page, page.evaluate(SESSION))
        seen = gateway.refreshes
        assert [r.status for r in seen] == [429, 429, 200]
        waited = [
            later.arrived - (sooner.answered or later.arrived) for sooner, later in zip(seen, seen[1:], strict=False)
        ]
        assert all(w >= 2.9 for w in waited), waited
        expect(page.locator("[data-status=online]")).to_be_visible()
        assert refused == []
        assert not errors, errors


def test_a_refresh_after_4401_answered_429_waits_as_long_as_asked(browser: Any, web: Web, tmp_path: Path) -> None:
    """The socket's hello is refused (4401, a restart with other signing keys) and the refresh
    that follows is answered 429 with ``Retry-After: 12``: the header says 已断开 · 12 秒后重连
    and the refresh goes again after those 12 s — before, it went again on the back-off (under a
    second here: the browser was offline during the restart, so no attempt had been counted)."""
    server = ServeProcess(web.world, tmp_path)
    gateway = Gateway(server.port)
    with _through_gateway(browser, server, "sun", gateway) as (page, errors):
        context = page.context
        context.set_offline(True)
        expect(page.locator("[data-status=offline]")).to_contain_text("网络不可用")
        server.stop()
        server.env["ZZD_JWT_KEYS"] = "t2:" + secrets.token_hex(24)
        server.start()
        gateway.plan.append(Answer(429, {"Retry-After": "12"}, {"error": {**LIMITED, "data": {"retry_after": 12}}}))
        context.set_offline(False)
        expect(page.locator("[data-status=offline]")).to_have_text(re.compile(r"·\s*12 秒后重连"))
        expect(page.locator("[data-status=online]")).to_be_visible(timeout=60_000)
        seen = gateway.refreshes
        assert [r.status for r in seen] == [429, 200]
        assert seen[0].answered is not None and seen[1].arrived - seen[0].answered >= 11.9
        assert page.locator("[data-ended]").count() == 0
        assert not errors, errors


def test_an_early_refresh_lost_then_refused_ends_the_session_and_the_kept_send_goes_after_sign_in(
    browser: Any, web: Web, tmp_path: Path
) -> None:
    """The early refresh is lost on the network while the socket's path is broken and a message
    waits to be sent; its refresh token was meanwhile used elsewhere. Before, the lost refresh
    was not tried again, so the page stayed as it was until the token ran out. Now the retry is
    refused (401 ``invalid_grant``) and that ends the session: the sign-in page says 登录已过期
    and that the message is kept, and signing in again sends it, once."""
    server = ServeProcess(web.world, tmp_path, **SHORT)
    gateway = Gateway(server.port)
    gateway.plan.append(Hold(then=Lose()))
    with _through_gateway(browser, server, "sun", gateway) as (page, errors):
        cid = chat_with_zhou(page, server, web, gateway.base)
        gateway.cut_sockets()
        expect(page.locator("[data-status=offline]")).to_contain_text("秒后重连")
        body = f"会话结束前发的 {secrets.token_hex(2)}"
        send_message(page, body)
        expect(page.locator("li.msg.mine", has_text=body)).to_contain_text("发送中")
        use_refresh_token_elsewhere(page, server)
        assert gateway.held.wait(30)  # the early refresh …
        gateway.release()  # … lost; its retry is refused
        kept_through_sign_in(page, web, "sun", body, f"{gateway.base}/#/chat/{cid}", before=gateway.mend_sockets)
        assert [(r.action, r.status) for r in gateway.refreshes] == [("Hold", None), ("pass", 401)]
        assert not errors, errors


def test_a_session_ended_by_a_refused_refresh_leaves_no_socket_to_the_next(
    browser: Any, web: Web, tmp_path: Path
) -> None:
    """The early refresh is refused (its token used elsewhere) while the socket is connected.
    The page went to sign-in but kept that socket open on the ended session, and the next
    sign-in on the page — another person's too — went on using it: no socket of its own, the
    old person's events and sends. The session's end now closes the connection, and the next
    sign-in opens its own.

    The page may learn of the end either way, and says so: a reused refresh token revokes its
    session at once, so the socket's 4503 close (会话已结束) usually arrives before the refresh's
    401 answer (登录已过期); the two travel separately, so neither order is promised."""
    server = ServeProcess(web.world, tmp_path, **SHORT)
    with own_server_page(browser, server, "sun") as (page, errors):
        use_refresh_token_elsewhere(page, server)
        expect(page.locator("[data-ended]")).to_contain_text(ENDED, timeout=30_000)
        with page.expect_websocket(timeout=20_000) as opened:
            sign_in(page, "zhou")
        expect(page.locator("[data-status=online]")).to_be_visible()
        assert not opened.value.is_closed()
        assert not errors, errors
