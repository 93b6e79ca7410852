"""Browser tests: Debian's Chromium driven by Playwright for Python, against a real ``zzd serve``.

Playwright cannot download its browsers here, so it launches ``/usr/bin/chromium``
(``ZZD_TEST_CHROMIUM`` overrides). Without Chromium or Playwright the tests are skipped on a
laptop and fail in CI (``CI=true``), like the PostgreSQL and Redis tests. Every wait is on UI
state (``expect``/``wait_for``), never a sleep. Screenshots go to ``tests/web/artifacts/``.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services import IN_CI
from tests.web.world import PASSWORD, ServeProcess, World, build_world, token


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder drives Chromium: marked ``browser``, which the quick lane
    (``scripts/test.sh --fast``) leaves out; CI runs them all."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)


CHROMIUM = os.environ.get("ZZD_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
#: Root needs --no-sandbox; the rest keep Chromium off the (closed) network: no update checks,
#: sync or background fetches that this machine would refuse by the dozen.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 360, "height": 740}
PHOTO = Path(__file__).resolve().parents[2] / "zzd" / "web" / "icon-192.png"  # a real PNG
DESKTOP = {"width": 1280, "height": 800}


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} (mandatory in CI: .ci/run installs it)")
    pytest.skip(what)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed")
    if not Path(CHROMIUM).exists() and shutil.which(CHROMIUM) is None:
        _missing(f"Chromium not found at {CHROMIUM}")
    if not AXE.exists():
        _missing("node_modules/axe-core is missing (scripts/setup.sh runs npm ci)")
    from playwright.sync_api import expect

    # Waits are on UI state; the bound is generous because CI machines run loaded (7 agents, 2 cores).
    expect.set_options(timeout=20_000)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class Web:
    server: ServeProcess
    world: World

    @property
    def base(self) -> str:
        return self.server.base


@pytest.fixture(scope="package")
def web(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Web]:
    folder = tmp_path_factory.mktemp("web")
    world = build_world(folder)
    sp = ServeProcess(world, folder)
    sp.start()
    try:
        yield Web(sp, world)
    finally:
        sp.stop()


class Pages:
    """Opens signed-in pages; checks at the end that no page threw an uncaught error."""

    def __init__(self, browser: Any, web: Web) -> None:
        self.browser = browser
        self.web = web
        self.contexts: list[Any] = []
        self.errors: list[str] = []

    def open(self, login: str | None, viewport: dict[str, int] = PHONE, **ctx: Any) -> Any:
        context = self.browser.new_context(
            viewport=viewport, locale="zh-CN", service_workers=ctx.pop("service_workers", "block"), **ctx
        )
        self.contexts.append(context)
        context.set_default_timeout(30_000)
        page = context.new_page()
        page.on("pageerror", lambda e: self.errors.append(f"{login}: {e}"))
        page.goto(self.web.base + "/")
        if login is not None:
            sign_in(page, login)
        return page

    def close(self) -> None:
        for c in self.contexts:
            c.close()


def sign_in(page: Any, login: str) -> None:
    from playwright.sync_api import expect

    page.get_by_label("账号").fill(login)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.locator("[data-status=online]")).to_be_visible()


@pytest.fixture
def pages(browser: Any, web: Web) -> Iterator[Pages]:
    p = Pages(browser, web)
    try:
        yield p
    finally:
        p.close()
    assert not p.errors, p.errors


def send_message(page: Any, text: str) -> None:
    """Types ``text`` into the open conversation's composer and sends it."""
    page.get_by_label("消息", exact=True).fill(text)
    page.get_by_role("button", name="发送").click()


def kept_sends(page: Any) -> list[Any]:
    """What the outbox still keeps to send again (``js/outbox.js``)."""
    me = "JSON.parse(localStorage.getItem('zzd.session')).personId"
    return list(page.evaluate(f"JSON.parse(localStorage.getItem('zzd.outbox.' + {me}) || '[]')"))


