"""The served shell, sign-in and the live inbox in a real browser."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.web.conftest import Pages, Web, check_page, sign_in
from tests.web.world import ServeProcess, token


def test_shell_is_served_with_a_strict_policy(web: Web) -> None:
    r = httpx.get(web.base + "/")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "script-src 'self' 'sha256-" in csp
    assert "frame-ancestors 'none'" in csp
    assert '<script type="importmap">{"imports"' in r.text
    vendor = httpx.get(web.base + "/vendor/preact/dist/preact.mjs", headers={"accept-encoding": "gzip"})
    assert vendor.status_code == 200 and vendor.headers["content-encoding"] == "gzip"
    # Only runtime dependencies are served, not the test tools or anything else in node_modules.
    assert httpx.get(web.base + "/vendor/axe-core/axe.min.js").status_code == 404
    assert httpx.get(web.base + "/vendor/preact/../../package.json").status_code == 404
    assert httpx.get(web.base + "/web/manifest.webmanifest").json()["lang"] == "zh-CN"
    # The page is not part of the API document.
    assert "/" not in httpx.get(web.base + "/openapi.json").json()["paths"]


def test_own_origin_may_open_the_socket_a_foreign_one_may_not(web: Web) -> None:
    import websockets.sync.client as wsc

    url = web.base.replace("http", "ws") + "/ws"
    hello = json.dumps({"type": "hello", "id": "1", "v": 1, "token": token(web.base, "sun")})
    with wsc.connect(url, origin=web.base) as ws:  # type: ignore[arg-type]
        ws.send(hello)
        assert json.loads(ws.recv(timeout=5))["type"] == "ok"
    try:
        wsc.connect(url, origin="http://evil.example")  # type: ignore[arg-type]
    except Exception as exc:  # InvalidStatus
        assert "403" in str(exc)
    else:
        raise AssertionError("a foreign origin was upgraded")


def test_bad_password_shows_an_error_and_stays_signed_out(pages: Pages) -> None:
    page = pages.open(None)
    page.get_by_label("账号").fill("li")
    page.get_by_label("密码").fill("wrong-password")
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("alert")).to_have_text("账号或密码错误")
    assert page.evaluate("localStorage.getItem('zzd.session')") is None
    check_page(page, "login")


def test_sign_in_inbox_live_delivery_and_logout(pages: Pages, web: Web) -> None:
    li = pages.open("li")
    inbox = li.get_by_role("list", name="会话列表")
    body = f"渠道堵了 {secrets.token_hex(3)}"
    # 王五 writes to 李四's position 村书记 as his grid-worker position (public REST API).
    tok = token(web.base, "wang")
    r = httpx.post(
        f"{web.base}/api/v1/positions/{web.world.positions['li'][0]}/messages",
        headers={"authorization": f"Bearer {tok}"},
        json={"client_msg_id": secrets.token_hex(6), "body": body, "as_position": web.world.positions["wang"][0]},
    )
    assert r.status_code in (200, 201), r.text
    row = inbox.locator("a.conv", has_text=body)
    expect(row).to_be_visible()  # live, without a reload
    expect(row.locator(".via")).to_have_text(re.compile("发给：村书记"))  # the position it came to
    expect(row.locator(".badge")).to_have_text("1")
    check_page(li, "inbox")
    row.click()
    expect(li.locator("li.msg", has_text=body)).to_be_visible()
    check_page(li, "chat")
    li.get_by_label("消息", exact=True).fill("收到，马上处理")
    li.get_by_role("button", name="发送").click()
    expect(li.locator("li.msg.mine", has_text="收到，马上处理")).to_be_visible()
    # Reading it cleared the unread count (on the server, not only on screen).
    li.get_by_role("link", name="返回").click()
    expect(inbox.locator("a.conv", has_text="收到，马上处理").locator(".badge")).to_have_count(0)
    li_tok = token(web.base, "li")
    conv = next(
        c
        for c in httpx.get(web.base + "/api/v1/conversations", headers={"authorization": f"Bearer {li_tok}"}).json()[
            "conversations"
        ]
        if c["last_message"] and c["last_message"]["snippet"] == "收到，马上处理"
    )
    assert conv["unread"] == 0
    # Logout revokes the session: the stored refresh token no longer works.
    refresh = li.evaluate("JSON.parse(localStorage.getItem('zzd.session')).refresh")
    # The sign-in page shows before the logout request is answered (退出 does not wait for the
    # network): wait for that answer, or the refresh below may reach the server first and pass.
    with li.expect_response(lambda a: a.url.endswith("/api/v1/auth/logout")):
        li.get_by_role("button", name="退出").click()
    expect(li.get_by_role("button", name="登录")).to_be_visible()
    r = httpx.post(web.base + "/api/v1/auth/token", json={"grant_type": "refresh_token", "refresh_token": refresh})
    assert r.status_code in (400, 401, 403)


def test_expired_access_token_is_refreshed_without_signing_out(pages: Pages, web: Web) -> None:
    page: Any = pages.open("qian")
    # Make the stored access token invalid, as if it had expired: the client refreshes and retries.
    page.evaluate(
        "() => { const s = JSON.parse(localStorage.getItem('zzd.session')); s.access = 'x.y.z';"
        " localStorage.setItem('zzd.session', JSON.stringify(s)); }"
    )
    page.reload()
    expect(page.locator("[data-status=online]")).to_be_visible()
    assert page.evaluate("JSON.parse(localStorage.getItem('zzd.session')).access") != "x.y.z"
    expect(page.get_by_role("button", name="登录")).to_have_count(0)


def test_the_access_token_is_refreshed_before_it_expires(pages: Pages, web: Web, tmp_path: Any) -> None:
    # A second server process on the same database whose access tokens live 30 s: the client
    # refreshes ahead of expiry (here at the 5-second floor), with no request failing first.
    short = ServeProcess(web.world, tmp_path, ZZD_ACCESS_TOKEN_TTL="30")
    short.start()
    try:
        page = pages.open(None)
        page.goto(short.base + "/")
        sign_in(page, "zhou")
        refused: list[str] = []
        page.on("response", lambda r: refused.append(r.url) if r.status == 401 else None)
        first = page.evaluate("JSON.parse(localStorage.getItem('zzd.session'))")
        page.wait_for_function(
            "(old) => JSON.parse(localStorage.getItem('zzd.session')).refresh !== old", arg=first["refresh"]
        )
        now = page.evaluate("JSON.parse(localStorage.getItem('zzd.session'))")
        assert now["access"] != first["access"] and now["expiresAt"] > first["expiresAt"]
        expect(page.locator("[data-status=online]")).to_be_visible()
        assert refused == []  # ahead of expiry: no request was refused first
        # The new access token works; the old refresh token was used up by the rotation (and,
        # reused, revokes the session: the last step).
        r = httpx.get(short.base + "/api/v1/me", headers={"authorization": f"Bearer {now['access']}"})
        assert r.status_code == 200
        body = {"grant_type": "refresh_token", "refresh_token": first["refresh"]}
        assert httpx.post(short.base + "/api/v1/auth/token", json=body).status_code == 401
    finally:
        short.stop()


def test_a_session_revoked_elsewhere_returns_to_sign_in_and_says_why(pages: Pages, web: Web) -> None:
    """The session ends on the server (退出 in another place, an administrator disabling the
    account): its socket closes with 4503. The page goes back to sign-in and says so in Chinese,
    instead of staying in a shell whose requests all fail, titled 会话已结束 · revoked."""
    page = pages.open("sun")
    access = page.evaluate("JSON.parse(localStorage.getItem('zzd.session')).access")
    r = httpx.post(web.base + "/api/v1/auth/logout", headers={"authorization": f"Bearer {access}"})
    assert r.status_code in (200, 204), r.text
    expect(page.get_by_role("button", name="登录")).to_be_visible()
    expect(page.locator("[data-ended]")).to_have_text("会话已结束（已在别处退出，或账号已停用），请重新登录")
    sign_in(page, "sun")
    expect(page.locator("[data-ended]")).to_have_count(0)


def test_sign_out_leaves_nothing_of_the_person_for_the_next_at_the_keyboard(pages: Pages, web: Web) -> None:
    """The offline shell keeps the inbox, notices, tasks and names in localStorage: after 退出 —
    a shared township office computer, a phone handed on — they stayed for whoever came next to
    read, message snippets included. 退出 takes them; the next sign-in loads them anew."""
    body = f"仅本人可见 {secrets.token_hex(3)}"
    r = httpx.post(
        f"{web.base}/api/v1/positions/{web.world.positions['qian'][0]}/messages",
        headers={"authorization": f"Bearer {token(web.base, 'zhao')}"},
        json={"client_msg_id": secrets.token_hex(6), "body": body},
    )
    assert r.status_code in (200, 201), r.text
    qian = pages.open("qian")
    expect(qian.get_by_role("list", name="会话列表").locator("a.conv", has_text=body)).to_be_visible()
    qian.get_by_role("navigation", name="主导航").get_by_role("link", name="通知").click()
    expect(qian.get_by_role("heading", level=2)).to_have_text("通知")
    person = web.world.person_ids["qian"]
    kept = re.compile(
        rf"^zzd\.(inbox|profile|notices|tasks|sent|names|scanned|cursor|reports|dinged|drafts)\.{person}$"
    )

    def stored() -> dict[str, str]:
        return dict(qian.evaluate("Object.fromEntries(Object.entries(localStorage))"))

    assert any(kept.match(k) for k in stored())  # the premise: the shell keeps them while signed in
    qian.get_by_role("button", name="退出").click()
    expect(qian.get_by_role("button", name="登录")).to_be_visible()
    left = stored()
    assert not [k for k in left if kept.match(k)], left
    assert not [k for k, v in left.items() if body in v], left
    sign_in(qian, "qian")
    expect(qian.get_by_role("list", name="会话列表").locator("a.conv", has_text=body)).to_be_visible()
