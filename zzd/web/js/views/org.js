// 组织: the six levels (province → city → county → township → village → grid), loaded lazily,
// with each unit's positions and holders (GET /api/v1/org/units/{ref}, …/children, positions).
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { api } from '../api.js';
import { loadPosition } from '../names.js';
import { get, go, useStore } from '../store.js';
import { holderNames } from './search.js';

const LEVEL = { province: '省', city: '市', county: '区县', township: '乡镇', village: '村社', grid: '网格' };
const PAGE = 100;

async function rootOf(unitId) {
  let u = await api('/api/v1/org/units/%23' + unitId);
  while (u.parent_id != null) u = await api('/api/v1/org/units/%23' + u.parent_id);
  return u;
}

export function OrgBrowser() {
  const positions = useStore((s) => s.positions);
  const [root, setRoot] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => {
    const start = positions[0]?.unit_id;
    if (start == null) return;
    rootOf(start).then(setRoot, (e) => setError(e.message));
  }, [positions.length]);
  return html`
    <section aria-labelledby="org-h">
      <h2 id="org-h">组织</h2>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      ${!root && !error && html`<p role="status">正在加载…</p>`}
      ${root && html`<ul class="tree" aria-label="组织架构"><${Unit} unit=${root} open=${true} /></ul>`}
    </section>`;
}

// 部门群: one group per unit, kept in step with the unit's holders by the server.
async function unitGroup(unit, setNote) {
  try {
    const g = await api(`/api/v1/units/%23${unit.id}/group`, { method: 'POST', body: { depth: 0, title: unit.name + '部门群' } });
    const me = get().me;
    // A manager may create the group of a unit they do not belong to: then there is no chat to open.
    if (me && g.members.some((m) => m.person_id === me.id)) go('#/chat/' + g.id);
    else setNote(`已为${unit.name}创建部门群，共 ${g.members.length} 人`);
  } catch (e) {
    setNote(e.status === 409 ? '该单位已有部门群，可在消息中找到' : e.status === 403 || e.status === 404 ? '无权为该单位建群' : e.message);
  }
}

function Unit({ unit, open: initiallyOpen = false }) {
  const [note, setNote] = useState('');
  const [open, setOpen] = useState(initiallyOpen);
  const [kids, setKids] = useState(null);
  const [showPositions, setShowPositions] = useState(false);
  async function loadKids(offset = 0) {
    const j = await api(`/api/v1/org/units/%23${unit.id}/children?limit=${PAGE}&offset=${offset}`);
    setKids((cur) => (offset && cur ? [...cur, ...j.units] : j.units));
  }
  useEffect(() => { if (open && kids === null && unit.children > 0) loadKids().catch(() => setKids([])); }, [open]);
  return html`
    <li data-unit=${unit.code}>
      <div class="row-between">
        <span>
          ${unit.children > 0 ? html`<button type="button" class="link" aria-label=${(open ? '收起 ' : '展开 ') + unit.name}
              onClick=${() => setOpen(!open)}>${open ? '▾' : '▸'}</button>` : html`<span aria-hidden="true">·</span>`}
          <strong>${unit.name}</strong> <span class="tag">${LEVEL[unit.level] || unit.level}</span>
        </span>
        ${(unit.position_ids || []).length > 0 && html`<button type="button" class="link" aria-expanded=${showPositions}
          onClick=${() => setShowPositions(!showPositions)}>岗位 ${unit.position_ids.length}</button>`}
      </div>
      ${showPositions && html`<${Positions} unit=${unit} />
        <button type="button" class="small" onClick=${() => unitGroup(unit, setNote)}>建部门群</button>`}
      ${note && html`<p role="status" class="muted">${note}</p>`}
      ${open && kids && html`<ul>
        ${kids.map((k) => html`<${Unit} key=${k.id} unit=${k} />`)}
        ${kids.length < unit.children && html`<li><button type="button" class="link" onClick=${() => loadKids(kids.length)}>更多下级单位</button></li>`}
      </ul>`}
    </li>`;
}

function Positions({ unit }) {
  const [rows, setRows] = useState(null);
  useEffect(() => {
    let live = true;
    (async () => {
      const views = await Promise.all(unit.position_ids.map((id) => loadPosition(id).catch(() => null)));
      // Holders' names come with 找岗位 hits: ask for this unit's positions by its name.
      const j = await api(`/api/v1/org/search?limit=100&q=${encodeURIComponent(unit.name)}`).catch(() => ({ hits: [] }));
      const names = new Map(j.hits.filter((h) => h.unit_id === unit.id).map((h) => [h.position_id, holderNames(h)]));
      if (live) setRows(views.filter(Boolean).map((v) => ({ v, names: names.get(v.id) })));
    })();
    return () => { live = false; };
  }, [unit.id]);
  if (!rows) return html`<p role="status" class="muted">正在加载…</p>`;
  return html`
    <ul class="plain card" aria-label=${unit.name + '的岗位'}>
      ${rows.map(({ v, names }) => {
        const vacant = (v.holders || []).length === 0;
        const alt = (v.alternates || []).length;
        return html`<li class="row-between" data-position=${v.id}>
          <span>${v.role}${v.pool ? html` <span class="tag">共享</span>` : ''}</span>
          <span>
            ${vacant ? html`<span class="pill vacant">空缺</span>` : html`<span class="muted">${(names && names.length ? names : v.holders.map((id) => '#' + id)).join('、')}</span>`}
            ${alt > 0 && html` <span class="tag">代理/副职 ${alt}</span>`}
            ${' '}<a class="link" href=${'#/position/' + v.id}>发消息</a>
          </span>
        </li>`;
      })}
    </ul>`;
}
