// The WebSocket connection (docs/protocol.md): hello with resume, events in seq order exactly
// once, replies by ref, reconnect with jittered backoff, resync when the server asks for it.
//
// The cursor (epoch, last processed seq) is kept per person in localStorage, so a reload or a
// restarted server resumes where the client stopped: duplicates (seq <= cursor) are dropped, a
// gap (seq > cursor + 1) is filled with `sync` before anything later is processed.

import { backoff, errorText, getSession, newId, onSession, refresh, refusedForGood } from './api.js';

const PING_EVERY = 20_000;
const PING_TIMEOUT = 10_000;
const REQUEST_TIMEOUT = 15_000;
const RETRY_FIRST = 2_000;       // a send refused as retryable goes again after this, doubling
const RETRY_MAX = 60_000;
const TERMINAL = { 4503: 'revoked', 4509: 'replaced' };

export class Connection {
  constructor() {
    this.status = 'offline';      // offline | connecting | online | ended
    this.detail = '';
    this.ws = null;
    this.pending = new Map();     // id -> {resolve, reject, timer}
    this.handlers = new Set();    // (event) => void, in seq order
    this.statusHandlers = new Set();
    this.resyncHandlers = new Set();
    this.attempt = 0;
    this.timer = null;
    this.pinger = null;
    this.ids = 0;
    this.syncing = null;
    this.queue = [];
    this.stopped = true;
    this.lastClose = null;
    this.own = null;              // {key, value}: this tab's cursor (see `cursor`)
    window.addEventListener('online', () => { if (!this.stopped && this.status === 'offline') this.connectNow(); });
    // The browser knows the network is gone (Wi-Fi dropped, flight mode) long before a socket
    // would notice: show it at once, and reconnect when 'online' comes.
    window.addEventListener('offline', () => { if (!this.stopped && this.ws) this.drop(this.ws); });
    // The session ended under the connection (a refresh refused for good, early or after a 401):
    // its sends waiting for the connection are given up and the socket, still open on the old
    // token perhaps, is closed — the next sign-in starts a connection of its own.
    onSession((s) => { if (!s && !this.stopped) this.stop(); });
  }

  // This tab's cursor is its own: another tab of the same person processes the same events on
  // its own socket, and reading the cursor it stored made this tab drop them as duplicates (a
  // second tab's inbox stood still). localStorage keeps the furthest cursor of any tab, read
  // once when this tab starts (or signs in as someone else), for the next start to resume from.
  get cursorKey() { return 'zzd.cursor.' + (getSession()?.personId ?? 'anon'); }
  get cursor() {
    const key = this.cursorKey;
    if (this.own?.key !== key) this.own = { key, value: stored(key) };
    return this.own.value;
  }
  // A new starting point (the first hello, a resync): stored as it is, even when behind.
  setCursor(epoch, seq) {
    const key = this.cursorKey;
    this.own = { key, value: { epoch, seq } };
    localStorage.setItem(key, JSON.stringify({ epoch, seq }));
  }
  // An event processed: stored unless another tab has stored a further one.
  advance(epoch, seq) {
    const key = this.cursorKey;
    this.own = { key, value: { epoch, seq } };
    const kept = stored(key);
    if (!kept || kept.epoch !== epoch || kept.seq < seq) localStorage.setItem(key, JSON.stringify({ epoch, seq }));
  }

  onEvent(fn) { this.handlers.add(fn); return () => this.handlers.delete(fn); }
  onStatus(fn) { this.statusHandlers.add(fn); return () => this.statusHandlers.delete(fn); }
  onResync(fn) { this.resyncHandlers.add(fn); return () => this.resyncHandlers.delete(fn); }

  setStatus(status, detail = '') {
    this.status = status;
    this.detail = detail;
    for (const fn of this.statusHandlers) fn(status, detail);
  }

  start() {
    this.stopped = false;
    this.connectNow();
  }

