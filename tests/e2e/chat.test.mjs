// The chat page end to end, on the CPU path (WebGPU disabled: the automatic fallback): download from the local server into IndexedDB,
// greedy chat equal to the native engine, Stop, reload and chat offline from IndexedDB, and
// clear errors (404, not GGUF, truncated) that leave no cache entry.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { MODEL, makeModelsDir, startServer, launchBrowser, nativeReply, ensureArtifacts } from './helpers.mjs';

const MESSAGE = 'What is the capital of France?';
const N = 24;
const T = { timeout: 240_000 };

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
  server = await startServer(['--models', models.dir], { testControls: true });
  browser = await launchBrowser();
  page = await browser.context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') log('page console error:', m.text());
  });
  page.on('pageerror', (e) => log('page error:', e.message));
  await page.goto(`${server.base}/?nosw`);
  await page.waitForSelector('body[data-state="idle"]', { timeout: 60_000 });
});

after(async () => {
  await browser?.close();
  server?.stop();
  models?.cleanup();
});

async function chat(message, { temperature = 0, maxTokens = N } = {}) {
  await page.fill('#temperature', String(temperature));
  await page.fill('#max-tokens', String(maxTokens));
  const n = await page.locator('.msg.assistant').count();
  await page.fill('#prompt', message);
  await page.click('#send-btn');
  const msg = page.locator('.msg.assistant').nth(n);
  await msg.waitFor();
  return msg;
}

async function cachedUrls() {
  return page.evaluate(async () => (await window.chord.engine.cache.list()).map((m) => m.url));
}

async function loadFromPicker(url) {
  await page.selectOption('#model-select', url);
  await page.click('#load-btn');
}

test('download with progress, then greedy chat equals the native engine', T, async () => {
  const url = `${server.base}/models/${MODEL}`;
  // Throttle so the progress bar has time to move (the unthrottled local download takes < 1 s).
  await server.control('rate=40000000');
  const t0 = Date.now();
  await loadFromPicker(url);
  const seen = [];
  while (seen.length < 200) {
    const s = await page.evaluate(() => [document.body.dataset.state, Number(document.getElementById('progress').value)]);
    seen.push(s[1]);
    if (s[0] !== 'loading') break;
    await page.waitForTimeout(100);
  }
  await page.waitForSelector('body[data-state="ready"]', { timeout: 120_000 });
  await server.control('rate=0');
  const distinct = [...new Set(seen.filter((v) => v > 0 && v < 1))];
  log(`progress values seen: ${distinct.length}, load total ${Date.now() - t0} ms`);
  assert.ok(distinct.length >= 3, `the progress bar should advance, saw ${JSON.stringify(seen)}`);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i] >= seen[i - 1] || seen[i] === 1, 'progress never goes back');
  const info = await page.evaluate(() => window.chord.model);
  log('model info:', JSON.stringify(info));
  // This browser runs without --enable-unsafe-webgpu: 'auto' falls back to the CPU and says why.
  assert.equal(info.backend, 'cpu');
  assert.ok(info.fallback, 'the fallback reason is reported');
  assert.match(await page.textContent('#model-status'), /CPU \(wasm\)/);
  assert.deepEqual(await cachedUrls(), [url]);

  const msg = await chat(MESSAGE);
  await msg.and(page.locator('[data-done]')).waitFor({ timeout: 120_000 });
  const text = await msg.locator('.text').getAttribute('data-raw');
  log('browser reply:', JSON.stringify(text), '|', await page.textContent('#stats'));
  assert.equal(text, expected);
});

test('Stop during generation, then chat again', T, async () => {
  const msg = await chat('Write a long story about a dragon who learns to bake bread.', { temperature: 0, maxTokens: 400 });
  await page.waitForFunction((el) => el.querySelector('.text').dataset.raw.length > 40, await msg.elementHandle(), { timeout: 60_000 });
  const shot = join(ensureArtifacts(), 'mid-chat.png');
  await page.screenshot({ path: shot });
  log('screenshot:', shot);
  const t0 = Date.now();
  await page.click('#stop-btn');
  await msg.and(page.locator('[data-done]')).waitFor({ timeout: 10_000 });
  log(`stopped in ${Date.now() - t0} ms`);
  assert.equal(await msg.getAttribute('data-finish'), 'abort');
  await page.waitForSelector('body[data-state="ready"]');
  await page.click('#new-chat-btn');
  const again = await chat(MESSAGE);
  await again.and(page.locator('[data-done]')).waitFor({ timeout: 120_000 });
  assert.equal(await again.locator('.text').getAttribute('data-raw'), expected);
});

test('reload with the model route off: chat from IndexedDB', T, async () => {
  await server.control('models=off');
  try {
    const res = await fetch(`${server.base}/models/${MODEL}`);
    assert.equal(res.status, 503);
    await page.reload();
    await page.waitForSelector('body[data-state="idle"]', { timeout: 60_000 });
    const url = `${server.base}/models/${MODEL}`;
    const item = page.locator(`#cache-list li[data-url="${url}"]`);
    await item.waitFor();
    const t0 = Date.now();
    await item.locator('button', { hasText: 'Use' }).click();
    await page.waitForSelector('body[data-state="ready"]', { timeout: 120_000 });
    log(`loaded from IndexedDB in ${Date.now() - t0} ms`);
    const msg = await chat(MESSAGE);
    await msg.and(page.locator('[data-done]')).waitFor({ timeout: 120_000 });
    assert.equal(await msg.locator('.text').getAttribute('data-raw'), expected);
  } finally {
    await server.control('models=on');
  }
});

for (const [file, pattern] of [
  ['missing.gguf', /HTTP 404/],
  ['not-a-model.gguf', /GGUF|magic/i],
  ['truncated.gguf', /beyond|end|truncat|past/i],
]) {
  test(`a bad model URL (${file}) ends in a clear error and no cache entry`, T, async () => {
    const url = `${server.base}/models/${file}`;
    await page.selectOption('#model-select', 'custom');
    await page.fill('#custom-url', url);
    await page.click('#load-btn');
    await page.waitForSelector('#error:not([hidden])', { timeout: 60_000 });
    const msg = await page.textContent('#error');
    log(`${file}:`, msg);
    assert.match(msg, pattern);
    assert.ok(!(await cachedUrls()).includes(url), 'no cache entry is left');
  });
}
