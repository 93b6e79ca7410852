"""A person seated by ``zzd person import`` gets a one-time activation code, not a password
(docs/admin.md): their first sign-in in the web client sets the password with it."""

from __future__ import annotations

import csv
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
from playwright.sync_api import expect

from tests.web.conftest import Pages, Web, check_page


def import_person(web: Web, folder: Path, login: str, name: str) -> str:
    """``zzd person import`` of one new person against the served database: their activation code."""
    people = folder / "people.csv"
    people.write_text(f"login,name,phone,positions\n{login},{name},,\n", encoding="utf-8")
    codes = folder / "people.codes.csv"
    subprocess.run(  # noqa: S603 - our own CLI, as an operator runs it
        [sys.executable, "-m", "zzd", "person", "import", str(people), "--codes", str(codes), "--no-progress"],
        env=web.server.env,
        check=True,
        capture_output=True,
    )
    with codes.open(encoding="utf-8") as f:
        return next(row["code"] for row in csv.DictReader(f) if row["login"] == login)


def test_first_sign_in_with_the_activation_code_sets_the_password(pages: Pages, web: Web, tmp_path: Path) -> None:
    login = "xin" + secrets.token_hex(3)
    code = import_person(web, tmp_path, login, "吴新人")
    page = pages.open(None)
    # The code is no password: typed as one it is refused, as before — but the page offers its use.
    page.get_by_label("账号").fill(login)
    page.get_by_label("密码").fill(code)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("alert")).to_have_text("账号或密码错误")
    page.get_by_role("button", name="首次使用？用激活码设置密码").click()
    form = page.locator("form[data-form=activate]")
    form.get_by_label("账号").fill(login)
    form.get_by_label("激活码").fill(code)
    form.get_by_label("新密码（至少 8 位）").fill("短密码")
    form.get_by_label("确认新密码").fill("短密码")
    form.get_by_role("button", name="设置密码并登录").click()
    expect(page.get_by_role("alert")).to_have_text("新密码至少 8 位")
    form.get_by_label("新密码（至少 8 位）").fill("新人的密码-2026")
    form.get_by_label("确认新密码").fill("新人的密码-2O26")
    form.get_by_role("button", name="设置密码并登录").click()
    expect(page.get_by_role("alert")).to_have_text("两次输入的新密码不一致")
    check_page(page, "activate")
    form.get_by_label("确认新密码").fill("新人的密码-2026")
    form.get_by_role("button", name="设置密码并登录").click()
    expect(page.locator("[data-status=online]")).to_be_visible()
    expect(page.get_by_role("button", name="退出")).to_have_attribute("title", "吴新人")

    # The password chosen signs in; the code, used once, is refused and says why in words.
    r = httpx.post(
        f"{web.base}/api/v1/auth/token",
        json={"grant_type": "password", "login": login, "password": "新人的密码-2026"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    page.get_by_role("button", name="退出").click()
    page.get_by_role("button", name="首次使用？用激活码设置密码").click()
    form.get_by_label("账号").fill(login)
    form.get_by_label("激活码").fill(code)
    form.get_by_label("新密码（至少 8 位）").fill("另一个密码-2026")
    form.get_by_label("确认新密码").fill("另一个密码-2026")
    form.get_by_role("button", name="设置密码并登录").click()
    expect(page.get_by_role("alert")).to_have_text(
        "账号或激活码无效（激活码只能使用一次，可能已使用或已过期，请向管理员重新领取）"
    )
    assert page.evaluate("localStorage.getItem('zzd.session')") is None
