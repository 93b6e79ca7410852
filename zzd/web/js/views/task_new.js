// 派任务 (managers): a task to the positions a selector names — "the 河长 of this village" — created
// as the acting position (POST /api/v1/tasks, docs/tasks.md "Creating tasks"). Whom: the same
// picker and preview as 发通知 (js/views/target.js). 截止时间 (`due_at`, docs/tasks.md) is optional:
// empty, the task's deadlines are its category's (accept within, resolve within after accepting;
// overdue it escalates); set, it must be resolved by then and accepted no later. Either way the
// deadlines are said in words under the category.
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { api, newId } from '../api.js';
import { go, positionLabel, set, useStore } from '../store.js';
import { dropDraft } from '../drafts.js';
import { DraftNote, Drafted, localInput, localIso, useDraft, usePhotos, useSubmit } from './form.js';
import { Photo } from './photo.js';
import { loadRoles, previewErrorText, TargetPicker, useTarget } from './target.js';

const ESCALATION = { same_role_up: '上级单位的同一岗位', head_above: '上级单位负责人' };

// Seconds as a person says them: 30 分钟, 2 小时, 1 天, 1 天 12 小时.
export function duration(s) {
  if (s < 3600) return `${Math.max(1, Math.round(s / 60))} 分钟`;
  if (s % 86400 === 0) return `${s / 86400} 天`;
  const d = Math.floor(s / 86400);
  const h = Math.round((s % 86400) / 3600);
  return d ? `${d} 天 ${h} 小时` : `${h} 小时`;
}

// `due`: the 截止时间 picked (a datetime-local value), '' for none.
export function deadlineText(c, due = '') {
  const up = `逾期自动升级给${ESCALATION[c.escalation] || '上级'}`;
  if (!due) return `须在 ${duration(c.accept_within)}内接收，接收后 ${duration(c.resolve_within)}内办结；${up}`;
  return `须在 ${when(localIso(due))} 前办结，${duration(c.accept_within)}内接收（不晚于截止时间）；${up}`;
}

