"""Two browsers chat through 找岗位 and a position thread; both resume after a server restart."""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.web.conftest import (
    DESKTOP,
    Pages,
    Web,
    chat_with_zhou,
    check_page,
    kept_sends,
    kept_through_sign_in,
    own_server_page,
    send_message,
    use_refresh_token_elsewhere,
)
from tests.web.world import ServeProcess, token

CURSOR = "localStorage.getItem('zzd.cursor.' + JSON.parse(localStorage.getItem('zzd.session')).personId)"


def _open_position_by_search(page: Any, query: str) -> None:
    page.get_by_role("link", name="找岗位").first.click()
    page.get_by_label("岗位、单位、姓名、拼音或首字母").fill(query)
    hit = page.get_by_role("list", name="搜索结果").locator("li.hit").first
    expect(hit).to_be_visible()
    hit.get_by_role("link", name="发消息").click()


def test_two_browsers_chat_and_resume_after_a_server_restart(pages: Pages, web: Web) -> None:
    sun = pages.open("sun")
    zhou = pages.open("zhou", DESKTOP)
    _open_position_by_search(sun, "周九")
    check_page(sun, "thread-new")
    first = f"你好周九 {secrets.token_hex(2)}"
    send_message(sun, first)
    expect(sun).to_have_url(re.compile(r"#/chat/\d+$"))
    expect(sun.locator("li.msg.mine", has_text=first)).to_be_visible()

    row = zhou.get_by_role("list", name="会话列表").locator("a.conv", has_text=first)
    expect(row).to_be_visible()
    expect(row.locator(".via")).to_have_text(re.compile("发给：专职网格员"))
    row.click()
    expect(zhou.locator("li.msg", has_text=first)).to_be_visible()
    send_message(zhou, "收到")
    expect(sun.locator("li.msg:not(.mine)", has_text="收到")).to_be_visible()  # live, no reload

    # The server process restarts: both show the drop, reconnect and resume.
    header = sun.locator("header.top").bounding_box()
    web.server.stop()
    try:
        for p in (sun, zhou):
            expect(p.locator("[data-status=offline]")).to_be_visible()
        # On the 360-px phone the longer state (已断开 · N 秒后重连) stays on the header's one row.
        expect(sun.locator("[data-status=offline]")).to_contain_text("秒后重连")
        assert sun.locator("header.top").bounding_box()["height"] == header["height"]
        # A view not opened before cannot load now: it says so (no endless 正在加载…, no uncaught
        # error), and loads by itself once the server is back.
        zhou.get_by_role("navigation", name="主导航").get_by_role("link", name="组织").click()
        expect(zhou.get_by_role("alert")).to_contain_text("页面加载失败")
        expect(zhou.get_by_role("button", name="重试")).to_be_visible()
        during = "断线时发送"
        send_message(sun, during)  # queued with its client_msg_id, sent after the reconnect
        expect(sun.locator("li.msg.mine", has_text=during)).to_contain_text("发送中")
    finally:
        web.server.start()  # also when a check above failed: the other tests share this server
    # Posted through the API as soon as the server is up, probably before zhou reconnects.
    tok = token(web.base, "sun")
    conv_id = int(sun.url.rsplit("/", 1)[1])
    missed = [f"补发{i}" for i in range(3)]
    for i, body in enumerate(missed):
        r = httpx.post(
            f"{web.base}/api/v1/conversations/{conv_id}/messages",
            headers={"authorization": f"Bearer {tok}"},
            json={"client_msg_id": f"missed-{secrets.token_hex(4)}-{i}", "body": body},
        )
        assert r.status_code == 201, r.text
    for p in (sun, zhou):
        expect(p.locator("[data-status=online]")).to_be_visible(timeout=30_000)
    expect(zhou.get_by_role("heading", name="组织")).to_be_visible()
    zhou.go_back()
    expect(sun.locator("li.msg.mine", has_text=during)).not_to_contain_text("发送中")
    # Exactly what was missed: every message once, in the server's order, on both sides.
    history = httpx.get(
        f"{web.base}/api/v1/conversations/{conv_id}/messages", headers={"authorization": f"Bearer {tok}"}
    ).json()["messages"]
    expected = [m["body"] for m in reversed(history)]
    assert sorted(expected) == sorted([first, "收到", during, *missed])
    for p in (sun, zhou):
        expect(p.locator("li.msg .body")).to_have_text(expected)
    # The stored cursor is the server's last seq: nothing skipped, nothing processed twice. The
    # server's figure is read first (signing in for it may add to zhou's stream), then the page is
    # given until its cursor reaches it (events still on their way), and must then equal it.
    me = httpx.get(web.base + "/api/v1/me", headers={"authorization": f"Bearer {token(web.base, 'zhou')}"}).json()
    zhou.wait_for_function(f"() => (JSON.parse({CURSOR}) || {{seq: 0}}).seq >= {int(me['last_seq'])}", timeout=15_000)
    zhou_cursor = json.loads(zhou.evaluate(CURSOR))
    assert zhou_cursor == {"epoch": me["epoch"], "seq": me["last_seq"]}
    check_page(zhou, "chat-desktop")


