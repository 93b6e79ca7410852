"""A group made from positions; a message with a mention and a photo; reply, edit, who read, recall;
a direct chat from 在岗人员 with its read state; a new group titled in the inbox."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.web.conftest import DESKTOP, PHOTO, Pages, Web, axe_check, check_page, sign_in
from tests.web.world import token


def test_group_mention_photo_reply_edit_read_list_and_recall(pages: Pages, web: Web) -> None:
    sun = pages.open("sun")
    sun.get_by_role("link", name="建群").click()
    axe_check(sun, "group-new-empty")  # nothing picked yet: an empty <p aria-label> was a violation
    title = f"防汛群 {secrets.token_hex(2)}"
    sun.get_by_label("群名称").fill(title)
    sun.get_by_placeholder("找岗位加入群").fill("周九")
    sun.get_by_role("button", name="搜索").click()
    sun.get_by_role("list", name="可加入的岗位").get_by_role("button", name="加入").first.click()
    expect(sun.get_by_label("已选岗位")).to_contain_text("专职网格员")
    check_page(sun, "group-new")
    sun.get_by_role("button", name="创建群聊").click()
    expect(sun).to_have_url(re.compile(r"#/chat/\d+$"))
    chat_url = sun.url.split("#")[1]
    expect(sun.get_by_role("heading", level=2)).to_have_text(title)
    expect(sun.locator("li.system")).to_have_text(f"创建了群“{title}”")

    zhou = pages.open("zhou", DESKTOP)
    zhou.goto(f"{web.base}/#{chat_url}")
    expect(zhou.get_by_role("heading", level=2)).to_have_text(title)

    # A mention of zhou's position (found by 找岗位) and a photo.
    sun.get_by_role("button", name="@ 提及").click()
    sun.get_by_label("找岗位").fill("周九")
    sun.get_by_role("dialog", name="提及").get_by_role("button", name="搜索").click()
    sun.get_by_role("dialog", name="提及").get_by_role("button", name=re.compile("专职网格员")).click()
    sun.get_by_label("照片").set_input_files(str(PHOTO))
    expect(sun.locator("form.composer img.photo")).to_have_count(1)
    sun.get_by_label("消息", exact=True).press("End")
    sun.get_by_label("消息", exact=True).type("请看照片")
    sun.get_by_role("button", name="发送").click()
    first = zhou.locator("li.msg", has_text="请看照片")
    expect(first).to_have_count(1)
    mid = first.get_attribute("data-message")
    msg = zhou.locator(f"li.msg[data-message='{mid}']")  # later replies quote its text
    expect(msg).to_have_class(re.compile("mentioned"))
    expect(msg.locator("img.photo")).to_be_visible()  # downloaded with zhou's own token
    assert msg.locator("img.photo").evaluate("img => img.naturalWidth") == 192
    zhou.reload()  # from history, which says whom a message names, not `mentioned`
    expect(msg.locator("img.photo")).to_be_visible()
    expect(msg).to_have_class(re.compile("mentioned"))

    msg.get_by_role("button", name="回复").click()
    zhou.get_by_label("消息", exact=True).fill("收到，马上去")
    zhou.get_by_role("button", name="发送").click()
    reply = sun.locator("li.msg", has_text="收到，马上去")
    expect(reply.locator("blockquote")).to_contain_text("请看照片")

    mine = sun.locator(f"li.msg.mine[data-message='{mid}']")
    mine.get_by_role("button", name="编辑").click()
    sun.get_by_label("消息", exact=True).fill("请看照片（已更新）")
    sun.get_by_role("button", name="保存").click()
    expect(msg.locator(".body")).to_have_text("请看照片（已更新）")
    expect(msg).to_contain_text("（已编辑）")

    mine.get_by_role("button", name="谁读了").click()
    expect(mine.locator(".reads")).to_contain_text("已读 1：周九")
    check_page(sun, "group-chat")

    mine.get_by_role("button", name="撤回").click()
    expect(msg.locator(".body")).to_have_text("（消息已撤回）")
    expect(msg.locator("img.photo")).to_have_count(0)


def _direct_chat_with(page: Page, name: str) -> None:
    """Opens a direct chat with ``name`` the way people do: 找岗位, 在岗人员, 私聊."""
    page.get_by_role("navigation", name="主导航").get_by_role("link", name="找岗位").click()
    page.get_by_label("岗位、单位、姓名、拼音或首字母").fill(name)
    hit = page.get_by_role("list", name="搜索结果").locator("li.hit").first
    hit.get_by_role("button", name="在岗人员").click()
    hit.get_by_role("link", name=f"私聊 {name}").click()


def test_direct_chat_from_holders_is_titled_by_name_and_keeps_its_read_state(pages: Pages, web: Web) -> None:
    """A direct chat starts from 找岗位's 在岗人员; it is titled by the peer's name and shows 已读
    also after a reload (before, only peer.read events set it: a reload showed 未读 again)."""
    qian = pages.open("qian", DESKTOP)
    _direct_chat_with(qian, "李四")
    expect(qian.get_by_role("heading", level=2)).to_have_text("李四")
    body = f"私聊 {secrets.token_hex(2)}"
    qian.get_by_label("消息", exact=True).fill(body)
    qian.get_by_role("button", name="发送").click()
    expect(qian).to_have_url(re.compile(r"#/chat/\d+$"))
    mine = qian.locator("li.msg.mine", has_text=body)
    expect(mine.locator(".read-state")).to_have_text("未读")

    li = pages.open("li")
    li.get_by_role("list", name="会话列表").locator("a.conv", has_text=body).click()
    expect(li.get_by_role("heading", level=2)).to_have_text("钱七")
    expect(mine.locator(".read-state")).to_have_text("已读")
    qian.reload()
    expect(qian.get_by_role("heading", level=2)).to_have_text("李四")
    expect(qian.locator("li.msg.mine", has_text=body).locator(".read-state")).to_have_text("已读")


def _group_says(web: Web, title: str, member: str, body: str, **extra: Any) -> int:
    """qian makes a group with ``member``'s first position and writes ``body`` to it (REST); its id."""
    auth = {"authorization": f"Bearer {token(web.base, 'qian')}"}
    g = httpx.post(
        web.base + "/api/v1/groups",
        headers=auth,
        json={"title": title, "position_ids": [web.world.positions[member][0]]},
    )
    assert g.status_code == 201, g.text
    r = httpx.post(
        f"{web.base}/api/v1/conversations/{g.json()['id']}/messages",
        headers=auth,
        json={"client_msg_id": secrets.token_hex(6), "body": body, **extra},
    )
    assert r.status_code == 201, r.text
    return int(g.json()["id"])


