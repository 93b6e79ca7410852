// Signed-in state: who I am, my positions, the inbox; kept current by the connection's events.
import { api, endSession, getSession, logout as apiLogout } from './api.js';
import { conn } from './conn.js';
import { forgetNames, learnPerson, learnPosition, loadPosition } from './names.js';
import { loadNoticesAndTasks, showRemembered } from './notices.js';
import { resendKept } from './outbox.js';
import { get, positionLabel, set } from './store.js';

const OFFLINE_KEY = 'zzd.inbox.';   // last synced inbox, for the offline shell
const PROFILE_KEY = 'zzd.profile.'; // last /me and /me/positions, likewise

function actingKey() { return 'zzd.acting.' + getSession()?.personId; }

export function setActing(positionId) {
  localStorage.setItem(actingKey(), String(positionId));
  set({ acting: positionId });
}

// The inbox shown, kept as the last synced one for the offline shell: loaded pages and what
// events changed since (a chat first learnt from a live message.new included), so a start
// without the network shows what the page last showed.
export function setInbox(rows) {
  set({ conversations: rows });
  try { localStorage.setItem(OFFLINE_KEY + getSession()?.personId, JSON.stringify(rows)); } catch { /* full */ }
}

export async function loadInbox() {
  const j = await api('/api/v1/conversations?limit=100');
  showInbox(j.conversations);
  set({ inboxCursor: j.next_cursor || null });
}

// The inbox comes 100 conversations a page, most recent first; 更多会话 asks for the next.
export async function loadMoreInbox() {
  const cursor = get().inboxCursor;
  if (!cursor) return;
  const j = await api('/api/v1/conversations?limit=100&cursor=' + encodeURIComponent(cursor));
  const have = new Set(get().conversations.map((c) => c.id));
  showInbox([...get().conversations, ...j.conversations.filter((c) => !have.has(c.id))]);
  set({ inboxCursor: j.next_cursor || null });
}

function showInbox(rows) {
  for (const c of rows) if (c.last_message) learnPerson(c.last_message.sender);
  setInbox(rows);
  // Titles of position threads: look the positions up (cached), re-render when they arrive.
  const ids = new Set();
  for (const c of rows) for (const k of ['position_id', 'peer_position_id']) if (c[k]) ids.add(c[k]);
  Promise.all([...ids].map((id) => loadPosition(id).catch(() => null))).then(() => set({}));
}

export async function start() {
  const s = getSession();
  // Offline first: show the last synced inbox at once.
  try {
    const cached = JSON.parse(localStorage.getItem(OFFLINE_KEY + s.personId) || 'null');
    if (cached) set({ conversations: cached });
    // ... and who I am and my positions (the acting position, 上报 and 任务 need them).
    const profile = JSON.parse(localStorage.getItem(PROFILE_KEY + s.personId) || 'null');
    if (profile) {
      profile.positions.forEach(learnPosition);
      set({ me: profile.me, positions: profile.positions, acting: actingOf(profile.positions) });
    }
    showRemembered();
  } catch { /* ignore */ }
  loaded = false;
  await load(true);
  resendKept();
}

// Who I am, my positions and the inbox. A start without the network shows the last synced
// state; the load is then tried again each time the connection comes back, until it succeeds.
let loaded = false;
let retryOnline = null;

