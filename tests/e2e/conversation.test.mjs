// Conversations that don't start over, in the browser on the wasm CPU path: over a multi-turn
// chat (streamed and not, a Stop mid-reply, an edited earlier message, a regenerate) each greedy
// reply equals the native engine's fresh reply to the same messages, and
// usage.prompt_tokens_details.cached_tokens says how much of the prompt came from the cache.
// Then two models in one engine (SmolLM2 with a small n_ctx and the 1.6 MB tiny random Llama):
// routing by `model`, the oldest turns dropped to fit the context (`dropped_messages`, the reply
// equal to the native one for the messages kept), `context_overflow: 'error'`, `unload(id)`.
// Last, a saved session (saveSession/restoreSession) continues a chat after a page reload.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, symlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { MODEL, MODEL_PATH, startServer, launchBrowser, nativeGenerate } from './helpers.mjs';

const TINY = 'tiny-random-llama-q4_k_m.gguf';
const TINY_PATH = join(dirname(MODEL_PATH), TINY);
const N = 12;
const T = { timeout: 600_000 };
const SYSTEM = { role: 'system', content: 'You are a helpful assistant. Answer briefly.' };

let dir;
let server;
let browser;
let page;
const log = (...a) => console.log('#', ...a);

const nativeReply = (messages, n) => nativeGenerate(messages, n);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'chord-e2e-conv-models-'));
  symlinkSync(MODEL_PATH, join(dir, MODEL));
  symlinkSync(TINY_PATH, join(dir, TINY));
  server = await startServer(['--models', dir]);
  browser = await launchBrowser();
  page = await browser.context.newPage();
  page.on('pageerror', (e) => log('page error:', e.message));
  await page.goto(`${server.base}/?nosw`);
  await page.waitForSelector('body[data-state="idle"]', { timeout: 60_000 });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** One request from the page: `{text, finish_reason, usage}`; `stopAfter` aborts after that many streamed chunks. */
function ask(messages, { stream = false, stopAfter = null, cachePrompt = true, n = N } = {}) {
  return page.evaluate(
    async ({ messages, n, stream, stopAfter, cachePrompt }) => {
      const engine = window.chord.engine;
      const params = { messages, temperature: 0, max_tokens: n, cache_prompt: cachePrompt };
      if (!stream) {
        const r = await engine.chat.completions.create(params);
        return { text: r.choices[0].message.content, finish_reason: r.choices[0].finish_reason, usage: r.usage, dropped: r.dropped_messages };
      }
      const ac = new AbortController();
      let text = '';
      let chunks = 0;
      let last = null;
      for await (const c of await engine.chat.completions.create({ ...params, stream: true, signal: ac.signal })) {
        text += c.choices[0].delta.content ?? '';
        last = c;
        if (c.choices[0].delta.content && ++chunks === stopAfter) ac.abort();
      }
      return { text, finish_reason: last.choices[0].finish_reason, usage: last.usage, dropped: last.dropped_messages };
    },
    { messages, n, stream, stopAfter, cachePrompt },
  );
}