def test_a_group_i_am_added_to_is_titled_in_the_inbox_before_it_is_opened(pages: Pages, web: Web) -> None:
    li = pages.open("li")
    title = f"新群 {secrets.token_hex(2)}"
    body = f"群消息 {secrets.token_hex(2)}"
    _group_says(web, title, "li", body)
    row = li.get_by_role("list", name="会话列表").locator("a.conv", has_text=body)
    expect(row.locator(".conv-title")).to_contain_text(title)  # not just 群聊


def test_an_unread_mention_is_flagged_in_the_inbox_after_a_reload(pages: Pages, web: Web) -> None:
    """有人@我 came only from live events: the inbox loaded after a mention (a reload, a phone that
    was off) did not say it; the row's unread_mentions does now, until the conversation is read."""
    body = f"请孙八处理 {secrets.token_hex(2)}"
    _group_says(web, f"点名群 {secrets.token_hex(2)}", "sun", body, mention_positions=[web.world.positions["sun"][0]])
    sun = pages.open("sun")  # signs in after the mention: the inbox comes from GET /api/v1/conversations
    row = sun.get_by_role("list", name="会话列表").locator("a.conv", has_text=body)
    expect(row.locator(".mention-flag")).to_have_text("有人@我")
    row.click()
    expect(sun.locator("li.msg.mentioned", has_text=body)).to_have_count(1)
    sun.get_by_role("navigation", name="主导航").get_by_role("link", name="消息").click()
    read = sun.get_by_role("list", name="会话列表").locator("a.conv", has_text=body)
    expect(read).to_have_count(1)
    expect(read.locator(".mention-flag")).to_have_count(0)  # read: the flag goes with the unread count


