// The chat page: UI only. The engine lives in a worker (../worker/client.js).
// Model text is only ever put on the page with textContent.

import { createEngine } from '../worker/client.js';

const $ = (id) => document.getElementById(id);

// Public GGUF files. Sizes are approximate, for the picker only. `gpuOnly`: the weights do not
// fit wasm32's 4 GiB memory next to the runtime, so only the WebGPU backend can load them.
// Gemma 4's smallest checkpoints (E2B/E4B) need per-layer embeddings, which the engine does not
// run yet (`chord inspect` says so), so none is listed.
const CURATED = [
  { name: 'SmolLM2-360M-Instruct', size: 271e6, url: 'https://huggingface.co/bartowski/SmolLM2-360M-Instruct-GGUF/resolve/main/SmolLM2-360M-Instruct-Q4_K_M.gguf' },
  { name: 'Qwen2.5-0.5B-Instruct', size: 491e6, url: 'https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q4_k_m.gguf' },
  { name: 'TinyLlama-1.1B-Chat', size: 669e6, url: 'https://huggingface.co/TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF/resolve/main/tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf' },
  { name: 'Gemma-3-1B-it', size: 806e6, url: 'https://huggingface.co/ggml-org/gemma-3-1b-it-GGUF/resolve/main/gemma-3-1b-it-Q4_K_M.gguf' },
  { name: 'Llama-3.2-1B-Instruct', size: 808e6, url: 'https://huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF/resolve/main/Llama-3.2-1B-Instruct-Q4_K_M.gguf' },
  { name: 'Qwen3-0.6B (Q8_0)', size: 639e6, url: 'https://huggingface.co/Qwen/Qwen3-0.6B-GGUF/resolve/main/Qwen3-0.6B-Q8_0.gguf' },
  { name: 'Qwen3-1.7B (Q8_0)', size: 1.83e9, url: 'https://huggingface.co/Qwen/Qwen3-1.7B-GGUF/resolve/main/Qwen3-1.7B-Q8_0.gguf' },
  { name: 'Granite-3.3-2B-Instruct', size: 1.55e9, url: 'https://huggingface.co/ibm-granite/granite-3.3-2b-instruct-GGUF/resolve/main/granite-3.3-2b-instruct-Q4_K_M.gguf' },
  { name: 'SmolLM3-3B', size: 1.92e9, url: 'https://huggingface.co/ggml-org/SmolLM3-3B-GGUF/resolve/main/SmolLM3-Q4_K_M.gguf' },
  { name: 'Phi-4-mini-instruct', size: 2.49e9, url: 'https://huggingface.co/unsloth/Phi-4-mini-instruct-GGUF/resolve/main/Phi-4-mini-instruct-Q4_K_M.gguf' },
  { name: 'Qwen3-4B', size: 2.5e9, url: 'https://huggingface.co/Qwen/Qwen3-4B-GGUF/resolve/main/Qwen3-4B-Q4_K_M.gguf' },
  { name: 'Qwen3-8B', size: 5.03e9, url: 'https://huggingface.co/Qwen/Qwen3-8B-GGUF/resolve/main/Qwen3-8B-Q4_K_M.gguf', gpuOnly: true },
];
const DEFAULT_LOCAL = 'smollm2-135m-instruct-q4_k_m.gguf';

const state = {
  engine: null,
  model: null,
  messages: [], // the conversation, OpenAI-style
  loadAbort: null,
  genAbort: null,
};
window.chord = state; // for the console and the e2e tests

const mb = (b) => (b == null ? '?' : b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : `${(b / 1e6).toFixed(1)} MB`);

function setState(s) {
  document.body.dataset.state = s;
  const ready = s === 'ready';
  $('prompt').disabled = !ready;
  $('send-btn').disabled = !ready;
  $('stop-btn').disabled = s !== 'generating';
  $('load-btn').disabled = s === 'loading' || s === 'generating' || s === 'starting';
  $('cancel-load-btn').hidden = s !== 'loading';
}

