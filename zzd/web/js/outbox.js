// Messages typed but not yet acknowledged by the server, kept in localStorage until it answers,
// so neither a reload nor a phone discarding the tab during an outage loses them: the next
// start sends them again with the same client_msg_id (the server stores a message once).
import { getSession } from './api.js';
import { conn } from './conn.js';

const key = () => 'zzd.outbox.' + getSession()?.personId;
const inflight = new Set();
const refusedHandlers = new Set();

// (frame, error) => void for every send the server refused for good (or the session ended):
// told to every open view, since the view showing the message may not be the one that sent it —
// after a reload, resendKept sent it.
export function onSendRefused(fn) { refusedHandlers.add(fn); return () => refusedHandlers.delete(fn); }

export function keptSends() {
  try { return JSON.parse(localStorage.getItem(key()) || '[]'); } catch { return []; }
}

function save(list) {
  try { localStorage.setItem(key(), JSON.stringify(list)); } catch { /* full: kept in memory only */ }
}

function forget(id) { save(keptSends().filter((x) => x.frame.client_msg_id !== id)); }

// `shown` is the pending bubble the conversation shows until the message's own event arrives.
export function sendKept(frame, shown) {
  const id = frame.client_msg_id;
  if (shown) save([...keptSends().filter((x) => x.frame.client_msg_id !== id), { frame, shown }]);
  inflight.add(id);
  return conn.sendReliable(frame).then((r) => { forget(id); return r; }, (e) => {
    if (e.code !== 'ended') forget(id);      // refused by the server: not sent again
    for (const fn of refusedHandlers) fn(frame, e);
    throw e;
  }).finally(() => inflight.delete(id));
}

// After a start: whatever a previous page left unsent goes now (or once connected).
export function resendKept() {
  for (const { frame } of keptSends()) if (!inflight.has(frame.client_msg_id)) sendKept(frame).catch(() => {});
}