def test_the_mention_popover_works_from_the_keyboard(pages: Pages, web: Web) -> None:
    page = pages.open("qian")
    page.goto(f"{web.base}/#/position/{web.world.positions['li'][0]}")
    button = page.get_by_role("button", name="@ 提及")
    button.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="提及")
    expect(dialog).to_be_visible()
    assert dialog.evaluate("d => d.contains(document.activeElement)")  # focus moved into it
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(button).to_be_focused()


_SHOWN = """state => {
  Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => state});
  document.dispatchEvent(new Event('visibilitychange'));
}"""


def _say(web: Web, login: str, to: str, body: str) -> int:
    """``login`` writes ``to`` through the REST API; the direct chat's id."""
    r = httpx.post(
        f"{web.base}/api/v1/messages",
        json={"to": web.world.person_ids[to], "client_msg_id": secrets.token_hex(8), "body": body},
        headers={"Authorization": f"Bearer {token(web.base, login)}"},
        timeout=10,
    )
    r.raise_for_status()
    return int(r.json()["conversation_id"])


def test_a_message_that_came_while_the_tab_was_hidden_is_read_when_it_is_shown(pages: Pages, web: Web) -> None:
    """The chat marks what it shows as read, not while the tab is hidden (a phone in a pocket); before,
    coming back to the tab left it unread until another message arrived."""
    first = f"在吗 {secrets.token_hex(2)}"
    cid = _say(web, "qian", "li", first)
    qian = pages.open("qian", DESKTOP)
    qian.goto(f"{web.base}/#/chat/{cid}")
    li = pages.open("li")
    li.goto(f"{web.base}/#/chat/{cid}")
    expect(li.locator("li.msg", has_text=first)).to_have_count(1)
    expect(qian.locator("li.msg.mine", has_text=first).locator(".read-state")).to_have_text("已读")

    li.evaluate(_SHOWN, "hidden")  # li's phone goes to the pocket with the chat open
    later = f"回个电话 {secrets.token_hex(2)}"
    qian.get_by_label("消息", exact=True).fill(later)
    qian.get_by_role("button", name="发送").click()
    expect(li.locator("li.msg", has_text=later)).to_have_count(1)  # shown in the hidden tab
    mine = qian.locator("li.msg.mine", has_text=later)
    expect(mine.locator(".read-state")).to_have_text("未读")
    li.evaluate(_SHOWN, "visible")
    expect(mine.locator(".read-state")).to_have_text("已读")


def test_text_typed_before_the_existing_chat_is_found_is_kept(pages: Pages, web: Web) -> None:
    """#/person/N opens the existing direct chat once the inbox is known; text typed before that
    (the inbox still loading on a slow network) was lost when the view moved to #/chat/id."""
    _say(web, "qian", "li", f"你好 {secrets.token_hex(2)}")  # the chat exists
    page = pages.open(None, DESKTOP)  # a new device: nothing kept, the inbox held back on the network
    held: list[Any] = []
    page.route(re.compile(r"/api/v1/conversations\?"), lambda route: held.append(route))
    sign_in(page, "qian")
    page.goto(f"{web.base}/#/person/{web.world.person_ids['li']}")
    typed = "马上到"
    page.get_by_label("消息", exact=True).fill(typed)
    expect(page).to_have_url(re.compile(r"#/person/\d+$"))
    assert held, "the inbox request was not made"
    for r in held:
        r.continue_()
    page.unroute(re.compile(r"/api/v1/conversations\?"))
    expect(page).to_have_url(re.compile(r"#/chat/\d+$"))
    expect(page.get_by_label("消息", exact=True)).to_have_value(typed)


