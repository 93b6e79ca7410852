"""Installable on a phone's home screen; the shell and the last synced inbox work offline."""

from __future__ import annotations

import re
import secrets

import httpx
from playwright.sync_api import expect

from tests.web.conftest import Pages, Web
from tests.web.world import token


def _zhao_writes_to(web: Web, login: str, text: str) -> str:
    """A direct message from zhao through the API; returns its (unique) body."""
    body = f"{text} {secrets.token_hex(2)}"
    r = httpx.post(
        web.base + "/api/v1/messages",
        headers={"authorization": f"Bearer {token(web.base, 'zhao')}"},
        json={"to": web.world.person_ids[login], "client_msg_id": secrets.token_hex(6), "body": body},
    )
    assert r.status_code == 201, r.text
    return body


def test_manifest_and_service_worker_keep_the_shell_and_last_inbox_offline(pages: Pages, web: Web) -> None:
    manifest = httpx.get(web.base + "/web/manifest.webmanifest").json()
    assert manifest["display"] == "standalone" and manifest["start_url"] == "/"
    assert {"192x192", "512x512"} <= {i["sizes"] for i in manifest["icons"]}
    for icon in manifest["icons"]:
        r = httpx.get(web.base + icon["src"])
        assert r.status_code == 200 and r.headers["content-type"].startswith(icon["type"])
    body = _zhao_writes_to(web, "li", "离线也能看")
    page = pages.open("li", service_workers="allow")
    expect(page.get_by_role("list", name="会话列表").locator("a.conv", has_text=body)).to_be_visible()
    assert page.locator("link[rel=manifest]").get_attribute("href") == "/web/manifest.webmanifest"
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    page.context.set_offline(True)
    page.reload()
    # The shell comes from the service worker, the inbox from the last sync; the state says offline.
    expect(page.get_by_role("list", name="会话列表").locator("a.conv", has_text=body)).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("离线")
    expect(page.locator("[data-status=online]")).to_have_count(0)
    page.context.set_offline(False)
    expect(page.locator("[data-status=online]")).to_be_visible()


def test_going_offline_shows_at_once_and_a_start_offline_completes_when_back(pages: Pages, web: Web) -> None:
    """A grid worker's phone loses the network with the page open, then reloads it offline: the
    state says so at once (not after the next ping), every tab still opens, messages read as
    Chinese, and when the network returns the start that failed is finished without a reload."""
    page = pages.open("wang", service_workers="allow")
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    acting = page.get_by_label("当前岗位")
    expect(acting.locator("option")).to_have_count(2)
    page.context.set_offline(True)
    # The browser's own offline signal, well inside the 20-s ping that would notice otherwise.
    expect(page.locator("[data-status=offline]")).to_be_visible(timeout=5_000)
    page.reload()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("离线")
    expect(alert).not_to_contain_text("Failed to fetch")
    expect(acting.locator("option")).to_have_count(2)  # the positions of the last sync
    nav = page.get_by_role("navigation", name="主导航")
    nav.get_by_role("link", name="上报").click()  # never opened online in this browser
    expect(page.get_by_role("heading", name="事件上报")).to_be_visible()
    nav.get_by_role("link", name="任务").click()
    expect(page.get_by_role("heading", level=2)).to_contain_text("任务 · 专职网格员")
    expect(page.get_by_role("alert").last).to_contain_text("网络不可用")
    nav.get_by_role("link", name="消息").click()
    body = _zhao_writes_to(web, "wang", "联网后到达")
    page.context.set_offline(False)
    expect(page.locator("[data-status=online]")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)  # the start finished: the offline note goes
    expect(page.get_by_role("list", name="会话列表").locator("a.conv", has_text=body)).to_be_visible()


def test_a_chat_first_learnt_live_is_in_the_offline_inbox(pages: Pages, web: Web) -> None:
    """A conversation that did not exist when the inbox was loaded comes with a live
    ``message.new`` (here: a group qian makes with li's position). Only loaded inbox pages were
    kept for the offline shell, so a reload without the network lost it. It is kept, titled."""
    page = pages.open("li", service_workers="allow")
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    title, body = f"离线群 {secrets.token_hex(2)}", f"刚建的群 {secrets.token_hex(2)}"
    auth = {"authorization": f"Bearer {token(web.base, 'qian')}"}
    g = httpx.post(
        web.base + "/api/v1/groups", headers=auth, json={"title": title, "position_ids": [web.world.positions["li"][0]]}
    )
    assert g.status_code == 201, g.text
    r = httpx.post(
        f"{web.base}/api/v1/conversations/{g.json()['id']}/messages",
        headers=auth,
        json={"client_msg_id": secrets.token_hex(6), "body": body},
    )
    assert r.status_code == 201, r.text
    row = page.get_by_role("list", name="会话列表").locator("a.conv", has_text=body)
    expect(row.locator(".conv-title")).to_contain_text(title)  # live, titled from the group
    page.context.set_offline(True)
    page.reload()
    expect(page.get_by_role("alert")).to_contain_text("离线")
    expect(row.locator(".conv-title")).to_contain_text(title)
    page.context.set_offline(False)
    expect(page.locator("[data-status=online]")).to_be_visible()


def test_a_position_opened_offline_is_not_said_to_be_missing(pages: Pages, web: Web) -> None:
    """#/position/N looks the position up; any failure read 没有这个岗位, so a grid worker who opened
    a position's page without the network was told it does not exist. Offline it shows the
    remembered title with an offline note and looks again once connected; the server's 404 is
    still 没有这个岗位."""
    page = pages.open("qian", service_workers="allow")
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    page.goto(f"{web.base}/#/position/99999999")
    expect(page.get_by_role("alert")).to_contain_text("没有这个岗位")
    river = web.world.positions["zhao"][0]
    page.goto(f"{web.base}/#/position/{river}")
    heading = page.get_by_role("heading", level=2)
    expect(heading).to_contain_text("河长")  # looked up, and remembered:
    names = f"localStorage.getItem('zzd.names.{web.world.person_ids['qian']}') || ''"
    page.wait_for_function(f"() => ({names}).includes('河长')")
    page.goto(f"{web.base}/#/inbox")
    page.context.set_offline(True)
    page.goto(f"{web.base}/#/position/{river}")
    page.reload()  # the shell from the service worker; nothing of the position in memory
    expect(page.locator("[data-position-offline]")).to_contain_text("离线")
    expect(heading).to_contain_text("河长")  # the remembered title
    expect(page.get_by_text("没有这个岗位")).to_have_count(0)
    page.context.set_offline(False)
    expect(page.locator("[data-status=online]")).to_be_visible()
    expect(page.locator("[data-position-offline]")).to_have_count(0)
    expect(page.get_by_label(re.compile("以岗位身份发送"))).to_be_visible()
