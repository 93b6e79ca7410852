// One small observable state for the whole client, read with a hook.
import { useEffect, useState } from 'preact/hooks';

const state = {
  me: null,             // {id, login, name}
  positions: [],        // GET /api/v1/me/positions → positions
  acting: null,         // position id the person acts as (主职 first)
  conversations: [],    // inbox rows (docs/conversations.md "Inbox")
  inboxCursor: null,    // next_cursor of the last inbox page, or null: all loaded
  notices: [],          // notice.new heads received, newest first
  sent: [],             // notices I sent (docs/web-client.md "Views": 通知)
  tasks: [],            // task heads from events / the board
  status: 'offline',    // connection status
  statusDetail: '',
  banner: null,         // {kind, text}
  route: location.hash || '#/inbox',
};
const subs = new Set();

export function get() { return state; }

export function set(patch) {
  Object.assign(state, typeof patch === 'function' ? patch(state) : patch);
  for (const fn of subs) fn();
}

export function useStore(pick) {
  const [, force] = useState(0);
  useEffect(() => {
    const fn = () => force((n) => n + 1);
    subs.add(fn);
    return () => subs.delete(fn);
  }, []);
  return pick(state);
}

window.addEventListener('hashchange', () => set({ route: location.hash || '#/inbox' }));

export function go(hash) {
  if (location.hash === hash) set({ route: hash }); else location.hash = hash;
}

// A unit as a person tells it apart: its name, and for a grid its village's too. Grids are named
// 第1网格, 第2网格 … in every village, so a grid worker holding 第1网格 of two villages saw two
// identical 专职网格员 · 第1网格 in the acting-position menu, on notices and on tasks. The village
// comes after the grid: where a phone's header cuts the label short, the grid's own name stays.
export function unitLabel(path) {
  const p = path || [];
  const last = p[p.length - 1] || '';
  return p.length === 6 ? `${last}（${p[4]}）` : last;
}

export function positionLabel(p) {
  if (!p) return '';
  return `${p.role} · ${unitLabel(p.unit_path)}`;
}

export function positionById(id) {
  return state.positions.find((p) => p.id === id) || null;
}
