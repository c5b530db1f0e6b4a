// Service worker: keeps the app shell (page, scripts, wasm) for offline use. Network first, so a
// rebuilt app shows up at once; the cache answers when the server is unreachable. Model bytes
// are never cached here: they live in IndexedDB (worker/store.js).

const CACHE = 'wasm-chord-shell-v1';
const SHELL = [
  '/',
  '/index.html',
  '/www/app.js',
  '/www/style.css',
  '/worker/client.js',
  '/worker/protocol.js',
  '/worker/store.js',
  '/worker/worker.js',
  '/pkg/wasm_chord.js',
  '/pkg/wasm_chord_bg.wasm',
];

self.addEventListener('install', (ev) => {
  ev.waitUntil(
    caches
      .open(CACHE)
      .then((c) => Promise.all(SHELL.map((u) => c.add(new Request(u, { cache: 'no-cache' })).catch(() => {}))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (ev) => {
  ev.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

function isShell(url) {
  if (url.origin !== self.location.origin) return false;
  const p = url.pathname;
  return p === '/' || p === '/index.html' || p.startsWith('/www/') || p.startsWith('/worker/') || p.startsWith('/pkg/');
}

self.addEventListener('fetch', (ev) => {
  const req = ev.request;
  if (req.method !== 'GET' || req.headers.has('range')) return;
  const url = new URL(req.url);
  if (!isShell(url)) return;
  ev.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      try {
        const res = await fetch(req);
        if (res.ok) cache.put(req, res.clone()).catch(() => {});
        return res;
      } catch (e) {
        const hit = (await cache.match(req, { ignoreSearch: true })) || (url.pathname === '/' && (await cache.match('/index.html')));
        if (hit) return hit;
        throw e;
      }
    })(),
  );
});
