// The side-by-side benchmark page (www/bench-wllama.html): one engine per page, wasm-chord
// (?engine=chord) or wllama (?engine=wllama, llama.cpp in wasm), on the CPU, with the threads
// asked for. Both run the same greedy chat: one user message whose chat prompt is about
// `prompt_tokens` tokens, `n` new tokens, the prompt cache off, `runs` times after a warm-up.
// Each run reports the exact token counts that engine saw and its prefill and decode tokens/s,
// both computed the same way from the engine's own timings:
//   prefill = prompt tokens / prompt time (wllama: llama-server's prompt_ms, prompt processing
//             only; wasm-chord: the time to the first token, which also covers applying the chat
//             template, tokenizing and sampling the first token, so it slightly favours wllama);
//   decode  = (generated tokens − 1) / the time from the first generated token to the last.
// The result is left in window.benchResult for scripts/bench-wllama.
import { createEngine } from '../worker/client.js';
import { SENTENCES } from './bench-text.js';

const q = new URLSearchParams(location.search);
const out = document.getElementById('out');
const show = (v) => (out.textContent = JSON.stringify(v, null, 2));

const engineName = q.get('engine') || 'chord';
const model = new URL(q.get('model') || '/models/smollm2-135m-instruct-q4_k_m.gguf', location.href).href;
const threads = Number(q.get('threads') || 1);
const runs = Number(q.get('runs') || 3);
const n = Number(q.get('n') || 64);
const promptTokens = Number(q.get('prompt_tokens') || 128);

// The filler of the user message: www/bench-text.js's sentences, cut to length.
const HEAD = 'Here are some notes.';
const TAIL = ' Using all of these notes, write a long and detailed story in at least five paragraphs.';
// Short words that are one token in most vocabularies: they close the last gap exactly.
const PAD = [' and', ' then', ' so', ' also', ' too', ' yes', ' a', ','];

const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** A user message whose chat prompt is `target` tokens for wasm-chord's tokenizer and template. */
async function buildPrompt(engine, target) {
  const count = async (text) => (await engine.tokenize(text, { addSpecial: false })).length;
  const chatTokens = async (text) =>
    (await engine.chat.completions.create({ messages: [{ role: 'user', content: text }], max_tokens: 1, temperature: 0, cache_prompt: false })).usage
      .prompt_tokens;
  // The template's tokens: a chat's prompt less its message's own tokens.
  const probe = 'Hello there.';
  let overhead = (await chatTokens(probe)) - (await count(probe));
  const words = [];
  while (words.length < 4 * target) words.push(...SENTENCES.join(' ').split(' '));
  let text = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const budget = target - overhead;
    // The most words that fit, by bisection (the count only grows with the words).
    let lo = 0;
    let hi = words.length;
    const body = (k) => `${HEAD} ${words.slice(0, k).join(' ')}`;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if ((await count(body(mid) + TAIL)) <= budget) lo = mid;
      else hi = mid - 1;
    }
    let b = body(lo);
    for (let guard = 0; guard < 16 && (await count(b + TAIL)) < budget; guard++) {
      let added = false;
      for (const p of PAD) {
        if ((await count(b + p + TAIL)) <= budget) {
          b += p;
          added = true;
          break;
        }
      }
      if (!added) break;
    }
    text = b + TAIL;
    const seen = await chatTokens(text);
    if (seen === target) break;
    overhead += seen - target; // the template's tokens are not quite additive: correct and retry
  }
  return text;
}

