// 发通知 (managers): whom (the selector builder and its live preview, js/views/target.js, shared
// with 派任务), the title and text, DING, acknowledgement, deadline and attachments.
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { api, newId } from '../api.js';
import { go, positionLabel, useStore } from '../store.js';
import { rememberSent } from '../notices.js';
import { dropDraft } from '../drafts.js';
import { DraftNote, Drafted, localIso, useDraft, usePhotos, useSubmit } from './form.js';
import { Photo } from './photo.js';
import { TargetPicker, useTarget } from './target.js';

export function Compose() {
  return html`<${Drafted} form="notice" view=${ComposeForm} />`;
}

// `draft`: the form as it was left (js/drafts.js), or null.
function ComposeForm({ draft, discard }) {
  const { positions, acting, me } = useStore((s) => s);
  const [asPosition, setAsPosition] = useState(draft?.as_position ?? acting);
  const target = useTarget(asPosition, positions, draft);
  const { selector, preview } = target;
  const [title, setTitle] = useState(draft?.title ?? '');
  const [body, setBody] = useState(draft?.body ?? '');
  const [urgent, setUrgent] = useState(draft?.urgent ?? false);
  const [ack, setAck] = useState(draft?.ack ?? true);
  const [deadline, setDeadline] = useState(draft?.deadline ?? '');
  const { busy, error, setError, submit } = useSubmit(send);
  const [files, , addFiles] = usePhotos((err) => setError('附件上传失败：' + err.message), draft?.attachments);
  // One client_msg_id per notice written, kept with its draft: sent again after an answer that
  // never came (the session ended meanwhile), it is stored once.
  const [key] = useState(() => draft?.client_msg_id || newId('n'));
  useDraft('notice', { as_position: asPosition, terms: target.terms, manual: target.manual, title, body, urgent, ack,
                       deadline, attachments: files, client_msg_id: key },
           !title.trim() && !body.trim() && files.length === 0 && !target.manual && !target.terms.some((t) => t.role));

  // The sending position: the acting one, unless another of mine was chosen (a kept draft's, still held).
  useEffect(() => {
    if (positions.length && !positions.some((p) => p.id === asPosition)) setAsPosition(acting ?? positions[0].id);
  }, [acting, positions]);

  async function send() {
    if (!preview) throw new Error('请先选择接收岗位并确认预览');
    const r = await api('/api/v1/notices', { method: 'POST', body: {
      as_position: asPosition, selector, client_msg_id: key, title, body,
      priority: urgent ? 'urgent' : 'normal', ack_required: ack, deadline: localIso(deadline), attachments: files,
    } });
    rememberSent({ notice_id: r.notice_id, title, created_at: r.created_at, priority: urgent ? 'urgent' : 'normal',
                   ack_required: ack, persons: r.persons });
    dropDraft('notice');
    go('#/notice/' + r.notice_id);
  }

  // Someone who holds no position (all handed over) got the whole form, an empty 发送岗位 and
  // 发送给 0 人, with nothing to say why nothing could be sent.
  if (me && positions.length === 0) {
    return html`<section aria-labelledby="compose-h"><h2 id="compose-h">发通知</h2>
      <p class="muted" data-no-position>你目前没有担任岗位，不能发通知。通知以岗位的名义发出。</p></section>`;
  }
  return html`
    <section aria-labelledby="compose-h">
      <h2 id="compose-h">发通知</h2>
      <${DraftNote} draft=${draft} discard=${discard} />
      <form onSubmit=${submit}>
        <label>发送岗位
          <select value=${asPosition} onChange=${(e) => setAsPosition(Number(e.target.value))}>
            ${positions.map((p) => html`<option value=${p.id}>${positionLabel(p)}</option>`)}
          </select>
        </label>
        <${TargetPicker} target=${target} />
        <label>标题<input value=${title} onInput=${(e) => setTitle(e.target.value)} required maxlength="200" /></label>
        <label>正文<textarea rows="4" value=${body} onInput=${(e) => setBody(e.target.value)} maxlength="20000"></textarea></label>
        <label class="inline"><input type="checkbox" checked=${urgent} onChange=${(e) => setUrgent(e.target.checked)} />紧急（DING）</label>
        <label class="inline"><input type="checkbox" checked=${ack} onChange=${(e) => setAck(e.target.checked)} />需要确认回执</label>
        <label>截止时间<input type="datetime-local" value=${deadline} onInput=${(e) => setDeadline(e.target.value)} /></label>
        <label class="button small file">添加附件<input type="file" accept="image/*" multiple onChange=${addFiles} /></label>
        ${files.length > 0 && html`<div class="photos" aria-label="已添加的照片">${files.map((d) => html`<${Photo} digest=${d} />`)}</div>`}
        ${(error || target.rolesError) && html`<p class="error" role="alert">${error || target.rolesError}</p>`}
        <button type="submit" disabled=${busy || !preview}>${busy ? '正在发送…' : `发送给 ${preview ? preview.persons : 0} 人`}</button>
      </form>
    </section>`;
}