function showError(e) {
  const box = $('error');
  if (!e) {
    box.hidden = true;
    box.textContent = '';
    return;
  }
  box.hidden = false;
  box.dataset.code = e.code || 'error';
  box.textContent = `${e.message || e}${e.code ? ` [${e.code}]` : ''}`;
}

async function fillPicker() {
  const sel = $('model-select');
  sel.replaceChildren();
  const group = (label) => {
    const g = document.createElement('optgroup');
    g.label = label;
    sel.append(g);
    return g;
  };
  const opt = (g, value, text) => {
    const o = document.createElement('option');
    o.value = value;
    o.textContent = text;
    g.append(o);
    return o;
  };
  try {
    const res = await fetch(new URL('../models/', import.meta.url), { cache: 'no-store' });
    if (res.ok) {
      const local = await res.json();
      if (local.length) {
        const g = group('This server');
        for (const m of local) {
          const o = opt(g, new URL(m.url, location.href).href, `${m.name} (${mb(m.size)})`);
          if (m.name === DEFAULT_LOCAL) o.selected = true;
        }
      }
    }
  } catch {
    /* offline or a static host without a listing */
  }
  const pub = group('Public (Hugging Face, Q4_K_M unless noted)');
  for (const m of CURATED) opt(pub, m.url, `${m.name} (≈${mb(m.size)}${m.gpuOnly ? ', WebGPU only' : ''})`);
  const other = group('Other');
  opt(other, 'custom', 'Custom URL…');
  opt(other, 'file', 'Local file…');
  onPick();
}

function onPick() {
  const v = $('model-select').value;
  $('custom-row').hidden = v !== 'custom';
  $('file-row').hidden = v !== 'file';
  $('load-btn').textContent = v === 'file' ? 'Load' : 'Download & load';
}

async function refreshCache() {
  if (!state.engine) return;
  try {
    const [list, use] = await Promise.all([state.engine.cache.list(), state.engine.cache.usage()]);
    const ul = $('cache-list');
    ul.replaceChildren();
    if (!list.length) {
      const li = document.createElement('li');
      li.className = 'small';
      li.textContent = 'none yet';
      ul.append(li);
    }
    for (const m of list) {
      const li = document.createElement('li');
      li.dataset.url = m.url;
      const name = document.createElement('span');
      name.className = 'name';
      name.title = m.url;
      name.textContent = m.name;
      const size = document.createElement('span');
      size.className = 'small';
      size.textContent = m.complete ? mb(m.size) : `${mb(m.stored)} of ${mb(m.size)} (partial)`;
      const use_ = document.createElement('button');
      use_.type = 'button';
      use_.textContent = m.complete ? 'Use' : 'Resume';
      use_.onclick = () => loadModel(m.url);
      const del = document.createElement('button');
      del.type = 'button';
      del.textContent = 'Delete';
      del.className = 'delete';
      del.onclick = async () => {
        await state.engine.cache.delete(m.url);
        refreshCache();
      };
      li.append(name, size, use_, del);
      ul.append(li);
    }
    $('storage').textContent =
      `Models: ${mb(use.models)} · site storage: ${mb(use.usage)}` + (use.quota ? ` of ${mb(use.quota)} allowed` : '');
  } catch (e) {
    $('storage').textContent = `storage: ${e.message}`;
  }
}

function progressText(p) {
  if (p.phase === 'read') return 'Reading the model from the cache…';
  if (p.phase === 'load') return 'Loading the weights…';
  let s = `${mb(p.loaded)} of ${mb(p.total)}`;
  if (p.speed) s += ` · ${(p.speed / 1e6).toFixed(1)} MB/s`;
  if (p.eta != null && isFinite(p.eta)) s += ` · ${Math.ceil(p.eta)} s left`;
  return s;
}

