// The shell: sign-in, then a header (connection state, acting position), navigation and views.
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { getSession, onSession } from './api.js';
import { conn } from './conn.js';
import { logout, setActing, start } from './session.js';
import { go, positionLabel, set, useStore } from './store.js';
import { waitingAck } from './notices.js';
import { Login } from './views/login.js';
import { Inbox } from './views/inbox.js';
import { Chat } from './views/chat.js';

const lazy = {
  search: () => import('./views/search.js').then((m) => m.Search),
  org: () => import('./views/org.js').then((m) => m.OrgBrowser),
  compose: () => import('./views/compose.js').then((m) => m.Compose),
  notices: () => import('./views/notices.js').then((m) => m.Notices),
  notice: () => import('./views/dashboard.js').then((m) => m.Dashboard),
  tasks: () => import('./views/tasks.js').then((m) => m.Tasks),
  newtask: () => import('./views/task_new.js').then((m) => m.NewTask),
  report: () => import('./views/report.js').then((m) => m.Report),
  group: () => import('./views/group.js').then((m) => m.NewGroup),
};

const NAV = [
  ['#/inbox', '消息'], ['#/search', '找岗位'], ['#/org', '组织'], ['#/notices', '通知'],
  ['#/tasks', '任务'], ['#/report', '上报'],
];

const STATUS = { online: '已连接', connecting: '连接中…', offline: '已断开', ended: '会话已结束' };
const DETAIL = { replaced: '已在其他窗口打开', 'signed-out': '请重新登录', revoked: '请重新登录' };

// A view's module is fetched when first opened; offline or with the server down that fails:
// say so, and load it again on 重试 or when the connection comes back.
function Lazy({ name, props }) {
  const [C, setC] = useState(null);
  const [failed, setFailed] = useState(false);
  const [attempt, setAttempt] = useState(0);
  const status = useStore((s) => s.status);
  useEffect(() => {
    let live = true;
    setFailed(false);
    lazy[name]().then((c) => live && setC(() => c), () => live && setFailed(true));
    return () => { live = false; };
  }, [name, attempt]);
  useEffect(() => { if (failed && status === 'online') setAttempt((n) => n + 1); }, [status]);
  if (C) return html`<${C} ...${props} />`;
  if (failed) {
    return html`<div class="error" role="alert" data-view-failed=${name}>页面加载失败：网络不可用或服务器无法连接。
      <button type="button" class="small" onClick=${() => setAttempt((n) => n + 1)}>重试</button></div>`;
  }
  return html`<p role="status">正在加载…</p>`;
}

function route(r) {
  const parts = r.replace(/^#\/?/, '').split('/');
  const [head, arg] = parts;
  if (head === 'chat' && arg) return html`<${Chat} key=${arg} id=${Number(arg)} />`;
  if (head === 'position' && arg) return html`<${Chat} key=${'p' + arg} toPosition=${Number(arg)} />`;
  if (head === 'person' && arg) return html`<${Chat} key=${'u' + arg} toPerson=${Number(arg)} />`;
  if (head === 'notice' && arg === 'new') return html`<${Lazy} name="compose" props=${{}} />`;
  if (head === 'tasks' && arg === 'new') return html`<${Lazy} key="newtask" name="newtask" props=${{}} />`;
  if (head === 'notice' && arg) return html`<${Lazy} key=${arg} name="notice" props=${{ id: Number(arg) }} />`;
  if (lazy[head]) return html`<${Lazy} key=${head} name=${head} props=${{ arg }} />`;
  return html`<${Inbox} />`;
}

function Header() {
  const { status, statusDetail, positions, acting, me, banner } = useStore((s) => s);
  return html`
    <header class="top">
      <h1 class="brand">浙政钉</h1>
      <span class="conn conn-${status}" role="status" aria-live="polite" data-status=${status}>
        ${STATUS[status] || status}${statusDetail && status !== 'online' ? ' · ' + (DETAIL[statusDetail] || statusDetail) : ''}
      </span>
      ${status === 'ended' && statusDetail === 'replaced' && html`
        <button class="link" type="button" onClick=${() => conn.start()}>重新连接</button>`}
      ${positions.length > 0 && html`
        <label class="acting">
          <span class="sr-only">当前岗位</span>
          <select aria-label="当前岗位" value=${acting} onChange=${(e) => setActing(Number(e.target.value))}>
            ${positions.map((p, i) => html`<option value=${p.id}>${positionLabel(p)}${i === 0 ? '（主职）' : '（兼职）'}</option>`)}
          </select>
        </label>`}
      <button class="link" type="button" onClick=${logout} title=${me ? me.name : ''}>退出</button>
    </header>
    ${banner && html`<div class="banner banner-${banner.kind}" role="alert">
      <span data-banner-text>${banner.text}</span>${banner.href && html` <a href=${banner.href} onClick=${() => set({ banner: null })}>${banner.link || '查看'}</a>`}
      <button type="button" class="link" onClick=${() => set({ banner: null })}>知道了</button></div>`}`;
}

// A view that replaces the element holding the focus (a conversation opened from the inbox with
// Enter, a form that moves on when sent) left the focus on <body>: a keyboard user started again
// from the header, a screen reader said nothing of the new view. The focus goes to the new view's
// heading once it is shown (the views loaded on first use take a moment), and only when it was
// lost: a tab of the bottom bar keeps it.
function focusLostToHeading() {
  let frames = 0;
  let raf = 0;
  const settle = () => {
    const a = document.activeElement;
    if (a && a !== document.body && a.isConnected) return;
    const h = document.querySelector('main h2');
    if (h) {
      if (!h.hasAttribute('tabindex')) h.setAttribute('tabindex', '-1');
      h.focus({ preventScroll: true });
    } else if (++frames < 300) {
      raf = requestAnimationFrame(settle);
    }
  };
  raf = requestAnimationFrame(settle);
  return () => cancelAnimationFrame(raf);
}

function Shell() {
  const r = useStore((s) => s.route);
  const unread = useStore((s) => s.conversations.reduce((n, c) => n + (c.unread || 0), 0));
  const toAck = useStore((s) => s.notices.filter(waitingAck).length);
  const badge = { '#/inbox': unread, '#/notices': toAck };
  useEffect(() => { start(); }, []);
  useEffect(() => focusLostToHeading(), [r]);
  const current = '#/' + (r.replace(/^#\/?/, '').split('/')[0] || 'inbox');
  return html`
    <${Header} />
    <main id="main">${route(r)}</main>
    <nav class="tabs" aria-label="主导航">
      ${NAV.map(([href, label]) => html`
        <a href=${href} aria-current=${current === href || (href === '#/inbox' && ['#/chat', '#/position', '#/person'].includes(current)) || (href === '#/notices' && current === '#/notice') ? 'page' : undefined}>${label}${badge[href] > 0
          ? html` <span class="badge" aria-label=${badge[href] + (href === '#/inbox' ? ' 条未读' : ' 条待确认')}>${badge[href]}</span>` : ''}</a>`)}
    </nav>`;
}

export function App() {
  const [session, setSession] = useState(getSession());
  useEffect(() => onSession((s) => setSession(s)), []);
  useEffect(() => { if (!session) go('#/inbox'); }, [!session]);
  return session ? html`<${Shell} key=${session.personId} />` : html`<${Login} />`;
}