test('multi-turn greedy chat with prefix reuse equals fresh native replies; cached_tokens reported', T, async () => {
  const info = await page.evaluate((url) => window.chord.engine.load(url, { backend: 'cpu' }), `${server.base}/models/${MODEL}`);
  assert.equal(info.backend, 'cpu');
  assert.equal(info.id, 'default');
  assert.ok(info.n_ctx > 0 && info.n_ctx <= info.n_ctx_train, JSON.stringify(info));
  const questions = ['What is the capital of France?', 'And of Italy?', 'Name three rivers in Europe.', 'Thanks. Now count from one to five.'];
  const messages = [SYSTEM];
  const turns = [];
  const check = async (label, msgs, opts = {}) => {
    const got = await ask(msgs, opts);
    const want = nativeReply(msgs, opts.n ?? N);
    log(`${label}: ${JSON.stringify(got.text)} cached ${got.usage?.prompt_tokens_details?.cached_tokens}/${got.usage?.prompt_tokens}`);
    if (opts.stopAfter) {
      assert.equal(got.finish_reason, 'abort', label);
      assert.ok(want.text.startsWith(got.text) && got.text.length < want.text.length, `${label}: ${JSON.stringify(got.text)} is not a strict prefix of ${JSON.stringify(want.text)}`);
    } else {
      assert.equal(got.text, want.text, `${label}: the reply differs from a fresh engine's`);
    }
    assert.equal(got.usage.prompt_tokens, want.prompt_ids.length, label);
    assert.equal(got.dropped, 0, label);
    turns.push(got.usage);
    return got;
  };
  for (const [i, q] of questions.entries()) {
    messages.push({ role: 'user', content: q });
    const got = await check(`turn ${i + 1}`, [...messages], i === 2 ? { stream: true, stopAfter: 3, n: 100 } : { stream: i % 2 === 1 });
    messages.push({ role: 'assistant', content: got.text });
  }
  // Turns 2-4 reuse at least the previous prompt; the first reuses nothing.
  assert.equal(turns[0].prompt_tokens_details.cached_tokens, 0);
  for (let t = 1; t < 4; t++) {
    const cached = turns[t].prompt_tokens_details.cached_tokens;
    assert.ok(cached >= turns[t - 1].prompt_tokens && cached < turns[t].prompt_tokens, `turn ${t + 1}: ${cached} cached`);
  }
  // Edit the first question (the later turns stay): only the common start is reused.
  messages.pop();
  messages[1] = { role: 'user', content: 'What is the capital of Spain?' };
  await check('edited', [...messages], { stream: true });
  const edited = turns[4].prompt_tokens_details.cached_tokens;
  assert.ok(edited > 10 && edited < turns[0].prompt_tokens, `edited: ${edited} cached`);
  // Regenerate: everything but the last prompt token comes from the cache, same reply.
  await check('regenerate', [...messages]);
  assert.equal(turns[5].prompt_tokens_details.cached_tokens, turns[5].prompt_tokens - 1);
  // cache_prompt: false prefills the whole prompt, with the same reply.
  const whole = await ask([...messages], { cachePrompt: false });
  assert.equal(whole.usage.prompt_tokens_details.cached_tokens, 0);
  assert.equal(whole.text, nativeReply([...messages], N).text);
  await page.evaluate(() => window.chord.engine.unload());
  assert.equal(await page.evaluate(() => window.chord.engine.info()), null);
});

