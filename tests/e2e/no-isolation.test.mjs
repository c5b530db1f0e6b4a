// Without COOP/COEP (chord serve --no-coop-coep) there is no SharedArrayBuffer: the page still
// works (on the single-threaded build, which info() reports with the reason), and Stop still stops the worker at its next token (generation yields to the worker's
// event loop between tokens, so the abort message is seen).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { MODEL, makeModelsDir, startServer, launchBrowser, nativeReply } from './helpers.mjs';

let models;
let server;
let browser;

after(async () => {
  await browser?.close();
  server?.stop();
  models?.cleanup();
});

test('chat and Stop work without cross-origin isolation', { timeout: 240_000 }, async () => {
  const expected = nativeReply('Hello!', 12);
  models = makeModelsDir();
  server = await startServer(['--models', models.dir, '--no-coop-coep']);
  browser = await launchBrowser();
  const page = await browser.context.newPage();
  await page.goto(`${server.base}/?nosw`);
  await page.waitForSelector('body[data-state="idle"]', { timeout: 60_000 });
  assert.equal(await page.evaluate(() => globalThis.crossOriginIsolated), false);
  assert.equal(await page.evaluate(() => window.chord.engine.hardAbort), false);
  const url = `${server.base}/models/${MODEL}`;
  await page.selectOption('#model-select', url);
  await page.click('#load-btn');
  await page.waitForSelector('body[data-state="ready"]', { timeout: 120_000 });
  // No shared memory, so the single-threaded build, and info() says why.
  const info = await page.evaluate(() => window.chord.engine.info());
  assert.equal(info.threaded_build, false);
  assert.equal(info.threads, 1);
  assert.match(info.threads_note, /not cross-origin isolated/);
  // Chromium validates relaxed SIMD, so the worker took the relaxed-SIMD build (pkg/relaxed/);
  // which formats run its relaxed dot products depends on a timing of each on this CPU
  // (either way the reply below equals the native one).
  assert.equal(info.simd, 'relaxed', `the relaxed-SIMD build runs (${info.simd_note})`);
  for (const shape of ['decode', 'prefill']) {
    const formats = info.relaxed_dot_products[shape];
    assert.ok(Array.isArray(formats), `relaxed_dot_products.${shape} lists formats`);
    for (const f of formats) {
      assert.ok(['Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q4_K', 'Q6_K'].includes(f), `${f} has no relaxed kernel`);
    }
  }
  const r = await page.evaluate(async () => {
    const ac = new AbortController();
    const stream = await window.chord.engine.chat.completions.create({
      messages: [{ role: 'user', content: 'Write a long story about a dragon.' }],
      stream: true,
      max_tokens: 200,
      temperature: 0,
      signal: ac.signal,
    });
    let n = 0;
    let finish = null;
    let usage = null;
    for await (const c of stream) {
      if (c.choices[0].delta.content) n++;
      if (n === 3) ac.abort();
      finish = c.choices[0].finish_reason ?? finish;
      usage = c.usage ?? usage;
    }
    return { n, finish, usage };
  });
  assert.equal(r.finish, 'abort');
  assert.ok(r.n <= 4, `tokens after Stop are not shown (${r.n})`);
  assert.ok(r.usage && r.usage.completion_tokens <= 6, `the worker stopped generating (${JSON.stringify(r.usage)})`);
  const again = await page.evaluate(async () =>
    window.chord.engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hello!' }], max_tokens: 12, temperature: 0 }),
  );
  assert.equal(again.choices[0].message.content, expected);
});
