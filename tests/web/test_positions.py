"""The header follows one's seats live: ``positions.changed`` after an assignment starts or ends.

Before, the header kept a position its holder had lost until a reload (a send as it then failed
with 无权执行此操作), and did not offer one just gained.
"""

from __future__ import annotations

import re
import secrets

import httpx
from playwright.sync_api import expect

from tests.web.conftest import Pages, Web, check_page
from tests.web.world import add_admin, notice_from_zhang, token

OTHER_GRID = "990101002002002"  # a grid of the second township: no seated test person works there


def test_the_header_gains_and_loses_a_position_without_a_reload(pages: Pages, web: Web) -> None:
    admin = f"admin-{secrets.token_hex(3)}"
    add_admin(web.world, admin)
    h = {"authorization": f"Bearer {token(web.base, admin)}"}
    unit = httpx.get(f"{web.base}/api/v1/org/units/{OTHER_GRID}", headers=h).json()
    views = [httpx.get(f"{web.base}/api/v1/org/positions/{p}", headers=h).json() for p in unit["position_ids"]]
    spare = next(v["id"] for v in views if v["role_key"] == "grid_worker")
    label = "专职网格员 · " + unit["name"] + "（002村2）"  # a grid is named with its village
    river = web.world.positions["zhao"][0]

    zhao = pages.open("zhao")
    acting = zhao.get_by_label("当前岗位")
    expect(acting.locator("option")).to_have_count(1)
    expect(acting).to_have_value(str(river))

    r = httpx.post(
        f"{web.base}/api/v1/org/positions/{spare}/assignments",
        headers=h,
        json={"person_id": web.world.person_ids["zhao"], "kind": "acting"},
    )
    assert r.status_code == 201, r.text
    assignment = r.json()["id"]
    # Live: the new seat is offered, after the own one (兼职), and the page says what changed.
    expect(acting.locator("option")).to_have_count(2)
    expect(acting.locator("option").nth(1)).to_have_text(label + "（兼职）")
    expect(zhao.get_by_role("alert")).to_contain_text("岗位变动：新任" + label)
    acting.select_option(str(spare))
    expect(acting).to_have_value(str(spare))

    r = httpx.post(f"{web.base}/api/v1/org/assignments/{assignment}/end", headers=h)
    assert r.status_code == 200, r.text
    # The lost seat goes, and the choice falls back to one still held.
    expect(acting.locator("option")).to_have_count(1)
    expect(acting).to_have_value(str(river))
    expect(zhao.get_by_role("alert")).to_contain_text("岗位变动：不再担任" + label)


def test_someone_without_a_position_is_told_so_on_tasks_and_notices(pages: Pages, web: Web) -> None:
    """All positions handed over (or none yet): the task board was headed 任务 · 岗位 null, and
    发通知 offered the whole form with an empty 发送岗位 and 发送给 0 人."""
    login = f"none-{secrets.token_hex(3)}"
    add_admin(web.world, login)  # a person with a grant and no position
    page = pages.open(login)
    nav = page.get_by_role("navigation", name="主导航")
    nav.get_by_role("link", name="任务").click()
    expect(page.get_by_role("heading", level=2)).to_have_text("任务")
    expect(page.locator("[data-no-position]")).to_have_text("你目前没有担任岗位，没有任务。")
    expect(page.locator("main")).not_to_contain_text("null")
    nav.get_by_role("link", name="通知").click()
    page.get_by_role("link", name="发通知").click()
    expect(page.locator("[data-no-position]")).to_have_text("你目前没有担任岗位，不能发通知。通知以岗位的名义发出。")
    expect(page.get_by_role("button", name=re.compile("发送给"))).to_have_count(0)
    check_page(page, "no-position")