def kept_sends_of(page: Any, person_id: int) -> list[Any]:
    """What the outbox keeps for ``person_id``, also while no one is signed in."""
    return list(page.evaluate(f"JSON.parse(localStorage.getItem('zzd.outbox.{person_id}') || '[]')"))


@contextmanager
def own_server_page(
    browser: Any, server: ServeProcess, login: str, base: str | None = None
) -> Iterator[tuple[Any, list[str]]]:
    """A desktop page signed in as ``login`` on a server of the test's own (started here, stopped
    after), reached at ``base`` (a gateway in front of it) or the server's own address, and the
    uncaught errors of the page."""
    server.start()
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN", service_workers="block")
    try:
        errors: list[str] = []
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((base or server.base) + "/")
        sign_in(page, login)
        yield page, errors
    finally:
        context.close()
        server.stop()


def chat_with_zhou(page: Any, server: ServeProcess, web: Web, base: str | None = None) -> int:
    """sun's direct chat with zhou (one message posted through the API), open in ``page``."""
    from playwright.sync_api import expect

    r = httpx.post(
        f"{server.base}/api/v1/messages",
        headers={"authorization": f"Bearer {token(server.base, 'sun')}"},
        json={"to": web.world.person_ids["zhou"], "client_msg_id": secrets.token_hex(6), "body": "在吗"},
    )
    assert r.status_code in (200, 201), r.text
    cid = int(r.json()["conversation_id"])
    page.goto(f"{base or server.base}/#/chat/{cid}")
    expect(page.locator("li.msg").first).to_be_visible()
    return cid


def use_refresh_token_elsewhere(page: Any, server: ServeProcess) -> None:
    """The page's refresh token is used through the API, as by another device holding a copy: the
    page's own next refresh with it is refused (``invalid_grant``), which ends its session."""
    stale = page.evaluate("JSON.parse(localStorage.getItem('zzd.session')).refresh")
    used = httpx.post(
        f"{server.base}/api/v1/auth/token", json={"grant_type": "refresh_token", "refresh_token": stale}, timeout=10
    )
    assert used.status_code == 200, used.text


def kept_through_sign_in(
    page: Any, web: Web, login: str, body: str, chat_url: str, before: Callable[[], None] = lambda: None
) -> None:
    """The session ended by a refused refresh with ``body`` unsent: the sign-in page says 登录已过期
    and that one message is kept; signing in again (after ``before``) sends it, once, in the chat
    at ``chat_url``."""
    from playwright.sync_api import expect

    expect(page.locator("[data-ended]")).to_contain_text("登录已过期，请重新登录")
    expect(page.locator("[data-kept]")).to_have_text("1 条消息尚未发出，已保留，重新登录后自动发送")
    assert [k["frame"]["body"] for k in kept_sends_of(page, web.world.person_ids[login])] == [body]
    before()
    sign_in(page, login)
    page.goto(chat_url)
    expect(page.locator("li.msg.mine:not([data-message^=pending])", has_text=body)).to_have_count(1)
    assert kept_sends(page) == []


def add_photo(form: Any, button: str) -> None:
    """Adds the test photo with the file input labelled ``button`` of a form (上报, 派任务, …) and
    waits until the form shows it among 已添加的照片 (uploaded)."""
    from playwright.sync_api import expect

    form.get_by_label(button).set_input_files(str(PHOTO))
    expect(form.get_by_label("已添加的照片").locator("img.photo")).to_have_count(1)


def axe_check(page: Any, name: str) -> None:
    """axe-core on the current page: no serious or critical violations."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"{name}: " + "; ".join(bad)


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    width = page.viewport_size["width"]
    page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)


def check_page(page: Any, name: str) -> None:
    """Accessibility and screenshots of one page at the phone width and at desktop width."""
    axe_check(page, name)
    before = page.viewport_size
    for size in (PHONE, DESKTOP):
        page.set_viewport_size(size)
        screenshot(page, name)
    page.set_viewport_size(before)


Check = Callable[[Any, str], None]
