// Forms being written — 发通知, 派任务, 上报 — kept per person in localStorage (`zzd.drafts.<id>`,
// one entry per form), so what was typed survives the session ending meanwhile (the token expired
// or revoked: sign in again), a reload, or a phone discarding the tab, as typed chat messages do
// (js/outbox.js). Photos are kept by the digests they were uploaded under. A draft goes when its
// form is sent or emptied, and with 退出 (js/session.js KEPT_PER_PERSON): unlike a chat message
// whose 发送 was pressed, nothing was asked to be sent, and the text would stay for the next person
// at the keyboard of a shared computer (docs/web-client.md "Sign-in and session").
import { getSession } from './api.js';

const key = () => 'zzd.drafts.' + getSession()?.personId;

function all() {
  try { return JSON.parse(localStorage.getItem(key()) || '{}') || {}; } catch { return {}; }
}

function save(drafts) {
  try {
    if (Object.keys(drafts).length) localStorage.setItem(key(), JSON.stringify(drafts));
    else localStorage.removeItem(key());
  } catch { /* full: the draft is not kept */ }
}

// The kept draft of `form` ('notice', 'task', 'report'), or null.
export function loadDraft(form) { return all()[form] || null; }

export function keepDraft(form, fields) { save({ ...all(), [form]: { ...fields, saved_at: new Date().toISOString() } }); }

export function dropDraft(form) {
  const drafts = all();
  if (!(form in drafts)) return;
  delete drafts[form];
  save(drafts);
}
