// The official `openai` npm client against `chord serve --model ...`: non-streaming and
// streaming chat (greedy text equal to the native engine's), completions, model listing, abort
// (the server stops generating), bad requests as typed errors, and concurrent streams (each
// equal to its solo run). 127.0.0.1 only; a handful of short requests.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { MODEL_PATH, startServer, nativeReply } from './helpers.mjs';

const KEY = 'e2e-key';
let server;
let client;

before(async () => {
  server = await startServer(['--model', `smol=${MODEL_PATH}`, '--parallel', '4', '--ctx', '1024', '--api-key', KEY]);
  client = new OpenAI({ baseURL: `${server.base}/v1`, apiKey: KEY, maxRetries: 0, timeout: 120_000 });
});

after(async () => {
  await server?.stop();
});

const log = (...a) => console.log('#', ...a);
const health = async () => (await (await fetch(`${server.base}/health`)).json()).models[0];

async function streamText(params, opts) {
  const stream = await client.chat.completions.create({ ...params, stream: true }, opts);
  let text = '';
  let last = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? '';
    if (chunk.choices[0]?.finish_reason) last = chunk;
  }
  return { text, last };
}

test('models.list, non-streaming and streaming chat equal the native engine', { timeout: 180_000 }, async () => {
  const models = [];
  for await (const m of client.models.list()) models.push(m.id);
  assert.deepEqual(models, ['smol']);

  const question = 'What is the capital of France?';
  const want = nativeReply(question, 24);
  const r = await client.chat.completions.create({ model: 'smol', messages: [{ role: 'user', content: question }], max_tokens: 24 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.content, want);
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 24);

  const s = await streamText({ model: 'smol', messages: [{ role: 'user', content: question }], max_tokens: 24, stream_options: { include_usage: true } });
  assert.equal(s.text, want);
  assert.equal(s.last.choices[0].finish_reason, r.choices[0].finish_reason);
  for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) assert.equal(s.last.usage[k], r.usage[k], k);
  // The same prompt again: all but its last token came from a slot's cache.
  assert.equal(r.usage.prompt_tokens_details.cached_tokens, 0);
  assert.equal(s.last.usage.prompt_tokens_details.cached_tokens, r.usage.prompt_tokens - 1);

  const stop = await client.chat.completions.create({ model: 'smol', messages: [{ role: 'user', content: question }], max_tokens: 24, stop: ['Paris'] });
  if (want.includes('Paris')) {
    assert.equal(stop.choices[0].message.content, want.slice(0, want.indexOf('Paris')));
    assert.equal(stop.choices[0].finish_reason, 'stop');
  }

  const c = await client.completions.create({ model: 'smol', prompt: 'The capital of France is', max_tokens: 6 });
  assert.equal(c.object, 'text_completion');
  assert.ok(c.choices[0].text.length > 0);
  assert.equal(c.usage.completion_tokens, 6);
});

test('structured output: response_format json_schema', { timeout: 120_000 }, async () => {
  const r = await client.chat.completions.create({
    model: 'smol',
    messages: [{ role: 'user', content: 'Describe the weather in Paris as JSON.' }],
    max_tokens: 60,
    response_format: {
      type: 'json_schema',
      json_schema: {
        name: 'weather',
        schema: { type: 'object', properties: { city: { type: 'string', maxLength: 20 }, sunny: { type: 'boolean' } }, required: ['city', 'sunny'], additionalProperties: false },
      },
    },
  });
  const v = JSON.parse(r.choices[0].message.content);
  assert.equal(typeof v.city, 'string');
  assert.equal(typeof v.sunny, 'boolean');
  assert.equal(r.choices[0].finish_reason, 'stop');
  await assert.rejects(
    client.chat.completions.create({ model: 'smol', messages: [{ role: 'user', content: 'x' }], response_format: { type: 'yaml' } }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'response_format',
  );
});

test('bad requests are typed errors with the right status', { timeout: 60_000 }, async () => {
  const msg = [{ role: 'user', content: 'hi' }];
  await assert.rejects(client.chat.completions.create({ model: 'smol', messages: [] }), (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && /messages/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: 'smol', messages: msg, temperature: 7 }), (e) => e instanceof OpenAI.BadRequestError && e.param === 'temperature');
  await assert.rejects(client.chat.completions.create({ model: 'smol', messages: [{ role: 'user', content: 'word '.repeat(2000) }] }), (e) => e.status === 400 && e.code === 'context_length_exceeded');
  const wrongKey = new OpenAI({ baseURL: `${server.base}/v1`, apiKey: 'nope', maxRetries: 0 });
  await assert.rejects(wrongKey.chat.completions.create({ model: 'smol', messages: msg }), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  await assert.rejects(client.models.retrieve('nope'), (e) => e instanceof OpenAI.NotFoundError);
});

test('abort stops the stream and the server stops generating', { timeout: 60_000 }, async () => {
  const ctl = new AbortController();
  const stream = await client.chat.completions.create(
    { model: 'smol', messages: [{ role: 'user', content: 'Write a very long story about a dragon.' }], max_tokens: 900, stream: true },
    { signal: ctl.signal },
  );
  let n = 0;
  let ended = 'normally';
  try {
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta?.content) n += 1;
      if (n === 5 && !ctl.signal.aborted) ctl.abort();
      assert.ok(n <= 5 || !ctl.signal.aborted, 'no content after the abort');
    }
  } catch (e) {
    // openai 6 ends the iteration quietly on an abort; older versions throw this.
    assert.ok(e instanceof OpenAI.APIUserAbortError || e.name === 'AbortError', String(e));
    ended = 'aborted';
  }
  log('stream ended', ended);
  assert.equal(n, 5);
  const t0 = Date.now();
  while ((await health()).active !== 0) {
    assert.ok(Date.now() - t0 < 5000, 'the server went on generating after the abort');
    await new Promise((r) => setTimeout(r, 50));
  }
});

test('concurrent streams are batched and each equals its solo run', { timeout: 240_000 }, async () => {
  const questions = ['Name a colour.', 'What is 2+2?', 'Say hello in French.', 'What is the largest planet?'];
  const params = (q) => ({ model: 'smol', messages: [{ role: 'user', content: q }], max_tokens: 20 });
  const solo = [];
  for (const q of questions) solo.push((await streamText(params(q))).text);
  const before = (await health()).max_batch;
  const together = await Promise.all(questions.map((q) => streamText(params(q))));
  assert.deepEqual(
    together.map((s) => s.text),
    solo,
  );
  const h = await health();
  assert.ok(h.max_batch >= 2 && h.max_batch >= before, `requests shared decode steps (max batch ${h.max_batch})`);
  assert.equal(h.active, 0);
});