def test_resync_required_reloads_and_says_so(pages: Pages, web: Web) -> None:
    page = pages.open("qian")
    # A cursor past the end of the stream (as after a database restored from a backup) cannot
    # be resumed: the server says resync_required.
    page.evaluate(
        "() => { const k = 'zzd.cursor.' + JSON.parse(localStorage.getItem('zzd.session')).personId;"
        " const c = JSON.parse(localStorage.getItem(k)); c.seq = 999999; localStorage.setItem(k, JSON.stringify(c)); }"
    )
    page.reload()
    expect(page.get_by_role("alert")).to_contain_text("服务器要求重新同步")
    expect(page.locator("[data-status=online]")).to_be_visible()
    cursor = json.loads(page.evaluate(CURSOR))
    assert cursor["seq"] < 999999


def test_an_inbox_longer_than_a_page_shows_the_rest_on_request(pages: Pages, web: Web) -> None:
    """The inbox comes 100 conversations a page: the older ones were out of reach."""
    tok = token(web.base, "zhou")
    feng = web.world.positions["feng"][0]
    titles = [f"旧群{i:03d} {secrets.token_hex(2)}" for i in range(101)]
    for title in titles:  # the first is the oldest: on the second page
        r = httpx.post(
            web.base + "/api/v1/groups",
            headers={"authorization": f"Bearer {tok}"},
            json={"title": title, "position_ids": [feng]},
        )
        assert r.status_code == 201, r.text
    page = pages.open("feng")
    inbox = page.get_by_role("list", name="会话列表")
    expect(inbox.locator("a.conv", has_text=titles[-1])).to_be_visible()
    expect(inbox.locator("a.conv", has_text=titles[0])).to_have_count(0)
    page.get_by_role("button", name="更多会话").click()
    expect(inbox.locator("a.conv", has_text=titles[0])).to_be_visible()
    expect(page.get_by_role("button", name="更多会话")).to_have_count(0)
    hrefs = inbox.locator("a.conv").evaluate_all("els => els.map(e => e.href)")
    assert len(hrefs) == len(set(hrefs))  # each conversation once


def _offline_page(pages: Pages, hash_: str) -> Any:
    """A page that can start without the server (its shell from the service worker) at ``hash_``."""
    page = pages.open("sun", service_workers="allow")
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    page.goto(f"{pages.web.base}/#{hash_}")
    return page


def _keep_through_an_outage_and_a_reload(
    page: Any, web: Web, text: str, meanwhile: Callable[[], None] = lambda: None
) -> None:
    """``text`` is sent while the server is down (``meanwhile`` runs then too), the page reloaded
    before it is back: the message shows as 发送中 all along, until the server is back."""
    web.server.stop()
    try:
        expect(page.locator("[data-status=offline]")).to_be_visible()
        send_message(page, text)
        expect(page.locator("li.msg.mine", has_text=text)).to_contain_text("发送中")
        meanwhile()
        page.reload()  # the shell from the service worker
        expect(page.locator("li.msg.mine", has_text=text)).to_contain_text("发送中")
    finally:
        web.server.start()
    expect(page.locator("[data-status=online]")).to_be_visible(timeout=30_000)


def _send_through_an_outage_and_a_reload(page: Any, web: Web, text: str) -> None:
    """The same, and the message shows as sent once the server is back."""
    _keep_through_an_outage_and_a_reload(page, web, text)
    expect(page.locator("li.msg.mine", has_text=text)).not_to_contain_text("发送中", timeout=30_000)


def _zzd(web: Web, *args: str) -> Any:
    """The operator's CLI (``zzd …``) on the test world's database; its JSON answer."""
    out = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "zzd", *args], env=web.server.env, capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(out.stdout)


