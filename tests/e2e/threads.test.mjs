// Threads in the browser: with COOP/COEP (chord serve's default) the page is cross-origin
// isolated, the worker loads the threaded build (pkg/threads/: atomics, shared memory, rayon on
// Web Workers) and the CPU kernels split matmul rows and attention heads over its pool. The
// split must not change any value: the greedy reply equals the native engine's, with the pool
// and with `threads: 1` on the same module.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { MODEL, makeModelsDir, startServer, launchBrowser, nativeReply } from './helpers.mjs';

const MESSAGE = 'What is the capital of France?';
const N = 24;

let models;
let server;
let browser;
let page;
let expected;
const log = (...a) => console.log('#', ...a);

before(async () => {
  expected = nativeReply(MESSAGE, N);
  log('native greedy reply:', JSON.stringify(expected));
  models = makeModelsDir();
  server = await startServer(['--models', models.dir]);
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

/** Load the default model on the CPU backend with `opts`, then a greedy chat: [info, reply, ms]. */
async function loadAndChat(opts) {
  return page.evaluate(
    async ({ url, opts, message, n }) => {
      const engine = window.chord.engine;
      await engine.load(url, { backend: 'cpu', ...opts });
      const info = await engine.info();
      const t0 = performance.now();
      const r = await engine.chat.completions.create({ messages: [{ role: 'user', content: message }], max_tokens: n, temperature: 0 });
      return [info, r.choices[0].message.content, performance.now() - t0];
    },
    { url: `${server.base}/models/${MODEL}`, opts, message: MESSAGE, n: N },
  );
}

test('the isolated page runs the threaded build, and its greedy reply equals the native one', { timeout: 240_000 }, async () => {
  assert.equal(await page.evaluate(() => globalThis.crossOriginIsolated), true);
  const cores = await page.evaluate(() => navigator.hardwareConcurrency);
  const [info, reply, ms] = await loadAndChat({});
  log(`hardwareConcurrency ${cores}; info: threaded_build ${info.threaded_build}, threads ${info.threads}, note ${info.threads_note}; chat ${ms.toFixed(0)} ms`);
  assert.equal(info.backend, 'cpu');
  assert.equal(info.threaded_build, true, `the threaded build should run (${info.threads_note})`);
  // Chromium validates relaxed SIMD, so the threaded relaxed-SIMD build (pkg/threads-relaxed/).
  assert.equal(info.simd, 'relaxed', `the threaded relaxed-SIMD build runs (${info.simd_note})`);
  assert.ok(Array.isArray(info.relaxed_dot_products.decode), 'relaxed_dot_products says what it chose');
  assert.ok(cores > 1, `this test needs more than one core (hardwareConcurrency ${cores})`);
  assert.equal(info.threads, Math.min(cores, 8), 'the default is one thread per core (at most 8)');
  assert.equal(info.threads_note, null);
  assert.equal(reply, expected);
});

test('threads: 1 on the threaded build: one thread, said why, the same reply', { timeout: 240_000 }, async () => {
  const [info, reply, ms] = await loadAndChat({ threads: 1 });
  log(`threads: 1 → threads ${info.threads}, note ${info.threads_note}; chat ${ms.toFixed(0)} ms`);
  assert.equal(info.threaded_build, true);
  assert.equal(info.threads, 1);
  assert.match(info.threads_note, /threads: 1/);
  assert.equal(reply, expected);
  // Back to two threads: the pool is still there.
  const [again, reply2] = await loadAndChat({ threads: 2 });
  assert.equal(again.threads, 2);
  assert.equal(reply2, expected);
});

test('a bad threads option is refused, naming the field', { timeout: 60_000 }, async () => {
  const err = await page.evaluate(async (url) => {
    try {
      await window.chord.engine.load(url, { backend: 'cpu', threads: 0 });
      return null;
    } catch (e) {
      return { code: e.code, message: e.message };
    }
  }, `${server.base}/models/${MODEL}`);
  assert.equal(err?.code, 'invalid');
  assert.match(err.message, /threads/);
});