// A moment as the task pages show it: 2026/12/7 17:00.
export function when(iso) {
  return new Date(iso).toLocaleString('zh-CN', { year: 'numeric', month: 'numeric', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

// What the API's refusal of a create means for the manager (errorText in js/api.js has the
// general words; these name what to change).
function createErrorText(e, shared, homeCode) {
  if (e.code === 'bad_request' && e.data.field === 'selector' && e.data.max != null) {
    return `一次最多派给 ${e.data.max} 个岗位${shared ? '（共享任务）' : ''}，现在选中了 ${e.data.positions} 个，请缩小范围`;
  }
  if (e.code === 'bad_request' && e.data.field === 'selector' && /addresses no position/.test(e.serverMessage)) {
    return '所选范围内没有岗位，请重新选择';
  }
  if (e.code === 'forbidden' && e.data.as_position != null) return '你已不再担任这个岗位，不能以它的名义派任务';
  if (e.code === 'unknown_category') return '任务类别无效，请重新选择';
  if (e.code === 'bad_request' && e.data.field === 'due_at') return '截止时间须晚于现在至少 1 分钟，且在 366 天之内';
  if (e.code === 'unknown_attachment') return '照片无效，请重新添加';
  if (['out_of_scope', 'not_found', 'bad_request'].includes(e.code)) return previewErrorText(e, homeCode);
  return e.message;
}

export function NewTask() {
  return html`<${Drafted} form="task" view=${TaskForm} />`;
}

// `draft`: the form as it was left (js/drafts.js), or null.
function TaskForm({ draft, discard }) {
  const { positions, acting, me } = useStore((s) => s);
  const [roles, setRoles] = useState(null);
  const [asPosition, setAsPosition] = useState(draft?.as_position ?? null);
  const [categories, setCategories] = useState([]);
  const [category, setCategory] = useState(draft?.category ?? 'general');
  const [shared, setShared] = useState(draft?.shared ?? false);
  const [title, setTitle] = useState(draft?.title ?? '');
  const [body, setBody] = useState(draft?.body ?? '');
  const [due, setDue] = useState(draft?.due ?? ''); // 截止时间, a datetime-local value; '' = the category's windows
  const { busy, error, setError, submit } = useSubmit(send, (e) => createErrorText(e, shared, target.homeCode));
  const [photos, , addPhotos] = usePhotos((err) => setError('照片上传失败：' + err.message), draft?.photos);
  // One client_msg_id per task written, kept with its draft: a retry creates nothing twice.
  const [key] = useState(() => draft?.client_msg_id || newId('t'));

  useEffect(() => { loadRoles().then(setRoles, (e) => setError(e.message)); }, []);
  useEffect(() => {
    api('/api/v1/tasks/categories').then((j) => setCategories(j.categories), (e) => setError(e.message));
  }, []);
  // A position whose role may address nobody (jurisdiction "none", docs/selectors.md) is refused
  // every selector (out_of_scope): it is not offered.
  const rule = (p) => roles && (roles.find((r) => r.key === p.role_key) || {}).jurisdiction;
  const able = roles ? positions.filter((p) => rule(p) !== 'none') : [];
  useEffect(() => {
    if (!able.length) return;
    if (!able.some((p) => p.id === asPosition)) setAsPosition((able.find((p) => p.id === acting) || able[0]).id);
  }, [roles, positions, acting]);
  const target = useTarget(asPosition, positions, draft);
  const { selector, preview } = target;
  useDraft('task', { as_position: asPosition, terms: target.terms, manual: target.manual, shared, category, title, body,
                     due, photos, client_msg_id: key },
           !title.trim() && !body.trim() && photos.length === 0 && !target.manual && !target.terms.some((t) => t.role));
  const cat = categories.find((c) => c.key === category);

  async function send() {
    if (!preview) throw new Error('请先选择负责岗位并确认预览');
    const r = await api('/api/v1/tasks', { method: 'POST', body: {
      as_position: asPosition, selector, shared, category, title, body, client_msg_id: key, attachments: photos,
      due_at: localIso(due),
    } });
    dropDraft('task');
    if (r.tasks.length === 1) go('#/tasks/' + r.tasks[0].task_id);
    else {
      set({ banner: { kind: 'info', text: `已派发 ${r.tasks.length} 个任务，见“我发起的”` } });
      go('#/tasks');
    }
  }

  const heading = html`<h2 id="task-new-h">派任务</h2>`;
  if (me && positions.length === 0) {
    return html`<section aria-labelledby="task-new-h">${heading}
      <p class="muted" data-no-position>你目前没有担任岗位，不能派任务。任务以岗位的名义派发。</p></section>`;
  }
  if (!roles) {
    return html`<section aria-labelledby="task-new-h">${heading}
      ${error ? html`<p class="error" role="alert">${error}</p>` : html`<p role="status">正在加载…</p>`}</section>`;
  }
  if (able.length === 0) {
    return html`<section aria-labelledby="task-new-h">${heading}
      <p class="muted" data-no-position>你的岗位（${positions.map(positionLabel).join('，')}）没有管辖范围，不能派任务。任务只能派给派发岗位管辖范围内的岗位。</p></section>`;
  }
  const count = preview ? (shared ? 1 : preview.positions) : 0;
  return html`
    <section aria-labelledby="task-new-h">
      ${heading}
      <${DraftNote} draft=${draft} discard=${discard} />
      <form onSubmit=${submit} data-task-form>
        <label>派发岗位
          <select value=${asPosition} onChange=${(e) => setAsPosition(Number(e.target.value))}>
            ${able.map((p) => html`<option value=${p.id}>${positionLabel(p)}</option>`)}
          </select>
        </label>
        <${TargetPicker} target=${target} legend="负责岗位" />
        <label class="inline"><input type="checkbox" checked=${shared} onChange=${(e) => setShared(e.target.checked)} />共享任务（只派一个，所选岗位中任一接收即由其负责）</label>
        <label>类别
          <select value=${category} onChange=${(e) => setCategory(e.target.value)}>
            ${categories.map((c) => html`<option value=${c.key}>${c.name}</option>`)}
          </select>
        </label>
        <label>截止时间（可不填）
          <input type="datetime-local" value=${due} min=${localInput(Date.now() + 60_000)} onInput=${(e) => setDue(e.target.value)} /></label>
        ${due && html`<button type="button" class="small" onClick=${() => setDue('')}>不设截止时间</button>`}
        ${cat && html`<p class="muted" data-deadline>时限：${deadlineText(cat, due)}</p>`}
        <label>标题<input value=${title} onInput=${(e) => setTitle(e.target.value)} required maxlength="200" /></label>
        <label>任务说明<textarea rows="4" value=${body} onInput=${(e) => setBody(e.target.value)} maxlength="10000"></textarea></label>
        <label class="button small file">添加照片<input type="file" accept="image/*" multiple onChange=${addPhotos} /></label>
        ${photos.length > 0 && html`<div class="photos" aria-label="已添加的照片">${photos.map((d) => html`<${Photo} digest=${d} />`)}</div>`}
        ${(error || target.rolesError) && html`<p class="error" role="alert" data-task-error>${error || target.rolesError}</p>`}
        <button type="submit" disabled=${busy || !preview}>${busy ? '正在派发…'
          : shared && preview ? `派发 1 个任务（${preview.positions} 个岗位可接收）` : `派发 ${count} 个任务`}</button>
      </form>
    </section>`;
}
