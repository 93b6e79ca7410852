"""A manager composes a notice with the live preview; a grid worker on a phone acknowledges it;
the manager's dashboard shows it without a reload, drills down and reminds the rest."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.web.conftest import DESKTOP, Pages, Web, check_page
from tests.web.world import PEOPLE, VILLAGE, notice_from_zhang, token


def _preview(web: Web, selector: str) -> dict[str, Any]:
    r = httpx.post(
        web.base + "/api/v1/notices/preview",
        headers={"authorization": f"Bearer {token(web.base, 'zhang')}"},
        json={"as_position": web.world.positions["zhang"][0], "selector": selector},
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def _term(page: Any, i: int, role: str, unit: str, *, subtree: bool = True) -> None:
    term = page.locator(f"[data-term='{i}']")
    term.get_by_label(re.compile("(包含|排除)岗位")).select_option(role)
    term.get_by_label("单位代码").fill(unit)
    box = term.get_by_label("含下级单位")
    if box.is_checked() != subtree:
        box.click()


def test_compose_with_preview_ack_on_a_phone_and_a_live_dashboard(pages: Pages, web: Web) -> None:
    mgr = pages.open("zhang", DESKTOP)
    mgr.get_by_role("navigation", name="主导航").get_by_role("link", name="通知").click()
    mgr.get_by_role("link", name="发通知").click()
    # Every full-time grid worker under 柯城区 ...
    _term(mgr, 0, "专职网格员", "990101")
    preview = mgr.locator("[data-preview=ok]")
    whole = _preview(web, "专职网格员@990101/**")
    expect(preview.get_by_role("heading")).to_have_text(f"预览：{whole['positions']} 个岗位，{whole['persons']} 人")
    # ... plus the (vacant) 村妇联执委 of one village, except those of 01镇2.
    mgr.get_by_role("button", name="＋ 包含").click()
    _term(mgr, 1, "村妇联执委", VILLAGE, subtree=False)
    mgr.get_by_role("button", name="－ 排除").click()
    _term(mgr, 2, "专职网格员", "990101002")
    selector = f"(专职网格员@990101/** | 村妇联执委@{VILLAGE}) - 专职网格员@990101002/**"
    expect(mgr.get_by_label("选择器（可直接编辑）")).to_have_value(selector)
    expected = _preview(web, selector)
    assert expected["fallback_count"] + expected["unfilled_count"] >= 1  # the vacancy is reported
    expect(preview.get_by_role("heading")).to_have_text(
        f"预览：{expected['positions']} 个岗位，{expected['persons']} 人"
    )
    for child in expected["by_child"]:
        expect(preview.locator(f"tr[data-unit='{child['code']}']")).to_contain_text(str(child["persons"]))
    expect(preview).to_contain_text("空缺岗位")
    # Each vacancy by name and what becomes of it, in words: the preview names positions by id
    # only, and the list read 岗位 113132（空缺）→ 单位负责人：岗位 113131, or → unfilled.
    vacancies = preview.locator("[data-fallbacks] li")
    expect(vacancies.first).to_be_visible()
    expect(preview.locator("[data-fallbacks]")).to_contain_text("村妇联执委 · 001村1（空缺）→ 由")
    expect(preview.locator("[data-fallbacks]")).not_to_contain_text(re.compile(r"岗位 \d|unfilled|[A-Za-z]"))
    check_page(mgr, "notice-compose")
    title = f"防汛检查 {secrets.token_hex(2)}"
    mgr.get_by_label("标题").fill(title)
    mgr.get_by_label("正文").fill("今晚有暴雨，请巡查河道并确认。")
    mgr.get_by_label("紧急（DING）").check()
    mgr.get_by_role("button", name=re.compile("^发送给")).click()
    dashboard = mgr.locator("[data-dashboard]")
    expect(dashboard.get_by_role("heading", level=2)).to_contain_text(title)
    expect(dashboard.locator("[data-count=acked]")).to_have_text("0")
    notice_id = int(mgr.url.rsplit("/", 1)[1])

    worker = pages.open("wang")  # 360 px
    worker.get_by_role("navigation", name="主导航").get_by_role("link", name="通知").click()
    item = worker.get_by_role("list", name="收到的通知").locator("a.conv", has_text=title)
    expect(item).to_contain_text("待确认")
    # A grid is named with its village: 第1网格 is in every village.
    expect(item.locator(".via")).to_have_text("发给：专职网格员 · 第1网格（001村1）")
    item.click()
    worker.get_by_label("回复（可选）").fill("已巡查")
    check_page(worker, "notice-received")
    worker.get_by_role("button", name="确认收到").click()
    expect(worker.get_by_role("status").filter(has_text="已确认收到")).to_be_visible()

    # The manager's dashboard updates live (notice.progress), chart included.
    expect(dashboard.locator("[data-count=acked]")).to_have_text("1")
    expect(dashboard.locator("[data-count=read]")).to_have_text("1")
    expect(dashboard.locator("[data-chart-points]")).not_to_have_attribute("data-chart-points", re.compile("^[01]$"))
    check_page(mgr, "notice-dashboard")
    # The audience's common unit is 01镇1 (01镇2 was excluded): drill into a village, to its
    # grids and who has not acknowledged there.
    expect(dashboard.get_by_role("heading", level=3).first).to_have_text("01镇1 的下级单位")
    dashboard.locator(f"tr[data-unit='{VILLAGE}']").get_by_role("button", name="001村1").click()
    expect(dashboard.locator(f"tr[data-unit='{VILLAGE}002']")).to_be_visible()
    pending = dashboard.get_by_role("list", name="待办人员")
    expect(pending.locator("li").first).to_be_visible()
    expect(pending).not_to_contain_text("王五")
    # Who is still to acknowledge, by position: the grid's name alone repeats in every village.
    expect(pending.locator("li").first).to_contain_text("001村1")
    expect(pending).not_to_contain_text(re.compile(r"· 第\d网格(?!（001村1）)"))
    dashboard.get_by_role("button", name="一键提醒").click()
    expect(dashboard.get_by_role("status").filter(has_text="已提醒")).to_have_text(re.compile(r"已提醒 [1-9]\d* 人"))
    dashboard.get_by_role("button", name="返回上一级").click()
    expect(dashboard.locator(f"tr[data-unit='{VILLAGE}']")).to_be_visible()

    # The manager on a phone that has never sent anything: the notice is listed under 我发出的
    # (learned from its notice.progress events), and its dashboard fits the 360-px width.
    phone = pages.open("zhang")
    phone.get_by_role("navigation", name="主导航").get_by_role("link", name="通知").click()
    sent = phone.get_by_role("list", name="我发出的通知").locator("a.conv", has_text=title)
    expect(sent).to_be_visible()
    sent.click()
    expect(phone.locator("[data-dashboard] [data-count=acked]")).to_have_text("1")
    expect(phone.locator("[data-dashboard] .uplot")).to_be_visible()
    # The chart's words are Chinese: uPlot's own legend said “Time”, and its times “1:58am”.
    legend = phone.locator("[data-dashboard] .u-legend .u-series").first
    expect(legend.locator(".u-label")).to_have_text("时间")
    phone.locator("[data-dashboard] .u-over").hover()
    expect(legend.locator(".u-value")).to_have_text(re.compile(r"^\d{1,2}月\d{1,2}日 \d{2}:\d{2}:\d{2}$"))
    assert phone.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    check_page(phone, "notice-dashboard-phone")
    # The others of the audience among the seated people (sun, feng; qian receiving for the vacant
    # 村妇联执委) acknowledge too: reminded of a DING, later tests signing in as them would meet its
    # banner at sign-in (docs/web-client.md). 404: not addressed.
    for login in PEOPLE:
        ack = httpx.post(
            f"{web.base}/api/v1/notices/{notice_id}/ack",
            headers={"authorization": f"Bearer {token(web.base, login)}"},
            json={},
        )
        assert ack.status_code in (200, 404), ack.text


def _notice_to_wang(web: Web, title: str, body: str, priority: str = "normal") -> int:
    """zhang's notice (acknowledgement required) to the 专职网格员 of wang's grid, by the API."""
    return notice_from_zhang(web.base, web.world, f"专职网格员@{VILLAGE}001", title, body, priority)


def test_a_notice_acknowledged_on_another_device_is_not_shown_as_waiting(pages: Pages, web: Web) -> None:
    """No event tells a browser that its person acknowledged elsewhere: the list said 待确认
    (and the tab counted it) for a notice already confirmed on the phone."""
    title = f"已在手机上确认 {secrets.token_hex(2)}"
    notice_id = _notice_to_wang(web, title, "请确认")
    ack = httpx.post(
        f"{web.base}/api/v1/notices/{notice_id}/ack",
        headers={"authorization": f"Bearer {token(web.base, 'wang')}"},
        json={},
    )
    assert ack.status_code == 200, ack.text
    desk = pages.open("wang", DESKTOP)
    desk.get_by_role("navigation", name="主导航").get_by_role("link", name="通知").click()
    item = desk.get_by_role("list", name="收到的通知").locator("a.conv", has_text=title)
    expect(item).to_contain_text("已确认")
    expect(item).not_to_contain_text("待确认")


def test_a_ding_interrupts_the_open_view_until_looked_at(pages: Pages, web: Web) -> None:
    """An urgent notice (DING) announces itself over whatever view is open, with a link to it."""
    worker = pages.open("wang")
    worker.get_by_role("navigation", name="主导航").get_by_role("link", name="找岗位").click()
    title = f"紧急：河道水位超警 {secrets.token_hex(2)}"
    _notice_to_wang(web, title, "立即巡查", priority="urgent")
    alert = worker.get_by_role("alert")
    expect(alert).to_contain_text(f"紧急通知（DING）：{title}")
    alert.get_by_role("link", name="查看").click()
    expect(worker.get_by_role("heading", level=2)).to_contain_text(title)
    expect(worker.get_by_role("alert")).to_have_count(0)
    # Acknowledged, as a worker would: later tests signing in as wang get no DING banner at sign-in.
    worker.get_by_role("button", name="确认收到").click()
    expect(worker.get_by_role("status").filter(has_text="已确认收到")).to_be_visible()


def test_a_mistyped_unit_code_or_role_is_named_in_the_preview(pages: Pages, web: Web) -> None:
    """The preview answered not_found for a unit code or role that does not exist, and the page
    said 找不到该内容（可能已删除或无权查看）: neither which part was wrong nor that it was a typo."""
    mgr = pages.open("zhang")
    mgr.get_by_role("navigation", name="主导航").get_by_role("link", name="通知").click()
    mgr.get_by_role("link", name="发通知").click()
    _term(mgr, 0, "专职网格员", "990199")  # no such unit (柯城区 is 990101)
    error = mgr.locator("[data-preview=error]")
    expect(error).to_have_text("没有这个单位：990199（请检查单位代码）")
    mgr.get_by_label("选择器（可直接编辑）").fill("网格巡查员@990101/**")
    expect(error).to_have_text("没有这个岗位：网格巡查员（请从列表中选择）")
    # A hand-edited selector that does not parse: the server's message is English.
    mgr.get_by_label("选择器（可直接编辑）").fill("专职网格员@@990101")
    expect(error).to_have_text(
        "选择器写法有误（从第 1 个字符起无法识别）。写法如：专职网格员@990101/**，多个用 | 连接，排除用 -"
    )
    check_page(mgr, "notice-compose-typo")
    _term(mgr, 0, "专职网格员", "990101")
    expect(mgr.locator("[data-preview=ok]")).to_be_visible()


def test_a_notice_received_for_a_vacant_position_names_both(pages: Pages, web: Web) -> None:
    """A vacancy's notice reaches whoever stands in for it (docs/selectors.md): the row named the
    vacant position alone — 发给：村妇联执委 · 001村1, a post its reader does not hold — and not
    the reader's own position it came to."""
    selector = f"村妇联执委@{VILLAGE}"
    fallback = next(f for f in _preview(web, selector)["fallbacks"] if f["position_id"] == web.world.vacant)
    via = fallback["via_position_id"]
    assert via is not None and via != web.world.vacant, fallback  # someone else's post receives it
    reader = next(login for login, ids in web.world.positions.items() if via in ids)
    title = f"空缺代收 {secrets.token_hex(2)}"
    notice_from_zhang(web.base, web.world, selector, title, "请代为落实")
    page = pages.open(reader)
    page.get_by_role("navigation", name="主导航").get_by_role("link", name="通知").click()
    item = page.get_by_role("list", name="收到的通知").locator("a.conv", has_text=title)
    own = page.get_by_label("当前岗位").locator(f"option[value='{via}']").inner_text().split("（")[0]
    expect(item.locator(".via")).to_have_text(f"发给：{own}（代收空缺岗位：村妇联执委 · 001村1）")
