// Notices and tasks the person has seen: kept from events (notice.new, task.*), remembered in
// localStorage, and on a first start collected once from the event stream (`sync` from 0).
import { api, getSession } from './api.js';
import { conn } from './conn.js';
import { get, set } from './store.js';

const key = (name) => `zzd.${name}.${getSession()?.personId}`;

function loadList(name) {
  try { return JSON.parse(localStorage.getItem(key(name)) || '[]'); } catch { return []; }
}
function saveList(name, list) {
  try { localStorage.setItem(key(name), JSON.stringify(list.slice(0, 200))); } catch { /* full */ }
}

export function rememberSent(n) {
  const list = [n, ...loadList('sent').filter((x) => x.notice_id !== n.notice_id)]
    .sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
  saveList('sent', list);
  set({ sent: list.slice(0, 200) });
}

// A notice I sent from another device (or before this browser's storage was cleared) is known
// here only by its notice.progress events: look it up once and list it under 我发出的.
const asking = new Set();
function learnSent(ids) {
  const known = new Set(loadList('sent').map((n) => n.notice_id));
  for (const id of ids) {
    if (known.has(id) || asking.has(id)) continue;
    asking.add(id);
    api('/api/v1/notices/' + id).then((n) => {
      if (n.audience) {
        rememberSent({ notice_id: n.notice_id, title: n.title, created_at: n.created_at, priority: n.priority,
                       ack_required: n.ack_required, persons: n.audience.persons });
      }
    }, () => { asking.delete(id); });
  }
}

// A handover moves the receipts still owed through the position to the successor
// (docs/notices.md "Handover"): the predecessor is told by notice.transferred (`position_ids`),
// the successor gets a notice.new with `transferred: true`. The predecessor's list kept the
// notice 待确认 — counted on the 通知 tab for good — though it opened as 没有这条通知 and could
// no longer be confirmed; the successor's did not say why an older notice had just come.
export function handedAway(n) {
  const handed = n.handed_positions || [];
  return handed.length > 0 && (n.positions || []).every((p) => handed.includes(p.via_position_id ?? p.position_id));
}

// Still waiting for my confirmation.
export function waitingAck(n) { return n.ack_required && !n.acked && !n.recalled && !handedAway(n); }

function applyEvent(f, st) {
  const d = f.data || {};
  if (f.kind === 'notice.new') {
    const { transferred, ...head } = d;
    return { notices: [{ ...head, state: 'new', came_with_handover: !!transferred },
                       ...st.notices.filter((n) => n.notice_id !== d.notice_id)] };
  }
  if (f.kind === 'notice.transferred') {
    return { notices: st.notices.map((n) => (n.notice_id === d.notice_id
      ? { ...n, handed_positions: [...new Set([...(n.handed_positions || []), ...(d.position_ids || [])])] } : n)) };
  }
  if (f.kind === 'notice.recalled' || f.kind === 'notice.remind') {
    const flag = { 'notice.recalled': { recalled: true }, 'notice.remind': { reminded: true } }[f.kind];
    return { notices: st.notices.map((n) => (n.notice_id === d.notice_id ? { ...n, ...flag } : n)) };
  }
  if (f.kind === 'task.created' || f.kind === 'task.updated') {
    const t = { ...d.task, last: d.event, urgent: !!d.urgent };
    return { tasks: [t, ...st.tasks.filter((x) => x.task_id !== t.task_id)] };
  }
  return null;
}

export function markNotice(id, patch) {
  set((st) => ({ notices: st.notices.map((n) => (n.notice_id === id ? { ...n, ...patch } : n)) }));
  saveList('notices', get().notices);
  // Acknowledged: a banner about this notice alone has nothing more to say.
  if (patch.acked && get().banner?.href === '#/notice/' + id) set({ banner: null });
}

// The DINGs and reminders whose banner was shown in this sign-in (notice ids), kept per person
// across reloads and tabs, keyed by the session's sign-in time: signing in again starts afresh.
function announced() {
  try {
    const j = JSON.parse(localStorage.getItem(key('dinged')) || 'null');
    if (j && j.at === (getSession()?.signedInAt ?? null)) return new Set(j.ids);
  } catch { /* none */ }
  return new Set();
}
function announce(ids) {
  const all = [...new Set([...announced(), ...ids])].slice(-500);
  try { localStorage.setItem(key('dinged'), JSON.stringify({ at: getSession()?.signedInAt ?? null, ids: all })); } catch { /* full */ }
}

const dingText = (title, remind) => (remind ? '催办：' : '紧急通知（DING）：') + title;

