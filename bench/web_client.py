"""The web client in Chromium (issue 14): first-page weight, time to an interactive inbox, and
chat latency from browser A's composer to browser B's screen — each beside a bare baseline from
the same run, against one ``zzd serve`` (SQLite) over the test world (tests/web/world.py).

1. **Weight**: the bytes transferred (compressed, headers included, per the Resource Timing
   ``transferSize``) to load the sign-in page and then the signed-in inbox in a fresh context,
   by kind (HTML, JS, CSS, other); budget 150 KB.
2. **Time to interactive inbox**: navigation start to the inbox list rendered with the socket
   online (a MutationObserver records the first moment both are on screen), with a stored
   session, median of ``--loads`` cold loads. Baseline: a bare page served on the same origin
   (Playwright answers its URL) that does the same network work with no framework: GET
   /api/v1/me, GET /api/v1/conversations, open /ws and hello, then writes the rows as plain HTML.
3. **Chat latency**: ``--messages`` messages typed into browser A's composer (value set, input
   event, rendered, the send button clicked — all inside the page) until the text is in browser
   B's message list (B's MutationObserver), p50/p95. Baseline: the same two pages' raw WebSockets, A's ``send`` frame
   to B's ``message.new`` event, same count, alternating with the UI messages.

Run: ``.venv/bin/python bench/web_client.py [--messages 200] [--loads 5]`` (needs Chromium at
/usr/bin/chromium and ``npm ci`` done: scripts/setup.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, DESKTOP  # noqa: E402
from tests.web.world import PASSWORD, ServeProcess, build_world, token  # noqa: E402

BUDGET = 150 * 1024

READY_OBSERVER = """
(() => {
  const check = () => {
    if (window.__ready) return;
    if (document.querySelector('[data-status=online]') && document.querySelector('[aria-label=会话列表] a.conv')) {
      window.__ready = performance.now();
    }
  };
  new MutationObserver(check).observe(document, {subtree: true, childList: true, attributes: true});
})();
"""

BARE_PAGE = """<!doctype html><meta charset="utf-8"><title>bare</title><ul id="rows"></ul><script>
(async () => {
  const s = JSON.parse(localStorage.getItem('zzd.session'));
  const h = {authorization: 'Bearer ' + s.access};
  const me = await (await fetch('/api/v1/me', {headers: h})).json();
  const inbox = await (await fetch('/api/v1/conversations?limit=100', {headers: h})).json();
  const ws = new WebSocket('ws://' + location.host + '/ws');
  ws.onopen = () => ws.send(JSON.stringify({type: 'hello', id: '1', v: 1, token: s.access,
                                           resume: {epoch: me.epoch, since: me.last_seq}}));
  ws.onmessage = (m) => {
    if (JSON.parse(m.data).ref !== '1') return;
    document.getElementById('rows').innerHTML = inbox.conversations
      .map((c) => '<li>' + (c.last_message ? c.last_message.snippet : '') + '</li>').join('');
    window.__ready = performance.now();
  };
})();
</script>"""


SEEN_OBSERVER = """() => { window.__seen = {};
  new MutationObserver(() => { for (const el of document.querySelectorAll('li.msg .body')) {
    const t = el.textContent;
    if (t.startsWith('m-') && !(t in window.__seen)) window.__seen[t] = Date.now(); } })
  .observe(document.querySelector('ol.messages'), {subtree: true, childList: true, characterData: true}); }"""

# Typed (value + input event, as a keyboard would leave it), rendered, then the send button
# pressed in the page itself: Playwright's own round trips stay out of the figure.
TYPE_AND_SEND = """async (text) => { const ta = document.getElementById('composer-text');
  const t0 = Date.now(); ta.value = text; ta.dispatchEvent(new Event('input', {bubbles: true}));
  await new Promise((r) => setTimeout(r, 0));
  document.querySelector('form.composer button[type=submit]').click();
  return t0; }"""

RAW_SOCKET = """() => new Promise((ok) => { const s = JSON.parse(localStorage.getItem('zzd.session'));
  window.__raw = {}; const ws = new WebSocket('ws://' + location.host + '/ws'); window.__rawws = ws;
  ws.onopen = () => ws.send(JSON.stringify({type: 'hello', id: 'h', v: 1, token: s.access}));
  ws.onmessage = (m) => { const f = JSON.parse(m.data); if (f.ref === 'h') ok();
    if (f.type === 'event' && f.kind === 'message.new' && f.data.body.startsWith('r-')) {
      window.__raw[f.data.body] = Date.now(); } }; })"""

RAW_SEND = """([to, text]) => { const t0 = Date.now();
  window.__rawws.send(JSON.stringify({type: 'send', id: 's' + text, to, client_msg_id: 'raw-' + text + '-' + t0,
                                     body: text}));
  return t0; }"""


def _session(page: Any, base: str, login: str) -> dict[str, Any]:
    """Sign in through the UI once; returns the stored session to seed later contexts."""
    page.goto(base + "/")
    page.get_by_label("账号").fill(login)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.locator("[data-status=online]")).to_be_visible(timeout=30_000)
    return dict(json.loads(page.evaluate("localStorage.getItem('zzd.session')")))


def _seed_inbox(base: str, person_id: int) -> None:
    """A few conversations in the inbox measured: direct messages from three people."""
    for login in ("li", "qian", "zhao"):
        tok = token(base, login)
        r = httpx.post(f"{base}/api/v1/messages", headers={"authorization": f"Bearer {tok}"},
                       json={"to": person_id, "client_msg_id": f"seed-{login}", "body": f"{login} 的消息"})  # fmt: skip
        r.raise_for_status()


def _weight(browser: Any, base: str, session: dict[str, Any]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for name, seeded in (("sign-in page", False), ("signed-in inbox", True)):
        ctx = browser.new_context(viewport=DESKTOP, service_workers="block")
        if seeded:
            ctx.add_init_script(f"localStorage.setItem('zzd.session', {json.dumps(json.dumps(session))})")
        page = ctx.new_page()
        page.goto(base + "/")
        if seeded:
            expect(page.locator("[aria-label=会话列表] a.conv").first).to_be_visible(timeout=30_000)
        else:
            expect(page.get_by_role("button", name="登录")).to_be_visible()
        page.wait_for_load_state("networkidle")
        entries = page.evaluate(
            "() => [performance.getEntriesByType('navigation')[0], ...performance.getEntriesByType('resource')]"
            ".map(e => ({name: e.name, size: e.transferSize, type: e.initiatorType}))"
        )
        kinds = {"html": 0, "js": 0, "css": 0, "api+other": 0}
        for e in entries:
            path = e["name"].split("?")[0]
            kind = (
                "html" if e["type"] == "navigation"
                else "js" if path.endswith((".js", ".mjs"))
                else "css" if path.endswith(".css")
                else "api+other"
            )  # fmt: skip
            kinds[kind] += int(e["size"])
        kinds["total"] = sum(kinds.values())
        kinds["static"] = kinds["total"] - kinds["api+other"]
        out[name] = kinds
        ctx.close()
    return out


def _tti(browser: Any, base: str, session: dict[str, Any], loads: int, bare: bool) -> list[float]:
    times = []
    for _ in range(loads):
        ctx = browser.new_context(viewport=DESKTOP, service_workers="block")
        ctx.add_init_script(f"localStorage.setItem('zzd.session', {json.dumps(json.dumps(session))})")
        if bare:
            ctx.route(base + "/bare", lambda r: r.fulfill(status=200, content_type="text/html", body=BARE_PAGE))
        else:
            ctx.add_init_script(READY_OBSERVER)
        page = ctx.new_page()
        page.goto(base + ("/bare" if bare else "/"))
        page.wait_for_function("() => window.__ready", timeout=30_000)  # a function: the page's CSP forbids eval
        times.append(float(page.evaluate("window.__ready")))
        ctx.close()
    return times


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * len(s)) - 1))]


Session = dict[str, Any]


def _chat(browser: Any, base: str, sa: Session, sb: Session, b_id: int, n: int) -> tuple[list[float], list[float]]:
    pages = []
    for s in (sa, sb):
        ctx = browser.new_context(viewport=DESKTOP, service_workers="block")
        ctx.add_init_script(f"localStorage.setItem('zzd.session', {json.dumps(json.dumps(s))})")
        p = ctx.new_page()
        p.goto(base + "/")
        expect(p.locator("[data-status=online]")).to_be_visible(timeout=30_000)
        pages.append(p)
    a, b = pages
    # Open the direct chat on both sides (A writes first to create it).
    a.goto(f"{base}/#/person/{b_id}")
    a.get_by_label("消息", exact=True).fill("开始")
    a.get_by_role("button", name="发送").click()
    a.wait_for_url("**/#/chat/*")
    b.goto(a.url.replace(a.url.split("#")[0], base + "/"))
    expect(b.locator("li.msg", has_text="开始")).to_be_visible(timeout=30_000)
    b.evaluate(SEEN_OBSERVER)
    # Baseline sockets: raw WebSockets in the same two pages, A's send frame to B's event.
    b.evaluate(RAW_SOCKET)
    a.evaluate(RAW_SOCKET)
    ui: list[float] = []
    raw: list[float] = []
    for i in range(n):  # alternating, so both see the same machine load
        text = f"m-{i}"
        t0 = a.evaluate(TYPE_AND_SEND, text)
        b.wait_for_function("(t) => t in window.__seen", arg=text, timeout=30_000)
        ui.append(float(b.evaluate("(t) => window.__seen[t]", text)) - float(t0))
        text = f"r-{i}"
        t0 = a.evaluate(RAW_SEND, [b_id, text])
        b.wait_for_function("(t) => t in window.__raw", arg=text, timeout=30_000)
        raw.append(float(b.evaluate("(t) => window.__raw[t]", text)) - float(t0))
    return ui, raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--loads", type=int, default=5)
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        world = build_world(Path(tmp))
        server = ServeProcess(world, Path(tmp))
        server.start()
        try:
            with sync_playwright() as p:
                # A page Playwright answers itself (the bare baseline) has no address space of its own, and
                # Chromium's local-network checks then refuse its socket to 127.0.0.1: off for both runs.
                launch_args = [*CHROMIUM_ARGS, "--disable-features=LocalNetworkAccessChecks"]
                browser = p.chromium.launch(executable_path=CHROMIUM, args=launch_args)
                ctx = browser.new_context(viewport=DESKTOP, service_workers="block")
                sa = _session(ctx.new_page(), server.base, "sun")
                ctx.close()
                ctx = browser.new_context(viewport=DESKTOP, service_workers="block")
                sb = _session(ctx.new_page(), server.base, "zhou")
                ctx.close()
                _seed_inbox(server.base, world.person_ids["sun"])
                weight = _weight(browser, server.base, sa)
                for name, kinds in weight.items():
                    shown = [(k, v) for k, v in kinds.items() if k not in ("total", "static")]
                    parts = ", ".join(f"{k} {v / 1024:.1f} KB" for k, v in shown)
                    print(
                        f"weight  {name}: static {kinds['static'] / 1024:.1f} KB of budget {BUDGET / 1024:.0f} KB "
                        f"(with API {kinds['total'] / 1024:.1f} KB: {parts})"
                    )
                app = _tti(browser, server.base, sa, args.loads, bare=False)
                bare = _tti(browser, server.base, sa, args.loads, bare=True)
                print(
                    f"inbox   time to interactive, median of {args.loads}: zzd client {statistics.median(app):.0f} ms"
                    f" (min {min(app):.0f}), bare page {statistics.median(bare):.0f} ms (min {min(bare):.0f})"
                )
                ui, raw = _chat(browser, server.base, sa, sb, world.person_ids["zhou"], args.messages)
                print(
                    f"chat    {args.messages} messages A→B: client p50 {_pct(ui, 0.5):.0f} ms"
                    f" p95 {_pct(ui, 0.95):.0f} ms; raw WebSocket p50 {_pct(raw, 0.5):.0f} ms"
                    f" p95 {_pct(raw, 0.95):.0f} ms"
                )
                browser.close()
        finally:
            server.stop()
    print(f"load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
