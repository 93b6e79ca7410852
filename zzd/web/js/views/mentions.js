// @ mentions: persons seen in the conversation, the thread's positions, or any position by 找岗位.
import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api.js';
import { positionTitle } from '../names.js';
import { unitLabel } from '../store.js';

export function MentionPicker({ persons, positions, onPick }) {
  const [open, setOpen] = useState(false);
  const [q, setQ] = useState('');
  const [hits, setHits] = useState([]);
  const toggle = useRef(null);
  const box = useRef(null);
  // A keyboard user lands in the popover when it opens, and Escape closes it back to its button.
  useEffect(() => { if (open && box.current) box.current.querySelector('button, input').focus(); }, [open]);
  function close() { setOpen(false); setHits([]); setQ(''); if (toggle.current) toggle.current.focus(); }
  async function search(e) {
    e.preventDefault();
    if (!q.trim()) return;
    const j = await api('/api/v1/org/search?limit=8&q=' + encodeURIComponent(q.trim())).catch(() => ({ hits: [] }));
    setHits(j.hits || []);
  }
  function pick(kind, item) { onPick(kind, item); close(); }
  return html`
    <div class="mention">
      <button type="button" class="button small" aria-expanded=${open} ref=${toggle} onClick=${() => (open ? close() : setOpen(true))}>@ 提及</button>
      ${open && html`
        <div class="popover" role="dialog" aria-label="提及" ref=${box}
          onKeyDown=${(e) => { if (e.key === 'Escape') { e.preventDefault(); close(); } }}>
          ${persons.length > 0 && html`<p class="muted">人员</p>
            <ul class="plain">${persons.map((p) => html`<li><button type="button" class="link" onClick=${() => pick('persons', p)}>${p.name}</button></li>`)}</ul>`}
          ${positions.length > 0 && html`<p class="muted">岗位</p>
            <ul class="plain">${positions.map((id) => html`<li><button type="button" class="link"
              onClick=${() => pick('positions', { id, name: positionTitle(id) })}>${positionTitle(id)}</button></li>`)}</ul>`}
          <div class="inline-form">
            <label class="sr-only" for="mention-q">找岗位</label>
            <input id="mention-q" value=${q} onInput=${(e) => setQ(e.target.value)} placeholder="找岗位"
              onKeyDown=${(e) => { if (e.key === 'Enter') search(e); }} />
            <button type="button" class="button small" onClick=${search}>搜索</button>
          </div>
          <ul class="plain">${hits.map((h) => html`<li><button type="button" class="link"
            onClick=${() => pick('positions', { id: h.position_id, name: `${h.role} · ${unitLabel(h.unit_path)}` })}>
            ${h.role} · ${unitLabel(h.unit_path)}</button></li>`)}</ul>
        </div>`}
    </div>`;
}
