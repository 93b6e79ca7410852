// 找岗位: one box over roles, units, holders' names, pinyin and initials (GET /api/v1/org/search).
import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api.js';
import { learnPerson, learnPosition, loadPosition, personName } from '../names.js';
import { useStore } from '../store.js';

const PAGE = 20;

export function holderNames(hit) {
  return (hit.holders || []).map((h) => (typeof h === 'object' ? h.name || personName(h.id) : h));
}

export function Search() {
  const [q, setQ] = useState(sessionStorage.getItem('zzd.search') || '');
  const [page, setPage] = useState(null);
  const [error, setError] = useState('');
  const [open, setOpen] = useState(null);     // position id whose holders are shown
  const [detail, setDetail] = useState(null);
  const seq = useRef(0);

  async function run(query, offset = 0) {
    const text = query.trim();
    sessionStorage.setItem('zzd.search', text);
    if (!text) { setPage(null); return; }
    const mine = ++seq.current;
    try {
      const j = await api(`/api/v1/org/search?limit=${PAGE}&offset=${offset}&q=${encodeURIComponent(text)}`);
      if (mine !== seq.current) return;     // a later keystroke won
      setError('');
      for (const hit of j.hits) for (const d of hit.holder_details || []) learnPerson({ id: d.person_id, name: d.name });
      setPage((cur) => (offset && cur ? { ...j, hits: [...cur.hits, ...j.hits] } : j));
    } catch (e) {
      if (mine === seq.current) setError(e.message);
    }
  }

  useEffect(() => { const t = setTimeout(() => run(q), 200); return () => clearTimeout(t); }, [q]);

  async function showHolders(hit) {
    if (open === hit.position_id) { setOpen(null); return; }
    setOpen(hit.position_id);
    setDetail(null);
    try {
      const [view, hist] = await Promise.all([
        loadPosition(hit.position_id),
        api(`/api/v1/org/positions/${hit.position_id}/history`).catch(() => ({ assignments: [] })),
      ]);
      learnPosition(view);
      setDetail({ view, history: hist.assignments || [] });
    } catch (e) { setError(e.message); }
  }

  return html`
    <section aria-labelledby="search-h">
      <h2 id="search-h">找岗位</h2>
      <form role="search" onSubmit=${(e) => { e.preventDefault(); run(q); }}>
        <label for="search-q">岗位、单位、姓名、拼音或首字母</label>
        <input id="search-q" type="search" value=${q} onInput=${(e) => setQ(e.target.value)}
          placeholder="例如：河长 金桂 / hezhang / hz" autocomplete="off" />
      </form>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      ${page && html`<p class="muted" role="status">共 ${page.total} 个岗位</p>`}
      <ul class="list" aria-label="搜索结果">
        ${(page?.hits || []).map((h) => {
          const names = holderNames(h);
          const vacant = names.length === 0;
          return html`
            <li class="hit" key=${h.position_id} data-position=${h.position_id}>
              <div class="row-between">
                <strong>${h.role}</strong>
                ${vacant ? html`<span class="pill vacant">空缺</span>` : html`<span class="muted">${names.join('、')}</span>`}
              </div>
              <div class="muted">${(h.unit_path || []).join(' / ')}</div>
              <div class="actions">
                <a class="button small" href=${'#/position/' + h.position_id}>发消息</a>
                <button type="button" class="link" aria-expanded=${open === h.position_id}
                  onClick=${() => showHolders(h)}>在岗人员</button>
              </div>
              ${open === h.position_id && html`<${Holders} hit=${h} detail=${detail} />`}
            </li>`;
        })}
      </ul>
      ${page && page.hits.length < page.total && html`
        <button type="button" onClick=${() => run(q, page.hits.length)}>更多</button>`}
    </section>`;
}

const KIND = { primary: '在岗', deputy: '副职', acting: '代理' };

function Holders({ hit, detail }) {
  const me = useStore((s) => s.me);
  if (!detail) return html`<p role="status" class="muted">正在加载…</p>`;
  const names = holderNames(hit);
  const current = detail.history.filter((a) => !a.end_at);
  const past = detail.history.filter((a) => a.end_at).slice(-3).reverse();
  return html`
    <div class="card">
      ${current.length === 0 && names.length === 0 && html`<p><span class="pill vacant">空缺</span>
        发给此岗位的消息和通知按空缺规则转给代理人、单位负责人或上级同岗位。</p>`}
      <ul class="plain">
        ${current.map((a) => html`<li>${KIND[a.kind] || a.kind}：${nameFor(a.person_id, detail.view, names)}
          ${a.person_id !== me?.id && html` <a class="link" href=${'#/person/' + a.person_id}
            aria-label=${'私聊 ' + nameFor(a.person_id, detail.view, names)}>私聊</a>`}</li>`)}
      </ul>
      ${past.length > 0 && html`<p class="muted">曾任：${past.map((a) => `${personName(a.person_id)}（至 ${a.end_at.slice(0, 10)}）`).join('，')}</p>`}
    </div>`;
}

function nameFor(personId, view, names) {
  const i = (view.holders || []).indexOf(personId);
  if (i >= 0 && names[i]) return names[i];
  return personName(personId);
}