test('two models in one engine: routing by model, oldest turns dropped to fit n_ctx, unload(id)', T, async () => {
  const N_CTX = 128;
  // A conversation longer than 128 tokens: the system prompt, three old turns and a question.
  const long = [SYSTEM];
  for (const n of [3, 10, 17]) {
    long.push({ role: 'user', content: `Tell me one fact about the number ${n}, in one sentence please.` });
    long.push({ role: 'assistant', content: `The number ${n} is a whole number that comes after ${n - 1} and before ${n + 1}.` });
  }
  long.push({ role: 'user', content: 'What is the capital of France?' });
  const r = await page.evaluate(
    async ({ base, smol, tiny, long, N_CTX }) => {
      const e = window.chord.engine;
      const settle = (p) => p.then((v) => ({ ok: v }), (err) => ({ code: err.code, message: err.message }));
      const ask = (params) =>
        settle(e.chat.completions.create({ messages: long, temperature: 0, max_tokens: 8, ...params }).then((c) => ({
          text: c.choices[0].message.content,
          model: c.model,
          dropped: c.dropped_messages,
          prompt_tokens: c.usage.prompt_tokens,
        })));
      const out = {};
      out.loadSmol = await e.load(`${base}/models/${smol}`, { backend: 'cpu', id: 'smol', n_ctx: N_CTX });
      out.loadTiny = await e.load(`${base}/models/${tiny}`, { backend: 'cpu', id: 'tiny' });
      out.info = await e.info();
      out.fit = await ask({ model: 'smol' });
      out.kvAfter = (await e.info()).models.map((m) => m.kv_bytes);
      out.strict = await ask({ model: 'smol', context_overflow: 'error' });
      out.badPolicy = await ask({ model: 'smol', context_overflow: 'shift' });
      // The tiny model has no chat template: its own error shows where the request went.
      out.dflt = await ask({});
      out.tokSmol = await e.tokenize('Hello world', { model: 'smol' });
      out.tokTiny = await e.tokenize('Hello world', { model: 'tiny' });
      out.tokDflt = await e.tokenize('Hello world');
      await e.unload('smol');
      out.after = (await e.info()).models.map((m) => m.id);
      out.gone = await ask({ model: 'smol' });
      out.badNctx = await settle(e.load(`${base}/models/${smol}`, { backend: 'cpu', id: 'x', n_ctx: 1 << 30 }));
      await e.unload();
      out.empty = await e.info();
      return out;
    },
    { base: server.base, smol: MODEL, tiny: TINY, long, N_CTX },
  );
  log('two models:', JSON.stringify({ ...r, loadSmol: undefined, loadTiny: undefined, info: r.info.models }));
  assert.deepEqual(
    r.info.models.map((m) => [m.id, m.backend, m.current]),
    [
      ['smol', 'cpu', false],
      ['tiny', 'cpu', true],
    ],
  );
  assert.equal(r.info.id, 'tiny', 'the most recently loaded is current');
  assert.equal(r.loadSmol.n_ctx, N_CTX);
  assert.equal(r.info.models[0].n_ctx, N_CTX);
  // (load_memory_bytes may be 0: wasm memory freed by the first test's unload is reused.)
  for (const m of r.info.models) assert.ok(m.size > 0 && m.load_memory_bytes >= 0, JSON.stringify(m));
  // Dropped whole turns (pairs of messages) from the front; the reply is the native engine's
  // reply to the messages kept.
  assert.ok(r.fit.ok, JSON.stringify(r.fit));
  const { dropped } = r.fit.ok;
  assert.ok(dropped >= 2 && dropped % 2 === 0 && dropped <= 6, `dropped ${dropped}`);
  assert.ok(r.fit.ok.prompt_tokens + 8 <= N_CTX, JSON.stringify(r.fit.ok));
  assert.equal(r.fit.ok.model, 'smol');
  assert.ok(r.info.models[0].kv_bytes === 0 && r.kvAfter[0] > 0, `the CPU cache grows with use: ${r.kvAfter}`);
  const kept = [SYSTEM, ...long.slice(1 + dropped)];
  const want = nativeReply(kept, 8);
  assert.equal(r.fit.ok.text, want.text);
  assert.equal(r.fit.ok.prompt_tokens, want.prompt_ids.length);
  const whole = nativeReply(long, 1).prompt_ids.length;
  assert.ok(whole >= N_CTX, `the whole conversation is ${whole} tokens: not longer than the context`);
  assert.equal(r.strict.code, 'context_full', JSON.stringify(r.strict));
  assert.equal(r.badPolicy.code, 'invalid');
  assert.match(r.badPolicy.message, /context_overflow/);
  assert.equal(r.dflt.code, 'chat_template', JSON.stringify(r.dflt));
  assert.notDeepEqual(r.tokSmol, r.tokTiny, 'the two vocabularies tokenize differently');
  assert.deepEqual(r.tokDflt, r.tokTiny);
  assert.deepEqual(r.after, ['tiny']);
  assert.equal(r.gone.code, 'not_loaded');
  assert.match(r.gone.message, /"smol".*loaded: tiny/);
  assert.equal(r.badNctx.code, 'invalid');
  assert.match(r.badNctx.message, /training context/);
  assert.equal(r.empty, null);
});

