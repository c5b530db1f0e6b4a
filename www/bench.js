// The browser benchmark (www/bench.html): download throughput, load time from IndexedDB, time to
// first token, decode tokens/s and wasm memory, on the backend asked for. The result is left in
// window.benchResult (and shown) for scripts/bench-browser.
import { createEngine } from '../worker/client.js';

const q = new URLSearchParams(location.search);
const out = document.getElementById('out');
const show = (v) => (out.textContent = JSON.stringify(v, null, 2));

async function run() {
  const model = new URL(q.get('model') || '/models/smollm2-135m-instruct-q4_k_m.gguf', location.href).href;
  const backend = q.get('backend') || 'auto';
  const n = Number(q.get('n') || 32);
  const prompt = q.get('prompt') || 'Write a short story about a robot who learns to paint.';
  const engine = await createEngine();
  await engine.cache.delete(model);
  const t0 = performance.now();
  const first = await engine.load(model, { backend });
  const downloadLoadMs = performance.now() - t0;
  await engine.unload();
  const t1 = performance.now();
  const info = await engine.load(model, { backend });
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