#: Every message text once shown in the conversation, and those no longer shown since.
_WATCH = """() => {
  const ever = new Set();
  window.vanished = [];
  const look = () => {
    const now = new Set([...document.querySelectorAll('ol.messages li.msg .body')].map((e) => e.textContent));
    for (const t of ever) if (!now.has(t) && !window.vanished.includes(t)) window.vanished.push(t);
    for (const t of now) ever.add(t);
  };
  new MutationObserver(look).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def test_the_first_messages_of_a_new_direct_chat_stay_shown_while_it_is_created(pages: Pages, web: Web) -> None:
    """私聊 opens #/person/N; the first message creates the chat and the view moves to #/chat/id.
    Before, that move dropped what the person view held: the first message's bubble (gone until
    the history came back, for good if the send then failed) and the next message typed while the
    chat was being created (wiped from the box, never sent). Every DOM change is watched: no
    message may leave the view once shown."""
    qian = pages.open("qian", DESKTOP)
    _direct_chat_with(qian, "赵六")
    expect(qian).to_have_url(re.compile(r"#/person/\d+$"))
    qian.evaluate(_WATCH)
    box = qian.get_by_label("消息", exact=True)
    first, second = f"第一条 {secrets.token_hex(2)}", f"第二条 {secrets.token_hex(2)}"
    box.fill(first)
    box.press("Enter")
    box.fill(second)  # typed at once, while the chat is being created
    box.press("Enter")
    expect(qian).to_have_url(re.compile(r"#/chat/\d+$"))
    stored = qian.locator("li.msg.mine:not([data-message^=pending])")
    expect(stored.filter(has_text=first)).to_have_count(1)
    expect(stored.filter(has_text=second)).to_have_count(1)
    assert qian.evaluate("window.vanished") == []
    cid = qian.url.rsplit("/", 1)[1]
    r = httpx.get(
        f"{web.base}/api/v1/conversations/{cid}/messages",
        headers={"Authorization": f"Bearer {token(web.base, 'zhao')}"},
        timeout=10,
    )
    r.raise_for_status()
    assert [m["body"] for m in reversed(r.json()["messages"])] == [first, second]  # the recipient got both


def test_system_notes_read_in_chinese_in_the_inbox(pages: Pages, web: Web) -> None:
    """The inbox showed a group's last system note as the server's English snippet, as though its
    actor had written it (钱七：created 防汛群, 钱七：1 joined); now it reads what happened, live and
    after a reload alike."""
    auth = {"authorization": f"Bearer {token(web.base, 'qian')}"}
    title = f"值班群 {secrets.token_hex(2)}"
    zhou_post = web.world.positions["zhou"][0]
    g = httpx.post(web.base + "/api/v1/groups", headers=auth, json={"title": title, "position_ids": [zhou_post]})
    assert g.status_code == 201, g.text
    zhou = pages.open("zhou")  # the inbox comes from GET /api/v1/conversations
    row = zhou.get_by_role("list", name="会话列表").locator("a.conv", has_text=title)
    expect(row.locator(".conv-snippet")).to_have_text(f"创建了群“{title}”")
    added = httpx.post(
        f"{web.base}/api/v1/groups/{g.json()['id']}/members",
        headers=auth,
        json={"position_ids": [web.world.positions["sun"][0]]},
    )
    assert added.status_code == 200, added.text
    expect(row.locator(".conv-snippet")).to_have_text("1 人加入")  # live
    check_page(zhou, "inbox-system-note")
    zhou.reload()
    expect(row.locator(".conv-snippet")).to_have_text("1 人加入")  # from the list
    row.click()
    expect(zhou.locator("li.system")).to_have_text([f"创建了群“{title}”", "1 人加入"])
