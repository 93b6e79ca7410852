"""Installable on a phone's home screen; the shell and the last synced inbox work offline."""

from __future__ import annotations

import secrets

import httpx
from playwright.sync_api import expect

from tests.web.conftest import Pages, Web
from tests.web.world import token


def test_manifest_and_service_worker_keep_the_shell_and_last_inbox_offline(pages: Pages, web: Web) -> None:
    manifest = httpx.get(web.base + "/web/manifest.webmanifest").json()
    assert manifest["display"] == "standalone" and manifest["start_url"] == "/"
    assert {"192x192", "512x512"} <= {i["sizes"] for i in manifest["icons"]}
    for icon in manifest["icons"]:
        r = httpx.get(web.base + icon["src"])
        assert r.status_code == 200 and r.headers["content-type"].startswith(icon["type"])
    body = f"离线也能看 {secrets.token_hex(2)}"
    r = httpx.post(
        web.base + "/api/v1/messages",
        headers={"authorization": f"Bearer {token(web.base, 'zhao')}"},
        json={"to": web.world.person_ids["li"], "client_msg_id": secrets.token_hex(6), "body": body},
    )
    assert r.status_code == 201
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
