// Service worker: keeps the app shell (page, scripts, wasm) for offline use. Network first, so a
// rebuilt app shows up at once; the cache answers when the server is unreachable. Model bytes
// are never cached here: they live in IndexedDB (worker/store.js).
//
// Paths are relative to the registration's scope (the app's root), so the app works offline
// under any sub-path. Same-origin responses get COOP/COEP when the host did not send them (a
// plain static host): once this worker controls the page, it is cross-origin isolated and the
// engine gets shared memory. Failures to cache the shell are reported to the pages
// ({type: 'wasm-chord-sw', failed: [{url, error}]}), on install and when a page asks ('status').

const CACHE = 'wasm-chord-shell-v6';
const SHELL = [
  '',
  'index.html',
  'www/app.js',
  'www/chats.js',
  'www/device.js',
  'www/markdown.js',
  'www/style.css',
  'www/vendor/marked.esm.js',
  'www/vendor/purify.es.js',
  'worker/adapter.js',
  'worker/auto.js',
  'worker/client.js',
  'worker/pool-worker.js',
  'worker/protocol.js',
  'worker/remote.js',
  'worker/store.js',
  'worker/worker.js',
  'pkg/wasm_chord.js',
  'pkg/wasm_chord_bg.wasm',
  // The threaded build, which isolated pages load (its workers' helper script, whose path
  // holds a hash, is cached when first fetched).
  'pkg/threads/wasm_chord.js',
  'pkg/threads/wasm_chord_bg.wasm',
];
const root = () => new URL('./', self.registration.scope);
const STATUS_KEY = () => new URL('__sw-status.json', root()).href;

/** Tell every page of this origin (controlled or not). */
async function tell(msg) {
  const all = await self.clients.matchAll({ includeUncontrolled: true, type: 'window' });
  for (const c of all) c.postMessage({ type: 'wasm-chord-sw', ...msg });
}

async function cacheShell() {
  const cache = await caches.open(CACHE);
  const failed = [];
  await Promise.all(
    SHELL.map(async (p) => {
      const url = new URL(p, root()).href;
      try {
        const res = await fetch(new Request(url, { cache: 'no-cache' }));
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        await cache.put(url, res);
      } catch (e) {
        failed.push({ url, error: String(e && e.message ? e.message : e) });
      }
    }),
  );
  await cache.put(STATUS_KEY(), new Response(JSON.stringify({ failed }), { headers: { 'Content-Type': 'application/json' } }));
  return failed;
}

self.addEventListener('install', (ev) => {
  ev.waitUntil(
    cacheShell()
      .then((failed) => tell({ event: 'install', failed }))
      .catch((e) => tell({ event: 'install', failed: [{ url: root().href, error: String(e) }] }))
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

self.addEventListener('message', (ev) => {
  if (ev.data?.type !== 'status') return;
  ev.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      const hit = await cache.match(STATUS_KEY());
      const { failed } = hit ? await hit.json() : { failed: [] };
      ev.source?.postMessage({ type: 'wasm-chord-sw', event: 'status', failed, isolating: true });
    })(),
  );
});

function isShell(url) {
  const r = root();
  if (url.origin !== r.origin || !url.pathname.startsWith(r.pathname)) return false;
  const p = url.pathname.slice(r.pathname.length);
  return p === '' || p === 'index.html' || p.startsWith('www/') || p.startsWith('worker/') || p.startsWith('pkg/');
}

/** The response with COOP/COEP (and CORP) added where the host sent none. */
function isolate(res) {
  if (!res || res.status === 0 || res.type === 'opaque' || res.headers.get('Cross-Origin-Embedder-Policy')) return res;
  const h = new Headers(res.headers);
  h.set('Cross-Origin-Opener-Policy', 'same-origin');
  h.set('Cross-Origin-Embedder-Policy', 'require-corp');
  h.set('Cross-Origin-Resource-Policy', 'same-origin');
  return new Response(res.body, { status: res.status, statusText: res.statusText, headers: h });
}

self.addEventListener('fetch', (ev) => {
  const req = ev.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  if (req.headers.has('range')) return;
  if (!isShell(url)) {
    // Other same-origin pages and scripts get the isolation headers too; data passes untouched.
    if (req.mode === 'navigate' || req.destination === 'script' || req.destination === 'worker') ev.respondWith(fetch(req).then(isolate));
    return;
  }
  ev.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      try {
        const res = await fetch(req);
        if (res.ok) {
          cache.put(url.href.split('?')[0], res.clone()).catch((e) => tell({ event: 'cache', failed: [{ url: url.href, error: String(e) }] }));
        }
        return isolate(res);
      } catch (e) {
        const r = root();
        const hit = (await cache.match(url.href.split('?')[0])) || (url.pathname === r.pathname && (await cache.match(new URL('index.html', r).href)));
        if (hit) return isolate(hit);
        throw e;
      }
    })(),
  );
});
