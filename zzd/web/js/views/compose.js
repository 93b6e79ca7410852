// 发通知 (managers): a selector builder — roles × subtree × levels, unions and exclusions — with
// the live preview (counts per child unit, vacancies and their fallbacks) before sending.
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { api, newId, upload } from '../api.js';
import { loadPositions, positionTitle } from '../names.js';
import { go, positionLabel, useStore } from '../store.js';
import { rememberSent } from '../notices.js';
import { Photo } from './photo.js';

const LEVELS = [['province', '省'], ['city', '市'], ['county', '区县'], ['township', '乡镇'], ['village', '村社'], ['grid', '网格']];
// How a vacant position's notice is received (docs/selectors.md "Resolution"): by whom, in words.
const REASON = { deputy: '由本岗位的副职/代理人接收', acting: '由本岗位的代理人接收', unit_head: '由单位负责人接收',
                 superior: '由上级同岗位接收', unfilled: '无人接收' };
const FALLBACKS_SHOWN = 20;

let rolesCache = null;
function loadRoles() {
  if (!rolesCache) rolesCache = api('/api/v1/org/roles').then((j) => j.roles, (e) => { rolesCache = null; throw e; });
  return rolesCache;
}

// The text form of docs/selectors.md: (A | B) - (C | D).
export function selectorText(terms) {
  const part = (t) => {
    const unit = t.under.trim();
    if (!t.role || !unit) return null;
    const lv = t.levels.length ? `[${t.levels.join(',')}]` : '';
    return t.subtree ? `${t.role}@${unit}/**${lv}` : `${t.role}@${unit}`;
  };
  const group = (ts) => {
    const ps = ts.map(part).filter(Boolean);
    return ps.length > 1 ? `(${ps.join(' | ')})` : ps[0] || null;
  };
  const inc = group(terms.filter((t) => !t.exclude));
  const exc = group(terms.filter((t) => t.exclude));
  if (!inc) return '';
  return exc ? `${inc} - ${exc}` : inc;
}

function localIso(value) {
  // <input type=datetime-local> has no zone: send the browser's offset with it.
  if (!value) return null;
  const d = new Date(value);
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? '+' : '-';
  const hh = String(Math.floor(Math.abs(off) / 60)).padStart(2, '0');
  const mm = String(Math.abs(off) % 60).padStart(2, '0');
  return `${value.length === 16 ? value + ':00' : value}${sign}${hh}:${mm}`;
}

