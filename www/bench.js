// The browser benchmark (www/bench.html): download throughput, load time from IndexedDB, time to
// first token, decode tokens/s and wasm memory, on the backend asked for. The result is left in
// window.benchResult (and shown) for scripts/bench-browser. With `?turns=8`: the multi-turn
// benchmark instead, as `chord bench MODEL --turns 8` (src/conversation/bench.rs): time to first
// token per turn with the previous turn's cache reused and with `cache_prompt: false`, then a
// saved session's save and restore (IndexedDB included) against prefilling the conversation.
import { createEngine } from '../worker/client.js';
import { SENTENCES } from './bench-text.js';

const q = new URLSearchParams(location.search);
const out = document.getElementById('out');
const show = (v) => (out.textContent = JSON.stringify(v, null, 2));


async function userMessage(engine, t, tokens) {
  let text = `Turn ${t + 1}. Here is some context.`;
  let i = t * 5;
  while ((await engine.tokenize(text, { addSpecial: false })).length < tokens - 12) {
    text += ` ${SENTENCES[i % SENTENCES.length]}`;
    i++;
  }
  return `${text} What is the main point of what I just wrote?`;
}

async function runTurns(engine, users, n, cachePrompt, replies = null) {
  const messages = [{ role: 'system', content: 'You are a helpful assistant. Answer in one or two sentences.' }];
  const rows = [];
  const said = [];
  for (const [t, user] of users.entries()) {
    messages.push({ role: 'user', content: user });
    const r = await engine.chat.completions.create({ messages, max_tokens: n, temperature: 0, cache_prompt: cachePrompt });
    rows.push({ prompt_tokens: r.usage.prompt_tokens, cached_tokens: r.usage.prompt_tokens_details.cached_tokens, ttft_ms: r.timings.prompt_ms });
    const reply = replies ? replies[t] : r.choices[0].message.content;
    messages.push({ role: 'assistant', content: reply });
    said.push(reply);
  }
  return { rows, said, messages };
}

async function runMultiTurn(model, backend, turns, turnTokens, n) {
  const engine = await createEngine();
  const info = await engine.load(model, { backend });
  const users = [];
  for (let t = 0; t < turns; t++) users.push(await userMessage(engine, t, turnTokens));
  const reuse = await runTurns(engine, users, n, true);
  const session = {};
  for (const precision of ['f16', 'f32']) {
    const saved = await engine.saveSession(`bench-${precision}`, { precision });
    const restored = await engine.restoreSession(`bench-${precision}`);
    session[precision] = { tokens: saved.tokens, bytes: saved.bytes, save_ms: saved.ms, restore_ms: restored.ms };
    await engine.deleteSession(`bench-${precision}`);
  }
  const whole = await runTurns(engine, users, n, false, reuse.said);
  const last = (v) => v[v.length - 1].ttft_ms / v[0].ttft_ms;
  return {
    userAgent: navigator.userAgent,
    model: info.name,
    backend: info.backend,
    adapter: info.adapter,
    turns: reuse.rows.map((r, t) => ({ turn: t + 1, ...r, ttft_ms_no_reuse: whole.rows[t].ttft_ms })),
    last_over_first_ttft: { reuse: last(reuse.rows), no_reuse: last(whole.rows) },
    session,
  };
}

async function run() {
  if (q.get('turns')) {
    const model = new URL(q.get('model') || '/models/smollm2-135m-instruct-q4_k_m.gguf', location.href).href;
    return runMultiTurn(model, q.get('backend') || 'auto', Number(q.get('turns')), Number(q.get('turn_tokens') || 150), Number(q.get('n') || 32));
  }
  const model = new URL(q.get('model') || '/models/smollm2-135m-instruct-q4_k_m.gguf', location.href).href;
  const backend = q.get('backend') || 'auto';
  const n = Number(q.get('n') || 32);
  const prompt = q.get('prompt') || 'Write a short story about a robot who learns to paint.';
  // threads: the CPU kernels' threads on the threaded build (cross-origin isolated pages).
  const threads = q.get('threads') ? Number(q.get('threads')) : undefined;
  const engine = await createEngine();
  await engine.cache.delete(model);
  const t0 = performance.now();
  const first = await engine.load(model, { backend, threads });
  const downloadLoadMs = performance.now() - t0;
  await engine.unload();
  const t1 = performance.now();
  const info = await engine.load(model, { backend, threads });
  const cachedLoadMs = performance.now() - t1;
  const t2 = performance.now();
  let ttft = null;
  let text = '';
  let last = null;
  const stream = await engine.chat.completions.create({
    messages: [{ role: 'user', content: prompt }],
    stream: true,
    max_tokens: n,
    temperature: 0,
  });
  for await (const c of stream) {
    if (c.choices[0].delta.content) {
      ttft ??= performance.now() - t2;
      text += c.choices[0].delta.content;
    }
    last = c;
  }
  const t = last.timings;
  return {
    userAgent: navigator.userAgent,
    hardwareConcurrency: navigator.hardwareConcurrency,
    model: info.name,
    size_bytes: info.size,
    backend: info.backend,
    adapter: info.adapter,
    fallback: info.fallback,
    threaded_build: info.threaded_build,
    threads: info.threads,
    threads_note: info.threads_note,
    download_ms: first.download_ms,
    download_MB_s: info.size / 1e6 / (first.download_ms / 1000),
    first_load_total_ms: downloadLoadMs,
    load_from_indexeddb_ms: cachedLoadMs,
    engine_load_ms: info.load_ms,
    // Wasm memory only grows: the first load's growth is its peak need, and the final size the
    // peak of the whole run.
    first_load_wasm_memory_growth_bytes: first.load_memory_bytes,
    prompt_tokens: last.usage.prompt_tokens,
    completion_tokens: last.usage.completion_tokens,
    time_to_first_token_ms: ttft,
    prompt_ms: t.prompt_ms,
    prefill_tok_s: (last.usage.prompt_tokens * 1000) / t.prompt_ms,
    decode_tok_s: t.tokens_per_s,
    peak_wasm_memory_bytes: t.memory_bytes,
    text,
  };
}

run().then(
  (r) => {
    window.benchResult = r;
    show(r);
  },
  (e) => {
    window.benchResult = { error: { code: e.code, message: e.message } };
    show(window.benchResult);
  },
);
