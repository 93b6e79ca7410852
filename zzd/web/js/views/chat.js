// A conversation: history, live messages, read state, reply / edit / recall, mentions, photos.
import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, newId, upload } from '../api.js';
import { conn } from '../conn.js';
import { dropKept, keptBubble, keptSends, onSendRefused, resendFailed, sendKept } from '../outbox.js';
import { learnPerson, loadPosition, personName, positionTitle } from '../names.js';
import { setInbox } from '../session.js';
import { get, go, set, useStore } from '../store.js';
import { systemText } from '../system.js';
import { conversationTitle } from './inbox.js';
import { MentionPicker } from './mentions.js';
import { Photo } from './photo.js';

function time(iso) {
  const d = new Date(iso);
  return d.toLocaleTimeString('zh-CN', { hour: '2-digit', minute: '2-digit' });
}

// The chat the next send from #/person/N or #/position/N goes to, if it exists already: the
// direct chat with N; at #/position/N the thread of N and the position written as (`asPosition`:
// the acting one when 以岗位身份发送 is ticked), else the thread of N and me — the thread the
// send's frame names (inThread), whichever position is acting.
function findExisting(st, toPosition, toPerson, asPosition) {
  if (toPerson != null) return st.conversations.find((c) => c.kind === 'direct' && c.peer_id === toPerson);
  const f = { to_position: toPosition, as_position: asPosition };
  return st.conversations.find((c) => c.kind === 'position' && inThread(c, f, st.me));
}

// The kept sends (outbox.js) this view shows: those it addresses — a conversation by id,
// #/person/N by `to`, #/position/N by `to_position` — and in a direct chat or position thread
// those sent before the chat was known, which carry its peer or position but no conversation id.
function keptHere(id, toPosition, toPerson, conv, me) {
  const here = (f) => {
    if (!id) return toPerson != null ? f.to === toPerson : f.to_position === toPosition;
    if (f.conversation_id === id) return true;
    if (f.conversation_id != null || !conv) return false;
    if (conv.kind === 'direct') return f.to != null && f.to === conv.peer_id;
    return conv.kind === 'position' && f.to_position != null && inThread(conv, f, me);
  };
  return keptSends().filter((x) => here(x.frame)).map(keptBubble);
}

// Whether a send with `to_position` goes to thread `c` (the server's thread key, docs/conversations.md):
// the thread between that position and the one it is written as (`as_position`), else between
// that position and me.
function inThread(c, f, me) {
  const pair = (a, b) => [a, b].sort((x, y) => x - y).join();
  if (f.as_position != null) return c.peer_person_id == null && pair(c.position_id, c.peer_position_id) === pair(f.to_position, f.as_position);
  return me != null && c.position_id === f.to_position && c.peer_person_id === me.id;
}

// `cur` with the pending bubbles of `more` it does not show yet (the same send, by client_msg_id,
// may come both kept and carried from #/person/N or #/position/N), oldest first; `cur` itself
// when nothing is new.
function withPending(cur, more) {
  const add = more.filter((m) => !cur.some((p) => p.client_msg_id === m.client_msg_id));
  if (!add.length) return cur;
  return [...cur, ...add].sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)));
}

// Live messages and history say `mentioned`; `mentions` (whom the message names: me, or a position
// I hold or stand in for) is the fallback for a server that does not (docs/conversations.md "mentions").
function mentionsMe(m, me, positions) {
  if (m.mentioned != null) return m.mentioned;
  const named = m.mentions || {};
  return (named.persons || []).includes(me?.id) || (named.positions || []).some((p) => positions.some((x) => x.id === p));
}

// What #/person/N or #/position/N holds when the view moves to #/chat/id — the text being
// typed and the messages sent from it still shown as 发送中 — carried to the chat's view:
// conversation id -> () => {text, pending}. A getter, read when the chat's view mounts, so
// whatever was typed or sent between the move and the mount goes along too (the old view is
// unmounted after the new one mounts).
const carried = new Map();

