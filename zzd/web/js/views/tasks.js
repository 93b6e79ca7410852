// 任务: the board of the acting position — owned, created, overdue, escalated — and one task with
// the actions its state allows (docs/tasks.md), live from task.created / task.updated events.
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { api } from '../api.js';
import { conn } from '../conn.js';
import { loadPosition, positionTitle } from '../names.js';
import { set, useStore } from '../store.js';
import { usePhotos } from './form.js';
import { Photo } from './photo.js';
import { when } from './task_new.js';

export const STATE = { created: '待接收', accepted: '已接收', in_progress: '处理中', resolved: '已办结', verified: '已核实',
                       closed: '已关闭', cancelled: '已取消' };
const ACTION = { accept: '接收', start: '开始处理', resolve: '办结', reject: '退回', verify: '核实', close: '关闭',
                 return: '打回重办', cancel: '取消', comment: '备注' };
const OPEN = ['created', 'accepted', 'in_progress', 'resolved', 'verified'];

// What the acting position may do now (the server checks again).
export function allowedActions(t, positionId) {
  const owner = t.owner_position_id === positionId || (t.state === 'created' && (t.pool || []).includes(positionId));
  const creator = t.creator && t.creator.position_id === positionId;
  const out = [];
  if (owner) {
    if (t.state === 'created') out.push('accept', 'reject');
    if (t.state === 'accepted') out.push('start', 'resolve', 'reject');
    if (t.state === 'in_progress') out.push('resolve');
  }
  if (creator) {
    if (t.state === 'resolved') out.push('verify', 'return');
    if (t.state === 'verified') out.push('close', 'return');
    if (['created', 'accepted', 'in_progress'].includes(t.state)) out.push('cancel');
  }
  if ((owner || creator) && OPEN.includes(t.state)) out.push('comment');
  return out;
}

// 已超时, the one definition (the board's group, its lines and the task view; the server's
// overdue_count, docs/tasks.md): a task not yet resolved whose current deadline — accept while
// created, resolve while accepted or in progress — or whose 截止时间 (due_at) has passed. The
// due_at counts on its own: accepted after it, a task has the category's window to resolve, but
// it is still late.
export function overdue(t, now) {
  if (!['created', 'accepted', 'in_progress'].includes(t.state)) return false;
  const current = t.state === 'created' ? t.accept_due_at : t.resolve_due_at;
  return [current, t.due_at].some((d) => d != null && new Date(d).getTime() < now);
}

// The task's deadlines in words: its 截止时间 if it has one, and the one its state waits on now.
function Deadlines({ task }) {
  const current = task.state === 'created' ? ['接收期限', task.accept_due_at]
    : ['accepted', 'in_progress'].includes(task.state) ? ['办结期限', task.resolve_due_at] : null;
  const parts = [];
  if (task.due_at) parts.push(`截止时间：${when(task.due_at)}`);
  if (current && current[1] && current[1] !== task.due_at) parts.push(`${current[0]}：${when(current[1])}`);
  const late = overdue(task, Date.now());
  if (!parts.length && !late) return null;
  return html`<p data-deadline>${parts.join(' · ')}${late && html` <span class="pill urgent" data-overdue>已超时</span>`}</p>`;
}

export function Tasks({ arg }) {
  if (arg) return html`<${TaskView} id=${Number(arg)} />`;
  return html`<${Board} />`;
}

function Board() {
  const acting = useStore((s) => s.acting);
  const me = useStore((s) => s.me);
  const [owned, setOwned] = useState([]);
  const [created, setCreated] = useState([]);
  const [error, setError] = useState('');
  async function load() {
    try {
      const [a, b] = await Promise.all([api('/api/v1/tasks?side=owner&limit=200'), api('/api/v1/tasks?side=creator&limit=200')]);
      setOwned(a.tasks); setCreated(b.tasks);
    } catch (e) { setError(e.message); }
  }
  useEffect(() => { load(); }, []);
  useEffect(() => conn.onEvent((f) => { if (f.kind.startsWith('task.')) load(); }), []);
  const now = Date.now();
  const mineOwned = owned.filter((t) => t.owner_position_id === acting || (t.pool || []).includes(acting));
  const mineCreated = created.filter((t) => t.creator && t.creator.position_id === acting);
  const all = [...mineOwned, ...mineCreated];
  const groups = [
    ['我负责的', mineOwned.filter((t) => OPEN.includes(t.state))],
    ['我发起的', mineCreated],
    ['已超时', all.filter((t) => overdue(t, now))],
    ['已升级', all.filter((t) => t.escalation_level > 0 && OPEN.includes(t.state))],
  ];
  return html`
    <section aria-labelledby="tasks-h">
      <div class="row-between">
        <h2 id="tasks-h">任务${acting != null ? ' · ' + positionTitle(acting) : ''}</h2>
        <a class="button small" href="#/tasks/new">派任务</a>
      </div>
      ${me && acting == null && html`<p class="muted" data-no-position>你目前没有担任岗位，没有任务。</p>`}
      ${error && html`<p class="error" role="alert">${error}</p>`}
      ${groups.map(([name, list]) => html`
        <h3>${name}（${list.length}）</h3>
        <ul class="list" aria-label=${name}>
          ${list.map((t) => html`<li key=${t.task_id}><a class="conv" href=${'#/tasks/' + t.task_id} data-task=${t.task_id}>
            <span class="conv-title">${t.title} <span class="tag" data-state=${t.state}>${STATE[t.state] || t.state}</span>
              ${t.escalation_level > 0 && html`<span class="pill urgent">升级 ${t.escalation_level}</span>`}</span>
            <span class="muted">${overdue(t, now) ? '已超时 · ' : ''}${t.due_at ? `截止 ${when(t.due_at)} · ` : ''}${new Date(t.created_at).toLocaleString('zh-CN')}</span>
          </a></li>`)}
        </ul>`)}
    </section>`;
}

