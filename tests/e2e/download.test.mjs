// The IndexedDB downloader through the client API: resume after a reload and after the server was
// killed (counting the bytes it sends), retry after a dropped connection, start over when the ETag
// changes, a server without Range, too little storage (checked up front, and running out
// mid-download), non-streamed completions.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { MODEL, MODEL_PATH, makeModelsDir, startServer, launchBrowser, nativeReply } from './helpers.mjs';

const T = { timeout: 240_000 };
const MiB = 1024 * 1024;
const SIZE = 105454144;
let models;
let server;
let browser;
let page;
const log = (...a) => console.log('#', ...a);

before(async () => {
  models = makeModelsDir();
  copyFileSync(MODEL_PATH, join(models.dir, 'copy.gguf'));
  server = await startServer(['--models', models.dir], { testControls: true });
  browser = await launchBrowser();
  page = await browser.context.newPage();
  page.on('pageerror', (e) => log('page error:', e.message));
  await page.goto(`${server.base}/?nosw`);
  await page.waitForSelector('body[data-state="idle"]', { timeout: 60_000 });
});

after(async () => {
  await browser?.close();
  server?.stop();
  models?.cleanup();
});

/** engine.load in the page; resolves to {first progress bytes, info or error}. */
function load(url, { abortAt } = {}) {
  return page.evaluate(
    async ({ url, abortAt }) => {
      const seen = [];
      const ac = new AbortController();
      try {
        const info = await window.chord.engine.load(url, {
          signal: ac.signal,
          onProgress: (p) => {
            if (p.phase !== 'download') return;
            seen.push(p.loaded);
            if (abortAt && p.loaded >= abortAt) ac.abort();
          },
        });
        return { seen, info };
      } catch (e) {
        return { seen, error: { code: e.code, message: e.message } };
      }
    },
    { url, abortAt },
  );
}

const cached = (url) => page.evaluate(async (url) => (await window.chord.engine.cache.list()).find((m) => m.url === url) || null, url);

test('an aborted download resumes from the first missing chunk, also after a reload', T, async () => {
  const url = `${server.base}/models/${MODEL}`;
  await server.control('rate=30000000');
  const a = await load(url, { abortAt: 40 * MiB });
  assert.equal(a.error?.code, 'aborted', JSON.stringify(a.error));
  const partial = await cached(url);
  log('partial entry:', JSON.stringify(partial));
  assert.ok(partial && !partial.complete && partial.stored >= 32 * MiB, 'chunks stay in IndexedDB');
  await page.reload();
  await page.waitForSelector('body[data-state="idle"]', { timeout: 60_000 });
  await server.control('rate=0');
  const t0 = Date.now();
  const b = await load(url);
  assert.ok(b.info, JSON.stringify(b.error));
  log(`resumed at ${b.seen[0]} bytes; finished in ${Date.now() - t0} ms`);
  assert.equal(b.seen[0], partial.stored, 'the download resumes where it stopped');
  assert.equal((await cached(url)).complete, true);
});

test('the server killed mid-download and restarted: only the missing chunks are fetched again', T, async () => {
  const url = `${server.base}/models/copy.gguf?killed`;
  await server.control('rate=30000000&sent=0');
  await page.evaluate((url) => {
    window.__killed = window.chord.engine.load(url).then(
      (info) => ({ info }),
      (e) => ({ error: { code: e.code, message: e.message } }),
    );
  }, url);
  for (let i = 0; ; i++) {
    const c = await cached(url);
    if (c && c.stored >= 32 * MiB) break;
    assert.ok(i < 600, 'two chunks should arrive within a minute');
    await new Promise((r) => setTimeout(r, 100));
  }
  const port = server.port;
  await server.stop();
  const a = await page.evaluate(() => window.__killed);
  log('with the server gone:', JSON.stringify(a.error));
  assert.equal(a.error?.code, 'network', JSON.stringify(a));
  const partial = await cached(url);
  assert.ok(partial && !partial.complete && partial.stored >= 32 * MiB, JSON.stringify(partial));
  server = await startServer(['--models', models.dir], { port, testControls: true });
  const b = await load(url);
  assert.ok(b.info, JSON.stringify(b.error));
  const { sent } = await server.control('');
  log(`cached before the restart: ${partial.stored} bytes; the new server sent ${sent} bytes`);
  assert.equal(sent, SIZE - partial.stored, 'the server sends only the chunks that were missing');
  assert.equal((await cached(url)).complete, true);
  assert.equal(await page.evaluate((u) => window.chord.engine.cache.delete(u), url), true);
});

test('a quota smaller than the model: a clear error before any byte is downloaded', T, async () => {
  // navigator.storage.estimate() is what the worker checks first. Chromium's estimate ignores
  // quota overrides, so this worker is started with an estimate that reports 20 MiB free.
  const url = `${server.base}/models/copy.gguf?smallquota`;
  await server.control('sent=0');
  const r = await page.evaluate(async (url) => {
    const { createEngine } = await import('/worker/client.js');
    const src = `navigator.storage.estimate = async () => ({ usage: 0, quota: ${20 * 1048576} });
      await import(${JSON.stringify(new URL('/worker/worker.js', location.href).href)});`;
    const workerUrl = URL.createObjectURL(new Blob([src], { type: 'text/javascript' }));
    const engine = await createEngine({ workerUrl });
    try {
      await engine.load(url);
      return { ok: true };
    } catch (e) {
      return { code: e.code, message: e.message, cached: (await engine.cache.list()).some((m) => m.url === url) };
    } finally {
      engine.terminate();
    }
  }, url);
  log('quota error:', JSON.stringify(r));
  assert.equal(r.code, 'quota', JSON.stringify(r));
  assert.match(r.message, /needs 101 MB but the browser allows only 20 MB/);
  assert.equal(r.cached, false, 'no cache entry is left');
  const { sent } = await server.control('');
  assert.ok(sent <= 16 * MiB, `at most the first chunk's response was started (${sent} bytes sent)`);
});