async function load(first) {
  try {
    // Cursor before state: what happens after /me answers comes through the socket (resume from it).
    const me = await api('/api/v1/me');
    learnPerson(me);
    if (!conn.cursor || conn.cursor.epoch !== me.epoch) conn.setCursor(me.epoch, me.last_seq);
    const upTo = conn.cursor.seq;
    // The socket resumes from that cursor while the inbox loads; messages that arrive meanwhile
    // are applied again on top of the loaded inbox if it does not have them yet.
    early = [];
    if (first) conn.start();
    const [mp, inbox] = await Promise.all([api('/api/v1/me/positions'), api('/api/v1/conversations?limit=100')]);
    mp.positions.forEach(learnPosition);
    const positions = ownFirst(mp.positions, me.id);
    set({ me, positions, grants: mp.grants || [], acting: actingOf(positions) });
    try { localStorage.setItem(PROFILE_KEY + me.id, JSON.stringify({ me, positions })); } catch { /* full */ }
    showInbox(inbox.conversations);
    set({ inboxCursor: inbox.next_cursor || null });
    const missed = early.filter((f) => !get().conversations.some((c) => c.id === f.data.conversation_id && c.last_message_id >= f.data.id));
    early = null;
    missed.forEach(applyMessage);
    loaded = true;
    if (retryOnline) { retryOnline(); retryOnline = null; }
    if (!first && get().banner?.offline) set({ banner: null });
    loadNoticesAndTasks(upTo).catch(() => {});
  } catch (e) {
    early = null;
    if (first) {
      set({ banner: { kind: 'error', offline: true, text: '离线：显示上次同步的内容（' + (e.message || e) + '）' } });
      conn.start();
    }
    if (!retryOnline && getSession()) {
      retryOnline = conn.onStatus((st) => { if (st === 'online' && !loaded) load(false); });
    }
  }
}

function actingOf(positions) {
  const saved = Number(localStorage.getItem(actingKey()));
  return positions.some((p) => p.id === saved) ? saved : (positions[0]?.id ?? null);
}

// 主职 first: the positions I hold myself, then those I stand in for as deputy or acting
// (GET /api/v1/me/positions lists them by id).
function ownFirst(positions, meId) {
  const own = (p) => (p.holders || []).includes(meId);
  return [...positions.filter(own), ...positions.filter((p) => !own(p))];
}

// What the client keeps of a person for the offline shell (docs/web-client.md): message
// snippets, notices, tasks, names, reports. 退出 is someone leaving this browser — a shared
// township office computer, a handed-on phone — and all of it stayed in localStorage for the
// next person at the keyboard to read. The outbox stays: typed messages the server never
// answered are sent at the next sign-in (docs/web-client.md "Connection and resume"). Drafts of
// notices, tasks and reports go (js/drafts.js): nothing was asked to be sent.
const KEPT_PER_PERSON = ['inbox', 'profile', 'notices', 'tasks', 'sent', 'names', 'scanned', 'cursor', 'reports',
                         'dinged', 'drafts'];

function forget(personId) {
  if (personId == null) return;
  for (const k of KEPT_PER_PERSON) localStorage.removeItem(`zzd.${k}.${personId}`);
  forgetNames();
}

export async function logout() {
  const who = getSession()?.personId;
  conn.stop();
  loaded = false;
  if (retryOnline) { retryOnline(); retryOnline = null; }
  forget(who);         // before the sign-in page shows, not after the network answers
  await apiLogout();
  set({ me: null, positions: [], conversations: [], inboxCursor: null, notices: [], sent: [], tasks: [], acting: null, banner: null });
}

function applyMessage(f) {
  const d = f.data || {};
  const st = get();
  learnPerson(d.sender);
  const mine = st.me && d.sender && d.sender.id === st.me.id;
  const rows = st.conversations.slice();
  const i = rows.findIndex((c) => c.id === d.conversation_id);
  const last = { id: d.id, sender: d.sender, kind: d.kind || 'text', snippet: (d.body || '').slice(0, 80),
                 system: d.system, created_at: d.created_at, recalled: false };
  let row;
  if (i >= 0) {
    row = { ...rows[i] };
    rows.splice(i, 1);
  } else {
    row = { id: d.conversation_id, kind: d.conversation_kind, title: d.title || null, unread: 0, muted: !!d.muted,
            last_read_message_id: 0, position_id: d.position_id || null, peer_position_id: d.peer_position_id || null,
            peer_person_id: d.peer_person_id || null, via_position_id: null,
            peer_id: d.conversation_kind === 'direct' ? (mine ? d.recipient_id : d.sender.id) : undefined };
    const held = st.positions.map((p) => p.id);
    row.via_position_id = [row.position_id, row.peer_position_id].find((p) => p && held.includes(p)) || null;
    for (const k of ['position_id', 'peer_position_id']) if (row[k]) loadPosition(row[k]).then(() => set({}), () => {});
    // A group I was just added to: its event has no title, the group has.
    if (!row.title && (row.kind === 'group' || row.kind === 'unit')) groupTitle(row.id);
  }
  row.last_message_id = d.id;
  row.last_message = last;
  if (!mine && d.kind !== 'system') row.unread = (row.unread || 0) + 1;
  if (d.mentioned) row.mentioned = true;
  rows.unshift(row);
  setInbox(rows);
}

