"""A notice or a report being written survives the session ending meanwhile — the session revoked
or expired (sign in again), a reload, a phone discarding the tab — as typed chat messages do:
before, the form came back empty. The draft is the person's own (another person signing in on the
same browser does not get it), goes once sent, and goes with 退出."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.web.conftest import Pages, Web, add_photo, check_page, sign_in
from tests.web.world import VILLAGE

SHORT_PHONE = {"width": 375, "height": 667}
HERE = {"latitude": 28.9701, "longitude": 118.8712}


def _drafts(page: Any, person: int) -> dict[str, Any]:
    return dict(page.evaluate(f"JSON.parse(localStorage.getItem('zzd.drafts.{person}') || '{{}}')"))


def _nav(page: Any, tab: str) -> None:
    page.get_by_role("navigation", name="主导航").get_by_role("link", name=tab).click()


def test_a_notice_draft_survives_the_session_ending_and_goes_once_sent(pages: Pages, web: Web) -> None:
    zhang = web.world.person_ids["zhang"]
    page = pages.open("zhang", SHORT_PHONE)
    page.goto(web.base + "/#/notice/new")
    term = page.locator("[data-term='0']")
    term.get_by_label("包含岗位").select_option("专职网格员")
    term.get_by_label("单位代码").fill(VILLAGE)
    expect(page.get_by_label("选择器（可直接编辑）")).to_have_value(f"专职网格员@{VILLAGE}/**")
    title = f"防汛值班安排 {secrets.token_hex(2)}"
    page.get_by_label("标题").fill(title)
    page.get_by_label("正文").fill("今晚值班表见附件，请确认。")
    page.get_by_label("需要确认回执").uncheck()  # nothing left for wang to confirm in later tests
    add_photo(page, "添加附件")
    expect(page.locator("[data-draft]")).to_have_count(0)  # a new form, nothing restored

    # The session ends elsewhere (revoked: 4503) while the form is open.
    access = page.evaluate("JSON.parse(localStorage.getItem('zzd.session')).access")
    r = httpx.post(web.base + "/api/v1/auth/logout", headers={"authorization": f"Bearer {access}"})
    assert r.status_code in (200, 204), r.text
    expect(page.locator("[data-ended]")).to_be_visible()

    # Someone else at the keyboard does not get it.
    sign_in(page, "li")
    page.goto(web.base + "/#/notice/new")
    expect(page.get_by_label("标题")).to_have_value("")
    expect(page.locator("[data-draft]")).to_have_count(0)
    page.get_by_role("button", name="退出").click()
    assert _drafts(page, zhang)["notice"]["title"] == title  # li's 退出 leaves zhang's draft

    # Signed in again: the form as it was left, target, the unticked 需要确认回执 and the attachment included.
    sign_in(page, "zhang")
    page.goto(web.base + "/#/notice/new")
    expect(page.locator("[data-draft]")).to_have_text(
        re.compile(r"^已恢复未发出的草稿（\d{1,2}月\d{1,2}日 \d\d:\d\d）\s*清空草稿$")
    )
    expect(page.get_by_label("标题")).to_have_value(title)
    expect(page.get_by_label("正文")).to_have_value("今晚值班表见附件，请确认。")
    expect(page.get_by_label("需要确认回执")).not_to_be_checked()
    expect(page.get_by_label("选择器（可直接编辑）")).to_have_value(f"专职网格员@{VILLAGE}/**")
    expect(page.get_by_label("已添加的照片").locator("img.photo")).to_have_count(1)
    expect(page.locator("[data-preview=ok]").get_by_role("heading")).to_contain_text("预览：2 个岗位")
    check_page(page, "notice-draft")
    # A reload (or a discarded tab) too.
    page.reload()
    expect(page.get_by_label("标题")).to_have_value(title)
    kept_id = _drafts(page, zhang)["notice"]["client_msg_id"]

    with page.expect_request(lambda q: q.url.endswith("/api/v1/notices") and q.method == "POST") as sent:
        page.get_by_role("button", name=re.compile("^发送给")).click()
    assert sent.value.post_data_json["client_msg_id"] == kept_id  # a send whose answer was lost is stored once
    assert len(sent.value.post_data_json["attachments"]) == 1
    expect(page.locator("[data-dashboard]").get_by_role("heading", level=2)).to_contain_text(title)
    assert "notice" not in _drafts(page, zhang)
    page.goto(web.base + "/#/notice/new")
    expect(page.get_by_label("标题")).to_have_value("")
    expect(page.locator("[data-draft]")).to_have_count(0)


def test_a_report_draft_survives_a_reload_and_goes_with_sign_out(pages: Pages, web: Web) -> None:
    wang = web.world.person_ids["wang"]
    page = pages.open("wang", SHORT_PHONE, permissions=["geolocation"], geolocation=HERE)
    _nav(page, "上报")
    expect(page.locator("[data-location=ok]")).to_be_visible()
    page.get_by_label("上报岗位").select_option(str(web.world.positions["wang"][1]))
    page.get_by_label("类别").select_option(label="违章建筑")
    text = f"村口新搭彩钢棚 {secrets.token_hex(2)}"
    page.get_by_label("情况说明").fill(text)
    add_photo(page, "拍照")
    page.get_by_label("超出本级处置能力（直接上报上一级）").check()

    page.reload()  # the phone discarded the tab
    _nav(page, "上报")
    expect(page.locator("[data-draft]")).to_contain_text("已恢复未发出的草稿")
    expect(page.get_by_label("情况说明")).to_have_value(text)
    expect(page.get_by_label("类别")).to_have_value("illegal_building")
    expect(page.get_by_label("上报岗位")).to_have_value(str(web.world.positions["wang"][1]))
    expect(page.get_by_label("超出本级处置能力（直接上报上一级）")).to_be_checked()
    expect(page.get_by_label("已添加的照片").locator("img.photo")).to_have_count(1)
    check_page(page, "report-draft")

    # 清空草稿 starts afresh.
    page.get_by_role("button", name="清空草稿").click()
    expect(page.get_by_label("情况说明")).to_have_value("")
    expect(page.get_by_label("已添加的照片")).to_have_count(0)
    assert "report" not in _drafts(page, wang)

    # 退出 takes a draft with the rest of the person's data (a shared or handed-on device).
    page.get_by_label("情况说明").fill(text)
    page.reload()
    _nav(page, "上报")
    expect(page.get_by_label("情况说明")).to_have_value(text)  # kept
    page.get_by_role("button", name="退出").click()
    expect(page.get_by_role("button", name="登录")).to_be_visible()
    assert _drafts(page, wang) == {}
    sign_in(page, "wang")
    _nav(page, "上报")
    expect(page.get_by_label("情况说明")).to_have_value("")
    expect(page.locator("[data-draft]")).to_have_count(0)


def test_a_task_draft_is_kept_too(pages: Pages, web: Web) -> None:
    """派任务 keeps its draft as 发通知 does: the target and the text come back after a reload."""
    page = pages.open("zhang")
    page.goto(web.base + "/#/tasks/new")
    term = page.locator("[data-term='0']")
    term.get_by_label("包含岗位").select_option("河长")
    term.get_by_label("单位代码").fill(VILLAGE)
    page.get_by_label("共享任务（只派一个，所选岗位中任一接收即由其负责）").check()
    title = f"汛前巡河 {secrets.token_hex(2)}"
    page.get_by_label("标题").fill(title)
    page.reload()
    expect(page.get_by_label("标题")).to_have_value(title)
    expect(page.get_by_label("选择器（可直接编辑）")).to_have_value(f"河长@{VILLAGE}/**")
    expect(page.get_by_label("共享任务（只派一个，所选岗位中任一接收即由其负责）")).to_be_checked()
    page.get_by_role("button", name="清空草稿").click()
    expect(page.get_by_label("标题")).to_have_value("")
    assert "task" not in _drafts(page, web.world.person_ids["zhang"])
