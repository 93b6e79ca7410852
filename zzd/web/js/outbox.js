// Messages typed but not yet acknowledged by the server, kept in localStorage until it answers,
// so neither a reload nor a phone discarding the tab during an outage loses them: the next
// start sends them again with the same client_msg_id (the server stores a message once).
//
// A send the server refused for good stays kept too, marked `failed` ({message, code,
// retryable}): it is not sent again by itself, and its conversation shows it as 发送失败 — after
// a reload as well — until the person chooses 重发 (resendFailed) or 删除 (dropKept).
import { getSession, newId } from './api.js';
import { conn } from './conn.js';

const key = () => 'zzd.outbox.' + getSession()?.personId;
const inflight = new Set();
const refusedHandlers = new Set();
// Sends given up because the session ended while they waited (no answer): kept as they were, so
// the next start sends them again, but failed on this page — client_msg_id -> {message, code,
// retryable} — so a view mounted later shows them 发送失败 as the views open then did, not 发送中
// for a send nothing is making any more.
const endedHere = new Map();

// (frame, error) => void for every send the server refused for good (or the session ended):
// told to every open view, since the view showing the message may not be the one that sent it —
// after a reload, resendKept sent it.
export function onSendRefused(fn) { refusedHandlers.add(fn); return () => refusedHandlers.delete(fn); }

// [{frame, shown, failed?}]: the sends not yet answered, and those refused for good.
export function keptSends() {
  try { return JSON.parse(localStorage.getItem(key()) || '[]'); } catch { return []; }
}

// How many sends `personId` left unsent, read without a session (the sign-in page says so).
export function keptCountOf(personId) {
  try { return JSON.parse(localStorage.getItem('zzd.outbox.' + personId) || '[]').filter((x) => !x.failed).length; } catch { return 0; }
}

function save(list) {
  try { localStorage.setItem(key(), JSON.stringify(list)); } catch { /* full: kept in memory only */ }
}

function forget(id) { save(keptSends().filter((x) => x.frame.client_msg_id !== id)); }

function markFailed(id, e) {
  const failed = { message: e.message, code: e.code || '', retryable: e.retryable === true };
  save(keptSends().map((x) => (x.frame.client_msg_id === id ? { ...x, failed } : x)));
}

// The pending bubble a kept send shows: 发送失败 with the reason when it was refused.
export function keptBubble(x) {
  const failed = x.failed || endedHere.get(x.frame.client_msg_id);
  return failed ? { ...x.shown, failed: failed.message, failedCode: failed.code, failedRetryable: failed.retryable } : x.shown;
}

// `shown` is the pending bubble the conversation shows until the message's own event arrives.
export function sendKept(frame, shown) {
  const id = frame.client_msg_id;
  if (shown) save([...keptSends().filter((x) => x.frame.client_msg_id !== id), { frame, shown }]);
  inflight.add(id);
  endedHere.delete(id);
  return conn.sendReliable(frame).then((r) => { forget(id); return r; }, (e) => {
    // Refused by the server: kept as failed, not sent again by itself. The session ended
    // instead (no answer): still kept as it was, and the next start sends it again; failed on
    // this page only.
    if (e.code === 'ended') endedHere.set(id, { message: e.message, code: e.code, retryable: false });
    else markFailed(id, e);
    for (const fn of refusedHandlers) fn(frame, e);
    throw e;
  }).finally(() => inflight.delete(id));
}

// After a start: whatever a previous page left unsent goes now (or once connected); what the
// server refused waits for 重发 or 删除.
export function resendKept() {
  for (const { frame, failed } of keptSends()) if (!failed && !inflight.has(frame.client_msg_id)) sendKept(frame).catch(() => {});
}

// 删除 on a failed send: no longer kept, so it does not come back after a reload.
export function dropKept(clientMsgId) { endedHere.delete(clientMsgId); forget(clientMsgId); }

// Refusals the server makes before it stores anything (its send runs in one transaction that
// rolls back on them), so the client_msg_id they answer names no stored message.
const REFUSED_UNSTORED = new Set(['not_found', 'forbidden', 'out_of_scope', 'invalid_text', 'invalid_frame',
  'invalid_json', 'invalid_body', 'bad_request', 'unknown_type', 'unknown_attachment']);

// 重发 on a failed send (`bubble` is what keptBubble or the view shows; its kept frame is looked
// up by client_msg_id). Returns {shown, sent}: the bubble to show instead (发送中) and the send.
//
// Which client_msg_id goes (docs/protocol.md "send"): the server stores at most one message per
// sender and client_msg_id and answers any later send of that id with the first message
// (`duplicate: true`), so the id is what makes a send safe to repeat.
// - The send may have been stored though this client never heard so: no answer (the session
//   ended, a give-up), an error marked `retryable` (`unavailable`, `rate_limited`), or
//   `internal_error` (a failure after the commit cannot be ruled out). A fresh id could then store
//   the message a second time, so it goes again with the same id: stored once either way.
// - The server refused it for good (not_found, forbidden, an invalid body …): it answers those
//   only from a transaction that stored nothing, so the old id names no message and a fresh id
//   cannot duplicate one. The resend is a new send, made by the person perhaps long after —
//   possibly to a recipient whose state changed meanwhile — and gets an id of its own, as a
//   message typed again would.
export function resendFailed(bubble) {
  const old = bubble.client_msg_id;
  const entry = keptSends().find((x) => x.frame.client_msg_id === old);
  const frame = entry ? entry.frame : frameOf(bubble);
  const final = !bubble.failedRetryable && REFUSED_UNSTORED.has(bubble.failedCode);
  const again = final ? { ...frame, client_msg_id: newId('m') } : frame;
  const base = entry ? entry.shown : bubble;
  const shown = { ...base, client_msg_id: again.client_msg_id, id: 'pending-' + again.client_msg_id, pending: true,
                  created_at: new Date().toISOString(), failed: undefined, failedCode: undefined, failedRetryable: undefined };
  if (again.client_msg_id !== old) forget(old);
  return { shown, sent: sendKept(again, shown) };
}

// The frame of a bubble whose kept copy is gone (storage full): the fields a send carries.
function frameOf(b) {
  const f = { type: 'send', client_msg_id: b.client_msg_id, body: b.body };
  for (const k of ['conversation_id', 'to', 'to_position', 'as_position', 'mention_persons', 'mention_positions']) {
    if (b[k] != null) f[k] = b[k];
  }
  if (b.reply_to) f.reply_to = b.reply_to.id ?? b.reply_to;
  if ((b.attachments || []).length) f.attachments = b.attachments;
  return f;
}
