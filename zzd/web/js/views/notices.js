// 通知: received notices (labelled with the position each came to) and the ones I sent.
import { html } from 'htm/preact';
import { positionTitle } from '../names.js';
import { useStore } from '../store.js';

export function deadlineText(iso) {
  return iso ? new Date(iso).toLocaleString('zh-CN', { month: 'numeric', day: 'numeric', hour: '2-digit', minute: '2-digit' }) : '';
}

export function Notices() {
  const notices = useStore((s) => s.notices);
  const sent = useStore((s) => s.sent);
  return html`
    <section aria-labelledby="notices-h">
      <div class="row-between">
        <h2 id="notices-h">通知</h2>
        <a class="button small" href="#/notice/new">发通知</a>
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
                ${n.acked ? html`<span class="tag">已确认</span>` : n.ack_required && !n.recalled ? html`<span class="badge">待确认</span>` : ''}
                ${n.reminded && !n.acked && html`<span class="mention-flag">催办</span>`}
              </span>
              <span class="via">发给：${(n.positions || []).map((p) => `${p.role} · ${p.unit}`).join('，')}</span>
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