export function Chat({ id, toPosition, toPerson }) {
  const { me, conversations, acting, positions } = useStore((s) => s);
  const conv = id ? conversations.find((c) => c.id === id) : null;
  const [messages, setMessages] = useState([]);
  const [arrived] = useState(() => {
    const from = id ? carried.get(id) : undefined;
    carried.delete(id);
    return from ? from() : { text: '', pending: [] };
  });
  // Sent, not yet confirmed by an event (or refused: 发送失败); a previous page's kept ones
  // (outbox.js) and those carried from #/person/N or #/position/N included.
  const [pending, setPending] = useState(() => withPending(keptHere(id, toPosition, toPerson, conv, me), arrived.pending));
  // A direct chat or a position thread shows too the kept sends made at #/person/N or
  // #/position/N before the chat was known (they carry `to` or `to_position`, no conversation id):
  // sent there during an outage, the view moved here (from the first message's answer, or the
  // inbox), then reloaded before the server answered. The chat's peer is known once the inbox
  // is, which may be after the mount.
  const convKey = conv ? [conv.kind, conv.peer_id, conv.position_id, conv.peer_position_id, conv.peer_person_id].join() : '';
  useEffect(() => {
    if (!conv) return;
    const kept = keptHere(id, toPosition, toPerson, conv, me);
    setPending((cur) => withPending(cur, kept));
  }, [id, convKey, me && me.id]);
  const [nextBefore, setNextBefore] = useState(null);
  const [text, setText] = useState(arrived.text);
  const typed = useRef('');
  typed.current = text;
  const shownPending = useRef(pending);
  shownPending.current = pending;
  // Where #/person/N or #/position/N went once its chat was known (null: still here).
  const movedTo = useRef(null);
  const mounted = useRef(true);
  useEffect(() => {
    mounted.current = true;
    // A send refused by the server, whichever view sent it (this one, #/person/N before the move
    // here, or the outbox after a reload): 发送失败 with the reason.
    const offRefused = onSendRefused((frame, err) => setPending((cur) => cur.map((p) => (
      p.client_msg_id === frame.client_msg_id
        ? { ...p, failed: err.message, failedCode: err.code || '', failedRetryable: err.retryable === true } : p))));
    return () => {
      mounted.current = false;
      offRefused();
      // Left for another view before the chat's view mounted: nothing to carry any more.
      if (movedTo.current != null && location.hash !== '#/chat/' + movedTo.current) carried.delete(movedTo.current);
    };
  }, []);

  // #/person/N or #/position/N becomes #/chat/id, with what was typed and sent here.
  function moveTo(cid) {
    if (id || !mounted.current || movedTo.current != null) return;
    movedTo.current = cid;
    carried.set(cid, () => ({ text: typed.current, pending: shownPending.current }));
    go('#/chat/' + cid);
  }
  const [replyTo, setReplyTo] = useState(null);
  const [editing, setEditing] = useState(null);
  const [mentions, setMentions] = useState({ persons: [], positions: [] });
  const [photos, setPhotos] = useState([]);
  const [error, setError] = useState('');
  const [peerRead, setPeerRead] = useState(0);
  const [reads, setReads] = useState(null);          // {message_id, read, unread}
  const [asPosition, setAsPosition] = useState(true);
  const listRef = useRef(null);
  const marked = useRef(0);

  // The position a send from #/position/N is written as: the acting one, when 以岗位身份发送 is
  // ticked (and it is not N itself); else none, and the send is mine.
  const sendAs = (st) => (toPosition && asPosition && st.acting && st.acting !== toPosition ? st.acting : null);

  // A thread or direct chat that already exists opens by its id: the one the next send goes to,
  // so with 以岗位身份发送 unticked a thread of N and the acting position learnt meanwhile (its
  // peer wrote, the inbox came) is not where the view goes.
  useEffect(() => {
    if (id) return;
    const st = get();
    const existing = findExisting(st, toPosition, toPerson, sendAs(st));
    if (existing) moveTo(existing.id);  // the inbox (or the first message's event) came after the typing began
  }, [id, toPosition, toPerson, conversations.length]);

  // The position written to, looked up for its title. Offline, or with the server unreachable,
  // the lookup fails without saying anything about the position: the view shows what it last
  // synced (the remembered title) with a note, and looks again once connected. Only the
  // server's 404 is 没有这个岗位.
  const [lookup, setLookup] = useState('');   // '' | 'offline' | 'missing' | another refusal's text
  useEffect(() => {
    if (id || !toPosition) return undefined;
    let live = true;
    const look = () => loadPosition(toPosition).then(() => { if (live) { setLookup(''); set({}); } }, (e) => {
      if (!live) return;
      setLookup(e.code === 'network' ? 'offline' : e.status === 404 ? 'missing' : e.message);
    });
    look();
    const off = conn.onStatus((st) => { if (st === 'online') look(); });
    return () => { live = false; off(); };
  }, [id, toPosition]);

  async function loadHistory(before) {
    const q = new URLSearchParams({ limit: '50' });
    if (before) q.set('before', String(before));
    const j = await api(`/api/v1/conversations/${id}/messages?${q}`);
    j.messages.forEach((m) => learnPerson(m.sender));
    const older = j.messages.slice().reverse();
    setMessages((cur) => {
      const seen = new Set(cur.map((m) => m.id));
      return [...older.filter((m) => !seen.has(m.id)), ...cur];
    });
    setNextBefore(j.next_before);
  }

  // A group row learnt from an event has no title yet: ask the group.
  useEffect(() => {
    if (!conv || conv.title || (conv.kind !== 'group' && conv.kind !== 'unit')) return;
    api('/api/v1/groups/' + id).then((g) => setInbox(
      get().conversations.map((c) => (c.id === id ? { ...c, title: g.title } : c))), () => {});
  }, [id, conv && conv.kind, conv && conv.title]);

  useEffect(() => {
    if (!id) return undefined;
    setMessages([]);
    // Opened offline (or with the server down): say so, and load again once connected.
    let loaded = false;
    const first = () => loadHistory().then(() => { loaded = true; setError(''); }, (e) => setError(e.message));
    first();
    const offStatus = conn.onStatus((st) => { if (st === 'online' && !loaded) first(); });
    const onResync = () => { setMessages([]); loadHistory().catch(() => {}); };
    window.addEventListener('zzd-resync', onResync);
    const off = conn.onEvent((f) => {
      const d = f.data || {};
      if (d.conversation_id !== id) return;
      if (f.kind === 'message.new') {
        setMessages((cur) => (cur.some((m) => m.id === d.id) ? cur : [...cur, d]));
        setPending((cur) => cur.filter((p) => p.client_msg_id !== d.client_msg_id));
      } else if (f.kind === 'message.edited') {
        setMessages((cur) => cur.map((m) => (m.id === d.message_id ? { ...m, body: d.body, edited_at: d.edited_at } : m)));
      } else if (f.kind === 'message.recalled') {
        setMessages((cur) => cur.map((m) => (m.id === d.message_id ? { ...m, body: '', recalled_at: d.recalled_at, attachments: [] } : m)));
      } else if (f.kind === 'peer.read') {
        setPeerRead((n) => Math.max(n, d.last_read_message_id));
      }
    });
    return () => { off(); offStatus(); window.removeEventListener('zzd-resync', onResync); };
  }, [id]);

  // 已读/未读 of a direct chat: peer.read events say what the peer reads from now on; what they
  // had read before the chat was opened comes from who has read my newest message.
  const isDirect = conv?.kind === 'direct';
  const myLast = isDirect ? [...messages].reverse().find((m) => m.sender?.id === me?.id && !m.recalled_at) : null;
  useEffect(() => {
    if (!myLast || peerRead >= myLast.id) return;
    api(`/api/v1/conversations/${id}/messages/${myLast.id}/reads`).then((j) => {
      if (j.unread.length === 0 && j.read.length > 0) setPeerRead((n) => Math.max(n, myLast.id));
    }, () => {});
  }, [id, isDirect, myLast && myLast.id]);

  // A message that came while the tab was hidden is read when the tab is shown again.
  const [visible, setVisible] = useState(document.visibilityState !== 'hidden');
  useEffect(() => {
    const seen = () => setVisible(document.visibilityState !== 'hidden');
    document.addEventListener('visibilitychange', seen);
    return () => document.removeEventListener('visibilitychange', seen);
  }, []);

  // Keep the newest message in view; mark what is shown as read.
  useEffect(() => {
    const el = listRef.current;
    if (el) el.scrollTop = el.scrollHeight;
    const last = messages[messages.length - 1];
    if (!id || !last || last.id <= marked.current || !visible) return;
    marked.current = last.id;
    api(`/api/v1/conversations/${id}/read`, { method: 'POST', body: { message_id: last.id } }).catch(() => {});
    setInbox(get().conversations.map((c) => (c.id === id ? { ...c, unread: 0, mentioned: false, unread_mentions: 0 } : c)));
  }, [messages.length, pending.length, visible]);

  async function addPhotos(e) {
    setError('');
    try {
      for (const f of e.target.files) {
        const r = await upload(f);
        setPhotos((cur) => [...cur, r.digest]);
      }
    } catch (err) {
      setError('照片上传失败：' + err.message);
    }
    e.target.value = '';
  }

  async function submit(e) {
    e.preventDefault();
    const body = text.trim();
    if (!body && photos.length === 0) return;
    setError('');
    if (editing) {
      try {
        await conn.request({ type: 'edit', message_id: editing.id, body });
        setEditing(null);
        setText('');
      } catch (err) { setError(err.message); }
      return;
    }
    const frame = { type: 'send', client_msg_id: newId('m'), body };
    if (id) frame.conversation_id = id;
    else if (toPosition) {
      frame.to_position = toPosition;
      const as = sendAs(get());
      if (as) frame.as_position = as;
    } else frame.to = toPerson;
    if (replyTo) frame.reply_to = replyTo.id;
    if (mentions.persons.length) frame.mention_persons = mentions.persons.map((p) => p.id);
    if (mentions.positions.length) frame.mention_positions = mentions.positions.map((p) => p.id);
    if (photos.length) frame.attachments = photos;
    const shown = { ...frame, id: 'pending-' + frame.client_msg_id, sender: { id: me?.id, name: me?.name },
                    created_at: new Date().toISOString(), pending: true, reply_to: replyTo, attachments: photos };
    setPending((cur) => [...cur, shown]);
    setText(''); setReplyTo(null); setMentions({ persons: [], positions: [] }); setPhotos([]);
    try {
      const r = await sendKept(frame, shown);
      moveTo(r.conversation_id);
    } catch { /* marked 发送失败 by onSendRefused */ }
  }

  // 重发 a failed send: its bubble is 发送中 again (under the id resendFailed chose) until its
  // event, or 发送失败 again if refused again.
  async function resend(m) {
    const { shown, sent } = resendFailed(m);
    setPending((cur) => cur.map((p) => (p.client_msg_id === m.client_msg_id ? shown : p)));
    try {
      const r = await sent;
      moveTo(r.conversation_id);
    } catch { /* marked 发送失败 by onSendRefused */ }
  }

  // 删除 a failed send: gone from the view and from the kept sends.
  function drop(m) {
    dropKept(m.client_msg_id);
    setPending((cur) => cur.filter((p) => p.client_msg_id !== m.client_msg_id));
  }

  async function recall(m) {
    try { await conn.request({ type: 'recall', message_id: m.id }); } catch (err) { setError(err.message); }
  }

  async function showReads(m) {
    try {
      const j = await api(`/api/v1/conversations/${id}/messages/${m.id}/reads`);
      setReads({ message_id: m.id, ...j });
    } catch (err) { setError(err.message); }
  }

  const title = conv ? conversationTitle(conv, me, acting)
    : toPosition ? positionTitle(toPosition) : toPerson != null ? personName(toPerson) : '会话';
  const isGroup = conv && (conv.kind === 'group' || conv.kind === 'unit');
  // A resent message the server already had (its answer was lost) comes back in the history, not as an event.
  const all = [...messages, ...pending.filter((p) => !messages.some((m) => m.client_msg_id === p.client_msg_id))];
  const seenPersons = new Map();
  for (const m of messages) if (m.sender && m.sender.id !== me?.id) seenPersons.set(m.sender.id, m.sender.name);
  const threadPositions = [conv?.position_id, conv?.peer_position_id, toPosition].filter(Boolean);

  return html`
    <section class="chat" aria-labelledby="chat-h">
      <div class="row-between">
        <h2 id="chat-h">${title}</h2>
        <a href="#/inbox" class="link">返回</a>
      </div>
      ${nextBefore && html`<button type="button" class="link" onClick=${() => loadHistory(nextBefore)}>更早的消息</button>`}
      <ol class="messages" ref=${listRef} aria-label="消息记录" aria-live="polite">
        ${all.map((m) => {
          const mine = m.sender && me && m.sender.id === me.id;
          if (m.kind === 'system') return html`<li class="system" key=${m.id}>${systemText(m)}</li>`;
          return html`
            <li key=${m.id} class=${'msg' + (mine ? ' mine' : '') + (!mine && mentionsMe(m, me, positions) ? ' mentioned' : '')} data-message=${m.id}>
              <div class="meta">
                <span class="sender">${m.sender?.name || ''}</span>
                ${m.sender?.position_id && html`<span class="as">（${positionTitle(m.sender.position_id)}）</span>`}
                <time datetime=${m.created_at}>${time(m.created_at)}</time>
                ${m.edited_at && !m.recalled_at && html`<span class="muted">（已编辑）</span>`}
              </div>
              ${m.reply_to && html`<blockquote class="quote">${m.reply_to.snippet || '（已撤回）'}</blockquote>`}
              ${m.recalled_at ? html`<p class="body muted">（消息已撤回）</p>` : html`<p class="body">${m.body}</p>`}
              ${(m.attachments || []).length > 0 && !m.recalled_at && html`
                <div class="photos">${m.attachments.map((d) => html`<${Photo} digest=${d} />`)}</div>`}
              ${m.pending && html`<span class="muted">${m.failed ? '发送失败：' + m.failed : '发送中…'}</span>`}
              ${m.pending && m.failed && html`
                <div class="actions">
                  <button type="button" class="link" onClick=${() => resend(m)}>重发</button>
                  <button type="button" class="link" onClick=${() => drop(m)}>删除</button>
                </div>`}
              ${!m.pending && !m.recalled_at && html`
                <div class="actions">
                  <button type="button" class="link" onClick=${() => setReplyTo(m)}>回复</button>
                  ${mine && html`<button type="button" class="link" onClick=${() => { setEditing(m); setText(m.body); }}>编辑</button>
                    <button type="button" class="link" onClick=${() => recall(m)}>撤回</button>`}
                  ${mine && isGroup && html`<button type="button" class="link" onClick=${() => showReads(m)}>谁读了</button>`}
                  ${mine && conv?.kind === 'direct' && html`<span class="muted read-state">${peerRead >= m.id ? '已读' : '未读'}</span>`}
                </div>`}
              ${reads && reads.message_id === m.id && html`
                <div class="reads" role="status">已读 ${reads.read.length}：${reads.read.map(readName).join('、') || '无'}；
                  未读 ${reads.unread.length}：${reads.unread.map(readName).join('、') || '无'}</div>`}
            </li>`;
        })}
      </ol>
      ${lookup === 'missing' && html`<p class="error" role="alert">没有这个岗位</p>`}
      ${lookup === 'offline' && html`<p class="muted" role="status" data-position-offline>离线：岗位信息显示上次同步的内容，联网后更新；现在写的消息联网后发出。</p>`}
      ${lookup && lookup !== 'missing' && lookup !== 'offline' && html`<p class="error" role="alert">${lookup}</p>`}
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <form class="composer" onSubmit=${submit}>
        ${replyTo && html`<p class="quote">回复 ${replyTo.sender?.name}：${(replyTo.body || '').slice(0, 40)}
          <button type="button" class="link" onClick=${() => setReplyTo(null)}>取消</button></p>`}
        ${editing && html`<p class="quote">编辑消息 <button type="button" class="link" onClick=${() => { setEditing(null); setText(''); }}>取消</button></p>`}
        ${(mentions.persons.length > 0 || mentions.positions.length > 0) && html`<p class="chips">
          ${[...mentions.persons.map((p) => '@' + p.name), ...mentions.positions.map((p) => '@' + p.name)].map((t) => html`<span class="chip">${t}</span>`)}</p>`}
        ${photos.length > 0 && html`<div class="photos">${photos.map((d) => html`<${Photo} digest=${d} />`)}</div>`}
        ${!id && toPosition && acting && acting !== toPosition && html`
          <label class="inline"><input type="checkbox" checked=${asPosition} onChange=${(e) => setAsPosition(e.target.checked)} />
            以岗位身份发送（${positionTitle(acting)}）</label>`}
        <label class="sr-only" for="composer-text">消息</label>
        <textarea id="composer-text" rows="2" value=${text} onInput=${(e) => setText(e.target.value)}
          placeholder="输入消息" maxlength="5000"
          onKeyDown=${(e) => { if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); e.target.form.requestSubmit(); } }}></textarea>
        <div class="composer-row">
          <${MentionPicker} persons=${[...seenPersons].map(([pid, name]) => ({ id: pid, name }))} positions=${threadPositions}
            onPick=${(kind, item) => { setMentions((cur) => ({ ...cur, [kind]: [...cur[kind], item] })); setText((t) => t + '@' + item.name + ' '); }} />
          ${!editing && (id || toPosition) && html`<label class="button small file">照片
            <input type="file" accept="image/*" capture="environment" multiple onChange=${addPhotos} /></label>`}
          <button type="submit">${editing ? '保存' : '发送'}</button>
        </div>
      </form>
    </section>`;
}

function readName(r) {
  if (typeof r === 'object' && r) return r.name || personName(r.id ?? r.person_id);
  return personName(r);
}
