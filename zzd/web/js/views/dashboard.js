// A notice: for its sender side the progress dashboard (chart over time, roll-up per child
// unit drilling down the tree, pending list with a one-click reminder), live from
// notice.progress events; for a recipient the notice itself, read on open, with 确认收到.
import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api.js';
import { conn } from '../conn.js';
import { loadPosition, loadPositions, positionTitle } from '../names.js';
import { handedAway, markNotice } from '../notices.js';
import { get, set } from '../store.js';
import { deadlineText } from './notices.js';
import { Photo } from './photo.js';

export function Dashboard({ id }) {
  const [notice, setNotice] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => {
    api('/api/v1/notices/' + id).then((n) => {
      setNotice(n);
      loadPosition(n.sender.position_id).then(() => set({}), () => {});
    }, (e) => {
      const mine = get().notices.find((n) => n.notice_id === id);
      if (e.code === 'not_found' && mine && handedAway(mine)) setError('这条通知已随岗位交接转给接任人，无需你再确认');
      else setError(e.code === 'not_found' ? '没有这条通知' : e.message);
    });
  }, [id]);
  if (error) return html`<p class="error" role="alert">${error}</p>`;
  if (!notice) return html`<p role="status">正在加载…</p>`;
  return notice.audience ? html`<${Progress} notice=${notice} />` : html`<${Received} notice=${notice} onChange=${setNotice} />`;
}

function Head({ notice }) {
  return html`
    <h2 id="notice-h">${notice.priority === 'urgent' && html`<span class="pill urgent">DING</span> `}${notice.title}</h2>
    <p class="muted">${positionTitle(notice.sender.position_id)} · ${deadlineText(notice.created_at)}
      ${notice.deadline && html` · 截止 ${deadlineText(notice.deadline)}`}
      ${notice.recalled_at && html` · <strong>已撤回</strong>`}</p>`;
}

function Received({ notice, onChange }) {
  const [reply, setReply] = useState('');
  const [error, setError] = useState('');
  const acked = notice.receipts.length > 0 && notice.receipts.every((r) => r.acked_at);
  useEffect(() => {
    if (notice.recalled_at || notice.receipts.every((r) => r.read_at)) return;
    api(`/api/v1/notices/${notice.notice_id}/read`, { method: 'POST' })
      .then((j) => onChange({ ...notice, receipts: j.receipts }), () => {});
  }, [notice.notice_id]);
  useEffect(() => { if (acked) markNotice(notice.notice_id, { acked: true }); }, [acked]);
  async function ack(e) {
    e.preventDefault();
    try {
      const j = await api(`/api/v1/notices/${notice.notice_id}/ack`, { method: 'POST', body: reply.trim() ? { reply: reply.trim() } : {} });
      onChange({ ...notice, receipts: j.receipts });
    } catch (err) { setError(err.message); }
  }
  return html`
    <article aria-labelledby="notice-h">
      <${Head} notice=${notice} />
      <p class="notice-body">${notice.body}</p>
      ${notice.attachments.length > 0 && html`<div class="photos">${notice.attachments.map((d) => html`<${Photo} digest=${d} />`)}</div>`}
      <ul class="plain">${notice.receipts.map((r) => html`<li class="via">发给：${positionTitle(r.via_position_id)}
        ${r.acked_at ? ' · 已确认' : r.read_at ? ' · 已读' : ''}${r.reply ? ' · 回复：' + r.reply : ''}</li>`)}</ul>
      ${notice.ack_required && !acked && !notice.recalled_at && html`
        <form onSubmit=${ack} class="card">
          <label>回复（可选）<input value=${reply} onInput=${(e) => setReply(e.target.value)} maxlength="2000" /></label>
          <button type="submit">确认收到</button>
        </form>`}
      ${acked && html`<p role="status" class="ok-state">已确认收到</p>`}
      ${error && html`<p class="error" role="alert">${error}</p>`}
    </article>`;
}

const pointsKey = (id) => 'zzd.progress.' + id;