def test_a_notice_owed_through_a_position_handed_over_leaves_the_predecessor(pages: Pages, web: Web) -> None:
    """A handover moves the receipts still owed through the position to the successor
    (docs/notices.md "Handover"). The predecessor's list kept the notice 待确认 for good — counted
    on the 通知 tab, opened as 没有这条通知 — and the successor's did not say why it came."""
    admin = f"admin-{secrets.token_hex(3)}"
    add_admin(web.world, admin)
    h = {"authorization": f"Bearer {token(web.base, admin)}"}
    before, after = (f"pre-{secrets.token_hex(3)}", f"suc-{secrets.token_hex(3)}")
    ids = {login: add_admin(web.world, login, perms=frozenset({"audit"})) for login in (before, after)}
    unit = httpx.get(f"{web.base}/api/v1/org/units/{OTHER_GRID}", headers=h).json()
    views = [httpx.get(f"{web.base}/api/v1/org/positions/{p}", headers=h).json() for p in unit["position_ids"]]
    volunteer = next(v["id"] for v in views if v["role_key"] == "grid_volunteer")
    r = httpx.post(f"{web.base}/api/v1/org/positions/{volunteer}/handover", headers=h, json={"person_id": ids[before]})
    assert r.status_code == 200, r.text
    title = f"交接前的通知 {secrets.token_hex(2)}"
    notice = notice_from_zhang(web.base, web.world, f"兼职网格员@{OTHER_GRID}", title)

    pre = pages.open(before)
    tab = pre.get_by_role("navigation", name="主导航").get_by_role("link", name="通知")
    tab.click()
    item = pre.get_by_role("list", name="收到的通知").locator("a.conv", has_text=title)
    expect(item).to_contain_text("待确认")
    expect(tab.locator(".badge")).to_have_text("1")
    r = httpx.post(f"{web.base}/api/v1/org/positions/{volunteer}/handover", headers=h, json={"person_id": ids[after]})
    assert r.status_code == 200, r.text
    # Live, by notice.transferred: no longer the predecessor's to confirm, nor counted.
    expect(item.locator("[data-handover=out]")).to_have_text("已随岗位交接转给接任人")
    expect(item).not_to_contain_text("待确认")
    expect(tab.locator(".badge")).to_have_count(0)
    item.click()
    expect(pre.locator("main").get_by_role("alert")).to_have_text("这条通知已随岗位交接转给接任人，无需你再确认")

    suc = pages.open(after)
    suc.get_by_role("navigation", name="主导航").get_by_role("link", name="通知").click()
    came = suc.locator(f"[data-notice='{notice}']")
    expect(came.locator("[data-handover=in]")).to_have_text("岗位交接转来")
    expect(came).to_contain_text("待确认")


ZHOU_VILLAGE = "990101002001"  # 002村1 of 01镇2: zhou's grid is its first


def test_a_unit_renamed_by_an_administrator_relabels_the_header_without_a_reload(pages: Pages, web: Web) -> None:
    """Until 2026-12-05 a rename told the holders nothing (no ``positions.changed``): the header kept
    专职网格员 · 第1网格（002村1） until a reload."""
    admin = f"admin-{secrets.token_hex(3)}"
    add_admin(web.world, admin, perms=frozenset({"org"}))
    h = {"authorization": f"Bearer {token(web.base, admin)}"}
    zhou = pages.open("zhou")
    acting = zhou.get_by_label("当前岗位")
    expect(acting.locator("option")).to_have_text(["专职网格员 · 第1网格（002村1）（主职）"])
    r = httpx.patch(f"{web.base}/api/v1/org/units/{ZHOU_VILLAGE}", headers=h, json={"name": "金桂社区"})
    assert r.status_code == 200, r.text
    try:
        expect(acting.locator("option")).to_have_text(["专职网格员 · 第1网格（金桂社区）（主职）"])
        expect(acting).to_have_value(str(web.world.positions["zhou"][0]))
    finally:  # the world is shared by the package's tests
        r = httpx.patch(f"{web.base}/api/v1/org/units/{ZHOU_VILLAGE}", headers=h, json={"name": "002村1"})
        assert r.status_code == 200, r.text
    expect(acting.locator("option")).to_have_text(["专职网格员 · 第1网格（002村1）（主职）"])
