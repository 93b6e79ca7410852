"""Keyboard only: where the focus goes when a view replaces what held it."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.web.conftest import Pages, Web
from tests.web.world import token


def _tab_to(page: Any, target: Any, most: int = 60) -> None:
    """Presses Tab until ``target`` has the focus, as a keyboard user would (at most ``most`` times)."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            return
    raise AssertionError(f"{target} not reached in {most} presses of Tab")


def test_opening_a_conversation_from_the_keyboard_puts_the_focus_on_it(pages: Pages, web: Web) -> None:
    """Enter on an inbox row opened the conversation and left the focus on <body>: the next Tab
    started again from the header, and a screen reader announced nothing of the conversation."""
    body = f"请回复 {secrets.token_hex(2)}"
    r = httpx.post(
        f"{web.base}/api/v1/messages",
        headers={"authorization": f"Bearer {token(web.base, 'qian')}"},
        json={"to": web.world.person_ids["li"], "client_msg_id": secrets.token_hex(6), "body": body},
    )
    assert r.status_code in (200, 201), r.text
    li = pages.open("li")
    row = li.get_by_role("list", name="会话列表").locator("a.conv", has_text=body)
    _tab_to(li, row)
    li.keyboard.press("Enter")
    heading = li.get_by_role("heading", level=2)
    expect(heading).to_have_text("钱七")
    expect(heading).to_be_focused()
    li.keyboard.press("Tab")
    expect(li.get_by_role("link", name="返回")).to_be_focused()  # on into the conversation, not the header
    composer = li.get_by_label("消息", exact=True)
    _tab_to(li, composer, most=300)  # past every message's 回复 (and 编辑, 撤回 on mine)
    reply = f"收到 {secrets.token_hex(2)}"
    li.keyboard.type(reply)
    li.keyboard.press("Enter")
    expect(li.locator("li.msg.mine:not([data-message^=pending])", has_text=reply)).to_have_count(1)
    expect(composer).to_be_focused()
    # A tab of the bottom bar keeps the focus where it is, on the tab.
    tab = li.get_by_role("navigation", name="主导航").get_by_role("link", name="通知")
    _tab_to(li, tab)
    li.keyboard.press("Enter")
    expect(li.get_by_role("heading", level=2)).to_have_text("通知")
    expect(tab).to_be_focused()
