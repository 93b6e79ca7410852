"""派任务: a manager creates a task to a role in a unit from the web client (before, it could only
send notices; tasks came from reports or the API alone), watches it under 我发起的, and its owner
gets it under 我负责的 — live. Whom it goes to is chosen with the picker and preview of 发通知."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.web.conftest import DESKTOP, Pages, Web, add_photo, check_page, own_server_page
from tests.web.world import VILLAGE, ServeProcess, add_admin, build_world, token

SHORT_PHONE = {"width": 375, "height": 667}


def _pick(page: Any, role: str, unit: str, *, subtree: bool) -> None:
    term = page.locator("[data-term='0']")
    term.get_by_label("包含岗位").select_option(role)
    term.get_by_label("单位代码").fill(unit)
    box = term.get_by_label("含下级单位")
    if box.is_checked() != subtree:
        box.click()


def test_a_manager_tasks_the_river_chief_of_a_village_and_watches_it(pages: Pages, web: Web) -> None:
    watching = pages.open("zhang", DESKTOP)  # the manager's desk, on the board (loaded before the task exists)
    with watching.expect_response(lambda r: "side=creator" in r.url):
        watching.get_by_role("navigation", name="主导航").get_by_role("link", name="任务").click()
    created = watching.get_by_role("list", name="我发起的")
    owner = pages.open("zhao", DESKTOP)  # 河长 of the village
    with owner.expect_response(lambda r: "side=owner" in r.url):
        owner.get_by_role("navigation", name="主导航").get_by_role("link", name="任务").click()

    mgr = pages.open("zhang", SHORT_PHONE)
    mgr.get_by_role("navigation", name="主导航").get_by_role("link", name="任务").click()
    mgr.get_by_role("link", name="派任务").click()
    expect(mgr.get_by_role("heading", level=2)).to_have_text("派任务")
    # The header's acting position creates it.
    expect(mgr.get_by_label("派发岗位")).to_have_value(str(web.world.positions["zhang"][0]))
    _pick(mgr, "河长", VILLAGE, subtree=False)
    expect(mgr.get_by_label("选择器（可直接编辑）")).to_have_value(f"河长@{VILLAGE}")
    expect(mgr.locator("[data-preview=ok]").get_by_role("heading")).to_have_text("预览：1 个岗位，1 人")
    # No 截止时间 picked: the category's deadlines are the task's, said in words.
    mgr.get_by_label("类别").select_option(label="河道垃圾")
    expect(mgr.locator("[data-deadline]")).to_have_text(
        "时限：须在 2 小时内接收，接收后 1 天内办结；逾期自动升级给上级单位的同一岗位"
    )
    title = f"清理金桂溪漂浮物 {secrets.token_hex(2)}"
    mgr.get_by_label("标题").fill(title)
    mgr.get_by_label("任务说明").fill("明早九点前清理完毕，拍照回传。")
    add_photo(mgr, "添加照片")
    check_page(mgr, "task-new")
    mgr.get_by_role("button", name="派发 1 个任务").click()

    # The result opens the created task.
    expect(mgr).to_have_url(re.compile(r"#/tasks/\d+$"))
    task_id = int(mgr.url.rsplit("/", 1)[1])
    view = mgr.locator(f"[data-task-view='{task_id}']")
    expect(view.get_by_role("heading", level=2)).to_have_text(title)
    expect(view.locator("[data-state]").first).to_have_text("待接收")
    expect(view).to_contain_text("负责岗位：河长 · 001村1")
    expect(view.get_by_role("button", name="取消")).to_be_visible()  # the creator side's actions
    expect(view.get_by_role("list", name="处理记录").locator("img.photo")).to_have_count(1)
    # 备注 with neither words nor photos is refused by the server (400 invalid_text): said before asking.
    view.get_by_role("button", name="备注").click()
    expect(view.get_by_role("alert")).to_have_text("请先填写说明或添加照片，再点备注")
    view.get_by_label("说明").fill("请拍照回传")
    view.get_by_role("button", name="备注").click()
    expect(view.get_by_role("list", name="处理记录")).to_contain_text("备注 — 请拍照回传")
    expect(view.get_by_role("alert")).to_have_count(0)
    # Live on the manager's other page and on the owner's board, without a reload.
    expect(created.locator(f"[data-task='{task_id}']")).to_contain_text(title)
    expect(owner.get_by_role("list", name="我负责的").locator(f"[data-task='{task_id}']")).to_contain_text(title)

    stored = httpx.get(
        f"{web.base}/api/v1/tasks/{task_id}", headers={"authorization": f"Bearer {token(web.base, 'zhang')}"}
    ).json()
    assert stored["creator"]["position_id"] == web.world.positions["zhang"][0]
    assert stored["owner_position_id"] == web.world.positions["zhao"][0]
    assert stored["category"] == "river_litter" and stored["body"] == "明早九点前清理完毕，拍照回传。"
    assert len(stored["history"][0]["attachments"]) == 1
    assert [h["action"] for h in stored["history"]] == ["create", "comment"]  # the empty 备注 stored nothing
    check_page(mgr, "task-created")


def test_a_manager_gives_a_task_a_due_at_on_a_phone_and_sees_it_late(pages: Pages, web: Web) -> None:
    """截止时间 on 派任务: a date-time picker (the phone's own), empty by default (the category's windows,
    said in words as before); set, the words say it, the task is created with ``due_at`` in the
    browser's zone, and the task view and board show it — and 已超时 once it has passed (the page's
    clock moved by Playwright, nothing waits)."""
    cst = timezone(timedelta(hours=8))
    mgr = pages.open("zhang", SHORT_PHONE, timezone_id="Asia/Shanghai")
    mgr.goto(web.base + "/#/tasks/new")
    _pick(mgr, "河长", VILLAGE, subtree=False)
    expect(mgr.locator("[data-preview=ok]").get_by_role("heading")).to_have_text("预览：1 个岗位，1 人")
    mgr.get_by_label("类别").select_option(label="河道垃圾")
    picker = mgr.get_by_label("截止时间（可不填）")
    expect(picker).to_have_attribute("type", "datetime-local")
    expect(picker).to_have_value("")
    category_words = "时限：须在 2 小时内接收，接收后 1 天内办结；逾期自动升级给上级单位的同一岗位"
    expect(mgr.locator("[data-deadline]")).to_have_text(category_words)
    due = (datetime.now(cst) + timedelta(days=2)).replace(hour=17, minute=0, second=0, microsecond=0)
    shown = f"{due.year}/{due.month}/{due.day} 17:00"
    picker.fill(due.strftime("%Y-%m-%dT%H:%M"))
    expect(mgr.locator("[data-deadline]")).to_have_text(
        f"时限：须在 {shown} 前办结，2 小时内接收（不晚于截止时间）；逾期自动升级给上级单位的同一岗位"
    )
    mgr.get_by_role("button", name="不设截止时间").click()  # back to the category's windows
    expect(picker).to_have_value("")
    expect(mgr.locator("[data-deadline]")).to_have_text(category_words)
    picker.fill(due.strftime("%Y-%m-%dT%H:%M"))
    title = f"汛前清淤 {secrets.token_hex(2)}"
    mgr.get_by_label("标题").fill(title)
    check_page(mgr, "task-new-due-at")
    mgr.get_by_role("button", name="派发 1 个任务").click()

    expect(mgr).to_have_url(re.compile(r"#/tasks/\d+$"))
    task_id = int(mgr.url.rsplit("/", 1)[1])
    stored = httpx.get(
        f"{web.base}/api/v1/tasks/{task_id}", headers={"authorization": f"Bearer {token(web.base, 'zhang')}"}
    ).json()
    assert datetime.fromisoformat(stored["due_at"]) == due and stored["due_at"].endswith("Z")
    view = mgr.locator(f"[data-task-view='{task_id}']")
    accept_by = datetime.fromisoformat(stored["accept_due_at"]).astimezone(cst)
    expect(view.locator("[data-deadline]")).to_have_text(
        f"截止时间：{shown} · 接收期限：{accept_by.year}/{accept_by.month}/{accept_by.day} {accept_by:%H:%M}"
    )
    expect(view.locator("[data-overdue]")).to_have_count(0)

    # An hour past the 截止时间, by the page's clock: late in the view and on the board.
    mgr.clock.set_fixed_time(due + timedelta(hours=1))
    mgr.get_by_role("navigation", name="主导航").get_by_role("link", name="任务").click()
    late = mgr.get_by_role("list", name="已超时").locator(f"[data-task='{task_id}']")
    expect(late).to_contain_text(f"已超时 · 截止 {shown}")
    late.click()
    expect(view.locator("[data-overdue]")).to_have_text("已超时")
    check_page(mgr, "task-overdue")


def test_tasks_to_several_positions_are_listed_and_a_grid_worker_cannot_reach_upward(pages: Pages, web: Web) -> None:
    """One task per addressed position: the board lists them all under 我发起的. A grid worker may
    task within their grid only: the 河长 of the village is out of scope, said by name."""
    mgr = pages.open("zhang", DESKTOP)
    mgr.goto(web.base + "/#/notices")
    mgr.locator("main").get_by_role("link", name="派任务").click()  # also beside 发通知
    _pick(mgr, "专职网格员", VILLAGE, subtree=True)
    expect(mgr.locator("[data-preview=ok]").get_by_role("heading")).to_contain_text("预览：2 个岗位")
    title = f"入户走访 {secrets.token_hex(2)}"
    mgr.get_by_label("标题").fill(title)
    mgr.get_by_role("button", name="派发 2 个任务").click()
    expect(mgr).to_have_url(re.compile(r"#/tasks$"))
    expect(mgr.locator(".banner")).to_contain_text("已派发 2 个任务")
    expect(mgr.get_by_role("list", name="我发起的").locator("a.conv", has_text=title)).to_have_count(2)

    wang = pages.open("wang", SHORT_PHONE)
    wang.goto(web.base + "/#/tasks/new")
    _pick(wang, "河长", VILLAGE, subtree=False)
    expect(wang.locator("[data-preview=error]")).to_have_text(f"超出管辖范围：河长@{VILLAGE}（1 个岗位）")
    expect(wang.get_by_role("button", name=re.compile("^派发"))).to_be_disabled()
    check_page(wang, "task-new-out-of-scope")


def test_someone_without_a_position_is_told_so_on_task_new(pages: Pages, web: Web) -> None:
    login = f"none-{secrets.token_hex(3)}"
    add_admin(web.world, login)  # a grant, no position
    page = pages.open(login)
    page.get_by_role("navigation", name="主导航").get_by_role("link", name="任务").click()
    page.get_by_role("link", name="派任务").click()
    expect(page.locator("[data-no-position]")).to_have_text("你目前没有担任岗位，不能派任务。任务以岗位的名义派发。")
    expect(page.get_by_role("button", name=re.compile("^派发"))).to_have_count(0)


def test_a_position_that_may_address_nobody_is_refused_in_words(browser: Any, tmp_path: Path) -> None:
    """A role whose jurisdiction is ``none`` may address nobody: the API refuses its every task
    (403 out_of_scope). The form open when the rule changed shows the server's refusal in Chinese;
    opened again, it says so instead of offering a form nothing can be sent from. A world of its
    own: the test changes a role of the catalogue."""
    world = build_world(tmp_path / "world")
    server = ServeProcess(world, tmp_path)
    admin = f"roles-{secrets.token_hex(3)}"
    add_admin(world, admin, unit=None, perms=frozenset({"roles"}))
    with own_server_page(browser, server, "li") as (page, errors):
        page.goto(server.base + "/#/tasks/new")
        _pick(page, "专职网格员", VILLAGE, subtree=True)
        expect(page.locator("[data-preview=ok]").get_by_role("heading")).to_contain_text("预览：2 个岗位")
        page.get_by_label("标题").fill("巡查")
        r = httpx.patch(
            f"{server.base}/api/v1/org/roles/village_secretary",
            headers={"authorization": f"Bearer {token(server.base, admin)}"},
            json={"jurisdiction": "none"},
        )
        assert r.status_code == 200, r.text
        # The account that must not pass: li's 村书记 may task nobody now.
        li = world.positions["li"][0]
        refused = httpx.post(
            f"{server.base}/api/v1/tasks",
            headers={"authorization": f"Bearer {token(server.base, 'li')}"},
            json={"as_position": li, "selector": f"专职网格员@{VILLAGE}/**", "title": "巡查", "client_msg_id": "x1"},
        )
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "out_of_scope", refused.text
        page.get_by_role("button", name="派发 2 个任务").click()
        expect(page.locator("[data-task-error]")).to_have_text(f"超出管辖范围：专职网格员@{VILLAGE}/**（2 个岗位）")
        page.reload()  # the session is kept; the roles are asked for again
        expect(page.locator("[data-no-position]")).to_have_text(
            "你的岗位（村书记 · 001村1）没有管辖范围，不能派任务。任务只能派给派发岗位管辖范围内的岗位。"
        )
        tasks = httpx.get(
            f"{server.base}/api/v1/tasks?side=creator", headers={"authorization": f"Bearer {token(server.base, 'li')}"}
        ).json()["tasks"]
        assert tasks == []
        assert not errors, errors
