"""A group made from positions; a message with a mention and a photo; reply, edit, who read, recall."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from playwright.sync_api import expect

from tests.web.conftest import DESKTOP, Pages, Web, check_page

PHOTO = Path(__file__).resolve().parents[2] / "zzd" / "web" / "icon-192.png"


def test_group_mention_photo_reply_edit_read_list_and_recall(pages: Pages, web: Web) -> None:
    sun = pages.open("sun")
    sun.get_by_role("link", name="建群").click()
    title = f"防汛群 {secrets.token_hex(2)}"
    sun.get_by_label("群名称").fill(title)
    sun.get_by_placeholder("找岗位加入群").fill("周九")
    sun.get_by_role("button", name="搜索").click()
    sun.get_by_role("list", name="可加入的岗位").get_by_role("button", name="加入").first.click()
    expect(sun.get_by_label("已选岗位")).to_contain_text("专职网格员")
    check_page(sun, "group-new")
    sun.get_by_role("button", name="创建群聊").click()
    expect(sun).to_have_url(re.compile(r"#/chat/\d+$"))
    chat_url = sun.url.split("#")[1]
    expect(sun.get_by_role("heading", level=2)).to_have_text(title)
    expect(sun.locator("li.system")).to_have_text(f"创建了群“{title}”")

    zhou = pages.open("zhou", DESKTOP)
    zhou.goto(f"{web.base}/#{chat_url}")
    expect(zhou.get_by_role("heading", level=2)).to_have_text(title)

    # A mention of zhou's position (found by 找岗位) and a photo.
    sun.get_by_role("button", name="@ 提及").click()
    sun.get_by_label("找岗位").fill("周九")
    sun.get_by_role("dialog", name="提及").get_by_role("button", name="搜索").click()
    sun.get_by_role("dialog", name="提及").get_by_role("button", name=re.compile("专职网格员")).click()
    sun.get_by_label("照片").set_input_files(str(PHOTO))
    expect(sun.locator("form.composer img.photo")).to_have_count(1)
    sun.get_by_label("消息", exact=True).press("End")
    sun.get_by_label("消息", exact=True).type("请看照片")
    sun.get_by_role("button", name="发送").click()
    first = zhou.locator("li.msg", has_text="请看照片")
    expect(first).to_have_count(1)
    mid = first.get_attribute("data-message")
    msg = zhou.locator(f"li.msg[data-message='{mid}']")  # later replies quote its text
    expect(msg).to_have_class(re.compile("mentioned"))
    expect(msg.locator("img.photo")).to_be_visible()  # downloaded with zhou's own token
    assert msg.locator("img.photo").evaluate("img => img.naturalWidth") == 192

    msg.get_by_role("button", name="回复").click()
    zhou.get_by_label("消息", exact=True).fill("收到，马上去")
    zhou.get_by_role("button", name="发送").click()
    reply = sun.locator("li.msg", has_text="收到，马上去")
    expect(reply.locator("blockquote")).to_contain_text("请看照片")

    mine = sun.locator(f"li.msg.mine[data-message='{mid}']")
    mine.get_by_role("button", name="编辑").click()
    sun.get_by_label("消息", exact=True).fill("请看照片（已更新）")
    sun.get_by_role("button", name="保存").click()
    expect(msg.locator(".body")).to_have_text("请看照片（已更新）")
    expect(msg).to_contain_text("（已编辑）")

    mine.get_by_role("button", name="谁读了").click()
    expect(mine.locator(".reads")).to_contain_text("已读 1：周九")
    check_page(sun, "group-chat")

    mine.get_by_role("button", name="撤回").click()
    expect(msg.locator(".body")).to_have_text("（消息已撤回）")
    expect(msg.locator("img.photo")).to_have_count(0)
