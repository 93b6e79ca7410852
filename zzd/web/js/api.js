// REST client over the public API (docs/protocol.md "REST"), with the session's tokens.
//
// The access token lives in memory and localStorage (so a reload stays signed in); it is
// refreshed a minute before it expires. Refresh tokens are single use and reusing one revokes
// the session, so refreshing is serialised across tabs with the Web Locks API: a tab that
// waited re-reads the stored tokens and uses the other tab's fresh pair instead of refreshing.
//
// Only a refresh refused for good (a 4xx other than 408 and 429: invalid_grant …) ends the
// session. One lost on the network or answered 408, 429 or 5xx says nothing about the session:
// the early refresh goes again on the reconnect's back-off (at once on 'online'), or after the
// answer's Retry-After (429, 503) when it gives one, before the access token runs out.

const KEY = 'zzd.session';
const listeners = new Set();
let session = load();
let refreshTimer = null;

function load() {
  try { return JSON.parse(localStorage.getItem(KEY)) || null; } catch { return null; }
}

function save(s) {
  session = s;
  if (s) localStorage.setItem(KEY, JSON.stringify(s)); else localStorage.removeItem(KEY);
  schedule();
  for (const fn of listeners) fn(s);
}

export function getSession() { return session; }

// Why the last session ended without 退出 (shown on the sign-in page), or ''.
let endReason = '';
let endedPerson = null;
export function endedReason() { return endReason; }
// Whose session that was (its kept sends wait for the next sign-in), or null.
export function endedPersonId() { return endReason ? endedPerson : null; }
export function endSession(reason) {
  endReason = reason;
  endedPerson = session?.personId ?? null;
  save(null);
}
export function onSession(fn) { listeners.add(fn); return () => listeners.delete(fn); }

// The server's error messages are English, for developers (docs/protocol.md "Errors"): a person
// reads the code's meaning in Chinese; where the server names what was wrong with the input, its
// message follows as the detail. Views with a better word for a code still use their own.
const ERROR_TEXT = {
  forbidden: '无权执行此操作', insufficient_scope: '无权执行此操作', no_grant: '没有管理权限',
  not_found: '找不到该内容（可能已删除或无权查看）', out_of_scope: '超出管辖范围',
  rate_limited: '操作太频繁，请稍后再试', stale_version: '内容已被他人更新，请刷新后重试',
  invalid_transition: '当前状态下不能执行此操作', conflict: '操作冲突，请刷新后重试', already_exists: '已存在',
  payload_too_large: '文件太大', unsupported_media_type: '不支持的文件类型，请选择照片',
  checksum_mismatch: '文件传输出错，请重试', incomplete_upload: '上传中断，请重试',
  unknown_attachment: '附件无效，请重新添加', unknown_category: '事件类别无效', invalid_location: '位置无效',
  group_too_large: '群成员人数超过上限', unavailable: '服务器繁忙，请稍后重试', internal_error: '服务器出错，请稍后重试',
  unauthorized: '登录已失效，请重新登录', token_expired: '登录已过期，请重新登录', invalid_grant: '账号或密码错误',
  resync_required: '需要重新同步', idempotency_key_reused: '重复提交', address_not_allowed: '地址不被允许',
};
const INPUT_CODES = new Set(['bad_request', 'invalid_body', 'invalid_json', 'invalid_text', 'invalid_frame',
  'length_required', 'method_not_allowed', 'unknown_type']);

export function errorText(code, message) {
  if (ERROR_TEXT[code]) return ERROR_TEXT[code];
  if (INPUT_CODES.has(code)) return '输入有误' + (message ? '：' + message : '');
  return message || '操作失败';
}

export class ApiError extends Error {
  constructor(status, body, retryAfter = 0) {
    const e = (body && body.error) || {};
    const code = e.code || 'http_' + status;
    super(code === 'network' ? e.message : errorText(code, e.message || `HTTP ${status}`));
    this.status = status;
    this.code = code;
    this.serverMessage = e.message || '';
    this.data = e.data || {};
    this.retryAfter = retryAfter;   // seconds the answer asked to wait (429, 503), or 0
  }
}

// How long a 429 or 503 asks to wait, in seconds: its Retry-After header (seconds or an HTTP
// date; a gateway in front may send only that), else the body's `data.retry_after` (the server
// sends both, docs/protocol.md "Errors"); 0 when neither says.
function retryAfterOf(r, j) {
  if (r.status !== 429 && r.status !== 503) return 0;
  const h = r.headers.get('retry-after');
  const secs = h == null ? NaN : /^\s*\d+\s*$/.test(h) ? Number(h) : (Date.parse(h) - Date.now()) / 1000;
  const body = Number(j?.error?.data?.retry_after);
  return secs > 0 ? secs : body > 0 ? body : 0;
}

// A refresh refused for good: the request itself is wrong for the server (400, 401/403
// invalid_grant: the refresh token used, unknown or revoked …). 408 and 429 are not refusals.
export function refusedForGood(status) { return status >= 400 && status < 500 && status !== 408 && status !== 429; }

// The reconnect's back-off, also the early refresh's: jittered, 0.5 s doubling to 30 s.
export function backoff(attempt) { return Math.min(30_000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2); }

// fetch, with a network failure (offline, server unreachable) turned into an ApiError whose
// message a person can read, instead of the browser's "Failed to fetch".
export const NETWORK_MESSAGE = '网络不可用或服务器无法连接，请稍后重试';
async function send(path, init) {
  try {
    return await fetch(path, init);
  } catch {
    throw new ApiError(0, { error: { code: 'network', message: NETWORK_MESSAGE } });
  }
}

