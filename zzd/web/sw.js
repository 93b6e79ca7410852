// Service worker: keeps the shell (HTML, modules, styles) available offline. API responses are
// never cached here; the client keeps its last synced inbox in localStorage itself.
const CACHE = 'zzd-shell-v7';
const SHELL = [
  '/', '/web/app.css', '/web/manifest.webmanifest', '/web/icon.svg',
  '/web/js/main.js', '/web/js/app.js', '/web/js/api.js', '/web/js/conn.js', '/web/js/store.js',
  '/web/js/session.js', '/web/js/names.js', '/web/js/views/login.js', '/web/js/views/inbox.js',
  '/web/js/views/chat.js', '/web/js/views/mentions.js', '/web/js/views/photo.js', '/web/js/notices.js',
  '/web/js/outbox.js', '/web/js/system.js', '/web/js/drafts.js',
  // The views loaded when first opened: offline, every tab still opens (with the last synced data).
  '/web/js/views/search.js', '/web/js/views/org.js', '/web/js/views/compose.js', '/web/js/views/notices.js',
  '/web/js/views/dashboard.js', '/web/js/views/tasks.js', '/web/js/views/report.js', '/web/js/views/group.js',
  '/web/js/views/target.js', '/web/js/views/task_new.js', '/web/js/views/form.js',
  '/vendor/preact/dist/preact.mjs', '/vendor/preact/hooks/dist/hooks.mjs', '/vendor/htm/dist/htm.mjs',
  '/vendor/htm/preact/index.mjs',
];

self.addEventListener('install', (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (e) => {
  e.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

// Network first for the shell (so a deploy is picked up at once), the cache when offline.
self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== 'GET' || url.origin !== location.origin) return;
  if (!(url.pathname === '/' || url.pathname.startsWith('/web/') || url.pathname.startsWith('/vendor/'))) return;
  e.respondWith(fetch(e.request).then((r) => {
    if (r.ok) { const copy = r.clone(); caches.open(CACHE).then((c) => c.put(e.request, copy)); }
    return r;
  }).catch(() => caches.match(e.request).then((m) => {
    if (m) return m;
    // Only a page load falls back to the shell page: a module or style answered with HTML
    // would fail as a module of the wrong type instead of as a network error.
    if (e.request.mode === 'navigate') return caches.match('/');
    return Response.error();
  })));
});