async function loadModel(source) {
  if (!state.engine) return;
  showError(null);
  if (state.genAbort) state.genAbort.abort();
  state.loadAbort = new AbortController();
  setState('loading');
  $('progress-box').hidden = false;
  $('progress').value = 0;
  $('progress-text').textContent = 'Starting…';
  $('model-status').textContent = '';
  try {
    const info = await state.engine.load(source, {
      backend: $('backend').value,
      signal: state.loadAbort.signal,
      onProgress: (p) => {
        if (p.phase === 'download' && p.total) {
          $('progress').value = p.loaded / p.total;
          $('progress').dataset.loaded = p.loaded;
        }
        $('progress-text').textContent = progressText(p);
      },
    });
    state.model = info;
    $('progress').value = 1;
    $('progress-text').textContent = `Ready (load ${(info.load_ms / 1000).toFixed(1)} s)`;
    $('model-status').textContent =
      `${info.name || info.file} · ${info.architecture} · ${info.n_layer} layers · ctx ${info.n_ctx} · ` +
      `backend ${info.backend === 'webgpu' ? `WebGPU (${info.adapter})` : 'CPU (wasm)'} · wasm memory ${mb(info.memory_bytes)}` +
      (info.fallback ? ` · CPU because ${info.fallback}` : '');
    $('model-status').dataset.backend = info.backend;
    setState('ready');
    $('prompt').placeholder = 'Say something…';
  } catch (e) {
    showError(e);
    $('progress-box').hidden = true;
    setState(state.model ? 'ready' : 'idle');
  } finally {
    state.loadAbort = null;
    refreshCache();
  }
}

/** `response_format` from the JSON-mode toggle and its optional schema box. */
function responseFormat() {
  if (!$('json-mode').checked) return undefined;
  const text = $('json-schema').value.trim();
  if (!text) return { type: 'json_object' };
  let schema;
  try {
    schema = JSON.parse(text);
  } catch (e) {
    throw Object.assign(new Error(`the JSON schema is not JSON: ${e.message}`), { code: 'invalid' });
  }
  return { type: 'json_schema', json_schema: { name: 'page_schema', schema, strict: true } };
}

/** A tool call, shown as such: the function's name and its arguments. */
function addToolCall(parent, call) {
  const div = document.createElement('div');
  div.className = 'tool-call';
  div.dataset.name = call.function.name;
  div.textContent = `→ ${call.function.name}(${call.function.arguments})`;
  parent.append(div);
}

function addMessage(role, text) {
  const div = document.createElement('div');
  div.className = `msg ${role}`;
  const r = document.createElement('span');
  r.className = 'role';
  r.textContent = role;
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  div.append(r, body);
  $('messages').append(div);
  div.scrollIntoView({ block: 'end' });
  return body;
}

async function send(text) {
  if (!state.model || !text.trim()) return;
  showError(null);
  state.messages.push({ role: 'user', content: text });
  addMessage('user', text);
  const out = addMessage('assistant', '');
  out.parentElement.dataset.streaming = '1';
  const system = $('system-prompt').value.trim();
  const messages = system ? [{ role: 'system', content: system }, ...state.messages] : [...state.messages];
  state.genAbort = new AbortController();
  setState('generating');
  $('stats').textContent = 'generating…';
  let content = '';
  const toolCalls = [];
  try {
    const stream = await state.engine.chat.completions.create({
      messages,
      stream: true,
      temperature: Number($('temperature').value),
      max_tokens: Number($('max-tokens').value),
      response_format: responseFormat(),
      signal: state.genAbort.signal,
    });
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      for (const call of c?.delta?.tool_calls ?? []) {
        toolCalls.push(call);
        addToolCall(out.parentElement, call);
      }
      if (c?.delta?.content) {
        content += c.delta.content;
        out.textContent = content;
        out.parentElement.scrollIntoView({ block: 'end' });
      }
      if (c?.finish_reason) out.parentElement.dataset.finish = c.finish_reason;
      if (chunk.timings) {
        const t = chunk.timings;
        $('stats').textContent =
          `${chunk.usage ? chunk.usage.completion_tokens : '?'} tokens · ` +
          `${t.tokens_per_s ? t.tokens_per_s.toFixed(t.tokens_per_s < 10 ? 2 : 1) : '?'} tok/s · prompt ${Math.round(t.prompt_ms)} ms · ` +
          `backend ${t.backend} · wasm memory ${mb(t.memory_bytes)}`;
        $('stats').dataset.tokPerS = t.tokens_per_s ?? '';
      } else if (c?.finish_reason === 'abort') {
        $('stats').textContent = 'stopped';
      }
    }
  } catch (e) {
    showError(e);
    // The worker unloads a model whose GPU device was lost: load it again to go on.
    if (e.code === 'gpu' || e.code === 'not_loaded') state.model = null;
  } finally {
    state.messages.push(toolCalls.length ? { role: 'assistant', content: content || null, tool_calls: toolCalls.map(({ index, ...c }) => c) } : { role: 'assistant', content });
    delete out.parentElement.dataset.streaming;
    out.parentElement.dataset.done = '1';
    state.genAbort = null;
    setState(state.model ? 'ready' : 'idle');
    $('prompt').focus();
  }
}

