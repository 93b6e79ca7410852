// Whom a notice or a task goes to: the selector builder — roles × subtree × levels, unions and
// exclusions, or the selector typed by hand — with the live preview (counts per child unit,
// vacancies and their fallbacks) of what it reaches from the sending position. 发通知 and 派任务
// choose their recipients the same way, and the server checks both against the same
// jurisdiction of the sending position (docs/selectors.md): one picker, used by both forms.
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { api } from '../api.js';
import { loadPositions, positionTitle } from '../names.js';

const LEVELS = [['province', '省'], ['city', '市'], ['county', '区县'], ['township', '乡镇'], ['village', '村社'], ['grid', '网格']];
// How a vacant position's notice is received (docs/selectors.md "Resolution"): by whom, in words.
const REASON = { deputy: '由本岗位的副职/代理人接收', acting: '由本岗位的代理人接收', unit_head: '由单位负责人接收',
                 superior: '由上级同岗位接收', unfilled: '无人接收' };
const FALLBACKS_SHOWN = 20;

let rolesCache = null;
export function loadRoles() {
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

const newTerm = (under, exclude = false) => ({ role: '', under, subtree: true, levels: [], exclude });

// The picker's state for the position `asPosition` sends as. `initial` ({terms, manual}, from a
// kept draft) starts it where the person left it; otherwise one row under the sending position's
// own unit. `selector` is what to send, `preview` the server's answer for it (null until valid).
export function useTarget(asPosition, positions, initial = null) {
  const [roles, setRoles] = useState([]);
  const [rolesError, setRolesError] = useState('');
  const [homeCode, setHomeCode] = useState('');
  const [terms, setTerms] = useState(() => initial?.terms || []);
  const [manual, setManual] = useState(() => initial?.manual ?? null);   // hand-edited selector text, or null
  const [preview, setPreview] = useState(null);
  const [previewError, setPreviewError] = useState('');

  useEffect(() => { loadRoles().then(setRoles, (e) => setRolesError(e.message)); }, []);
  // Default subtree: the unit of the position it is sent as.
  useEffect(() => {
    const p = positions.find((x) => x.id === asPosition);
    if (!p) return;
    api('/api/v1/org/units/%23' + p.unit_id).then((u) => {
      setHomeCode(u.code);
      setTerms((cur) => (cur.length ? cur : [newTerm(u.code)]));
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

  return {
    roles, rolesError, homeCode, terms, manual, selector, preview, previewError,
    setTerm(i, patch) { setManual(null); setTerms((cur) => cur.map((t, j) => (j === i ? { ...t, ...patch } : t))); },
    add(exclude) { setManual(null); setTerms((cur) => [...cur, newTerm(homeCode, exclude)]); },
    remove(i) { setManual(null); setTerms((cur) => cur.filter((_, j) => j !== i)); },
    edit(text) { setManual(text); },
  };
}

// The rows, the editable selector and the preview of `useTarget`'s state.
export function TargetPicker({ target, legend = '接收岗位' }) {
  const { roles, terms, selector } = target;
  return html`
    <fieldset class="card">
      <legend>${legend}</legend>
      ${terms.map((t, i) => html`
        <div class="term card" data-term=${i}>
          <div class="grid2">
            <label>${t.exclude ? '排除' : '包含'}岗位
              <select value=${t.role} onChange=${(e) => target.setTerm(i, { role: e.target.value })}>
                <option value="">请选择</option>
                ${roles.map((r) => html`<option value=${r.name}>${r.name}</option>`)}
              </select>
            </label>
            <label>单位代码
              <input value=${t.under} inputmode="numeric" onInput=${(e) => target.setTerm(i, { under: e.target.value })} />
            </label>
          </div>
          <label class="inline"><input type="checkbox" checked=${t.subtree} onChange=${(e) => target.setTerm(i, { subtree: e.target.checked })} />含下级单位</label>
          ${t.subtree && html`<fieldset class="levels"><legend>层级（不选为全部）</legend>
            ${LEVELS.map(([k, name]) => html`<label class="inline"><input type="checkbox" checked=${t.levels.includes(k)}
              onChange=${(e) => target.setTerm(i, { levels: e.target.checked ? [...t.levels, k] : t.levels.filter((x) => x !== k) })} />${name}</label>`)}
          </fieldset>`}
          ${terms.length > 1 && html`<button type="button" class="link" onClick=${() => target.remove(i)}>删除此条</button>`}
        </div>`)}
      <div class="row-between">
        <button type="button" class="small" onClick=${() => target.add(false)}>＋ 包含</button>
        <button type="button" class="small" onClick=${() => target.add(true)}>－ 排除</button>
      </div>
      <label>选择器（可直接编辑）
        <input value=${selector} onInput=${(e) => target.edit(e.target.value)} spellcheck="false" />
      </label>
    </fieldset>
    <${PreviewPanel} preview=${target.preview} error=${target.previewError} />`;
}

// What is wrong with the selector, in the manager's words: a mistyped unit code or role was
// answered not_found and read 找不到该内容（可能已删除或无权查看）, which says neither which nor why.
export function previewErrorText(e, homeCode) {
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