test('storage runs out mid-download: a quota error, the stored chunks kept, then it resumes', T, async () => {
  // A fresh profile, so the quota below is all this model gets. Real enforcement: IndexedDB
  // writes fail with QuotaExceededError past 40 MiB.
  const b2 = await launchBrowser();
  try {
    const p2 = await b2.context.newPage();
    await p2.goto(`${server.base}/?nosw`);
    await p2.waitForSelector('body[data-state="idle"]', { timeout: 60_000 });
    const url = `${server.base}/models/copy.gguf?quota`;
    const cdp = await b2.context.newCDPSession(p2);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.base, quotaSize: 40 * MiB });
    const loadIn = (url) =>
      p2.evaluate(async (url) => {
        try {
          return { info: await window.chord.engine.load(url) };
        } catch (e) {
          return { error: { code: e.code, message: e.message } };
        }
      }, url);
    const entry = () => p2.evaluate(async (url) => (await window.chord.engine.cache.list()).find((m) => m.url === url) || null, url);
    const a = await loadIn(url);
    log('quota error:', JSON.stringify(a.error));
    assert.equal(a.error?.code, 'quota', JSON.stringify(a));
    assert.match(a.error.message, /ran out of storage/);
    const partial = await entry();
    log('kept:', JSON.stringify(partial));
    assert.ok(partial && !partial.complete && partial.stored >= 16 * MiB && partial.stored < 40 * MiB, JSON.stringify(partial));
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.base });
    await server.control('sent=0');
    const b = await loadIn(url);
    assert.ok(b.info, JSON.stringify(b.error));
    const { sent } = await server.control('');
    assert.equal(sent, SIZE - partial.stored, 'with space again it fetches only the missing chunks');
    assert.equal((await entry()).complete, true);
  } finally {
    await b2.close();
  }
});

test('a dropped connection is retried and the download completes', T, async () => {
  const url = `${server.base}/models/${MODEL}?dropped`;
  await server.control('drop_after=20000000');
  const t0 = Date.now();
  const r = await load(url);
  const ms = Date.now() - t0;
  assert.ok(r.info, JSON.stringify(r.error));
  assert.equal(r.info.size, SIZE);
  log(`download + load of ${(SIZE / 1e6).toFixed(1)} MB: ${ms} ms (${(SIZE / 1e6 / (r.info.download_ms / 1000)).toFixed(0)} MB/s download, load ${Math.round(r.info.load_ms)} ms)`);
  const c = await cached(url);
  assert.equal(c.complete, true);
  assert.equal(c.stored, SIZE);
});

test('a changed ETag starts the download over cleanly', T, async () => {
  const url = `${server.base}/models/copy.gguf`;
  await server.control('rate=30000000');
  const a = await load(url, { abortAt: 20 * MiB });
  assert.equal(a.error?.code, 'aborted');
  const before_ = await cached(url);
  assert.ok(before_ && before_.stored > 0);
  // A new modification time → a new ETag.
  const t = new Date(Date.now() + 3600_000);
  utimesSync(join(models.dir, 'copy.gguf'), t, t);
  await server.control('rate=0');
  const b = await load(url);
  assert.ok(b.info, JSON.stringify(b.error));
  assert.equal(Math.min(...b.seen), 0, 'started over from byte 0');
  const after_ = await cached(url);
  assert.notEqual(after_.etag, before_.etag);
  assert.equal(after_.stored, SIZE);
});

test('a server without Range: one streamed response, stored chunk by chunk', T, async () => {
  const url = `${server.base}/models/${MODEL}?norange`;
  await server.control('range=off');
  try {
    const r = await load(url);
    assert.ok(r.info, JSON.stringify(r.error));
    const c = await cached(url);
    assert.equal(c.complete, true);
    assert.equal(c.stored, SIZE);
  } finally {
    await server.control('range=on');
  }
});

test('non-streamed completion with usage; delete empties the cache entry', T, async () => {
  const r = await page.evaluate(async () =>
    window.chord.engine.chat.completions.create({
      messages: [{ role: 'user', content: 'Say hi.' }],
      max_tokens: 8,
      temperature: 0,
    }),
  );
  log('completion:', JSON.stringify(r));
  assert.equal(r.object, 'chat.completion');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(r.usage.completion_tokens > 0 && r.usage.completion_tokens <= 8);
  const url = `${server.base}/models/${MODEL}?norange`;
  assert.equal(await page.evaluate((u) => window.chord.engine.cache.delete(u), url), true);
  assert.equal(await cached(url), null);
});

test('a local file loads without the network or the cache and chats like the native engine', T, async () => {
  const expected = nativeReply('Hello!', 12);
  await page.selectOption('#model-select', 'file');
  await page.setInputFiles('#file-input', MODEL_PATH);
  await page.click('#load-btn');
  await page.waitForSelector('body[data-state="ready"]', { timeout: 120_000 });
  const info = await page.evaluate(() => window.chord.model);
  assert.equal(info.file, MODEL);
  assert.equal(info.url, null);
  const r = await page.evaluate(async () =>
    window.chord.engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hello!' }], max_tokens: 12, temperature: 0 }),
  );
  assert.equal(r.choices[0].message.content, expected);
});