function newChat() {
  if (state.genAbort) state.genAbort.abort();
  state.messages = [];
  $('messages').replaceChildren();
  $('stats').textContent = '';
}

async function main() {
  setState('starting');
  $('model-select').onchange = onPick;
  const wanted = new URLSearchParams(location.search).get('backend');
  if (wanted && [...$('backend').options].some((o) => o.value === wanted)) $('backend').value = wanted;
  $('load-btn').onclick = () => {
    const v = $('model-select').value;
    if (v === 'custom') {
      const u = $('custom-url').value.trim();
      if (!u) return showError({ code: 'invalid', message: 'enter a model URL' });
      loadModel(u);
    } else if (v === 'file') {
      const f = $('file-input').files[0];
      if (!f) return showError({ code: 'invalid', message: 'choose a .gguf file' });
      loadModel(f);
    } else {
      loadModel(v);
    }
  };
  $('cancel-load-btn').onclick = () => state.loadAbort?.abort();
  $('stop-btn').onclick = () => state.genAbort?.abort();
  $('new-chat-btn').onclick = newChat;
  $('json-mode').onchange = () => ($('schema-row').hidden = !$('json-mode').checked);
  $('composer').onsubmit = (ev) => {
    ev.preventDefault();
    const t = $('prompt').value;
    $('prompt').value = '';
    send(t);
  };
  $('prompt').onkeydown = (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey) {
      ev.preventDefault();
      $('composer').requestSubmit();
    }
  };
  const picked = fillPicker();
  try {
    state.engine = await createEngine();
  } catch (e) {
    showError(e);
    setState('failed');
    return;
  }
  await picked;
  setState('idle');
  refreshCache();
  if ('serviceWorker' in navigator && !new URLSearchParams(location.search).has('nosw')) registerServiceWorker();
}

/**
 * The service worker, scoped to the app's root (which may be a sub-path): `sw.js` beside
 * index.html where the host has it (`make dist`), else `www/sw.js` (a dev server that allows the
 * wider scope with Service-Worker-Allowed). Shell-caching failures it reports are shown; once it
 * controls a page that is not cross-origin isolated yet, one reload makes it isolated.
 */
async function registerServiceWorker() {
  const appRoot = new URL('../', import.meta.url);
  const sw = navigator.serviceWorker;
  sw.addEventListener('message', (ev) => {
    const m = ev.data;
    if (m?.type !== 'wasm-chord-sw') return;
    state.swStatus = m;
    if (m.failed?.length) {
      showError({ code: 'storage', message: `offline use is incomplete: the service worker could not cache ${m.failed.map((f) => `${f.url} (${f.error})`).join(', ')}` });
    }
  });
  let reg = null;
  for (const script of ['sw.js', 'www/sw.js']) {
    try {
      reg = await sw.register(new URL(script, appRoot), { scope: appRoot.href });
      break;
    } catch (e) {
      state.swError = String(e && e.message ? e.message : e);
    }
  }
  if (!reg) return;
  state.swError = null;
  const ready = await sw.ready;
  ready.active?.postMessage({ type: 'status' });
  if (!globalThis.crossOriginIsolated && !sessionStorage.getItem('chord-coi-reload')) {
    const reload = () => {
      if (document.body.dataset.state !== 'idle') return;
      sessionStorage.setItem('chord-coi-reload', '1');
      location.reload();
    };
    if (sw.controller) reload();
    else sw.addEventListener('controllerchange', reload, { once: true });
  }
}

main();
