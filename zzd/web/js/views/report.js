// 上报 (grid workers): category, text, photos from the camera, the device's location; then the
// report's progress (its task's state and history, live).
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { api, getSession, newId } from '../api.js';
import { go, positionLabel, useStore } from '../store.js';
import { dropDraft } from '../drafts.js';
import { DraftNote, Drafted, useDraft, usePhotos, useSubmit } from './form.js';
import { Photo } from './photo.js';
import { TaskView } from './tasks.js';

// GeolocationPositionError codes (the browser's own messages are English).
const GEO_ERROR = { 1: '未允许使用位置，请在浏览器或系统设置中允许后点“重新定位”', 2: '暂时无法获取位置，请到开阔处后重试',
                    3: '定位超时，请重试' };

const reportsKey = () => 'zzd.reports.' + getSession()?.personId;

function myReports() {
  try { return JSON.parse(localStorage.getItem(reportsKey()) || '[]'); } catch { return []; }
}

export function Report({ arg }) {
  if (arg) return html`<${ReportView} id=${Number(arg)} />`;
  return html`<${Drafted} form="report" view=${ReportForm} />`;
}

// `draft`: the report as it was left (js/drafts.js), or null; the location is taken anew.
function ReportForm({ draft, discard }) {
  const { positions, acting } = useStore((s) => s);
  const grids = positions.filter((p) => p.unit_path && p.unit_path.length === 6);
  const [asPosition, setAsPosition] = useState(draft?.as_position ?? null);
  const [categories, setCategories] = useState([]);
  const [category, setCategory] = useState(draft?.category ?? '');
  const [text, setText] = useState(draft?.text ?? '');
  const [location, setLocation] = useState(null);
  const [locating, setLocating] = useState(false);
  const [beyond, setBeyond] = useState(draft?.beyond ?? false);
  const { busy, error, setError, submit } = useSubmit(send);
  const [photos, , addPhotos] = usePhotos((err) => setError('照片上传失败：' + err.message), draft?.photos);
  const [key] = useState(() => draft?.client_msg_id || newId('r'));   // one client_msg_id per report: a retry is one report
  useDraft('report', { as_position: asPosition, category, text, photos, beyond, client_msg_id: key },
           !text.trim() && photos.length === 0);

  useEffect(() => {
    api('/api/v1/tasks/categories').then((j) => {
      const routed = j.categories.filter((c) => c.route_role);
      setCategories(routed);
      setCategory((c) => (routed.some((r) => r.key === c) ? c : routed[0]?.key ?? ''));
    }, (e) => setError(e.message));
  }, []);
  useEffect(() => {
    if (grids.length && !grids.some((g) => g.id === asPosition)) setAsPosition((grids.find((g) => g.id === acting) || grids[0]).id);
  }, [grids.length, acting]);

  function locate() {
    setError('');
    if (!navigator.geolocation) { setError('此设备不能定位'); return; }
    setLocating(true);
    navigator.geolocation.getCurrentPosition(
      (p) => { setLocation({ lat: p.coords.latitude, lon: p.coords.longitude }); setLocating(false); },
      (e) => { setError('定位失败：' + (GEO_ERROR[e.code] || e.message)); setLocating(false); },
      { enableHighAccuracy: true, timeout: 15000 },
    );
  }
  useEffect(() => { locate(); }, []);

  async function send() {
    if (!location) throw new Error('请先获取位置');
    const r = await api('/api/v1/reports', { method: 'POST', body: {
      as_position: asPosition, client_msg_id: key, category, text, location, photos, beyond_capacity: beyond,
    } });
    const list = [{ report_id: r.report_id, category, text: text.slice(0, 40), created_at: r.created_at }, ...myReports()].slice(0, 50);
    localStorage.setItem(reportsKey(), JSON.stringify(list));
    dropDraft('report');
    go('#/report/' + r.report_id);
  }

  if (grids.length === 0) return html`<section><h2>上报</h2><p class="muted">只有网格岗位可以上报事件。</p><${MyReports} /></section>`;
  return html`
    <section aria-labelledby="report-h">
      <h2 id="report-h">事件上报</h2>
      <${DraftNote} draft=${draft} discard=${discard} />
      <form onSubmit=${submit} class="report-form">
        <label>上报岗位
          <select value=${asPosition} onChange=${(e) => setAsPosition(Number(e.target.value))}>
            ${grids.map((p) => html`<option value=${p.id}>${positionLabel(p)}</option>`)}
          </select>
        </label>
        <label>类别
          <select value=${category} onChange=${(e) => setCategory(e.target.value)} required>
            ${categories.map((c) => html`<option value=${c.key}>${c.name}</option>`)}
          </select>
        </label>
        <label>情况说明<textarea rows="4" value=${text} onInput=${(e) => setText(e.target.value)} required maxlength="5000"></textarea></label>
        <label class="button file">拍照<input type="file" accept="image/*" capture="environment" multiple onChange=${addPhotos} /></label>
        ${photos.length > 0 && html`<div class="photos" aria-label="已添加的照片">${photos.map((d) => html`<${Photo} digest=${d} />`)}</div>`}
        <p role="status" data-location=${location ? 'ok' : 'none'}>
          ${location ? `位置：${location.lat.toFixed(5)}, ${location.lon.toFixed(5)}` : locating ? '正在定位…' : '未获取位置'}
          <button type="button" class="link" onClick=${locate}>重新定位</button>
        </p>
        <label class="inline"><input type="checkbox" checked=${beyond} onChange=${(e) => setBeyond(e.target.checked)} />超出本级处置能力（直接上报上一级）</label>
        ${error && html`<p class="error" role="alert">${error}</p>`}
        <button type="submit" disabled=${busy || !location}>${busy ? '正在提交…' : '提交上报'}</button>
      </form>
      <${MyReports} />
    </section>`;
}

function MyReports() {
  const list = myReports();
  if (list.length === 0) return null;
  return html`<h3>我的上报</h3><ul class="list" aria-label="我的上报">
    ${list.map((r) => html`<li><a class="conv" href=${'#/report/' + r.report_id}>${r.text}<span class="muted">${new Date(r.created_at).toLocaleString('zh-CN')}</span></a></li>`)}
  </ul>`;
}

function ReportView({ id }) {
  const [report, setReport] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => { api('/api/v1/reports/' + id).then(setReport, (e) => setError(e.message)); }, [id]);
  if (error) return html`<p class="error" role="alert">${error}</p>`;
  if (!report) return html`<p role="status">正在加载…</p>`;
  return html`
    <section aria-labelledby="report-v-h">
      <h2 id="report-v-h">上报 #${report.report_id}</h2>
      <p role="status" class="ok-state">已上报，已转交负责岗位</p>
      <p>${report.text}</p>
      <p class="muted">位置：${report.location.lat}, ${report.location.lon}</p>
      ${report.photos.length > 0 && html`<div class="photos">${report.photos.map((p) => html`<${Photo} digest=${p.digest || p} />`)}</div>`}
      <h3>处理进度</h3>
      ${report.task_id ? html`<${TaskView} id=${report.task_id} compact=${true} />` : html`<p class="muted">尚未生成任务</p>`}
      <p><a href="#/report">再报一件</a></p>
    </section>`;
}
