// What the forms that send something (发通知, 派任务, 上报, a task's action) share: photos uploaded
// as they are added, a send that shows its refusal in the form's words and is busy meanwhile, and
// (发通知, 派任务, 上报) the draft kept while it is written (js/drafts.js).
import { html } from 'htm/preact';
import { useLayoutEffect, useMemo, useState } from 'preact/hooks';
import { upload } from '../api.js';
import { dropDraft, keepDraft, loadDraft } from '../drafts.js';

// Photos added to a form: each is uploaded at once (POST /api/v1/uploads) and the form keeps its
// digest, to send in `attachments`/`photos`. `initial`: digests already uploaded (a kept draft).
// `onError(err)` says what failed.
export function usePhotos(onError, initial = []) {
  const [photos, setPhotos] = useState(initial);
  async function add(e) {
    const files = [...e.target.files];
    e.target.value = '';
    try {
      for (const f of files) {
        const r = await upload(f);
        setPhotos((c) => (c.includes(r.digest) ? c : [...c, r.digest]));
      }
    } catch (err) { onError(err); }
  }
  return [photos, setPhotos, add];
}

// A form's submit handler around `send` (which throws to refuse: an ApiError from the server, or
// an Error whose message is the form's own words). `textOf` turns a refusal into what the form
// shows. Busy from the submit until a refusal; a send that succeeds moves on to another view.
export function useSubmit(send, textOf = (e) => e.message) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  async function submit(e) {
    e.preventDefault();
    setError('');
    setBusy(true);
    try {
      await send();
    } catch (err) {
      setError(textOf(err));
      setBusy(false);
    }
  }
  return { busy, error, setError, submit };
}

// A form whose draft is kept (js/drafts.js): `view` gets the kept draft (or null) and `discard`,
// which drops it and starts the form afresh.
export function Drafted({ form, view: View }) {
  const [round, setRound] = useState(0);
  const draft = useMemo(() => loadDraft(form), [round]);
  return html`<${View} key=${round} draft=${draft} discard=${() => { dropDraft(form); setRound((n) => n + 1); }} />`;
}

// Keeps `fields` as the form's draft on every change; a form emptied (`blank`) keeps none. A layout
// effect: it runs as the change renders, in the task of the keystroke, so a page closed (or a tab
// discarded) right after it keeps it too; a plain effect ran a frame later and lost it.
export function useDraft(form, fields, blank) {
  const json = JSON.stringify(fields);
  useLayoutEffect(() => { if (blank) dropDraft(form); else keepDraft(form, fields); }, [json, blank]);
}

// Says that a kept draft was restored, and offers to start afresh.
export function DraftNote({ draft, discard }) {
  if (!draft) return null;
  const d = new Date(draft.saved_at);
  const at = `${d.getMonth() + 1}月${d.getDate()}日 ${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
  return html`<p class="muted" role="status" data-draft>已恢复未发出的草稿（${at}）
    <button type="button" class="link" onClick=${discard}>清空草稿</button></p>`;
}

// A <input type=datetime-local> value (local wall time, no zone) as ISO 8601 with the browser's
// offset, as the API reads every time (发通知's 截止时间, 派任务's 截止时间); null for empty.
export function localIso(value) {
  if (!value) return null;
  const d = new Date(value);
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? '+' : '-';
  const hh = String(Math.floor(Math.abs(off) / 60)).padStart(2, '0');
  const mm = String(Math.abs(off) % 60).padStart(2, '0');
  return `${value.length === 16 ? value + ':00' : value}${sign}${hh}:${mm}`;
}

// The datetime-local value of a moment `ms` (epoch milliseconds) in the browser's zone: a picker's `min`.
export function localInput(ms) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}