function Progress({ notice }) {
  const nid = notice.notice_id;
  const [unit, setUnit] = useState(null);          // null: the audience's common unit
  const [trail, setTrail] = useState([]);          // units drilled through, for the way back
  const [progress, setProgress] = useState(null);
  const [pending, setPending] = useState(null);
  const [points, setPoints] = useState(() => { try { return JSON.parse(localStorage.getItem(pointsKey(nid)) || '[]'); } catch { return []; } });
  const [msg, setMsg] = useState('');
  const [error, setError] = useState('');
  const missing = notice.ack_required ? 'ack' : 'read';

  async function refresh(u = unit) {
    const q = u ? '?unit=' + encodeURIComponent(u) : '';
    const p = await api(`/api/v1/notices/${nid}/progress${q}`);
    setProgress(p);
    if (p.total.code || p.total.unit_id) {
      const ref = p.total.code || '#' + p.total.unit_id;
      const j = await api(`/api/v1/notices/${nid}/pending?missing=${missing}&limit=50&unit=${encodeURIComponent(ref)}`);
      setPending(j);
      // Named by position: the unit alone (第1网格) repeats in every village.
      loadPositions(j.items.map((p) => p.position_id)).then(() => setPending((cur) => (cur === j ? { ...j } : cur)));
    }
    return p;
  }

  function addPoint(t, d) {
    setPoints((cur) => {
      const next = [...cur, [t, d.delivered, d.read, d.acked]].slice(-500);
      try { localStorage.setItem(pointsKey(nid), JSON.stringify(next)); } catch { /* full */ }
      return next;
    });
  }

  useEffect(() => {
    refresh(unit).then((p) => { if (!unit && points.length === 0) addPoint(Date.now() / 1000, p.total); }, (e) => setError(e.message));
  }, [unit]);

  useEffect(() => conn.onEvent((f) => {
    if (f.kind !== 'notice.progress' || f.data.notice_id !== nid) return;
    addPoint(Date.now() / 1000, f.data);
    refresh().catch(() => {});
  }), [unit]);

  function drill(c) {
    setTrail([...trail, unit]);
    setUnit('#' + c.unit_id);
  }
  function back() {
    const t = trail.slice();
    const u = t.pop();
    setTrail(t);
    setUnit(u ?? null);
  }
  async function remind() {
    setMsg('');
    try {
      const ref = progress.total.code || '#' + progress.total.unit_id;
      const j = await api(`/api/v1/notices/${nid}/remind`, { method: 'POST', body: { unit: ref, missing } });
      setMsg(`已提醒 ${j.reminded} 人`);
    } catch (e) { setMsg(e.code === 'rate_limited' ? '一分钟内已提醒过，请稍后再试' : e.message); }
  }
  async function recall() {
    if (!confirm('确定撤回这条通知？')) return;
    try { await api(`/api/v1/notices/${nid}/recall`, { method: 'POST' }); await refresh(); } catch (e) { setError(e.message); }
  }

  const pct = (n, of) => (of ? Math.round((100 * n) / of) : 0);
  return html`
    <article aria-labelledby="notice-h" data-dashboard=${nid}>
      <${Head} notice=${notice} />
      ${error && html`<p class="error" role="alert">${error}</p>`}
      ${progress && html`
        <p class="totals" role="status" aria-live="polite" data-totals>
          共 ${progress.total.receipts} · 已送达 <span data-count="delivered">${progress.total.delivered}</span>${' · '}已读 <span
            data-count="read">${progress.total.read}</span>${' · '}已确认 <span data-count="acked">${progress.total.acked}</span>${
            progress.recalled && ' · 已撤回'}</p>
        <${Chart} points=${points} />
        <h3>${progress.total.name || '全部'} 的下级单位</h3>
        ${trail.length > 0 && html`<button type="button" class="link" onClick=${back}>返回上一级</button>`}
        <div class="table-wrap"><table data-rollup>
          <caption class="sr-only">按下级单位汇总</caption>
          <thead><tr><th scope="col">单位</th><th scope="col" class="num">应收</th><th scope="col" class="num">送达</th>
            <th scope="col" class="num">已读</th><th scope="col" class="num">确认</th></tr></thead>
          <tbody>${progress.by_child.map((c, i) => html`
            <tr data-unit=${c.code}>
              <td>${i === 0 && c.unit_id === progress.total.unit_id ? html`${c.name}（本级）`
                : html`<button type="button" class="link" onClick=${() => drill(c)}>${c.name}</button>`}</td>
              <td class="num">${c.receipts}</td><td class="num">${c.delivered}</td>
              <td class="num">${c.read} (${pct(c.read, c.receipts)}%)</td><td class="num">${c.acked} (${pct(c.acked, c.receipts)}%)</td>
            </tr>`)}</tbody>
        </table></div>
        ${progress.elsewhere > 0 && html`<p class="muted">其他单位：${progress.elsewhere}</p>`}`}
      <h3>${notice.ack_required ? '未确认' : '未读'}人员</h3>
      ${pending && html`
        <ul class="plain" aria-label="待办人员" data-pending>${pending.items.map((p) => html`<li data-person=${p.person_id}>${p.name} · ${positionTitle(p.position_id, p.unit)}${p.read_at ? '（已读未确认）' : ''}</li>`)}</ul>
        ${pending.items.length === 0 && html`<p class="muted">全部完成</p>`}
        ${pending.items.length > 0 && !progress?.recalled && html`<button type="button" onClick=${remind}>一键提醒</button>`}`}
      ${msg && html`<p role="status">${msg}</p>`}
      ${!progress?.recalled && html`<p><button type="button" class="danger small" onClick=${recall}>撤回通知</button></p>`}
    </article>`;
}

