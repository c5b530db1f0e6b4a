// A crash on a thread of the CPU pool (issue 16). On a cross-origin isolated page the worker
// runs the threaded build, whose rayon pool lives on Web Workers that the engine worker starts.
// A panic there (panic=abort: a trap) kills only that pool worker and leaves the engine worker
// blocked in rayon for good, so it can report nothing; before the fix the pending request never
// settled. Now the pool worker reports its crash itself (worker/pool-worker.js, on a
// BroadcastChannel), and the client rejects every pending request with `fatal`, naming the
// crash and the panic, ends the blocked worker and starts a fresh one that loads and chats again.
// The page is tests/e2e/faulty-server.mjs's bare engine page, served with COOP/COEP.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, MODEL_PATH, launchBrowser } from './helpers.mjs';
import { startFaultyServer, readModel, openEnginePage } from './faulty-server.mjs';

// How long the pending request may take to settle after the crash.
const SETTLE_MS = 20_000;
const MESSAGES = [{ role: 'user', content: 'Tell me a long story.' }];
let server;
let browser;
let page;
const log = (...a) => console.log('#', ...a);

before(async () => {
  assert.ok(existsSync(MODEL_PATH), `${MODEL_PATH} is missing: run scripts/fetch-models`);
  assert.ok(existsSync(join(ROOT, 'pkg/threads/wasm_chord_bg.wasm')), 'pkg/threads/ is missing: run scripts/build-web');
  server = await startFaultyServer({
    root: ROOT,
    models: { 'smol.gguf': readModel(MODEL_PATH) },
    chunk: 16 * 1024 * 1024,
    extraHeaders: { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' },
  });
  browser = await launchBrowser();
  page = await browser.context.newPage();
  page.on('pageerror', (e) => log('page error:', e.message));
  page.on('console', (m) => m.type() === 'error' && log('console:', m.text()));
  await openEnginePage(page, server);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** engine.load of SmolLM2-135M on the CPU with a pool of two threads, then a short greedy chat. */
const loadAndChat = () =>
  page.evaluate(
    async ({ url, messages }) => {
      const engine = window.engine;
      const info = await engine.load(url, { backend: 'cpu', threads: 2 });
      const r = await engine.chat.completions.create({ messages, max_tokens: 8, temperature: 0 });
      return { info, text: r.choices[0].message.content };
    },
    { url: `${server.base}/faulty/smol.gguf?fault=none&id=1`, messages: MESSAGES },
  );

test('a panic on a pool thread rejects the pending stream with fatal, naming it; the engine then loads and chats again', { timeout: 180_000 }, async () => {
  assert.equal(await page.evaluate(() => globalThis.crossOriginIsolated), true, 'the page is cross-origin isolated');
  // Without a pool the hook refuses (and nothing crashes).
  const early = await page.evaluate(() => window.engine.__testPoolPanic().then(() => null, (e) => ({ code: e.code, message: e.message })));
  assert.equal(early?.code, 'invalid', JSON.stringify(early));

  const before = await loadAndChat();
  log('before:', JSON.stringify(before.text), 'threads', before.info.threads, before.info.threads_note);
  assert.equal(before.info.threaded_build, true, `the threaded build should run (${before.info.threads_note})`);
  assert.equal(before.info.threads, 2);
  assert.ok(before.text.length > 0);

  // A long streamed chat; once its first token is out, the panic on a pool thread.
  const r = await page.evaluate(
    async ({ messages, settleMs }) => {
      const engine = window.engine;
      const { n_ctx } = await engine.info();
      const stream = await engine.chat.completions.create({ messages, max_tokens: n_ctx - 64, temperature: 0, stream: true });
      const it = stream[Symbol.asyncIterator]();
      const first = await it.next();
      const t0 = performance.now();
      const settle = (p) => p.then(() => ({ settled: 'resolved' }), (e) => ({ settled: 'rejected', code: e.code, message: e.message, ms: performance.now() - t0 }));
      const hook = settle(engine.__testPoolPanic());
      const rest = settle(
        (async () => {
          for (let n = await it.next(); !n.done; n = await it.next());
        })(),
      );
      const timeout = new Promise((res) => setTimeout(() => res({ settled: 'no', code: null, message: `not settled within ${settleMs} ms` }), settleMs));
      const [chat, hooked] = await Promise.all([Promise.race([rest, timeout]), Promise.race([hook, timeout])]);
      return { first: !first.done, chat, hooked };
    },
    { messages: MESSAGES, settleMs: SETTLE_MS },
  );
  log('after the panic:', JSON.stringify(r));
  assert.ok(r.first, 'the stream had started');
  assert.equal(r.chat.settled, 'rejected', `the pending stream: ${r.chat.message}`);
  assert.equal(r.chat.code, 'fatal');
  assert.match(r.chat.message, /a CPU thread of the engine crashed/);
  assert.match(r.chat.message, /test pool panic/, 'the panic text');
  assert.ok(r.chat.ms < SETTLE_MS);
  assert.equal(r.hooked.settled, 'rejected');
  assert.equal(r.hooked.code, 'fatal');

  // The same engine object: a fresh worker, nothing loaded, and the same greedy reply after a load.
  assert.equal(await page.evaluate(() => window.engine.info()), null, 'a fresh worker holds no model');
  const again = await loadAndChat();
  assert.equal(again.info.threaded_build, true);
  assert.equal(again.info.threads, 2, 'the fresh worker starts a pool again');
  assert.equal(again.text, before.text);
});
