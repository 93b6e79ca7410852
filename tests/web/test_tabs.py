"""One person, two tabs of the same browser: each tab keeps up with every event on its own socket,
live and after the network comes back."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.web.conftest import Pages, Web
from tests.web.world import token

#: The cursor stored in localStorage (the furthest any tab has processed).
CURSOR = (
    "(JSON.parse(localStorage.getItem('zzd.cursor.' + JSON.parse(localStorage.getItem('zzd.session')).personId))"
    " || {seq: 0}).seq"
)


def _post(web: Web, sender: str, to: str, body: str) -> None:
    r = httpx.post(
        f"{web.base}/api/v1/messages",
        headers={"authorization": f"Bearer {token(web.base, sender)}"},
        json={"to": web.world.person_ids[to], "client_msg_id": secrets.token_hex(6), "body": body},
    )
    assert r.status_code in (200, 201), r.text


def _unread(web: Web, login: str, body: str) -> int:
    """The server's unread count of ``login``'s conversation whose last message is ``body``."""
    r = httpx.get(f"{web.base}/api/v1/conversations", headers={"authorization": f"Bearer {token(web.base, login)}"})
    assert r.status_code == 200, r.text
    return next(int(c["unread"]) for c in r.json()["conversations"] if c["last_message"]["snippet"] == body)


def _row(page: Any, body: str) -> Any:
    return page.get_by_role("list", name="会话列表").locator("a.conv", has_text=body)


def test_a_second_tab_keeps_up_with_events_the_first_tab_processed(pages: Pages, web: Web) -> None:
    """Both tabs shared one stored cursor: the tab that processed an event first advanced it, and
    the other then dropped the same event from its own socket as a duplicate — its inbox stood
    still (no new message, no unread count), after a network drop too."""
    first = pages.open("li")
    second = first.context.new_page()
    second.on("pageerror", lambda e: pages.errors.append(f"li, second tab: {e}"))
    # The second tab's socket goes through a relay that can hold the server's events back, so
    # the first tab surely processes them first, as it does whenever its socket is a little ahead.
    holding: list[bool] = [False]
    held: list[tuple[Any, str | bytes]] = []

    def relay(ws: Any) -> None:
        server = ws.connect_to_server()
        ws.on_message(server.send)

        def from_server(m: str | bytes) -> None:
            if holding[0] and isinstance(m, str) and json.loads(m).get("type") == "event":
                held.append((ws, m))
            else:
                ws.send(m)

        server.on_message(from_server)

    second.route_web_socket(re.compile(r"/ws$"), relay)
    second.goto(web.base + "/#/inbox")
    expect(second.locator("[data-status=online]")).to_be_visible()

    holding[0] = True
    live = f"两个标签页 {secrets.token_hex(2)}"
    _post(web, "qian", "li", live)
    expect(_row(first, live)).to_have_count(1)
    seq = int(first.evaluate(CURSOR))
    second.wait_for_function(f"() => {CURSOR} >= {seq}")  # the first tab's cursor is stored
    holding[0] = False
    for ws, m in held:
        ws.send(m)
    expect(_row(second, live)).to_have_count(1)
    expect(_row(second, live).locator(".badge")).to_have_text(str(_unread(web, "li", live)))

    # The network drops and comes back: each tab resumes from its own cursor, and shows what
    # came meanwhile, once.
    first.context.set_offline(True)
    expect(first.locator("[data-status=online]")).to_have_count(0)
    expect(second.locator("[data-status=online]")).to_have_count(0)
    later = [f"断网期间 {i} {secrets.token_hex(2)}" for i in range(3)]
    for body in later:
        _post(web, "qian", "li", body)
    first.context.set_offline(False)
    unread = _unread(web, "li", later[-1])
    for page in (first, second):
        expect(page.locator("[data-status=online]")).to_be_visible()
        expect(_row(page, later[-1]).locator(".badge")).to_have_text(str(unread))
    for page in (second, first):
        _row(page, later[-1]).click()
        for body in [live, *later]:
            expect(page.locator("li.msg", has_text=body)).to_have_count(1)
    expect(_row(second, later[-1])).to_have_count(0)  # the view moved on: the inbox is not shown
    second.get_by_role("navigation", name="主导航").get_by_role("link", name="消息").click()
    expect(_row(second, later[-1]).locator(".badge")).to_have_count(0)  # read in both tabs