const two = (n) => String(n).padStart(2, '0');
function day(t) { const d = new Date(t * 1000); return `${d.getMonth() + 1}月${d.getDate()}日`; }
function clock(t, seconds = false) {
  const d = new Date(t * 1000);
  return `${two(d.getHours())}:${two(d.getMinutes())}` + (seconds ? `:${two(d.getSeconds())}` : '');
}

// delivered / read / acknowledged over time (uPlot, loaded only here).
function Chart({ points }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    let dead = false;
    (async () => {
      if (!document.querySelector('link[data-uplot]')) {
        const l = document.createElement('link');
        l.rel = 'stylesheet'; l.href = '/vendor/uplot/dist/uPlot.min.css'; l.dataset.uplot = '1';
        document.head.appendChild(l);
      }
      const { default: UPlot } = await import('uplot');
      if (dead || !box.current) return;
      const data = [points.map((p) => p[0]), points.map((p) => p[1]), points.map((p) => p[2]), points.map((p) => p[3])];
      if (plot.current) { plot.current.setData(data); return; }
      const width = Math.max(280, box.current.clientWidth || 320);
      plot.current = new UPlot({
        width, height: 200, title: '送达 / 已读 / 确认',
        // One point (the dashboard's first load) would otherwise span years on the time axis.
        scales: { x: { time: true, range: (u, min, max) => (max - min < 60 ? [min - 60, max + 60] : [min, max]) } },
        // uPlot's own time labels are English (“Time”, “1:58am”, “12/5/26”): 24-hour clock and
        // 月/日 instead (seconds when the ticks are under a minute apart), the date on a tick only
        // where it changes.
        series: [{ label: '时间', value: (u, t) => (t == null ? '--' : `${day(t)} ${clock(t, true)}`) },
          { label: '送达', stroke: '#1d4ed8' }, { label: '已读', stroke: '#b45309' }, { label: '确认', stroke: '#166534' }],
        axes: [{ space: 64, values: (u, ticks) => {
          const seconds = ticks.length > 1 && ticks[1] - ticks[0] < 60;
          return ticks.map((t, i) => (i === 0 || day(t) !== day(ticks[i - 1])
            ? `${clock(t, seconds)}\n${day(t)}` : clock(t, seconds)));
        } }, {}],
      }, data, box.current);
    })();
    return () => { dead = true; };
  }, [points.length]);
  useEffect(() => () => { if (plot.current) plot.current.destroy(); }, []);
  return html`<figure class="chart" aria-label="进度图"><div ref=${box} data-chart-points=${points.length}></div>
    <figcaption class="sr-only">送达、已读、确认人数随时间的变化</figcaption></figure>`;
}
