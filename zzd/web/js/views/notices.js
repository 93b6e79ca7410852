// 通知: received notices (labelled with the position each came to) and the ones I sent.
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { loadPositions, positionTitle } from '../names.js';
import { handedAway, waitingAck } from '../notices.js';
import { useStore } from '../store.js';

export function deadlineText(iso) {
  return iso ? new Date(iso).toLocaleString('zh-CN', { month: 'numeric', day: 'numeric', hour: '2-digit', minute: '2-digit' }) : '';
}

// The position a notice came to, as the event lists it (docs/protocol.md notice.new). A vacancy
// fallback names the vacant position addressed and, in via_position_id, mine that receives it
// for that one: the row said 发给：专职网格员 · 第1网格 — a position this person does not hold —
// where it came to their 网格长 post standing in for the vacant one.
export function cameTo(p) {
  const addressed = positionTitle(p.position_id, `${p.role} · ${p.unit}`);
  if (p.via_position_id == null || p.via_position_id === p.position_id) return addressed;
  return `${positionTitle(p.via_position_id)}（代收空缺岗位：${addressed}）`;
}

export function Notices() {
  const notices = useStore((s) => s.notices);
  const sent = useStore((s) => s.sent);
  const [, titled] = useState(0);
  useEffect(() => {
    let live = true;
    const ids = notices.slice(0, 50).flatMap((n) => (n.positions || []).flatMap((p) => [p.position_id, p.via_position_id]));
    loadPositions(ids).then(() => live && titled((k) => k + 1));
    return () => { live = false; };
  }, [notices]);
  return html`
    <section aria-labelledby="notices-h">
      <div class="row-between">
        <h2 id="notices-h">通知</h2>
        <span class="actions-row"><a class="button small" href="#/notice/new">发通知</a>
          <a class="button small" href="#/tasks/new">派任务</a></span>
      </div>
      <h3>收到的通知</h3>
      ${notices.length === 0 && html`<p class="muted">暂无通知</p>`}
      <ul class="list" aria-label="收到的通知">
        ${notices.map((n) => html`
          <li key=${n.notice_id}>
            <a class="conv" href=${'#/notice/' + n.notice_id} data-notice=${n.notice_id}>
              <span class="conv-title">
                ${n.priority === 'urgent' && html`<span class="pill urgent">DING</span>`}
                ${n.title}
                ${n.recalled && html`<span class="tag">已撤回</span>`}
                ${n.came_with_handover && html`<span class="tag" data-handover="in">岗位交接转来</span>`}
                ${handedAway(n) && !n.acked && html`<span class="tag" data-handover="out">已随岗位交接转给接任人</span>`}
                ${n.acked ? html`<span class="tag">已确认</span>` : waitingAck(n) ? html`<span class="badge">待确认</span>` : ''}
                ${n.reminded && waitingAck(n) && html`<span class="mention-flag">催办</span>`}
              </span>
              <span class="via">发给：${(n.positions || []).map(cameTo).join('，')}</span>
              ${n.deadline && html`<span class="muted">截止 ${deadlineText(n.deadline)}</span>`}
            </a>
          </li>`)}
      </ul>
      <h3>我发出的</h3>
      ${sent.length === 0 && html`<p class="muted">还没有发出通知</p>`}
      <ul class="list" aria-label="我发出的通知">
        ${sent.map((n) => html`
          <li key=${n.notice_id}><a class="conv" href=${'#/notice/' + n.notice_id} data-sent=${n.notice_id}>
            <span class="conv-title">${n.priority === 'urgent' && html`<span class="pill urgent">DING</span>`}${n.title}</span>
            <span class="muted">${n.persons != null ? n.persons + ' 人 · ' : ''}${deadlineText(n.created_at)}</span>
          </a></li>`)}
      </ul>
    </section>`;
}

export { positionTitle };