export function Compose() {
  const { positions, acting, me } = useStore((s) => s);
  const [asPosition, setAsPosition] = useState(acting);
  const [roles, setRoles] = useState([]);
  const [homeCode, setHomeCode] = useState('');
  const [terms, setTerms] = useState([]);
  const [manual, setManual] = useState(null);          // hand-edited selector text, or null
  const [preview, setPreview] = useState(null);
  const [previewError, setPreviewError] = useState('');
  const [title, setTitle] = useState('');
  const [body, setBody] = useState('');
  const [urgent, setUrgent] = useState(false);
  const [ack, setAck] = useState(true);
  const [deadline, setDeadline] = useState('');
  const [files, setFiles] = useState([]);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  useEffect(() => { loadRoles().then(setRoles, (e) => setError(e.message)); }, []);
  useEffect(() => { if (asPosition == null && acting != null) setAsPosition(acting); }, [acting]);
  // Default subtree: the unit of the position the notice is sent as.
  useEffect(() => {
    const p = positions.find((x) => x.id === asPosition);
    if (!p) return;
    api('/api/v1/org/units/%23' + p.unit_id).then((u) => {
      setHomeCode(u.code);
      setTerms((cur) => (cur.length ? cur : [{ role: '', under: u.code, subtree: true, levels: [], exclude: false }]));
    }, () => {});
  }, [asPosition, positions.length]);

  const selector = manual ?? selectorText(terms);

  useEffect(() => {
    if (!selector || !asPosition) { setPreview(null); return undefined; }
    let live = true;
    const t = setTimeout(async () => {
      try {
        const j = await api('/api/v1/notices/preview', { method: 'POST', body: { as_position: asPosition, selector } });
        if (live) { setPreview(j); setPreviewError(''); }
      } catch (e) {
        if (!live) return;
        setPreview(null);
        setPreviewError(previewErrorText(e, homeCode));
      }
    }, 300);
    return () => { live = false; clearTimeout(t); };
  }, [selector, asPosition]);

  function setTerm(i, patch) { setManual(null); setTerms((cur) => cur.map((t, j) => (j === i ? { ...t, ...patch } : t))); }

  async function addFiles(e) {
    try {
      for (const f of e.target.files) { const r = await upload(f); setFiles((cur) => [...cur, r.digest]); }
    } catch (err) { setError('附件上传失败：' + err.message); }
    e.target.value = '';
  }

  async function send(e) {
    e.preventDefault();
    setError('');
    if (!preview) { setError('请先选择接收岗位并确认预览'); return; }
    setBusy(true);
    try {
      const r = await api('/api/v1/notices', { method: 'POST', body: {
        as_position: asPosition, selector, client_msg_id: newId('n'), title, body,
        priority: urgent ? 'urgent' : 'normal', ack_required: ack, deadline: localIso(deadline), attachments: files,
      } });
      rememberSent({ notice_id: r.notice_id, title, created_at: r.created_at, priority: urgent ? 'urgent' : 'normal',
                     ack_required: ack, persons: r.persons });
      go('#/notice/' + r.notice_id);
    } catch (err) {
      setError(err.message);
      setBusy(false);
    }
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
      <form onSubmit=${send}>
        <label>发送岗位
          <select value=${asPosition} onChange=${(e) => setAsPosition(Number(e.target.value))}>
            ${positions.map((p) => html`<option value=${p.id}>${positionLabel(p)}</option>`)}
          </select>
        </label>
        <fieldset class="card">
          <legend>接收岗位</legend>
          ${terms.map((t, i) => html`
            <div class="term card" data-term=${i}>
              <div class="grid2">
                <label>${t.exclude ? '排除' : '包含'}岗位
                  <select value=${t.role} onChange=${(e) => setTerm(i, { role: e.target.value })}>
                    <option value="">请选择</option>
                    ${roles.map((r) => html`<option value=${r.name}>${r.name}</option>`)}
                  </select>
                </label>
                <label>单位代码
                  <input value=${t.under} inputmode="numeric" onInput=${(e) => setTerm(i, { under: e.target.value })} />
                </label>
              </div>
              <label class="inline"><input type="checkbox" checked=${t.subtree} onChange=${(e) => setTerm(i, { subtree: e.target.checked })} />含下级单位</label>
              ${t.subtree && html`<fieldset class="levels"><legend>层级（不选为全部）</legend>
                ${LEVELS.map(([k, name]) => html`<label class="inline"><input type="checkbox" checked=${t.levels.includes(k)}
                  onChange=${(e) => setTerm(i, { levels: e.target.checked ? [...t.levels, k] : t.levels.filter((x) => x !== k) })} />${name}</label>`)}
              </fieldset>`}
              ${terms.length > 1 && html`<button type="button" class="link" onClick=${() => { setManual(null); setTerms(terms.filter((_, j) => j !== i)); }}>删除此条</button>`}
            </div>`)}
          <div class="row-between">
            <button type="button" class="small" onClick=${() => { setManual(null); setTerms([...terms, { role: '', under: homeCode, subtree: true, levels: [], exclude: false }]); }}>＋ 包含</button>
            <button type="button" class="small" onClick=${() => { setManual(null); setTerms([...terms, { role: '', under: homeCode, subtree: true, levels: [], exclude: true }]); }}>－ 排除</button>
          </div>
          <label>选择器（可直接编辑）
            <input value=${selector} onInput=${(e) => setManual(e.target.value)} spellcheck="false" />
          </label>
        </fieldset>
        <${PreviewPanel} preview=${preview} error=${previewError} />
        <label>标题<input value=${title} onInput=${(e) => setTitle(e.target.value)} required maxlength="200" /></label>
        <label>正文<textarea rows="4" value=${body} onInput=${(e) => setBody(e.target.value)} maxlength="20000"></textarea></label>
        <label class="inline"><input type="checkbox" checked=${urgent} onChange=${(e) => setUrgent(e.target.checked)} />紧急（DING）</label>
        <label class="inline"><input type="checkbox" checked=${ack} onChange=${(e) => setAck(e.target.checked)} />需要确认回执</label>
        <label>截止时间<input type="datetime-local" value=${deadline} onInput=${(e) => setDeadline(e.target.value)} /></label>
        <label class="button small file">添加附件<input type="file" accept="image/*" multiple onChange=${addFiles} /></label>
        ${files.length > 0 && html`<div class="photos">${files.map((d) => html`<${Photo} digest=${d} />`)}</div>`}
        ${error && html`<p class="error" role="alert">${error}</p>`}
        <button type="submit" disabled=${busy || !preview}>${busy ? '正在发送…' : `发送给 ${preview ? preview.persons : 0} 人`}</button>
      </form>
    </section>`;
}

// What is wrong with the selector, in the manager's words: a mistyped unit code or role was
// answered not_found and read 找不到该内容（可能已删除或无权查看）, which says neither which nor why.
function previewErrorText(e, homeCode) {
  if (e.code === 'out_of_scope') return `超出管辖范围：${(e.data.out_of_scope || []).join('，')}（${e.data.count} 个岗位）`;
  if (e.code === 'not_found' && e.data.unit != null) return `没有这个单位：${e.data.unit}（请检查单位代码）`;
  if (e.code === 'not_found' && e.data.role != null) return `没有这个岗位：${e.data.role}（请从列表中选择）`;
  // A hand-edited selector that does not parse: the server's words are English
  // (`selector: cannot read '专职网格员@@610122106' at character 1`), the place it names is not.
  if (e.code === 'bad_request' && e.data.field === 'selector') {
    const where = Number(e.data.position) > 0 ? `（从第 ${e.data.position} 个字符起无法识别）` : '';
    return `选择器写法有误${where}。写法如：专职网格员@${homeCode || '单位代码'}/**，多个用 | 连接，排除用 -`;
  }
  return e.message;
}

function PreviewPanel({ preview, error }) {
  if (error) return html`<p class="error" role="alert" data-preview="error">${error}</p>`;
  if (!preview) return html`<p class="muted" data-preview="none">选择岗位后显示预览</p>`;
  return html`
    <div class="card" aria-live="polite" data-preview="ok">
      <h3>预览：${preview.positions} 个岗位，${preview.persons} 人</h3>
      <div class="table-wrap"><table>
        <caption class="sr-only">按下级单位</caption>
        <thead><tr><th scope="col">单位</th><th scope="col" class="num">岗位</th><th scope="col" class="num">人数</th></tr></thead>
        <tbody>${preview.by_child.map((c) => html`<tr data-unit=${c.code}><td>${c.name}</td><td class="num">${c.positions}</td><td class="num">${c.persons}</td></tr>`)}</tbody>
      </table></div>
      ${(preview.fallback_count > 0 || preview.unfilled_count > 0) && html`
        <p>空缺岗位：${preview.fallback_count} 个由他人代收${preview.unfilled_count > 0 ? html`，<strong class="error">${preview.unfilled_count} 个无人接收</strong>` : ''}</p>
        <${Fallbacks} list=${preview.fallbacks || []} total=${preview.fallback_count + preview.unfilled_count} />`}
    </div>`;
}

// The vacancies by name, those someone receives first. The preview names positions by id only
// (`{"position_id": 113132, "reason": "unit_head", "via_position_id": 113131}`): the list read
// 岗位 113132（空缺）→ 单位负责人：岗位 113131 and, for one nobody receives, → unfilled.
function Fallbacks({ list, total }) {
  const shown = [...list.filter((f) => f.reason !== 'unfilled'), ...list.filter((f) => f.reason === 'unfilled')]
    .slice(0, FALLBACKS_SHOWN);
  const [, titled] = useState(0);
  useEffect(() => {
    let live = true;
    loadPositions(shown.flatMap((f) => [f.position_id, f.via_position_id])).then(() => live && titled((k) => k + 1));
    return () => { live = false; };
  }, [list]);
  return html`
    <ul class="plain fallbacks" data-fallbacks>${shown.map((f) => html`<li data-reason=${f.reason}>${fallbackText(f)}</li>`)}</ul>
    ${total > shown.length && html`<p class="muted">另有 ${total - shown.length} 个空缺岗位未列出</p>`}`;
}

function fallbackText(f) {
  const how = REASON[f.reason] || '由他人接收';
  const self = f.via_position_id == null || f.via_position_id === f.position_id;
  return `${positionTitle(f.position_id)}（空缺）→ ${how}${self ? '' : '：' + positionTitle(f.via_position_id)}`;
}
