// 登录: password sign-in (POST /api/v1/auth/token), or the first sign-in with a one-time
// activation code (POST /api/v1/auth/activate), where the person chooses their password.
import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { activate, endedPersonId, endedReason, login } from '../api.js';
import { keptCountOf } from '../outbox.js';

const MESSAGES = { invalid_grant: '账号或密码错误', unauthorized: '账号或密码错误', rate_limited: '尝试次数过多，请稍后再试', forbidden: '账号已停用' };
// The server answers a wrong, used or expired code, an unknown login and a disabled account
// alike (401 invalid_grant), so the page cannot say which.
const ACTIVATE_MESSAGES = { ...MESSAGES, invalid_grant: '账号或激活码无效（激活码只能使用一次，可能已使用或已过期，请向管理员重新领取）' };
const MIN_PASSWORD = 8;   // docs/admin.md: a password under 8 characters is refused

export function Login() {
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const [first, setFirst] = useState(false);   // 首次登录: the activation form
  const ended = endedPersonId();
  const kept = ended != null ? keptCountOf(ended) : 0;
  async function submit(e) {
    e.preventDefault();
    const f = new FormData(e.target);
    const name = String(f.get('login')).trim();
    if (first) {
      const password = String(f.get('new-password'));
      if (password.length < MIN_PASSWORD) { setError(`新密码至少 ${MIN_PASSWORD} 位`); return; }
      if (password !== String(f.get('confirm'))) { setError('两次输入的新密码不一致'); return; }
    }
    setBusy(true);
    setError('');
    try {
      if (first) await activate(name, String(f.get('code')).trim(), String(f.get('new-password')));
      else await login(name, String(f.get('password')));
    } catch (err) {
      setError((first ? ACTIVATE_MESSAGES : MESSAGES)[err.code] || err.message || '登录失败');
      setBusy(false);
    }
  }
  function toggle() { setFirst(!first); setError(''); }
  return html`
    <main class="login" id="main">
      <h1>浙政钉</h1>
      <p class="muted">按岗位找人 · 政务协同</p>
      ${endedReason() && html`<p class="banner banner-warn" role="status" data-ended>${endedReason()}${kept > 0
        ? html`<br /><span data-kept>${kept} 条消息尚未发出，已保留，重新登录后自动发送</span>` : ''}</p>`}
      <form onSubmit=${submit} class="card" key=${first ? 'activate' : 'login'} data-form=${first ? 'activate' : 'login'}>
        ${first && html`<h2 class="form-title">首次登录：用激活码设置密码</h2>`}
        <label>账号<input name="login" autocomplete="username" required autofocus /></label>
        ${first ? html`
          <label>激活码<input name="code" autocomplete="one-time-code" required spellcheck="false" /></label>
          <label>新密码（至少 ${MIN_PASSWORD} 位）<input name="new-password" type="password" autocomplete="new-password" required /></label>
          <label>确认新密码<input name="confirm" type="password" autocomplete="new-password" required /></label>`
        : html`<label>密码<input name="password" type="password" autocomplete="current-password" required /></label>`}
        ${error && html`<p class="error" role="alert">${error}</p>`}
        <button type="submit" disabled=${busy}>${busy ? '正在登录…' : first ? '设置密码并登录' : '登录'}</button>
      </form>
      <p><button type="button" class="link" onClick=${toggle}>${first ? '已有密码？返回密码登录' : '首次使用？用激活码设置密码'}</button></p>
    </main>`;
}
