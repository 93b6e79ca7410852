// 登录: password sign-in (POST /api/v1/auth/token).
import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { endedPersonId, endedReason, login } from '../api.js';
import { keptCountOf } from '../outbox.js';

const MESSAGES = { invalid_grant: '账号或密码错误', unauthorized: '账号或密码错误', rate_limited: '尝试次数过多，请稍后再试', forbidden: '账号已停用' };

export function Login() {
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const ended = endedPersonId();
  const kept = ended != null ? keptCountOf(ended) : 0;
  async function submit(e) {
    e.preventDefault();
    const f = new FormData(e.target);
    setBusy(true);
    setError('');
    try {
      await login(String(f.get('login')).trim(), String(f.get('password')));
    } catch (err) {
      setError(MESSAGES[err.code] || err.message || '登录失败');
      setBusy(false);
    }
  }
  return html`
    <main class="login" id="main">
      <h1>浙政钉</h1>
      <p class="muted">按岗位找人 · 政务协同</p>
      ${endedReason() && html`<p class="banner banner-warn" role="status" data-ended>${endedReason()}${kept > 0
        ? html`<br /><span data-kept>${kept} 条消息尚未发出，已保留，重新登录后自动发送</span>` : ''}</p>`}
      <form onSubmit=${submit} class="card">
        <label>账号<input name="login" autocomplete="username" required autofocus /></label>
        <label>密码<input name="password" type="password" autocomplete="current-password" required /></label>
        ${error && html`<p class="error" role="alert">${error}</p>`}
        <button type="submit" disabled=${busy}>${busy ? '正在登录…' : '登录'}</button>
      </form>
    </main>`;
}