def test_a_message_typed_during_an_outage_survives_a_reload(pages: Pages, web: Web) -> None:
    """The page is reloaded (or the phone drops the tab) before the server is back: the message
    typed meanwhile is neither lost nor sent twice."""
    sun = _offline_page(pages, f"/position/{web.world.positions['qian'][0]}")
    send_message(sun, f"先说一句 {secrets.token_hex(2)}")
    expect(sun).to_have_url(re.compile(r"#/chat/\d+$"))
    conv_id = int(sun.url.rsplit("/", 1)[1])
    kept = f"断线后刷新 {secrets.token_hex(2)}"
    _send_through_an_outage_and_a_reload(sun, web, kept)
    auth = {"authorization": f"Bearer {token(web.base, 'sun')}"}
    history = httpx.get(f"{web.base}/api/v1/conversations/{conv_id}/messages", headers=auth).json()["messages"]
    assert [m["body"] for m in history].count(kept) == 1
    expect(sun.locator("li.msg .body", has_text=kept)).to_have_count(1)


def test_a_first_message_typed_during_an_outage_survives_a_reload(pages: Pages, web: Web) -> None:
    """The same at 私聊 (#/person/N), before the chat exists: the reloaded page showed nothing of
    the kept message (only a conversation's own sends were shown), though it went out once the
    server was back."""
    sun = _offline_page(pages, f"/person/{web.world.person_ids['zhang']}")
    kept = f"断线时的第一条 {secrets.token_hex(2)}"
    _send_through_an_outage_and_a_reload(sun, web, kept)
    expect(sun).to_have_url(re.compile(r"#/chat/\d+$"))
    conv_id = int(sun.url.rsplit("/", 1)[1])
    auth = {"authorization": f"Bearer {token(web.base, 'zhang')}"}
    history = httpx.get(f"{web.base}/api/v1/conversations/{conv_id}/messages", headers=auth).json()["messages"]
    assert [m["body"] for m in history] == [kept]  # zhang got it, once


def test_a_kept_message_the_server_refuses_is_failed_and_can_be_resent_or_deleted(pages: Pages, web: Web) -> None:
    """Messages kept through an outage and a reload go again once the server is back; the server
    refuses them here (their recipient's account was disabled meanwhile): 发送失败 with the reason,
    not sent again by themselves. They had no action, and were dropped from the outbox, so a
    reload lost what was typed. They stay kept as failed — 发送失败 after a reload too — with
    重发 and 删除: 删除 drops one for good (not back after a reload); 重发, once the recipient is
    back, sends the other once, under a client_msg_id of its own (the refusal stored nothing)."""
    login = f"gone{secrets.token_hex(3)}"
    gone = _zzd(web, "person", "create", "--login", login, "--name", "吴离职", "--password", "web-client-2026")
    sun = _offline_page(pages, f"/person/{gone['person_id']}")
    keep, drop = f"发给已停用的人 {secrets.token_hex(2)}", f"这条删掉 {secrets.token_hex(2)}"

    def bubble(text: str) -> Any:
        return sun.locator("li.msg.mine", has_text=text)

    web.server.stop()
    try:
        expect(sun.locator("[data-status=offline]")).to_be_visible()
        for text in (keep, drop):
            send_message(sun, text)
            expect(bubble(text)).to_contain_text("发送中")
        _zzd(web, "person", "disable", "--login", login)
        sun.reload()  # the shell from the service worker
        for text in (keep, drop):
            expect(bubble(text)).to_contain_text("发送中")
    finally:
        web.server.start()
    refused = "发送失败：找不到该内容（可能已删除或无权查看）"
    for text in (keep, drop):
        expect(bubble(text)).to_contain_text(refused, timeout=30_000)
    kept = {k["frame"]["body"]: k for k in kept_sends(sun)}
    assert set(kept) == {keep, drop} and all(k["failed"]["code"] == "not_found" for k in kept.values())
    refused_id = kept[keep]["frame"]["client_msg_id"]

    sun.reload()  # failed, not 发送中: kept as they were refused, and not sent again
    expect(sun.locator("[data-status=online]")).to_be_visible()
    for text in (keep, drop):
        expect(bubble(text)).to_contain_text(refused)
    check_page(sun, "send-failed")
    bubble(drop).get_by_role("button", name="删除").click()
    expect(bubble(drop)).to_have_count(0)
    assert [k["frame"]["body"] for k in kept_sends(sun)] == [keep]

    _zzd(web, "person", "disable", "--login", login, "--enable")
    bubble(keep).get_by_role("button", name="重发").click()
    expect(sun).to_have_url(re.compile(r"#/chat/\d+$"))  # the chat the resent message opened
    expect(sun.locator("li.msg.mine:not([data-message^=pending])", has_text=keep)).to_have_count(1)
    assert kept_sends(sun) == []
    conv_id = int(sun.url.rsplit("/", 1)[1])
    sun.reload()
    expect(sun.locator("li.msg .body", has_text=keep)).to_have_count(1)
    expect(sun.locator("li.msg", has_text=drop)).to_have_count(0)
    auth = {"authorization": f"Bearer {token(web.base, login)}"}
    history = httpx.get(f"{web.base}/api/v1/conversations/{conv_id}/messages", headers=auth).json()["messages"]
    assert [m["body"] for m in history] == [keep]  # once; the deleted one never went
    assert history[0]["client_msg_id"] != refused_id


