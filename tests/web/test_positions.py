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
from tests.web.world import add_admin, token

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
