// 建群: an ad-hoc group of positions found by 找岗位 (their holders are members, and follow the
// position when it changes hands) — POST /api/v1/groups.
import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { go, unitLabel } from '../store.js';
import { holderNames } from './search.js';

export function NewGroup() {
  const [title, setTitle] = useState('');
  const [q, setQ] = useState('');
  const [hits, setHits] = useState([]);
  const [picked, setPicked] = useState([]);
  const [error, setError] = useState('');
  async function search(e) {
    e.preventDefault();
    if (!q.trim()) return;
    try { setHits((await api('/api/v1/org/search?limit=10&q=' + encodeURIComponent(q.trim()))).hits); } catch (err) { setError(err.message); }
  }
  async function create(e) {
    e.preventDefault();
    try {
      const g = await api('/api/v1/groups', { method: 'POST', body: { title: title.trim(), position_ids: picked.map((h) => h.position_id) } });
      go('#/chat/' + g.id);
    } catch (err) { setError(err.code === 'group_too_large' ? `人数超过上限 ${err.data.limit}` : err.message); }
  }
  const label = (h) => `${h.role} · ${unitLabel(h.unit_path)}`;
  return html`
    <section aria-labelledby="group-h">
      <h2 id="group-h">建群</h2>
      <form onSubmit=${create}>
        <label>群名称<input value=${title} onInput=${(e) => setTitle(e.target.value)} required maxlength="100" /></label>
        <div class="chips" role="group" aria-label="已选岗位">${picked.map((h) => html`<span class="chip">${label(h)}
          <button type="button" class="link" aria-label=${'移除 ' + label(h)} onClick=${() => setPicked(picked.filter((x) => x !== h))}>×</button></span>`)}</div>
        <button type="submit" disabled=${!title.trim() || picked.length === 0}>创建群聊</button>
      </form>
      <form role="search" onSubmit=${search} class="inline-form">
        <label class="sr-only" for="group-q">找岗位加入</label>
        <input id="group-q" type="search" value=${q} onInput=${(e) => setQ(e.target.value)} placeholder="找岗位加入群" />
        <button type="submit" class="small">搜索</button>
      </form>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <ul class="list" aria-label="可加入的岗位">${hits.map((h) => html`<li class="hit row-between">
        <span>${label(h)} <span class="muted">${holderNames(h).join('、') || '空缺'}</span></span>
        <button type="button" class="small" disabled=${picked.some((x) => x.position_id === h.position_id)}
          onClick=${() => setPicked([...picked, h])}>加入</button></li>`)}</ul>
    </section>`;
}
