// The chat page on the WebGPU path (headless Chromium's SwiftShader adapter: no shader-f16, so
// the f32 kernels). 'auto' declines SwiftShader (a software renderer) for the CPU path and says
// why; 'webgpu' forces it, and then the model streams from IndexedDB into GPU buffers without
// ever sitting whole in wasm memory, greedy chat equals the native GPU backend, and Stop ends
// generation at once. SwiftShader emulates the GPU on the CPU, and SmolLM2 took minutes of CPU
// per prompt there: SmolLM2 is only loaded (the memory check), and the chats use the tiny random
// llama with a chat template (scripts/tiny-chat-model: Q4_K and Q6_K, the f32 kernels of every
// llama matrix) with short replies. Its text is noise; what counts is that it equals the native
// GPU backend's token for token (the message is one whose greedy reply is plain text, no lone
// byte tokens).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { symlinkSync } from 'node:fs';
import { MODEL as SMOLLM2, TINY_CHAT, TINY_CHAT_PATH, makeModelsDir, startServer, launchBrowser, nativeReply, ensureArtifacts } from './helpers.mjs';

const MESSAGE = 'Tell me a story.';
const SYSTEM = '.';
const N = 6;
const SMOLLM2_SIZE = 105454144;
const T = { timeout: 900_000 };

let models;
let server;
let browser;
let page;
let expected;
const log = (...a) => console.log('#', ...a);

before(async () => {
  expected = nativeReply(MESSAGE, N, { backend: 'gpu', system: SYSTEM, model: TINY_CHAT_PATH });
  log('native GPU greedy reply:', JSON.stringify(expected));
  assert.ok(expected.length > N, `the native reply has text (${JSON.stringify(expected)})`);
  models = makeModelsDir();
  symlinkSync(TINY_CHAT_PATH, join(models.dir, TINY_CHAT));
  server = await startServer(['--models', models.dir]);
  browser = await launchBrowser({ webgpu: true });
  page = await browser.context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') log('page console error:', m.text());
  });
  page.on('pageerror', (e) => log('page error:', e.message));
  await page.goto(`${server.base}/?nosw`);
  await page.waitForSelector('body[data-state="idle"]', { timeout: 60_000 });
  await page.fill('#system-prompt', SYSTEM);
});

after(async () => {
  await browser?.close();
  server?.stop();
  models?.cleanup();
});

async function chat(message, maxTokens) {
  await page.fill('#temperature', '0');
  await page.fill('#max-tokens', String(maxTokens));
  const n = await page.locator('.msg.assistant').count();
  await page.fill('#prompt', message);
  await page.click('#send-btn');
  const msg = page.locator('.msg.assistant').nth(n);
  await msg.waitFor();
  return msg;
}

async function load(file) {
  await page.selectOption('#model-select', `${server.base}/models/${file}`);
  await page.click('#load-btn');
  await page.waitForSelector('body[data-state="ready"]', { timeout: 300_000 });
  const info = await page.evaluate(() => window.chord.model);
  log(`model info (${file}):`, JSON.stringify(info));
  assert.equal(info.file, file);
  return info;
}

test("auto declines SwiftShader (a software renderer) and says why", T, async () => {
  assert.equal(await page.$eval('#backend', (s) => s.value), 'auto');
  const info = await load(TINY_CHAT);
  // The browser has a WebGPU adapter, but it is SwiftShader: the CPU path is ~100x faster.
  assert.equal(await page.evaluate(async () => !!(await navigator.gpu?.requestAdapter())), true, 'this browser has a WebGPU adapter');
  assert.equal(info.backend, 'cpu');
  assert.match(info.fallback, /software renderer/i);
  assert.match(await page.textContent('#model-status'), /CPU \(wasm\)/);
});

// SmolLM2 here (only loaded: no compute on SwiftShader): wasm memory holds only the tiny model
// so far, so the growth is measured, not absorbed by an earlier load.
test('WebGPU (forced): a model streams into GPU buffers, never whole in wasm memory', T, async () => {
  await page.selectOption('#backend', 'webgpu');
  const info = await load(SMOLLM2);
  assert.equal(info.backend, 'webgpu', `an explicit 'webgpu' forces the GPU (fallback: ${info.fallback})`);
  assert.equal(info.gpu_vetting, null, 'a forced GPU is not vetted');
  assert.match(info.adapter, /f16: false/, 'SwiftShader has no shader-f16: the f32 kernels run');
  assert.equal(info.fallback, null);
  // Tensors go from the IndexedDB chunks to the GPU one at a time: the load grows wasm memory by
  // about the largest tensor (the 28 MB Q8_0 token_embd), never by the file.
  assert.ok(info.load_memory_bytes < SMOLLM2_SIZE / 2, `the load grew wasm memory by ${info.load_memory_bytes} bytes`);
  assert.match(await page.textContent('#model-status'), /WebGPU/);
});

test('WebGPU (forced): greedy chat equals the native GPU backend', T, async () => {
  const info = await load(TINY_CHAT);
  assert.equal(info.backend, 'webgpu');
  const msg = await chat(MESSAGE, N);
  await msg.and(page.locator('[data-done]')).waitFor({ timeout: 600_000 });
  const text = await msg.locator('.text').getAttribute('data-raw');
  log('browser reply:', JSON.stringify(text), '|', await page.textContent('#stats'));
  assert.equal(text, expected);
  assert.match(await page.textContent('#stats'), /backend webgpu/);
});

test('WebGPU: Stop ends generation at the next token', T, async () => {
  const r = await page.evaluate(async ([system, message]) => {
    const ac = new AbortController();
    const stream = await window.chord.engine.chat.completions.create({
      messages: [
        { role: 'system', content: system },
        { role: 'user', content: message },
      ],
      stream: true,
      max_tokens: 200,
      temperature: 0,
      signal: ac.signal,
    });
    let n = 0;
    let last = null;
    for await (const c of stream) {
      if (c.choices[0].delta.content) n++;
      if (n === 1) ac.abort();
      last = c;
    }
    return { n, finish: last.choices[0].finish_reason, usage: last.usage };
  }, [SYSTEM, MESSAGE]);
  log('stopped:', JSON.stringify(r));
  assert.equal(r.finish, 'abort');
  assert.ok(r.usage, 'the abort chunk reports what the worker generated');
  assert.ok(r.usage.completion_tokens <= 3, `the worker stopped within a token (${r.usage.completion_tokens})`);
  const shot = join(ensureArtifacts(), 'webgpu-chat.png');
  await page.screenshot({ path: shot });
  log('screenshot:', shot);
});
