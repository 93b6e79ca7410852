"""A grid worker files a report with a photo and the device's location on a phone; the assignee
sees the task on the board and resolves it; the reporter watches the progress live."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx
from playwright.sync_api import expect

from tests.web.conftest import DESKTOP, PHOTO, Pages, Web, add_photo, check_page
from tests.web.world import token

HERE = {"latitude": 28.9701, "longitude": 118.8712}


def test_report_with_photo_and_location_then_the_assignee_resolves_it(pages: Pages, web: Web) -> None:
    wang = pages.open("wang", permissions=["geolocation"], geolocation=HERE)
    wang.get_by_role("navigation", name="主导航").get_by_role("link", name="上报").click()
    expect(wang.locator("[data-location=ok]")).to_contain_text("28.97010, 118.87120")
    wang.get_by_label("类别").select_option(label="河道垃圾")
    text = f"河道漂浮垃圾 {secrets.token_hex(2)}"
    wang.get_by_label("情况说明").fill(text)
    add_photo(wang, "拍照")
    check_page(wang, "report-form")
    wang.get_by_role("button", name="提交上报").click()
    expect(wang).to_have_url(re.compile(r"#/report/\d+$"))
    report_id = int(wang.url.rsplit("/", 1)[1])
    task = wang.locator("[data-task-view]")
    expect(task.locator("[data-state]").first).to_have_text("待接收")
    # What was stored: the location from the device and the photo.
    auth = {"authorization": f"Bearer {token(web.base, 'wang')}"}
    stored = httpx.get(f"{web.base}/api/v1/reports/{report_id}", headers=auth).json()
    assert stored["location"] == {"lat": HERE["latitude"], "lon": HERE["longitude"]}
    assert len(stored["photos"]) == 1 and stored["text"] == text
    check_page(wang, "report-progress")

    zhao = pages.open("zhao", DESKTOP)  # 河长 of the village: river litter is routed here
    zhao.get_by_role("navigation", name="主导航").get_by_role("link", name="任务").click()
    row = zhao.get_by_role("list", name="我负责的").locator("a.conv", has_text=text)
    expect(row).to_be_visible()
    check_page(zhao, "tasks")
    row.click()
    view = zhao.locator("[data-task-view]")
    view.get_by_role("button", name="接收").click()
    expect(view.locator("[data-state]").first).to_have_text("已接收")
    expect(task.locator("[data-state]").first).to_have_text("已接收")  # live on the reporter's phone
    view.get_by_label("说明").fill("已清理完毕")
    view.get_by_label("照片").set_input_files(str(PHOTO))
    expect(view.locator(".card img.photo")).to_have_count(1)
    view.get_by_role("button", name="办结").click()
    expect(view.locator("[data-state]").first).to_have_text("已办结")
    check_page(zhao, "task")

    # The reporter's grid position is the creator side: verify, then close.
    expect(task.locator("[data-state]").first).to_have_text("已办结")
    expect(task.get_by_role("list", name="处理记录")).to_contain_text("已清理完毕")
    task.get_by_role("button", name="核实").click()
    expect(task.locator("[data-state]").first).to_have_text("已核实")
    task.get_by_role("button", name="关闭").click()
    expect(task.locator("[data-state]").first).to_have_text("已关闭")
    expect(task.get_by_role("button")).to_have_count(0)  # a closed task allows nothing more


def test_a_refused_location_and_a_file_that_is_no_photo_are_explained_in_chinese(
    pages: Pages, web: Web, tmp_path: Path
) -> None:
    """Errors a grid worker meets in the street read as Chinese, not as the browser's or the
    server's English (“User denied Geolocation”, “unsupported media type …”)."""
    wang = pages.open("wang")  # location not allowed
    wang.get_by_role("navigation", name="主导航").get_by_role("link", name="上报").click()
    alert = wang.get_by_role("alert")
    expect(alert).to_have_text("定位失败：未允许使用位置，请在浏览器或系统设置中允许后点“重新定位”")
    notes = tmp_path / "巡查记录.txt"
    notes.write_text("不是照片", encoding="utf-8")
    wang.get_by_label("拍照").set_input_files(str(notes))
    expect(alert).to_have_text("照片上传失败：不支持的文件类型，请选择照片")


def test_a_report_filed_as_another_position_than_the_acting_one_can_be_verified(pages: Pages, web: Web) -> None:
    """A grid worker with two grid posts reports as the one that is not the header's acting
    position (上报岗位): once resolved, their own report's task offered no 核实 — only the acting
    position's actions were offered — and nothing said why."""
    main, part = web.world.positions["wang"]
    wang = pages.open("wang", permissions=["geolocation"], geolocation=HERE)
    expect(wang.get_by_label("当前岗位")).to_have_value(str(main))
    wang.get_by_role("navigation", name="主导航").get_by_role("link", name="上报").click()
    expect(wang.locator("[data-location=ok]")).to_be_visible()
    wang.get_by_label("上报岗位").select_option(str(part))
    wang.get_by_label("类别").select_option(label="河道垃圾")
    text = f"兼职网格上报 {secrets.token_hex(2)}"
    wang.get_by_label("情况说明").fill(text)
    wang.get_by_role("button", name="提交上报").click()
    expect(wang).to_have_url(re.compile(r"#/report/\d+$"))
    task = wang.locator("[data-task-view]")
    expect(task.locator("[data-state]").first).to_have_text("待接收")
    # The 河长 accepts and resolves it (by the API).
    auth = {"authorization": f"Bearer {token(web.base, 'zhao')}"}
    report = httpx.get(f"{web.base}/api/v1/reports/{wang.url.rsplit('/', 1)[1]}", headers=auth).json()
    river = web.world.positions["zhao"][0]
    for action in ("accept", "resolve"):
        t = httpx.get(f"{web.base}/api/v1/tasks/{report['task_id']}", headers=auth).json()
        r = httpx.post(
            f"{web.base}/api/v1/tasks/{report['task_id']}/actions",
            headers=auth,
            json={"as_position": river, "action": action, "version": t["version"]},
        )
        assert r.status_code == 200, r.text
    expect(task.locator("[data-state]").first).to_have_text("已办结")
    expect(task.locator("[data-acting-as]")).to_have_text("以兼职网格员 · 第2网格（001村1）的身份处理")
    task.get_by_role("button", name="核实").click()
    expect(task.locator("[data-state]").first).to_have_text("已核实")
    stored = httpx.get(f"{web.base}/api/v1/tasks/{report['task_id']}", headers=auth).json()
    assert stored["history"][-1]["actor"]["position_id"] == part