  // Stop for good (退出, the session ended): what waits for this connection — sends included —
  // is given up ('ended'), so nothing of this session goes out on the next one's socket.
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000);
    for (const [, p] of this.pending) { clearTimeout(p.timer); p.reject(ended()); }
    this.pending.clear();
    this.setStatus('offline');
  }

  connectNow() {
    clearTimeout(this.timer);
    if (this.stopped || (this.ws && this.ws.readyState <= 1)) return;
    const s = getSession();
    if (!s) { this.setStatus('ended', 'signed-out'); return; }
    this.setStatus('connecting');
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => this.hello(ws);
    ws.onmessage = (m) => this.receive(ws, m);
    ws.onclose = (e) => this.closed(ws, e);
  }

  async hello(ws) {
    const c = this.cursor;
    const frame = { type: 'hello', v: 1, token: getSession()?.access };
    if (c) frame.resume = { epoch: c.epoch, since: c.seq };
    try {
      const data = await this.request(frame, ws);
      this.attempt = 0;
      if (!c) {
        this.setCursor(data.epoch, data.last_seq);
      } else if (!data.resumed) {
        // The server cannot replay what we missed: reload state, then continue from last_seq.
        this.setCursor(data.epoch, data.last_seq);
        for (const fn of this.resyncHandlers) fn(data.resync_required || 'resync_required');
      }
      this.setStatus('online');
      clearInterval(this.pinger);
      this.pinger = setInterval(() => this.ping(ws), PING_EVERY);
    } catch (e) {
      // Errors before authentication close the socket (close codes do the rest).
    }
  }

  async ping(ws) {
    if (ws !== this.ws || ws.readyState !== 1) return;
    try { await this.request({ type: 'ping' }, ws, PING_TIMEOUT); } catch { if (ws === this.ws) this.drop(ws); }
  }

  // Give up on a socket now: on a dead network its close handshake (and onclose) can take
  // minutes, so the connection counts as closed at once and reconnects as after any drop.
  drop(ws) {
    ws.close(4000);
    this.closed(ws, { code: 4000 });
  }

  closed(ws, e) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.lastClose = e.code;
    clearInterval(this.pinger);
    for (const [, p] of this.pending) { clearTimeout(p.timer); p.reject(Object.assign(new Error('连接已断开'), { code: 'disconnected' })); }
    this.pending.clear();
    if (this.stopped) return;
    if (TERMINAL[e.code]) { this.setStatus('ended', TERMINAL[e.code]); return; }
    if (e.code === 4401) { this.renew(); return; }
    this.later(() => this.connectNow());
  }

  // The socket's token was refused (4401): refresh it, then reconnect at once. Only a refusal of
  // the refresh itself (a 4xx other than 408 and 429: invalid_grant …) ends the session; a
  // refresh lost on the network, or answered 408, 429 or 5xx, says nothing about the session,
  // so it is tried again — after the answer's Retry-After when it gives one (a 429 asks for
  // that long), else with the reconnect back-off, and at once when the browser comes back
  // online (the next hello is refused again and refreshes again) — until it succeeds.
  renew() {
    this.setStatus('connecting');
    refresh().then(() => this.connectNow(), (err) => {
      if (this.stopped) return;
      if (!getSession() || refusedForGood(err.status)) { this.setStatus('ended', 'signed-out'); return; }
      this.later(() => this.renew(), err.retryAfter);
    });
  }

  // Try `again` after `seconds` when the server asked for that wait, else after the jittered
  // back-off (0.5 s doubling to 30 s), or when the browser says the network is back ('online'
  // reconnects).
  later(again, seconds = 0) {
    clearTimeout(this.timer);
    if (navigator.onLine === false) { this.setStatus('offline', '网络不可用'); return; }
    let delay = seconds * 1000;
    if (!(delay > 0)) { delay = backoff(this.attempt); this.attempt = Math.min(this.attempt + 1, 8); }
    this.setStatus('offline', `${Math.round(delay / 1000)} 秒后重连`);
    this.timer = setTimeout(again, delay);
  }

  receive(ws, m) {
    if (ws !== this.ws) return;                         // a socket given up on (drop)
    let f;
    try { f = JSON.parse(m.data); } catch { return; }
    if (f.type === 'event') {
      if (this.syncing) this.queue.push(f); else this.deliver(f);
      return;
    }
    const p = f.ref != null && this.pending.get(f.ref);
    if (!p) return;
    this.pending.delete(f.ref);
    clearTimeout(p.timer);
    if (f.type === 'ok') p.resolve(f.data);
    else p.reject(Object.assign(new Error(errorText(f.code, f.message)), { code: f.code, data: f.data, serverMessage: f.message,
                                                                           retryable: f.retryable === true }));
  }

  deliver(f) {
    const c = this.cursor;
    if (c && f.seq <= c.seq) return;                   // duplicate around a reconnect
    if (c && f.seq > c.seq + 1) {                        // a gap: fetch the missing part first
      this.queue.push(f);
      this.fill(c);
      return;
    }
    this.advance(c ? c.epoch : '', f.seq);
    for (const fn of this.handlers) {
      try { fn(f); } catch (err) { console.error(err); }
    }
  }

  async fill(c) {
    if (this.syncing) return;
    this.syncing = (async () => {
      let since = c.seq;
      try {
        for (;;) {
          const page = await this.request({ type: 'sync', epoch: c.epoch, since, limit: 500 });
          for (const ev of page.events) this.deliver({ type: 'event', ...ev });
          since = page.next_since;
          if (!page.limited) break;
        }
      } catch (e) {
        if (e.code === 'resync_required') {
          this.setCursor(e.data.epoch, e.data.last_seq);
          for (const fn of this.resyncHandlers) fn('resync_required');
        } else {
          // The socket dropped or the sync timed out: the gap is still there. Drop what waited
          // behind it (the next hello resumes from the cursor and replays it) and reconnect,
          // instead of retrying the sync at once on a closed socket, over and over.
          this.queue = [];
          if (this.ws) this.drop(this.ws);
        }
      }
    })();
    await this.syncing;
    this.syncing = null;
    const q = this.queue.sort((a, b) => a.seq - b.seq);
    this.queue = [];
    for (const f of q) this.deliver(f);
  }

  request(frame, ws = this.ws, timeout = REQUEST_TIMEOUT) {
    return new Promise((resolve, reject) => {
      if (!ws || ws.readyState !== 1) { reject(Object.assign(new Error('未连接'), { code: 'disconnected' })); return; }
      const id = String(++this.ids);
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(Object.assign(new Error('请求超时'), { code: 'timeout' }));
      }, timeout);
      this.pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ ...frame, id }));
    });
  }

  // Wait until online (or ended, or stopped).
  ready() {
    if (this.status === 'online') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const off = this.onStatus((st) => {
        if (st === 'online') { off(); resolve(); }
        if (st === 'ended' || this.stopped) { off(); reject(ended()); }
      });
    });
  }

  // A send that survives drops: same client_msg_id on every retry (docs/protocol.md "send").
  // A refusal the server marks `retryable` (rate_limited, unavailable) is not final either: the
  // same send goes again later, after `data.retry_after` seconds when given, else backing off
  // from 2 s to a minute. Any other refusal is final and rejects.
  async sendReliable(frame) {
    const f = { ...frame, client_msg_id: frame.client_msg_id || newId('m') };
    let wait = RETRY_FIRST;
    for (;;) {
      await this.ready();
      try {
        return await this.request(f);
      } catch (e) {
        if (e.code === 'disconnected' || e.code === 'timeout') continue;
        if (!e.retryable && e.code !== 'unavailable') throw e;
        const after = Number(e.data?.retry_after);
        await new Promise((resolve) => { setTimeout(resolve, after > 0 ? after * 1000 : wait); });
        wait = Math.min(wait * 2, RETRY_MAX);
      }
    }
  }
}

function stored(key) {
  try { return JSON.parse(localStorage.getItem(key)); } catch { return null; }
}

function ended() { return Object.assign(new Error('会话已结束'), { code: 'ended' }); }

export const conn = new Connection();
