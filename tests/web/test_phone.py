"""A short phone (375×667, an iPhone 8 or SE): what a conversation shows must be usable where it is
shown, without scrolling the page first."""

from __future__ import annotations

import re
import secrets

import httpx
from playwright.sync_api import expect

from tests.web.conftest import Pages, Web, check_page
from tests.web.world import token

SHORT_PHONE = {"width": 375, "height": 667}


def test_the_composer_stays_above_the_tab_bar_on_a_short_phone(pages: Pages, web: Web) -> None:
    """The list of messages was 60vh tall whatever the screen: on 667 px the composer's row (@ 提及,
    照片, 发送) sat half under the fixed tab bar, and a tap on 发送 opened 上报 instead."""
    auth = {"authorization": f"Bearer {token(web.base, 'zhou')}"}
    for i in range(8):  # more than the screen holds
        r = httpx.post(
            f"{web.base}/api/v1/messages",
            headers=auth,
            json={"to": web.world.person_ids["sun"], "client_msg_id": secrets.token_hex(6), "body": f"巡查记录 {i}"},
        )
        assert r.status_code in (200, 201), r.text
    cid = int(r.json()["conversation_id"])
    sun = pages.open("sun", SHORT_PHONE)
    sun.goto(f"{web.base}/#/chat/{cid}")
    newest = sun.locator("li.msg", has_text="巡查记录 7")
    expect(newest).to_be_visible()
    tabs = sun.get_by_role("navigation", name="主导航").bounding_box()
    assert tabs is not None
    composer = sun.locator("form.composer")
    controls = [
        sun.get_by_label("消息", exact=True),
        composer.get_by_role("button", name="@ 提及"),
        composer.locator("label.file", has_text="照片"),
        composer.get_by_role("button", name="发送"),
    ]
    for control in controls:
        box = control.bounding_box()
        assert box is not None and box["y"] + box["height"] <= tabs["y"], (control, box, tabs)
    # The newest message is in sight above the composer, the list scrolled to its end.
    last, form = newest.bounding_box(), composer.bounding_box()
    assert last is not None and form is not None and last["y"] + last["height"] <= form["y"]
    check_page(sun, "chat-short-phone")

    # A tap where 发送 is shown sends, and the view stays.
    body = f"收到 {secrets.token_hex(2)}"
    sun.get_by_label("消息", exact=True).fill(body)
    send = composer.get_by_role("button", name="发送").bounding_box()
    assert send is not None
    sun.mouse.click(send["x"] + send["width"] / 2, send["y"] + send["height"] / 2)
    expect(sun.locator("li.msg.mine:not([data-message^=pending])", has_text=body)).to_have_count(1)
    expect(sun).to_have_url(re.compile(rf"#/chat/{cid}$"))
    sun.get_by_label("消息", exact=True).fill("再发一条")
    sun.get_by_label("消息", exact=True).press("Enter")  # Enter sends too
    expect(sun.locator("li.msg.mine:not([data-message^=pending])", has_text="再发一条")).to_have_count(1)