test('a saved session restores after a page reload: the same greedy continuation, the prefix not prefilled again', T, async () => {
  const url = `${server.base}/models/${MODEL}`;
  const q1 = [SYSTEM, { role: 'user', content: 'What is the capital of France?' }];
  const orig = await page.evaluate(
    async ({ url, q1, N }) => {
      const e = window.chord.engine;
      await e.load(url, { backend: 'cpu' });
      const r1 = await e.chat.completions.create({ messages: q1, temperature: 0, max_tokens: N });
      const f16 = await e.saveSession('conv-a');
      const f32 = await e.saveSession('conv-a32', { precision: 'f32' });
      return { reply: r1.choices[0].message.content, f16, f32, info: await e.info() };
    },
    { url, q1, N },
  );
  log('saved:', JSON.stringify({ f16: orig.f16, f32: orig.f32 }));
  assert.equal(orig.f16.tokens, orig.info.cached_tokens);
  assert.ok(orig.f16.tokens > 20, 'the session holds the conversation');
  assert.equal(orig.f16.precision, 'f16');
  // f16 halves the values (the header, ids and checksum are the same size in both).
  assert.ok(orig.f16.bytes < orig.f32.bytes * 0.55 && orig.f16.bytes > orig.f32.bytes * 0.45, `${orig.f16.bytes} vs ${orig.f32.bytes}`);
  const q2 = [...q1, { role: 'assistant', content: orig.reply }, { role: 'user', content: 'And of Italy?' }];
  // What the original engine replies next, reusing its cache (the reference).
  const ref = await ask(q2);
  const fresh = nativeReply(q2, N);
  assert.equal(ref.text, fresh.text);
  const refCached = ref.usage.prompt_tokens_details.cached_tokens;
  assert.ok(refCached >= orig.f16.tokens - 1, `the original reused ${refCached}`);

  await page.reload();
  await page.waitForSelector('body[data-state="idle"]', { timeout: 60_000 });
  const back = await page.evaluate(
    async ({ url, q2, N, tiny }) => {
      const e = window.chord.engine;
      const settle = (p) => p.then((v) => ({ ok: v }), (err) => ({ code: err.code, message: err.message }));
      const turn = async () => {
        const r = await e.chat.completions.create({ messages: q2, temperature: 0, max_tokens: N });
        return { text: r.choices[0].message.content, cached: r.usage.prompt_tokens_details.cached_tokens, prompt_ms: r.timings.prompt_ms };
      };
      const out = {};
      await e.load(url, { backend: 'cpu' });
      out.list = await e.listSessions();
      out.restored16 = await e.restoreSession('conv-a');
      out.turn16 = await turn();
      out.restored32 = await e.restoreSession('conv-a32');
      out.turn32 = await turn();
      out.noReuse = await e.chat.completions.create({ messages: q2, temperature: 0, max_tokens: 1, cache_prompt: false }).then((r) => r.timings.prompt_ms);
      out.deleted = await e.deleteSession('conv-a');
      out.missing = await settle(e.restoreSession('conv-a'));
      out.badKey = await settle(e.restoreSession(''));
      await e.load(tiny, { backend: 'cpu', id: 'tiny' });
      out.otherModel = await settle(e.restoreSession('conv-a32', { model: 'tiny' }));
      out.usage = await e.cache.usage();
      await e.deleteSession('conv-a32');
      await e.unload();
      return out;
    },
    { url, q2, N, tiny: `${server.base}/models/${TINY}` },
  );
  log('after reload:', JSON.stringify(back));
  assert.deepEqual(back.list.map((s) => s.key).sort(), ['conv-a', 'conv-a32']);
  assert.equal(back.restored16.tokens, orig.f16.tokens);
  assert.equal(back.restored32.tokens, orig.f32.tokens);
  for (const [what, t] of [['f16', back.turn16], ['f32', back.turn32]]) {
    assert.equal(t.text, ref.text, `${what}: the restored session continues differently`);
    assert.equal(t.cached, refCached, `${what}: cached tokens after restore`);
  }
  log(`restore ${back.restored16.ms.toFixed(1)} ms (f16) / ${back.restored32.ms.toFixed(1)} ms (f32), then ${back.turn16.prompt_ms.toFixed(0)} ms to the first token; without reuse ${back.noReuse.toFixed(0)} ms`);
  assert.equal(back.deleted, true);
  assert.equal(back.missing.code, 'bad_session');
  assert.match(back.missing.message, /no session is saved under "conv-a"/);
  assert.equal(back.badKey.code, 'invalid');
  assert.equal(back.otherModel.code, 'bad_session');
  assert.match(back.otherModel.message, /another model/);
  assert.ok(back.usage.sessions >= orig.f32.bytes, JSON.stringify(back.usage));
});