// A DING interrupts whatever view is open: the banner says so and links to the notice, when it
// arrives and at each reminder until it is acknowledged (docs/notices.md: the DING ladder).
function ding(f, st) {
  const d = f.data || {};
  const known = st.notices.find((n) => n.notice_id === d.notice_id);
  if (f.kind === 'notice.new' && d.priority !== 'urgent') return;
  if (f.kind === 'notice.remind' && known && !waitingAck(known)) return;
  announce([d.notice_id]);
  set({ banner: { kind: 'warn', text: dingText(d.title || known?.title || '', f.kind === 'notice.remind'),
                  href: '#/notice/' + d.notice_id, link: '查看' } });
}

// At sign-in, the DINGs and reminders that came while no page was open: the first scan of the
// stream (after 退出, on a new device) applies their events without a banner, and a resumed
// socket replays only what came after the kept cursor. `owed`: the notices the server has just
// confirmed still waiting for my confirmation. Each is announced once per sign-in.
const SHOWN_TITLES = 3;
function announceOwed(owed) {
  const seen = announced();
  const due = get().notices.filter((n) => owed.has(n.notice_id) && waitingAck(n) && !seen.has(n.notice_id)
                                          && (n.priority === 'urgent' || n.reminded));
  if (due.length === 0) return;
  announce(due.map((n) => n.notice_id));
  const said = due.slice(0, SHOWN_TITLES).map((n) => dingText(n.title, n.reminded)).join('；');
  set({ banner: due.length === 1
    ? { kind: 'warn', text: said, href: '#/notice/' + due[0].notice_id, link: '查看' }
    : { kind: 'warn', text: `${due.length} 条紧急通知待确认：${said}${due.length > SHOWN_TITLES ? ' 等' : ''}`,
        href: '#/notices', link: '查看' } });
}

conn.onEvent((f) => {
  if (f.kind === 'notice.progress') learnSent([f.data.notice_id]);
  if (f.kind === 'notice.new' || f.kind === 'notice.remind') ding(f, get());
  const patch = applyEvent(f, get());
  if (!patch) return;
  set(patch);
  if (patch.notices) saveList('notices', get().notices);
  if (patch.tasks) saveList('tasks', get().tasks);
});

// The remembered lists (shown at once, offline too).
export function showRemembered() {
  set({ notices: loadList('notices'), tasks: loadList('tasks'), sent: loadList('sent') });
}

// No event tells this browser that I acknowledged on another device, or that a notice was
// recalled while it was closed: after sign-in, the newest notices still waiting for my
// confirmation are looked up once. Those still owed get the DING banner (announceOwed).
const CHECK_PENDING = 20;
async function checkPending() {
  const waiting = get().notices.filter(waitingAck).slice(0, CHECK_PENDING);
  const owed = new Set();
  await Promise.all(waiting.map((n) => api('/api/v1/notices/' + n.notice_id).then((v) => {
    const acked = v.receipts.length > 0 && v.receipts.every((r) => r.acked_at);
    if (acked || v.recalled_at) markNotice(n.notice_id, { acked, recalled: !!v.recalled_at });
    else owed.add(n.notice_id);
  }, () => {})));
  announceOwed(owed);
}

// Called once after sign-in: remembered lists, else one scan of the retained stream.
export async function loadNoticesAndTasks(upTo) {
  showRemembered();
  if (localStorage.getItem(key('scanned'))) { await checkPending(); return; }
  let since = 0;
  const st = { notices: [], tasks: [] };
  const sent = new Set();
  for (let page = 0; page < 10 && since < upTo; page++) {
    const j = await api(`/api/v1/sync?since=${since}&limit=500`);
    for (const ev of j.events) {
      if (ev.seq > upTo) break;
      if (ev.kind === 'notice.progress') sent.add(ev.data.notice_id);
      const p = applyEvent(ev, st);
      if (p) Object.assign(st, p);
    }
    since = j.next_since;
    if (!j.limited) break;
  }
  const have = new Set(get().notices.map((n) => n.notice_id));
  const haveT = new Set(get().tasks.map((t) => t.task_id));
  set((cur) => ({ notices: [...cur.notices, ...st.notices.filter((n) => !have.has(n.notice_id))],
                  tasks: [...cur.tasks, ...st.tasks.filter((t) => !haveT.has(t.task_id))] }));
  saveList('notices', get().notices);
  saveList('tasks', get().tasks);
  localStorage.setItem(key('scanned'), '1');
  learnSent([...sent]);
  await checkPending();
}