#: Every 发送失败 ever shown, though it went again.
_WATCH_FAILED = """() => {
  window.failedShown = [];
  new MutationObserver(() => {
    for (const e of document.querySelectorAll('ol.messages li.msg')) {
      const t = e.textContent;
      if (t.includes('发送失败') && !window.failedShown.includes(t)) window.failedShown.push(t);
    }
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def test_a_send_refused_as_rate_limited_goes_again_later(browser: Any, web: Web, tmp_path: Path) -> None:
    """``rate_limited`` is ``retryable`` (docs/protocol.md): the same send may succeed later. It
    was taken as final — 发送失败 and dropped from the outbox, so the message was lost. It stays
    发送中 and goes again after a back-off. A server of its own allows 6 sends a minute (one
    more every 10 s); sun spends them through the API, then writes in the browser."""
    server = ServeProcess(web.world, tmp_path, ZZD_SEND_RATE_PER_MINUTE="6")
    with own_server_page(browser, server, "sun") as (page, errors):
        auth = {"authorization": f"Bearer {token(server.base, 'sun')}"}
        zhou = web.world.person_ids["zhou"]
        spent = [
            httpx.post(
                f"{server.base}/api/v1/messages",
                headers=auth,
                json={"to": zhou, "client_msg_id": secrets.token_hex(6), "body": f"第{i}条"},
            ).status_code
            for i in range(7)
        ]
        assert spent[-1] == 429, spent  # the budget is spent
        page.goto(f"{server.base}/#/person/{zhou}")
        expect(page).to_have_url(re.compile(r"#/chat/\d+$"))  # the chat the API sends opened
        page.evaluate(_WATCH_FAILED)
        later = f"稍后再发 {secrets.token_hex(2)}"
        send_message(page, later)
        expect(page.locator("li.msg.mine", has_text=later)).to_contain_text("发送中")
        stored = page.locator("li.msg.mine:not([data-message^=pending])", has_text=later)
        expect(stored).to_have_count(1, timeout=60_000)
        assert page.evaluate("window.failedShown") == []
        assert kept_sends(page) == []
        assert not errors, errors


#: What a #/person/N or #/position/N page leaves in the outbox (``js/outbox.js``) for a message
#: it sent during an outage, before it knew the chat: the frame addresses the person (``to``) or the
#: position (``to_position``, with ``as_position``), with no conversation.
_KEEP_SEND = """({address, body, me}) => {
  const frame = {type: 'send', client_msg_id: 'm-kept' + Date.now(), body, ...address};
  const shown = {...frame, id: 'pending-' + frame.client_msg_id, sender: {id: me, name: '孙八'},
                 created_at: new Date().toISOString(), pending: true, reply_to: null, attachments: []};
  const key = 'zzd.outbox.' + me;
  localStorage.setItem(key, JSON.stringify([...JSON.parse(localStorage.getItem(key) || '[]'), {frame, shown}]));
}"""


def _kept_at_address_shows_in_chat(pages: Pages, web: Web, cid: int, address: dict[str, int], kept: str) -> None:
    """sun's page at #/chat/``cid``, reloaded during an outage with ``kept`` left in the outbox
    as a page at ``address`` leaves it: 发送中 at once, then stored once in that chat."""
    sun = _offline_page(pages, f"/chat/{cid}")
    expect(sun.locator("li.msg").first).to_be_visible()
    web.server.stop()
    try:
        expect(sun.locator("[data-status=offline]")).to_be_visible()
        sun.evaluate(_KEEP_SEND, {"address": address, "body": kept, "me": web.world.person_ids["sun"]})
        sun.reload()  # the shell from the service worker, at #/chat/id
        expect(sun.locator("li.msg.mine", has_text=kept)).to_contain_text("发送中")
    finally:
        web.server.start()
    expect(sun.locator("[data-status=online]")).to_be_visible(timeout=30_000)
    stored = sun.locator("li.msg.mine:not([data-message^=pending])", has_text=kept)
    expect(stored).to_have_count(1, timeout=30_000)
    expect(sun.locator("li.msg .body", has_text=kept)).to_have_count(1)
    assert kept_sends(sun) == []


def test_a_first_message_kept_at_person_shows_after_a_reload_at_its_chat(pages: Pages, web: Web) -> None:
    """Sent at 私聊 (#/person/N) during an outage, the view then moved to the existing chat
    (#/chat/id, once the inbox came) and the page was reloaded there before the server answered:
    the kept message carries the person, not the chat, so the chat's view showed nothing of it
    until the server was back. It shows at once, 发送中, and goes once the server is back.
    The outbox entry is the one such a page leaves (the move itself needs the inbox to arrive
    between the send and the outage, which a test cannot order without a WebSocket-only outage)."""
    login = f"peer{secrets.token_hex(3)}"
    peer = _zzd(web, "person", "create", "--login", login, "--name", "郑一", "--password", "web-client-2026")
    hello = f"你好 {secrets.token_hex(2)}"
    r = httpx.post(
        f"{web.base}/api/v1/messages",
        headers={"authorization": f"Bearer {token(web.base, login)}"},
        json={"to": web.world.person_ids["sun"], "client_msg_id": secrets.token_hex(6), "body": hello},
    )
    assert r.status_code == 201, r.text
    cid = r.json()["conversation_id"]
    kept = f"断线时在私聊发的 {secrets.token_hex(2)}"
    _kept_at_address_shows_in_chat(pages, web, cid, {"to": peer["person_id"]}, kept)
    history = httpx.get(
        f"{web.base}/api/v1/conversations/{cid}/messages", headers={"authorization": f"Bearer {token(web.base, login)}"}
    ).json()["messages"]
    assert [m["body"] for m in reversed(history)] == [hello, kept]  # the peer got it, once, in this chat


def test_a_message_kept_at_position_shows_after_a_reload_at_its_thread(pages: Pages, web: Web) -> None:
    """The same for a position thread: sent at #/position/N during an outage, the view then moved
    to the existing thread (#/chat/id) and the page was reloaded there before the server
    answered. The kept message carries the position written to and the one written as, not the
    thread, and the thread's view showed nothing of it (only a direct chat's did, by its peer).
    It shows at once, 发送中, and goes once the server is back, once, into this thread."""
    sun_pos, river = web.world.positions["sun"][0], web.world.positions["zhao"][0]
    hello = f"河道问题 {secrets.token_hex(2)}"
    r = httpx.post(
        f"{web.base}/api/v1/positions/{river}/messages",
        headers={"authorization": f"Bearer {token(web.base, 'sun')}"},
        json={"client_msg_id": secrets.token_hex(6), "body": hello, "as_position": sun_pos},
    )
    assert r.status_code in (200, 201), r.text
    cid = r.json()["conversation_id"]
    kept = f"断线时给河长的 {secrets.token_hex(2)}"
    _kept_at_address_shows_in_chat(pages, web, cid, {"to_position": river, "as_position": sun_pos}, kept)
    zhao = {"authorization": f"Bearer {token(web.base, 'zhao')}"}
    history = httpx.get(f"{web.base}/api/v1/conversations/{cid}/messages", headers=zhao).json()["messages"]
    assert [m["body"] for m in reversed(history)][-2:] == [hello, kept]  # the river chief got it, once, here


def test_a_send_failed_without_a_final_refusal_is_resent_under_its_own_id(pages: Pages, web: Web) -> None:
    """A kept send that failed with ``internal_error`` — the server may have stored it before it
    failed — is 发送失败 after a reload, not sent again by itself, and 重发 sends it with its own
    client_msg_id, so a message the server did store would be answered as the duplicate it is
    rather than stored twice (docs/protocol.md "send")."""
    sun_id, zhou = web.world.person_ids["sun"], web.world.person_ids["zhou"]
    auth = {"authorization": f"Bearer {token(web.base, 'sun')}"}
    hello = f"在吗 {secrets.token_hex(2)}"
    r = httpx.post(
        f"{web.base}/api/v1/messages",
        headers=auth,
        json={"to": zhou, "client_msg_id": secrets.token_hex(6), "body": hello},
    )
    assert r.status_code in (200, 201), r.text
    cid = r.json()["conversation_id"]
    sun = pages.open("sun")
    sun.goto(f"{web.base}/#/chat/{cid}")
    expect(sun.locator("li.msg", has_text=hello)).to_be_visible()
    body = f"服务器出错的那条 {secrets.token_hex(2)}"
    sun.evaluate(_KEEP_SEND, {"address": {"conversation_id": cid}, "body": body, "me": sun_id})
    [entry] = [k for k in kept_sends(sun) if k["frame"]["body"] == body]
    entry["failed"] = {"message": "服务器出错，请稍后重试", "code": "internal_error", "retryable": False}
    sun.evaluate("([me, entry]) => localStorage.setItem('zzd.outbox.' + me, JSON.stringify([entry]))", [sun_id, entry])
    sun.reload()
    expect(sun.locator("[data-status=online]")).to_be_visible()
    bubble = sun.locator("li.msg.mine", has_text=body)
    expect(bubble).to_contain_text("发送失败：服务器出错，请稍后重试")
    bubble.get_by_role("button", name="重发").click()
    expect(sun.locator("li.msg.mine:not([data-message^=pending])", has_text=body)).to_have_count(1)
    assert kept_sends(sun) == []
    history = httpx.get(f"{web.base}/api/v1/conversations/{cid}/messages", headers=auth).json()["messages"]
    assert [m["client_msg_id"] for m in history if m["body"] == body] == [entry["frame"]["client_msg_id"]]


def test_position_view_moves_to_the_thread_its_send_goes_to(pages: Pages, web: Web) -> None:
    """#/position/N moves to N's existing thread once it is known: the one its next send goes to.
    With 以岗位身份发送 unticked that is the thread of N and me, but the view went by the acting
    position: a thread of N and it, learnt while the box was unticked (N's holder wrote), took the
    view there, and the send went into it as the position. It stays, and the send opens my own
    thread with N; ticked (the default), the view goes to the thread of the two positions."""
    sun_pos, li_pos = web.world.positions["sun"][0], web.world.positions["li"][0]
    sun = pages.open("sun")
    sun.goto(f"{web.base}/#/position/{li_pos}")
    box = sun.get_by_label(re.compile("以岗位身份发送"))
    expect(box).to_be_checked()
    box.uncheck()
    sun.evaluate("() => { window.hashes = []; addEventListener('hashchange', () => hashes.push(location.hash)); }")
    r = httpx.post(
        f"{web.base}/api/v1/positions/{sun_pos}/messages",
        headers={"authorization": f"Bearer {token(web.base, 'li')}"},
        json={"client_msg_id": secrets.token_hex(6), "body": f"找网格员 {secrets.token_hex(2)}", "as_position": li_pos},
    )
    assert r.status_code in (200, 201), r.text
    pair = r.json()["conversation_id"]
    # The thread is in sun's inbox (the event applied) and rendered (the unread badge counts it).
    inbox = f"JSON.parse(localStorage.getItem('zzd.inbox.{web.world.person_ids['sun']}') || '[]')"
    sun.wait_for_function(f"() => {inbox}.some((c) => c.id === {pair} && c.unread > 0)")
    unread = sun.evaluate(f"{inbox}.reduce((n, c) => n + (c.unread || 0), 0)")
    # (Moved to that thread, the view marked it read: the badge never showed.)
    expect(sun.get_by_role("navigation", name="主导航").get_by_label(f"{unread} 条未读")).to_be_visible()
    expect(sun).to_have_url(re.compile(rf"#/position/{li_pos}$"))
    mine = f"以个人身份问 {secrets.token_hex(2)}"
    send_message(sun, mine)
    expect(sun).to_have_url(re.compile(r"#/chat/\d+$"))
    own = int(sun.url.rsplit("/", 1)[1])
    expect(sun.locator("li.msg.mine:not([data-message^=pending])", has_text=mine)).to_have_count(1)
    assert own != pair and f"#/chat/{pair}" not in sun.evaluate("window.hashes")
    auth = {"authorization": f"Bearer {token(web.base, 'sun')}"}
    history = httpx.get(f"{web.base}/api/v1/conversations/{own}/messages", headers=auth).json()["messages"]
    assert [(m["body"], m["sender"].get("position_id")) for m in history] == [(mine, None)]  # written as me
    sun.goto(f"{web.base}/#/position/{li_pos}")  # ticked: the thread of the two positions
    expect(sun).to_have_url(re.compile(rf"#/chat/{pair}$"))


def test_a_refresh_lost_on_the_network_is_tried_again_and_the_send_goes(browser: Any, web: Web, tmp_path: Path) -> None:
    """The socket's token is refused (4401) and the refresh that follows is lost on the network:
    that says nothing about the session. The client took it as the end — 会话已结束 · 请重新登录,
    no button, no reconnect even once the server was back, the send 发送失败 (or 发送中 for ever)
    until a reload. The refresh is now tried again with the reconnect back-off, and once it
    succeeds the socket reconnects and the waiting send goes, without a reload. The 4401 comes
    from a restart with other signing keys; the refresh is lost with the server, killed while
    the refresh waits on a database write lock; the server then comes back (still the new keys,
    so only a refreshed token is accepted)."""
    server = ServeProcess(web.world, tmp_path)
    db = web.world.db_url.removeprefix("sqlite+aiosqlite:///")
    with own_server_page(browser, server, "sun") as (page, errors):
        context = page.context
        chat_with_zhou(page, server, web)
        server.stop()
        expect(page.locator("[data-status=offline]")).to_be_visible()
        body = f"刷新失败时发的 {secrets.token_hex(2)}"
        send_message(page, body)
        bubble = page.locator("li.msg.mine", has_text=body)
        expect(bubble).to_contain_text("发送中")
        server.env["ZZD_JWT_KEYS"] = "t2:" + secrets.token_hex(24)
        lock = sqlite3.connect(db, timeout=60, isolation_level=None)
        try:
            # The browser offline meanwhile, so it does not reconnect before the lock is taken.
            context.set_offline(True)
            server.start()
            lock.execute("BEGIN IMMEDIATE")  # the refresh's write waits
            with page.expect_request(lambda q: q.url.endswith("/api/v1/auth/token"), timeout=60_000):
                context.set_offline(False)
            assert server.proc is not None
            server.proc.kill()
            server.stop()
        finally:
            lock.close()
        # Not ended: a retry is scheduled, and the send still waits for it.
        expect(page.locator("[data-status=offline]")).to_contain_text("秒后重连")
        assert page.locator("[data-status=ended]").count() == 0
        expect(bubble).to_contain_text("发送中")
        server.start()  # the back-off's next refresh succeeds (within its 30-s cap)
        expect(page.locator("[data-status=online]")).to_be_visible(timeout=60_000)
        expect(page.locator("li.msg.mine:not([data-message^=pending])", has_text=body)).to_have_count(1)
        assert kept_sends(page) == []
        assert not errors, errors


def test_a_refresh_refused_for_good_returns_to_sign_in_and_the_kept_send_goes_after_it(
    browser: Any, web: Web, tmp_path: Path
) -> None:
    """Only a refusal of the refresh itself ends the session: the refresh token was used
    elsewhere (here through the API while the page was offline), so after a restart with other
    signing keys the hello is refused (4401) and the refresh answered 401 ``invalid_grant``. The
    page returns to sign-in and says why; the message typed meanwhile stays kept, and signing in
    again (no reload) sends it, once."""
    server = ServeProcess(web.world, tmp_path)
    with own_server_page(browser, server, "sun") as (page, errors):
        context = page.context
        cid = chat_with_zhou(page, server, web)
        context.set_offline(True)
        expect(page.locator("[data-status=offline]")).to_contain_text("网络不可用")
        use_refresh_token_elsewhere(page, server)
        body = f"会话结束前发的 {secrets.token_hex(2)}"
        send_message(page, body)
        expect(page.locator("li.msg.mine", has_text=body)).to_contain_text("发送中")
        server.stop()
        server.env["ZZD_JWT_KEYS"] = "t2:" + secrets.token_hex(24)
        server.start()
        with page.expect_response(lambda q: q.url.endswith("/api/v1/auth/token")) as refused:
            context.set_offline(False)
        assert refused.value.status == 401
        kept_through_sign_in(page, web, "sun", body, f"{server.base}/#/chat/{cid}")
        assert not errors, errors