// `signedInAt`: when the person signed in (password or activation code); a refresh keeps it. What
// is shown once per sign-in (the DING banner for notices owed, js/notices.js) is keyed by it.
function fromTokenReply(j, signedInAt = Date.now()) {
  return { access: j.access_token, refresh: j.refresh_token, expiresAt: Date.now() + j.expires_in * 1000,
           personId: j.person_id, signedInAt };
}

export async function login(loginName, password) {
  endReason = '';
  const r = await send('/api/v1/auth/token', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ grant_type: 'password', login: loginName, password }),
  });
  const j = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, j);
  save(fromTokenReply(j));
  return session;
}

// First sign-in with the one-time activation code an administrator's `zzd person import` or
// `zzd person code` handed out (docs/admin.md): the person chooses their password, and the
// answer is a sign-in's. Before, the sign-in page had no way to use the code: typed as the
// password it read 账号或密码错误, and a newly seated person could not get in at all.
export async function activate(loginName, code, password) {
  endReason = '';
  const r = await send('/api/v1/auth/activate', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ login: loginName, code, password }),
  });
  const j = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, j);
  save(fromTokenReply(j));
  return session;
}

async function doRefresh(stale) {
  const run = async () => {
    const current = load();
    if (!current) { save(null); return null; }
    // Another tab refreshed while this one waited: take its tokens.
    if (stale && current.access !== stale.access) { session = current; schedule(); return current; }
    const r = await send('/api/v1/auth/token', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ grant_type: 'refresh_token', refresh_token: current.refresh }),
    });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) {
      if (refusedForGood(r.status)) endSession('登录已过期，请重新登录');
      throw new ApiError(r.status, j, retryAfterOf(r, j));
    }
    save({ ...fromTokenReply(j, current.signedInAt), personId: current.personId });
    return session;
  };
  if (navigator.locks) return navigator.locks.request('zzd-token-refresh', run);
  return run();
}

let inflight = null;
export function refresh() {
  const stale = session;
  if (!inflight) inflight = doRefresh(stale).finally(() => { inflight = null; });
  return inflight;
}

// The early refresh, a minute before the access token expires (not before 5 s). A failure that
// is no refusal is tried again: after the answer's Retry-After, else on the back-off, or at once
// when the browser comes back online (no timer runs while it says it is offline).
let refreshAttempt = 0;
let refreshWaitsOnline = false;

function schedule(retryIn) {
  clearTimeout(refreshTimer);
  refreshWaitsOnline = false;
  if (!session) return;
  if (retryIn === undefined) refreshAttempt = 0;
  else if (retryIn === null) { refreshWaitsOnline = true; return; }
  const wait = retryIn ?? Math.max(5_000, session.expiresAt - Date.now() - 60_000);
  refreshTimer = setTimeout(early, wait);
}

function early() {
  refresh().catch((e) => {
    if (!session || refusedForGood(e.status)) return;   // ended: the sign-in page says so
    if (e.retryAfter > 0) schedule(e.retryAfter * 1000);
    else if (navigator.onLine === false) schedule(null);
    else { schedule(backoff(refreshAttempt)); refreshAttempt = Math.min(refreshAttempt + 1, 8); }
  });
}
addEventListener('online', () => { if (refreshWaitsOnline) { refreshWaitsOnline = false; early(); } });
schedule();

export async function logout() {
  const s = session;
  save(null);
  if (s) {
    await fetch('/api/v1/auth/logout', { method: 'POST', headers: { authorization: 'Bearer ' + s.access } })
      .catch(() => {});
  }
}

// fetch with the bearer token; one refresh and retry on an expired token.
export async function api(path, { method = 'GET', body, headers = {}, raw = false } = {}) {
  for (let attempt = 0; ; attempt++) {
    if (!session) throw new ApiError(401, { error: { code: 'unauthorized', message: '未登录' } });
    const h = { authorization: 'Bearer ' + session.access, ...headers };
    let payload = body;
    if (body !== undefined && !(body instanceof Blob) && !(body instanceof ArrayBuffer)) {
      h['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    const r = await send(path, { method, headers: h, body: payload });
    if (r.status === 401 && attempt === 0) {
      await refresh();
      continue;
    }
    if (raw) { if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => ({}))); return r; }
    const j = r.status === 204 ? {} : await r.json().catch(() => ({}));
    if (!r.ok) throw new ApiError(r.status, j);
    return j;
  }
}

export async function sha256Hex(buf) {
  const d = await crypto.subtle.digest('SHA-256', buf);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

// docs/uploads.md: raw body, Content-Type image/*, X-Content-SHA256.
export async function upload(file) {
  const buf = await file.arrayBuffer();
  const digest = await sha256Hex(buf);
  return api('/api/v1/uploads', {
    method: 'POST', body: buf,
    headers: { 'content-type': file.type || 'image/jpeg', 'x-content-sha256': digest },
  });
}

// An <img> cannot send a bearer token: fetch the photo and show it from a blob URL.
const blobs = new Map();
export async function photoUrl(digest) {
  if (!blobs.has(digest)) {
    blobs.set(digest, api('/api/v1/uploads/' + digest, { raw: true })
      .then((r) => r.blob()).then((b) => URL.createObjectURL(b))
      .catch((e) => { blobs.delete(digest); throw e; }));
  }
  return blobs.get(digest);
}

export function newId(prefix = 'w') {
  const a = new Uint8Array(8);
  crypto.getRandomValues(a);
  return prefix + '-' + [...a].map((b) => b.toString(16).padStart(2, '0')).join('');
}
