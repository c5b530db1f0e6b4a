// The JS client's remote mode in headless Chromium against `chord serve --model ...`: the chat
// page with a remote endpoint (greedy reply equal to the native engine's), and the client API
// directly: model listing, info(), streaming with usage, abort, errors; and a second server on
// another origin that the API's CORS allows (`--cors-origin`) or refuses.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join, dirname } from 'node:path';
import { MODEL, MODEL_PATH, startServer, launchBrowser, nativeReply, ensureArtifacts } from './helpers.mjs';
import { chooseRoute, defaultLocalBudget } from '../../worker/auto.js';

const MESSAGE = 'What is the capital of France?';
const N = 24;
const T = { timeout: 240_000 };
const log = (...a) => console.log('#', ...a);

let page;
let browser;
let server; // the page and the API on one origin
let api; // the API alone, on another origin (CORS for `server`'s origin)

before(async () => {
  server = await startServer(['--model', `smol=${MODEL_PATH}`, '--ctx', '1024', '--models', dirname(MODEL_PATH)]);
  const origin = server.base;
  api = await startServer(['--model', `smol=${MODEL_PATH}`, '--ctx', '1024', '--cors-origin', origin, '--api-key', 'k1']);
  browser = await launchBrowser();
  page = await browser.context.newPage();
  page.on('pageerror', (e) => log('page error:', e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') log('page console error:', m.text());
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await api?.stop();
});

test('the chat page chats through a remote endpoint', T, async () => {
  const expected = nativeReply(MESSAGE, N);
  await page.goto(`${server.base}/?nosw&remote=${encodeURIComponent(`${server.base}/v1`)}`);
  await page.waitForSelector('body[data-state="ready"]', { timeout: 60_000 });
  const status = await page.textContent('#model-status');
  assert.match(status, /remote/);
  await page.fill('#temperature', '0');
  await page.fill('#max-tokens', String(N));
  await page.fill('#prompt', MESSAGE);
  await page.click('#send-btn');
  const msg = page.locator('.msg.assistant').first();
  await page.waitForSelector('.msg.assistant[data-done="1"]', { timeout: 120_000 });
  assert.equal(await msg.locator('.text').getAttribute('data-raw'), expected);
  assert.ok(['stop', 'length'].includes(await msg.getAttribute('data-finish')));
  assert.match(await page.textContent('#stats'), /tokens · .* · backend cpu/, 'the server\'s timings');
  assert.match(await page.textContent('#empty-lead'), /sent there/);
  // The second turn comes from the server slot's cache.
  await page.fill('#prompt', 'And of Spain?');
  await page.click('#send-btn');
  await page.waitForSelector('.msg.assistant >> nth=1', { timeout: 30_000 });
  await page.locator('.msg.assistant').nth(1).and(page.locator('[data-done]')).waitFor({ timeout: 120_000 });
  const stats = await page.textContent('#stats');
  const m = /\((\d+) of (\d+) tokens cached\)/.exec(stats);
  assert.ok(m && Number(m[1]) > 0 && Number(m[1]) < Number(m[2]), stats);
  assert.match(await page.textContent('#hint'), /Replies come from http/);
  assert.equal(await page.isVisible('#remote-url'), true, 'the endpoint setting is open');
  const path = join(ensureArtifacts(), 'remote-desktop-chat.png');
  await page.screenshot({ path });
  log('screenshot:', path);
  // Back to this device: the remote model is gone from the page, nothing is loaded locally.
  await page.click('#local-btn');
  await page.waitForSelector('body[data-state="idle"]', { timeout: 30_000 });
  assert.equal(await page.textContent('#model-status'), '');
  assert.equal(await page.isHidden('#local-btn'), true);
  assert.match(await page.textContent('#hint'), /runs on this device/);
});

test('the client API in remote mode: models, info, stream, usage, abort, errors, CORS', T, async () => {
  const r = await page.evaluate(
    async ({ same, other }) => {
      const { createEngine } = await import('/worker/client.js');
      const out = {};
      const e = await createEngine({ remote: { baseURL: same } });
      out.models = (await e.models.list()).map((m) => m.id);
      out.info = await e.load();
      const messages = [{ role: 'user', content: 'What is the capital of France?' }];
      let text = '';
      let last = null;
      for await (const c of await e.chat.completions.create({ messages, stream: true, max_tokens: 24 })) {
        text += c.choices[0]?.delta?.content ?? '';
        if (c.choices[0]?.finish_reason) last = c;
      }
      out.streamText = text;
      out.last = last;
      const whole = await e.chat.completions.create({ messages, max_tokens: 24 });
      out.wholeText = whole.choices[0].message.content;
      out.wholeUsage = whole.usage;
      // Abort mid-stream: the iterator ends with finish_reason 'abort'.
      const ctl = new AbortController();
      let n = 0;
      let finish = null;
      for await (const c of await e.chat.completions.create({ messages: [{ role: 'user', content: 'Tell a long story.' }], stream: true, max_tokens: 500, signal: ctl.signal })) {
        if (c.choices[0]?.delta?.content) n += 1;
        if (n === 3 && !ctl.signal.aborted) ctl.abort();
        if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
      }
      out.abort = { n, finish };
      const err = async (p) => {
        try {
          await p;
          return null;
        } catch (x) {
          return { code: x.code, status: x.status, message: x.message };
        }
      };
      out.badTemp = await err(e.chat.completions.create({ messages, temperature: 9 }));
      out.noModel = await err(e.load('nope'));
      // Another origin: allowed by --cors-origin, and it wants a key.
      const o = await createEngine({ remote: { baseURL: other, apiKey: 'k1' } });
      out.otherModels = (await o.models.list()).map((m) => m.id);
      const other2 = await o.chat.completions.create({ messages, max_tokens: 24 });
      out.otherText = other2.choices[0].message.content;
      const noKey = await createEngine({ remote: { baseURL: other } });
      out.noKey = await err(noKey.models.list());
      return out;
    },
    { same: `${server.base}/v1`, other: `${api.base}/v1` },
  );
  const expected = nativeReply(MESSAGE, N);
  assert.deepEqual(r.models, ['smol']);
  assert.equal(r.info.backend, 'remote');
  assert.equal(r.info.name, 'smol');
  assert.equal(r.streamText, expected);
  assert.equal(r.wholeText, expected);
  for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) assert.equal(r.last.usage[k], r.wholeUsage[k], k);
  // The same prompt again: all but its last token come from the slot's cache.
  assert.equal(r.wholeUsage.prompt_tokens_details.cached_tokens, r.wholeUsage.prompt_tokens - 1);
  assert.equal(r.last.timings.backend, 'cpu');
  assert.equal(r.abort.n, 3);
  assert.equal(r.abort.finish, 'abort');
  assert.equal(r.badTemp.code, 'invalid');
  assert.equal(r.badTemp.status, 400);
  assert.match(r.badTemp.message, /temperature/);
  assert.equal(r.noModel.code, 'invalid');
  assert.deepEqual(r.otherModels, ['smol']);
  assert.equal(r.otherText, expected);
  assert.equal(r.noKey.code, 'http');
  assert.equal(r.noKey.status, 401);
  const h = await (await fetch(`${server.base}/health`)).json();
  assert.equal(h.models[0].active, 0, 'the aborted request stopped on the server');
});

test("backend 'auto': the route policy", () => {
  const hw = { hardware: true, why: null };
  assert.deepEqual(chooseRoute({ gpu: hw, modelBytes: 100, budget: 1000 }), { route: 'local', reason: null });
  assert.deepEqual(chooseRoute({ gpu: hw, modelBytes: null, budget: 1000 }), { route: 'local', reason: null }, 'an unknown size stays local');
  const big = chooseRoute({ gpu: hw, modelBytes: 5e9, budget: 4e9 });
  assert.equal(big.route, 'remote');
  assert.match(big.reason, /5000 MB\) is larger than this device's budget \(4000 MB/);
  const soft = chooseRoute({ gpu: { hardware: false, why: 'the only WebGPU adapter is a software renderer (swiftshader)' }, modelBytes: 100, budget: 1000 });
  assert.equal(soft.route, 'remote');
  assert.match(soft.reason, /software renderer/);
  assert.equal(defaultLocalBudget(8), 4 * 2 ** 30);
  assert.equal(defaultLocalBudget(undefined), 2 * 2 ** 30);
});

test("backend 'auto' in the browser: remote without a hardware adapter or over the budget, else local", T, async () => {
  const expected = nativeReply(MESSAGE, N);
  const r = await page.evaluate(
    async ({ base, model }) => {
      const { createEngine } = await import('/worker/client.js');
      const { AutoEngine } = await import('/worker/auto.js');
      const messages = [{ role: 'user', content: 'What is the capital of France?' }];
      const reply = async (e) => (await e.chat.completions.create({ messages, max_tokens: 24, temperature: 0 })).choices[0].message.content;
      const out = {};
      // This headless Chromium has no hardware adapter (no WebGPU, or SwiftShader): remote.
      const auto = await createEngine({ remote: { baseURL: `${base}/v1` }, backend: 'auto' });
      const info = await auto.load(`/models/${model}`);
      out.noGpu = { backend: info.backend, route: info.route, reason: info.route_reason, text: await reply(auto), again: (await auto.info()).route };
      // With a hardware adapter (given to the policy), a model over the budget goes remote...
      const local = () => createEngine();
      const hw = { hardware: true, why: null, name: 'test adapter' };
      const small = new AutoEngine({ makeLocal: local, remote: { baseURL: `${base}/v1` }, maxLocalBytes: 1e6, gpu: hw });
      const si = await small.load(`/models/${model}`);
      out.overBudget = { route: si.route, reason: si.route_reason, backend: si.backend };
      small.terminate();
      // ...and one within it loads here, on the local worker (the CPU path: backend cpu).
      const roomy = new AutoEngine({ makeLocal: local, remote: { baseURL: `${base}/v1` }, maxLocalBytes: 1e9, gpu: hw });
      const li = await roomy.load(`/models/${model}`, { backend: 'cpu' });
      out.local = { route: li.route, reason: li.route_reason, backend: li.backend, text: await reply(roomy) };
      roomy.terminate();
      try {
        await createEngine({ backend: 'gpu' });
        out.badBackend = null;
      } catch (x) {
        out.badBackend = { code: x.code, message: x.message };
      }
      return out;
    },
    { base: server.base, model: MODEL },
  );
  assert.equal(r.noGpu.route, 'remote');
  assert.equal(r.noGpu.again, 'remote', 'info() says so too');
  assert.equal(r.noGpu.backend, 'remote');
  assert.match(r.noGpu.reason, /WebGPU|software renderer/);
  assert.equal(r.noGpu.text, expected);
  assert.equal(r.overBudget.route, 'remote');
  assert.match(r.overBudget.reason, /larger than this device's budget \(1 MB\)/);
  assert.equal(r.local.route, 'local');
  assert.equal(r.local.reason, null);
  assert.equal(r.local.backend, 'cpu');
  assert.equal(r.local.text, expected);
  assert.equal(r.badBackend.code, 'invalid');
  assert.match(r.badBackend.message, /backend/);
});