// The position of mine a task is acted on as: the acting one when it is on one of the task's
// sides, else the first of my positions that is. A grid worker who reported as another of
// their positions (上报岗位) than the header's saw their own report's task without 核实 or 取消
// and nothing to say why: the actions were offered to the acting position only.
export function sideOf(task, acting, positions) {
  return [acting, ...positions.map((p) => p.id)].find((id) => id != null && allowedActions(task, id).length > 0) ?? acting;
}

export function TaskView({ id, compact = false }) {
  const acting = useStore((s) => s.acting);
  const positions = useStore((s) => s.positions);
  const [task, setTask] = useState(null);
  const [comment, setComment] = useState('');
  const [error, setError] = useState('');
  const [photos, setPhotos, addPhotos] = usePhotos((err) => setError(err.message));
  async function load() {
    try {
      const t = await api('/api/v1/tasks/' + id);
      setTask(t);
      for (const p of [t.owner_position_id, t.creator?.position_id]) if (p) loadPosition(p).then(() => set({}), () => {});
    } catch (e) { setError(e.code === 'not_found' ? '没有这个任务' : e.message); }
  }
  useEffect(() => { load(); }, [id]);
  useEffect(() => conn.onEvent((f) => { if (f.kind.startsWith('task.') && f.data.task?.task_id === id) load(); }), [id]);

  async function act(action) {
    setError('');
    // A comment is its words or its photos: the server refuses one with neither (400 invalid_text,
    // docs/tasks.md), which read 输入有误：comment must not be empty.
    if (action === 'comment' && !comment.trim() && photos.length === 0) { setError('请先填写说明或添加照片，再点备注'); return; }
    try {
      await api(`/api/v1/tasks/${id}/actions`, { method: 'POST', body: {
        as_position: side, action, version: task.version, comment: comment.trim(), attachments: photos,
      } });
      setComment(''); setPhotos([]);
      await load();
    } catch (e) {
      if (e.code === 'stale_version') { setError('任务已被他人更新，已刷新'); await load(); } else setError(e.message);
    }
  }
  if (!task) return error ? html`<p class="error" role="alert">${error}</p>` : html`<p role="status">正在加载…</p>`;
  const side = sideOf(task, acting, positions);
  const actions = allowedActions(task, side);
  return html`
    <article aria-labelledby=${'task-h-' + id} class=${compact ? 'card' : ''} data-task-view=${id}>
      <${compact ? 'h3' : 'h2'} id=${'task-h-' + id}>${task.title}</${compact ? 'h3' : 'h2'}>
      <p>状态：<strong data-state=${task.state}>${STATE[task.state] || task.state}</strong>
        ${task.escalation_level > 0 && html` <span class="pill urgent">已升级 ${task.escalation_level} 次</span>`}</p>
      <p class="muted">负责岗位：${positionTitle(task.owner_position_id)} · 发起：${positionTitle(task.creator?.position_id)}</p>
      <${Deadlines} task=${task} />
      ${task.body && html`<p>${task.body}</p>`}
      <ol class="plain history" aria-label="处理记录">
        ${(task.history || []).map((h) => html`<li>
          <span class="muted">${new Date(h.at).toLocaleString('zh-CN')}</span>${' '}${h.actor ? positionTitle(h.actor.position_id) : '系统'}：${ACTION[h.action] || (h.action === 'create' ? '创建' : h.action === 'escalate' ? '超时升级' : h.action)}
          ${h.comment && html` — ${h.comment}`}
          ${(h.attachments || []).length > 0 && html`<div class="photos">${h.attachments.map((d) => html`<${Photo} digest=${d} />`)}</div>`}
        </li>`)}
      </ol>
      ${actions.length > 0 && html`
        <div class="card">
          ${side !== acting && html`<p class="muted" data-acting-as=${side}>以${positionTitle(side)}的身份处理</p>`}
          <label>说明<textarea rows="2" value=${comment} onInput=${(e) => setComment(e.target.value)} maxlength="2000"></textarea></label>
          <label class="button small file">照片<input type="file" accept="image/*" capture="environment" multiple onChange=${addPhotos} /></label>
          ${photos.length > 0 && html`<div class="photos">${photos.map((d) => html`<${Photo} digest=${d} />`)}</div>`}
          <div class="composer-row">${actions.map((a) => html`<button type="button" class=${a === 'cancel' || a === 'reject' ? 'danger' : ''}
            onClick=${() => act(a)}>${ACTION[a]}</button>`)}</div>
        </div>`}
      ${error && html`<p class="error" role="alert">${error}</p>`}
    </article>`;
}
