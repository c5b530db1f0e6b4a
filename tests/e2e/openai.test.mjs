// The official `openai` npm client against `chord serve --model ...`: non-streaming and
// streaming chat (greedy text equal to the native engine's), completions, model listing, abort
// (the server stops generating), bad requests as typed errors, and concurrent streams (each
// equal to its solo run), and tool calls on Qwen2.5 (forced, streamed as delta.tool_calls, and
// sent back as history). 127.0.0.1 only; a handful of short requests.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { join } from 'node:path';
import { MODEL_PATH, ROOT, startServer, nativeReply } from './helpers.mjs';

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
  // Solo twice: the second pass resumes each prompt from its slot's cache, as the concurrent
  // requests below do. (A prompt's last token prefilled alone rounds differently from the same
  // token inside a whole-prompt prefill, so a first run's text may differ; batching must not.)
  let solo = [];
  for (let pass = 0; pass < 2; pass++) {
    solo = [];
    for (const q of questions) solo.push((await streamText(params(q))).text);
  }
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

test('tool calls: forced, streamed, sent back, and refused on a template without tools', { timeout: 240_000 }, async () => {
  const tools = [
    {
      type: 'function',
      function: {
        name: 'get_weather',
        description: 'Current weather of a city',
        parameters: { type: 'object', properties: { city: { type: 'string', minLength: 1, maxLength: 32 }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } }, required: ['city', 'unit'], additionalProperties: false },
      },
    },
  ];
  const checkArgs = (call) => {
    assert.equal(call.type, 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.match(call.id, /^call_/);
    const a = JSON.parse(call.function.arguments);
    assert.deepEqual(Object.keys(a).sort(), ['city', 'unit']);
    assert.ok(typeof a.city === 'string' && a.city.length >= 1 && a.city.length <= 32, call.function.arguments);
    assert.ok(['celsius', 'fahrenheit'].includes(a.unit), call.function.arguments);
  };
  // SmolLM2's template renders no tools: a typed 400 naming `tools`.
  await assert.rejects(
    client.chat.completions.create({ model: 'smol', messages: [{ role: 'user', content: 'x' }], tools }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'tools' && /does not render tools/.test(e.message),
  );

  const qwen = await startServer(['--model', `qwen=${join(ROOT, 'models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf')}`, '--ctx', '1024', '--parallel', '1']);
  try {
    const q = new OpenAI({ baseURL: `${qwen.base}/v1`, apiKey: 'none', maxRetries: 0, timeout: 120_000 });
    const messages = [{ role: 'user', content: "What's the weather in Paris right now?" }];
    const r = await q.chat.completions.create({ model: 'qwen', messages, tools, tool_choice: { type: 'function', function: { name: 'get_weather' } }, max_tokens: 100 });
    const m = r.choices[0].message;
    assert.equal(r.choices[0].finish_reason, 'tool_calls');
    assert.equal(m.content, null);
    assert.equal(m.tool_calls.length, 1);
    checkArgs(m.tool_calls[0]);
    log('tool call:', JSON.stringify(m.tool_calls[0]));

    // Streamed: the call arrives as delta.tool_calls (assembled as clients do), no text.
    const stream = await q.chat.completions.create({ model: 'qwen', messages, tools, tool_choice: 'required', max_tokens: 100, stream: true });
    const calls = [];
    let text = '';
    let finish = null;
    for await (const chunk of stream) {
      const d = chunk.choices[0]?.delta ?? {};
      text += d.content ?? '';
      for (const t of d.tool_calls ?? []) {
        const c = (calls[t.index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } });
        if (t.id) c.id = t.id;
        c.function.name += t.function?.name ?? '';
        c.function.arguments += t.function?.arguments ?? '';
      }
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(text, '');
    assert.equal(finish, 'tool_calls');
    assert.equal(calls.length, 1);
    checkArgs(calls[0]);

    // The call and its result go back as history; the model answers in text.
    messages.push({ role: 'assistant', content: null, tool_calls: m.tool_calls });
    messages.push({ role: 'tool', tool_call_id: m.tool_calls[0].id, content: JSON.stringify({ temperature: 21, sky: 'sunny' }) });
    const a = await q.chat.completions.create({ model: 'qwen', messages, tools, max_tokens: 30 });
    assert.equal(typeof a.choices[0].message.content, 'string');
    assert.ok(a.usage.prompt_tokens_details.cached_tokens >= r.usage.prompt_tokens, 'the first turn came from the cache');
    log('answer:', JSON.stringify(a.choices[0].message.content));
  } finally {
    await qwen.stop();
  }
});
