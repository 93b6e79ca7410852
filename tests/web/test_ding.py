"""A DING (an urgent notice) or a reminder that came while no page was open shows its banner at
sign-in. The banner came only with a live ``notice.new``/``notice.remind``: signing in learns of
notices from the first scan of the event stream and the 待确认 lookups, which said nothing, so a
DING sent overnight waited unnoticed in the 通知 list."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.web.conftest import DESKTOP, Pages, Web, sign_in
from tests.web.world import add_admin, notice_from_zhang, token

GRID = "990101002001002"  # a grid no other test's person works in


def _seated(web: Web) -> tuple[str, int]:
    """A new person handed the 网格长 post of ``GRID``: their login and the position."""
    admin = f"admin-{secrets.token_hex(3)}"
    add_admin(web.world, admin)
    h = {"authorization": f"Bearer {token(web.base, admin)}"}
    login = f"ding-{secrets.token_hex(3)}"
    person = add_admin(web.world, login, perms=frozenset({"audit"}))
    unit = httpx.get(f"{web.base}/api/v1/org/units/{GRID}", headers=h).json()
    views = [httpx.get(f"{web.base}/api/v1/org/positions/{p}", headers=h).json() for p in unit["position_ids"]]
    chief = next(v["id"] for v in views if v["role_key"] == "grid_chief")
    r = httpx.post(f"{web.base}/api/v1/org/positions/{chief}/handover", headers=h, json={"person_id": person})
    assert r.status_code == 200, r.text
    return login, int(chief)


def _sign_out(page: Any) -> None:
    page.get_by_role("button", name="退出").click()
    expect(page.get_by_label("账号")).to_be_visible()


def test_a_ding_sent_while_signed_out_shows_at_sign_in_once_and_not_after_acknowledging(pages: Pages, web: Web) -> None:
    login, position = _seated(web)
    first = f"夜间水位超警 {secrets.token_hex(2)}"
    a = notice_from_zhang(web.base, web.world, f"pos:{position}", first, priority="urgent")

    page = pages.open(login, DESKTOP)  # never signed in here: the first scan finds it
    banner = page.locator(".banner")
    said = banner.locator("[data-banner-text]")
    expect(said).to_have_text(f"紧急通知（DING）：{first}")
    expect(banner.get_by_role("link", name="查看")).to_have_attribute("href", f"#/notice/{a}")
    banner.get_by_role("button", name="知道了").click()
    expect(banner).to_have_count(0)

    # Once per sign-in: the page closed and opened again (the same sign-in) shows only what is new.
    page.goto("about:blank")
    second = f"堤坝巡查 {secrets.token_hex(2)}"
    b = notice_from_zhang(web.base, web.world, f"pos:{position}", second, priority="urgent")
    page.goto(web.base + "/")
    expect(said).to_have_text(f"紧急通知（DING）：{second}")
    banner.get_by_role("button", name="知道了").click()

    # A new sign-in shows both again, still unacknowledged, the newest first, and links to the list.
    _sign_out(page)
    sign_in(page, login)
    expect(said).to_have_text(f"2 条紧急通知待确认：紧急通知（DING）：{second}；紧急通知（DING）：{first}")
    expect(banner.get_by_role("link", name="查看")).to_have_attribute("href", "#/notices")

    # Acknowledged (here, from the notice the banner leads to): not shown again.
    page.goto(f"{web.base}/#/notice/{a}")
    page.get_by_role("button", name="确认收到").click()
    expect(page.get_by_role("status").filter(has_text="已确认收到")).to_be_visible()
    _sign_out(page)
    sign_in(page, login)
    expect(said).to_have_text(f"紧急通知（DING）：{second}")
    expect(banner.get_by_role("link", name="查看")).to_have_attribute("href", f"#/notice/{b}")
    ack = httpx.post(
        f"{web.base}/api/v1/notices/{b}/ack", headers={"authorization": f"Bearer {token(web.base, login)}"}, json={}
    )
    assert ack.status_code == 200, ack.text

    # A reminder (一键提醒) of an ordinary notice, sent while signed out: 催办 at sign-in; the
    # two DINGs, acknowledged (one on another device), are not named.
    _sign_out(page)
    third = f"月度台账 {secrets.token_hex(2)}"
    c = notice_from_zhang(web.base, web.world, f"pos:{position}", third)
    reminded = httpx.post(
        f"{web.base}/api/v1/notices/{c}/remind",
        headers={"authorization": f"Bearer {token(web.base, 'zhang')}"},
        json={"unit": GRID, "missing": "ack"},
    )
    assert reminded.status_code == 200 and reminded.json()["reminded"] >= 1, reminded.text
    sign_in(page, login)
    expect(said).to_have_text(f"催办：{third}")
    banner.get_by_role("link", name="查看").click()
    expect(page.get_by_role("heading", level=2)).to_contain_text(third)
    expect(banner).to_have_count(0)
