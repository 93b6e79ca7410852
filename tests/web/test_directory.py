"""找岗位, the org browser and acting as one of several positions, in a real browser."""

from __future__ import annotations

import re
import secrets

import httpx
from playwright.sync_api import expect

from tests.web.conftest import Pages, Web, check_page
from tests.web.world import token


def test_search_by_name_pinyin_and_initials_shows_holders_and_vacancies(pages: Pages, web: Web) -> None:
    page = pages.open("zhang")
    page.get_by_role("navigation", name="主导航").get_by_role("link", name="找岗位").click()
    box = page.get_by_label("岗位、单位、姓名、拼音或首字母")
    results = page.get_by_role("list", name="搜索结果")
    box.fill("李四")
    hit = results.locator(f"li.hit[data-position='{web.world.positions['li'][0]}']")
    expect(hit).to_contain_text("村书记")
    expect(hit).to_contain_text("李四")
    hit.get_by_role("button", name="在岗人员").click()
    expect(hit.locator(".card")).to_contain_text("在岗：李四")
    box.fill("kechengqu 河长")  # pinyin of 柯城区
    expect(results.locator("li.hit").first).to_contain_text("河长")
    expect(results.locator("li.hit").first).to_contain_text("柯城区")
    box.fill("kcq 村妇联执委")  # initials of 柯城区
    expect(results.locator("li.hit").first).to_contain_text("村妇联执委")
    vacant = results.locator(f"li.hit[data-position='{web.world.vacant}']")
    expect(vacant.locator(".pill.vacant")).to_have_text("空缺")
    vacant.get_by_role("button", name="在岗人员").click()
    expect(vacant.locator(".card")).to_contain_text("空缺规则")
    check_page(page, "search")
    vacant.get_by_role("link", name="发消息").click()
    expect(page.get_by_role("heading", level=2)).to_have_text(re.compile("村妇联执委"))


def test_org_browser_loads_the_six_levels_lazily(pages: Pages, web: Web) -> None:
    page = pages.open("zhang")
    page.get_by_role("navigation", name="主导航").get_by_role("link", name="组织").click()
    tree = page.get_by_role("list", name="组织架构")
    expect(tree.locator("li[data-unit='99']")).to_contain_text("测试省")
    for code, name in (("9901", "甲市"), ("990101", "柯城区"), ("990101001", "01镇1"), ("990101001001", "001村1")):
        unit = tree.locator(f"li[data-unit='{code}']")
        expect(unit).to_contain_text(name)
        unit.get_by_role("button", name=f"展开 {name}").click()
    grid = tree.locator("li[data-unit='990101001001001']")
    expect(grid).to_contain_text("网格")
    village = tree.locator("li[data-unit='990101001001']")
    village.get_by_role("button", name=re.compile("^岗位")).first.click()
    positions = village.get_by_role("list", name="001村1的岗位")
    expect(positions.locator(f"li[data-position='{web.world.positions['li'][0]}']")).to_contain_text("李四")
    expect(positions.locator(f"li[data-position='{web.world.vacant}'] .pill.vacant")).to_be_visible()
    check_page(page, "org")
    # The county head manages the village: he creates its unit group (he is not in it), once.
    village.get_by_role("button", name="建部门群").first.click()
    expect(village.get_by_role("status")).to_have_text(re.compile(r"已为001村1创建部门群，共 [1-9]\d* 人"))
    village.get_by_role("button", name="建部门群").first.click()
    expect(village.get_by_role("status")).to_have_text("该单位已有部门群，可在消息中找到")


def test_a_person_with_two_positions_sees_where_each_item_came_and_switches(pages: Pages, web: Web) -> None:
    main, part = web.world.positions["wang"]
    tok = token(web.base, "zhao")
    tag = secrets.token_hex(2)
    for pos in (main, part):
        r = httpx.post(
            f"{web.base}/api/v1/positions/{pos}/messages",
            headers={"authorization": f"Bearer {tok}"},
            json={"client_msg_id": f"two-{tag}-{pos}", "body": f"给岗位{pos} {tag}"},
        )
        assert r.status_code == 201, r.text
    page = pages.open("wang")
    inbox = page.get_by_role("list", name="会话列表")
    for pos, label in ((main, "发给：专职网格员 · 第1网格（001村1）"), (part, "发给：兼职网格员 · 第2网格（001村1）")):
        expect(inbox.locator("a.conv", has_text=f"给岗位{pos} {tag}").locator(".via")).to_have_text(label)
    acting = page.get_by_label("当前岗位")
    expect(acting.locator("option")).to_have_text(
        ["专职网格员 · 第1网格（001村1）（主职）", "兼职网格员 · 第2网格（001村1）（兼职）"]
    )
    acting.select_option(str(part))
    # Writing to a position now goes as the part-time position.
    page.goto(f"{web.base}/#/position/{web.world.positions['li'][0]}")
    expect(page.get_by_label(re.compile("以岗位身份发送"))).to_be_checked()
    expect(page.locator("label.inline")).to_contain_text("兼职网格员 · 第2网格（001村1）")
    page.get_by_label("消息", exact=True).fill(f"兼职发的 {tag}")
    page.get_by_role("button", name="发送").click()
    mine = page.locator("li.msg.mine", has_text=f"兼职发的 {tag}")
    expect(mine).to_be_visible()
    expect(mine.locator(".as")).to_contain_text("兼职网格员")
    page.reload()
    expect(page.get_by_label("当前岗位")).to_have_value(str(part))


def test_the_position_held_comes_first_before_one_stood_in_for(pages: Pages, web: Web) -> None:
    """/me/positions lists by id; a position someone only stands in for (acting) must not become
    their 主职 and default acting position because its id is lower."""
    own, stand_in = web.world.positions["feng"]
    assert stand_in < own  # the premise: by id the stand-in would come first
    page = pages.open("feng")
    acting = page.get_by_label("当前岗位")
    labels = [re.compile("^专职网格员 · .*（主职）$"), re.compile("^村主任 · .*（兼职）$")]
    expect(acting.locator("option")).to_have_text(labels)
    expect(acting).to_have_value(str(own))
    page.get_by_role("navigation", name="主导航").get_by_role("link", name="任务").click()
    expect(page.get_by_role("heading", level=2)).to_contain_text("任务 · 专职网格员")
