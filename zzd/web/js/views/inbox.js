// 消息: the inbox — direct chats, position threads (grouped by the position they came to), groups.
import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { loadMoreInbox } from '../session.js';
import { personName, positionTitle } from '../names.js';
import { positionById, positionLabel, useStore } from '../store.js';
import { systemText } from '../system.js';

export function conversationTitle(c, me, acting) {
  if (c.title) return c.title;
  if (c.kind === 'direct') {
    const peer = c.peer_id ?? (c.last_message && c.last_message.sender.id !== me?.id ? c.last_message.sender.id : null);
    return peer != null ? personName(peer) : '私聊';
  }
  if (c.kind === 'position') {
    // Titled by the other side: the position written to, or the person / position writing to mine.
    const mineSide = c.via_position_id || acting;
    if (c.position_id && c.position_id !== mineSide) return positionTitle(c.position_id);
    if (c.peer_position_id) return positionTitle(c.peer_position_id);
    if (c.peer_person_id) return personName(c.peer_person_id) + ' → ' + positionTitle(c.position_id);
    return positionTitle(c.position_id);
  }
  if (c.kind === 'unit') return '部门群';
  return '群聊';
}

// A system note reads as what happened, in Chinese, not as something its actor wrote.
function snippet(last) {
  if (!last) return '';
  if (last.recalled) return '（已撤回）';
  if (last.kind === 'system') return systemText(last);
  return `${last.sender?.name || ''}：${last.snippet}`;
}

const KIND = { direct: '私聊', position: '岗位', unit: '部门群', group: '群聊' };

export function Inbox() {
  const { conversations, me, acting, inboxCursor } = useStore((s) => s);
  const [more, setMore] = useState({ busy: false, error: '' });
  function loadMore() {
    setMore({ busy: true, error: '' });
    loadMoreInbox().then(() => setMore({ busy: false, error: '' }), (e) => setMore({ busy: false, error: e.message }));
  }
  return html`
    <section class="inbox" aria-labelledby="inbox-h">
      <div class="row-between">
        <h2 id="inbox-h">消息</h2>
        <span><a class="button small" href="#/group/new">建群</a> <a class="button small" href="#/search">找岗位</a></span>
      </div>
      ${conversations.length === 0 && html`<p class="muted">还没有消息。用“找岗位”给一个岗位发消息。</p>`}
      <ul class="list" aria-label="会话列表">
        ${conversations.map((c) => {
          const via = c.via_position_id ? positionById(c.via_position_id) : null;
          const last = c.last_message;
          return html`
            <li key=${c.id}>
              <a class="conv" href=${'#/chat/' + c.id} data-conversation=${c.id}>
                <span class="conv-title">
                  <span class="tag">${KIND[c.kind] || c.kind}</span>
                  ${conversationTitle(c, me, acting)}
                  ${c.unread > 0 && html`<span class="badge" aria-label=${c.unread + ' 条未读'}>${c.unread}</span>`}
                  ${(c.mentioned || c.unread_mentions > 0) && html`<span class="mention-flag">有人@我</span>`}
                </span>
                <span class="conv-snippet">${snippet(last)}</span>
                ${via && html`<span class="via">发给：${positionLabel(via)}</span>`}
              </a>
            </li>`;
        })}
      </ul>
      ${inboxCursor && html`<button type="button" class="small" disabled=${more.busy} onClick=${loadMore}>
        ${more.busy ? '正在加载…' : '更多会话'}</button>`}
      ${more.error && html`<p class="error" role="alert">${more.error}</p>`}
    </section>`;
}
