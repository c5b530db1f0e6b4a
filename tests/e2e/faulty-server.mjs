// A small static server for the download-fault tests, independent of `chord serve`: it serves
// the repository (worker/, pkg/, ...) and models that misbehave on request. Each model URL picks
// its fault in the query string, so tests never share state:
//
//   /faulty/NAME.gguf?fault=F&id=...   NAME from the `models` map given to startFaultyServer
//     fault=none          honest Range server with ETag
//     fault=shift         every 206 after the first comes from one byte later, labelled as such
//                         (Content-Range start+1): the right length from the wrong offset
//     fault=flip-once     the first full pass flips one byte in the third chunk (labels are right)
//     fault=flip          every pass flips that byte
//     fault=change        no ETag/Last-Modified; after `changeAfter` range requests the file is
//                         replaced by `changed` (same size, other bytes)
//     fault=linked-flip   as flip-once, and sends the file's SHA-256 as X-Linked-Etag (LFS style)
//     fault=novalidators  honest, but neither ETag nor Last-Modified
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { extname, join, normalize } from 'node:path';

const TYPES = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.html': 'text/html', '.css': 'text/css', '.json': 'application/json' };

export function sha256(buf) {
  return createHash('sha256').update(buf).digest('hex');
}

/**
 * Start on a free port. `root`: the folder served as-is; `models`: { name: Buffer }; `changed`:
 * { name: Buffer } for fault=change; `chunk`: the chunk size the tests load with.
 */
export function startFaultyServer({ root, models, changed = {}, chunk, changeAfter = 3, extraHeaders = {} }) {
  const counts = new Map(); // url id → range requests seen
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    for (const [k, v] of Object.entries(extraHeaders)) res.setHeader(k, v);
    if (url.pathname === '/__engine.html') {
      // A bare page with the engine on window.engine (client.js → worker.js → pkg/).
      res.writeHead(200, { 'Content-Type': 'text/html' });
      return res.end(`<!doctype html><meta charset="utf-8"><title>engine</title><script type="module">
import { createEngine } from '/worker/client.js';
try {
  window.engine = await createEngine({ workerUrl: new URL('/worker/worker.js', location.href) });
  document.body.dataset.ready = '1';
} catch (e) {
  document.body.dataset.ready = 'error: ' + e.message;
}
</script><body></body>`);
    }
    const m = /^\/faulty\/([^/]+)$/.exec(url.pathname);
    if (m) return serveModel(req, res, url, decodeURIComponent(m[1]));
    const path = normalize(join(root, decodeURIComponent(url.pathname)));
    if (!path.startsWith(root)) return end(res, 403);
    let st;
    try {
      st = statSync(path);
    } catch {
      return end(res, 404);
    }
    if (st.isDirectory()) return end(res, 404);
    res.writeHead(200, { 'Content-Type': TYPES[extname(path)] || 'application/octet-stream', 'Content-Length': st.size, 'Cache-Control': 'no-cache' });
    createReadStream(path).pipe(res);
  });

  function end(res, status) {
    res.writeHead(status, { 'Content-Type': 'text/plain' });
    res.end(String(status));
  }

  function serveModel(req, res, url, name) {
    const fault = url.searchParams.get('fault') || 'none';
    const key = url.search;
    const n = (counts.get(key) || 0) + 1;
    counts.set(key, n);
    let body = models[name];
    if (!body) return end(res, 404);
    if (fault === 'change' && n > changeAfter) body = changed[name];
    const size = body.length;
    const headers = { 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream', 'Cache-Control': 'no-store' };
    if (!['change', 'novalidators'].includes(fault)) headers.ETag = `"${sha256(body).slice(0, 16)}"`;
    if (fault === 'linked-flip') headers['X-Linked-Etag'] = `"${sha256(body)}"`;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range || '');
    if (!range) {
      res.writeHead(200, { ...headers, 'Content-Length': size });
      return res.end(body);
    }
    let start = Number(range[1]);
    let last = range[2] === '' ? size - 1 : Math.min(Number(range[2]), size - 1);
    if (start >= size) {
      res.writeHead(416, { ...headers, 'Content-Range': `bytes */${size}` });
      return res.end();
    }
    let bytes = Buffer.from(body.subarray(start, last + 1));
    const chunkIndex = Math.floor(start / chunk);
    if (fault === 'shift' && start > 0) {
      // The right number of bytes from one byte later, honestly labelled.
      start += 1;
      last = Math.min(last + 1, size - 1);
      bytes = Buffer.from(body.subarray(start, last + 1));
    }
    const firstPass = n <= Math.ceil(size / chunk);
    if (chunkIndex === 2 && (fault === 'flip' || ((fault === 'flip-once' || fault === 'linked-flip') && firstPass))) {
      bytes[17] ^= 0x40;
    }
    res.writeHead(206, { ...headers, 'Content-Range': `bytes ${start}-${last}/${size}`, 'Content-Length': bytes.length });
    res.end(bytes);
  }

  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const base = `http://127.0.0.1:${server.address().port}`;
      resolve({ base, requests: (q) => counts.get(q) || 0, stop: () => new Promise((r) => server.close(() => r())) });
    });
  });
}

/** Opens the server's bare engine page (`/__engine.html`) in `page` and waits until its engine is up. */
export async function openEnginePage(page, server) {
  await page.goto(`${server.base}/__engine.html`);
  await page.waitForFunction(() => document.body?.dataset.ready, null, { timeout: 60_000 });
  assert.equal(await page.evaluate(() => document.body.dataset.ready), '1');
}

export function readModel(path) {
  return readFileSync(path);
}