function groupTitle(id) {
  api('/api/v1/groups/' + id).then((g) => setInbox(
    get().conversations.map((c) => (c.id === id && !c.title ? { ...c, title: g.title } : c))), () => {});
}

let early = null;   // message.new events seen while the inbox loads

// Apply events to the inbox (the open chat and other views subscribe on their own).
conn.onEvent((f) => {
  const d = f.data || {};
  const st = get();
  if (f.kind === 'message.new') {
    if (early) early.push(f);
    applyMessage(f);
  } else if (f.kind === 'conversation.read') {
    setInbox(st.conversations.map((c) => (c.id === d.conversation_id
      ? { ...c, unread: 0, mentioned: false, unread_mentions: 0, last_read_message_id: d.last_read_message_id } : c)));
  } else if (f.kind === 'message.recalled' || f.kind === 'message.edited') {
    setInbox(st.conversations.map((c) => (c.last_message && c.last_message.id === d.message_id
      ? { ...c, last_message: { ...c.last_message, recalled: f.kind === 'message.recalled',
                                snippet: f.kind === 'message.edited' ? d.body.slice(0, 80) : '' } } : c)));
  } else if (f.kind === 'conversation.left') {
    setInbox(st.conversations.filter((c) => c.id !== d.conversation_id));
  } else if (f.kind === 'positions.changed' && st.me && d.person_id === st.me.id) {
    applyPositions(d);
  }
});

// A handover, an assignment or a retirement changed my seats: the header and the "as" choice
// follow at once (before, they kept the lost position until a reload, and a send as it failed
// with 无权执行此操作). The event lists all I hold now, as GET /api/v1/me/positions does.
function applyPositions(d) {
  const st = get();
  const before = st.positions;   // the store is updated in place: keep the old list for the lost ones' names
  const label = (id) => positionLabel(before.find((p) => p.id === id) || d.positions.find((p) => p.id === id));
  d.positions.forEach(learnPosition);
  const positions = ownFirst(d.positions, st.me.id);
  const acting = st.acting;
  set({ positions, acting: positions.some((p) => p.id === acting) ? acting : actingOf(positions) });
  try { localStorage.setItem(PROFILE_KEY + st.me.id, JSON.stringify({ me: st.me, positions })); } catch { /* full */ }
  const said = [...(d.lost || []).map((id) => '不再担任' + label(id)), ...(d.gained || []).map((id) => '新任' + label(id))];
  if (said.length) set({ banner: { kind: 'warn', text: '岗位变动：' + said.join('；') } });
}

conn.onStatus((status, detail) => {
  set({ status, statusDetail: detail });
  // The session was revoked (退出 elsewhere, the account disabled, refresh token reused): its
  // tokens are dead, so go back to the sign-in page and say why instead of staying in a shell
  // whose every request would fail.
  if (status === 'ended' && detail === 'revoked') {
    conn.stop();
    endSession('会话已结束（已在别处退出，或账号已停用），请重新登录');
  }
});

conn.onResync(async (why) => {
  set({ banner: { kind: 'warn', text: '服务器要求重新同步（' + why + '），已重新加载。' } });
  await loadInbox().catch(() => {});
  window.dispatchEvent(new CustomEvent('zzd-resync'));
});