async function runChord(prompt) {
  const engine = await createEngine();
  // `threads` is honoured by a threaded build (used when the page is cross-origin isolated);
  // builds without threads ignore it, and info() says what ran.
  const loaded = await engine.load(model, { backend: 'cpu', threads });
  const info = await engine.info();
  const built = prompt ?? (await buildPrompt(engine, promptTokens));
  const messages = [{ role: 'user', content: built }];
  const chat = (max_tokens) => engine.chat.completions.create({ messages, max_tokens, temperature: 0, cache_prompt: false });
  await chat(8); // warm-up (the browser's optimizing tier, caches)
  const rows = [];
  let reply = '';
  for (let i = 0; i < runs; i++) {
    const r = await chat(n);
    const t = r.timings;
    reply = r.choices[0].message.content;
    rows.push({
      prompt_tokens: r.usage.prompt_tokens,
      cached_tokens: r.usage.prompt_tokens_details?.cached_tokens ?? 0,
      completion_tokens: r.usage.completion_tokens,
      prompt_ms: t.prompt_ms,
      gen_ms: t.gen_ms,
      prefill_tok_s: (r.usage.prompt_tokens * 1000) / t.prompt_ms,
      decode_tok_s: ((r.usage.completion_tokens - 1) * 1000) / t.gen_ms,
    });
  }
  const threadsUsed = info.threads ?? loaded.threads ?? 1;
  const result = {
    engine: 'wasm-chord',
    model: info.name,
    backend: info.backend,
    threads_requested: threads,
    threads_used: threadsUsed,
    threads_source: info.threads != null || loaded.threads != null ? 'info().threads' : 'not reported by info(): a single-threaded build',
    build: info.build ?? info.kernels ?? info.simd ?? null,
    relaxed_dot_products: info.relaxed_dot_products ?? null,
    prompt: built,
    rows,
    reply,
  };
  engine.terminate();
  return result;
}

async function runWllama(prompt) {
  if (!prompt) throw new Error('wllama needs ?prompt= (the text wasm-chord built)');
  const { Wllama } = await import('/www/wllama/esm/index.js');
  const w = new Wllama({ default: '/www/wllama/esm/wasm/wllama.wasm' }, { suppressNativeLog: true });
  // The same file, fetched from the same server; wllama's own cache is left out.
  const blob = await (await fetch(model)).blob();
  await w.loadModel([blob], { n_threads: threads, n_gpu_layers: 0, n_ctx: 1024 });
  const messages = [{ role: 'user', content: prompt }];
  const chat = (max_tokens) => w.createChatCompletion({ messages, max_tokens, temperature: 0, cache_prompt: false, ignore_eos: true });
  await chat(8); // warm-up
  const rows = [];
  let reply = '';
  for (let i = 0; i < runs; i++) {
    const r = await chat(n);
    const t = r.timings;
    if (!t) throw new Error(`wllama's response has no timings: ${JSON.stringify(r).slice(0, 400)}`);
    rows.push({
      prompt_tokens: t.prompt_n,
      cached_tokens: t.cache_n,
      completion_tokens: t.predicted_n,
      prompt_ms: t.prompt_ms,
      gen_ms: t.predicted_ms,
      prefill_tok_s: (t.prompt_n * 1000) / t.prompt_ms,
      // llama-server's predicted_ms starts when the first token is sampled, as wasm-chord's gen_ms.
      decode_tok_s: ((t.predicted_n - 1) * 1000) / t.predicted_ms,
      predicted_per_second: t.predicted_per_second,
    });
    reply = r.choices[0].message.content;
  }
  const result = {
    engine: 'wllama',
    model: model.split('/').pop(),
    threads_requested: threads,
    threads_used: w.getNumThreads(),
    multithread: w.isMultithread(),
    prompt,
    rows,
    reply,
  };
  await w.exit();
  return result;
}

async function run() {
  const prompt = q.get('prompt');
  const r = engineName === 'wllama' ? await runWllama(prompt) : await runChord(prompt);
  return {
    ...r,
    userAgent: navigator.userAgent,
    hardwareConcurrency: navigator.hardwareConcurrency,
    crossOriginIsolated: globalThis.crossOriginIsolated === true,
    prefill_tok_s: median(r.rows.map((x) => x.prefill_tok_s)),
    decode_tok_s: median(r.rows.map((x) => x.decode_tok_s)),
  };
}

run().then(
  (r) => {
    window.benchResult = r;
    show(r);
  },
  (e) => {
    window.benchResult = { error: { code: e.code, message: e.message ?? String(e), stack: e.stack } };
    show(window.benchResult);
  },
);
