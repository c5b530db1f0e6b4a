// The chat page: UI only. The engine lives in a worker (../worker/client.js); the conversations
// live in IndexedDB (./chats.js). Text from a model reaches the page only through
// ./markdown.js (marked + DOMPurify, raw HTML shown as text) or textContent.

import { createEngine } from '../worker/client.js';
import * as chats from './chats.js';
import { renderInto, renderMarkdown, plainCodeBlock, onCopyClick, copyText, flash } from './markdown.js';
import { probeDevice, describeDevice, fitFor } from './device.js';

const $ = (id) => document.getElementById(id);

// Public GGUF files. Sizes are approximate, for the picker only. `gpuOnly`: the weights do not
// fit wasm32's 4 GiB memory next to the runtime, so only the WebGPU backend can load them.
// Gemma 4's smallest checkpoints (E2B/E4B) need per-layer embeddings, which the engine does
// not run yet (`chord inspect` says so), so none is listed.
const CURATED = [
  { name: 'SmolLM2-360M-Instruct', size: 271e6, url: 'https://huggingface.co/bartowski/SmolLM2-360M-Instruct-GGUF/resolve/main/SmolLM2-360M-Instruct-Q4_K_M.gguf' },
  { name: 'Qwen2.5-0.5B-Instruct', size: 491e6, url: 'https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q4_k_m.gguf' },
  { name: 'TinyLlama-1.1B-Chat', size: 669e6, url: 'https://huggingface.co/TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF/resolve/main/tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf' },
  { name: 'Gemma-3-1B-it', size: 806e6, url: 'https://huggingface.co/ggml-org/gemma-3-1b-it-GGUF/resolve/main/gemma-3-1b-it-Q4_K_M.gguf' },
  { name: 'Llama-3.2-1B-Instruct', size: 808e6, url: 'https://huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF/resolve/main/Llama-3.2-1B-Instruct-Q4_K_M.gguf' },
  { name: 'LFM2-350M', size: 229e6, url: 'https://huggingface.co/LiquidAI/LFM2-350M-GGUF/resolve/main/LFM2-350M-Q4_K_M.gguf' },
  { name: 'LFM2-1.2B', size: 731e6, url: 'https://huggingface.co/LiquidAI/LFM2-1.2B-GGUF/resolve/main/LFM2-1.2B-Q4_K_M.gguf' },
  { name: 'Qwen3.5-0.8B', size: 533e6, url: 'https://huggingface.co/unsloth/Qwen3.5-0.8B-GGUF/resolve/main/Qwen3.5-0.8B-Q4_K_M.gguf' },
  { name: 'Qwen3.5-2B', size: 1.28e9, url: 'https://huggingface.co/unsloth/Qwen3.5-2B-GGUF/resolve/main/Qwen3.5-2B-Q4_K_M.gguf' },
  { name: 'Qwen3-0.6B (Q8_0)', size: 639e6, url: 'https://huggingface.co/Qwen/Qwen3-0.6B-GGUF/resolve/main/Qwen3-0.6B-Q8_0.gguf' },
  { name: 'Qwen3-1.7B (Q8_0)', size: 1.83e9, url: 'https://huggingface.co/Qwen/Qwen3-1.7B-GGUF/resolve/main/Qwen3-1.7B-Q8_0.gguf' },
  { name: 'Granite-3.3-2B-Instruct', size: 1.55e9, url: 'https://huggingface.co/ibm-granite/granite-3.3-2b-instruct-GGUF/resolve/main/granite-3.3-2b-instruct-Q4_K_M.gguf' },
  { name: 'SmolLM3-3B', size: 1.92e9, url: 'https://huggingface.co/ggml-org/SmolLM3-3B-GGUF/resolve/main/SmolLM3-Q4_K_M.gguf' },
  { name: 'Phi-4-mini-instruct', size: 2.49e9, url: 'https://huggingface.co/unsloth/Phi-4-mini-instruct-GGUF/resolve/main/Phi-4-mini-instruct-Q4_K_M.gguf' },
  { name: 'Qwen3-4B', size: 2.5e9, url: 'https://huggingface.co/Qwen/Qwen3-4B-GGUF/resolve/main/Qwen3-4B-Q4_K_M.gguf' },
  { name: 'Qwen3-8B', size: 5.03e9, url: 'https://huggingface.co/Qwen/Qwen3-8B-GGUF/resolve/main/Qwen3-8B-Q4_K_M.gguf', gpuOnly: true },
];
const DEFAULT_LOCAL = 'smollm2-135m-instruct-q4_k_m.gguf';
const SUGGESTIONS = [
  'Explain what WebGPU is in two sentences.',
  'Write a haiku about the sea.',
  'Give me a Python function that reverses a string.',
  'Make a table of three planets and their moons.',
];

const state = {
  /** Where requests go: the in-browser engine, or a remote endpoint's (`state.remote`). */
  engine: null,
  /** The in-browser engine, kept while a remote endpoint is in use. */
  localEngine: null,
  /** The remote endpoint in use (a RemoteEngine from `createEngine({ remote })`), else null. */
  remote: null,
  /** The info of the model requests go to (a `load()` result). */
  model: null,
  /** Every loaded model (`info().models`). */
  models: [],
  /** `load()` results by model id (for the url and the details of each). */
  infos: {},
  /** The open conversation (a chats.js record; stored once it has a message). */
  chat: null,
  /** The sidebar's list. */
  chats: [],
  /** A chat in the list is being renamed or asked about deleting (the list waits). */
  editing: false,
  /** Model id → the id of the chat whose KV cache the engine holds for it (saved sessions). */
  live: {},
  local: [],
  cached: [],
  device: null,
  loadAbort: null,
  genAbort: null,
  /** The messages of the open chat, OpenAI-style (for the console). */
  get messages() {
    return state.chat?.messages ?? [];
  },
  /** Exposed for the e2e tests: the page's own Markdown renderer (sanitized). */
  renderMarkdown,
};
window.chord = state; // for the console and the e2e tests

const mb = (b) => (b == null ? '?' : b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : `${(b / 1e6).toFixed(1)} MB`);

// ---- Icons (our own markup; never model text) --------------------------------------------------

const ICONS = {
  plus: 'M12 5v14M5 12h14',
  menu: 'M4 6h16M4 12h16M4 18h16',
  close: 'M6 6l12 12M18 6L6 18',
  send: 'M5 12h13M13 6l6 6-6 6',
  stop: 'M7 7h10v10H7z',
  edit: 'M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4',
  trash: 'M5 7h14M10 7V4h4v3M7 7l1 13h8l1-13',
  copy: 'M9 9h10v11H9zM5 15V4h10',
  redo: 'M20 11a8 8 0 1 0-2.3 5.7M20 4v7h-7',
  chat: 'M4 5h16v11H9l-5 4z',
};

function icon(name) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon');
  const path = document.createElementNS(NS, 'path');
  path.setAttribute('d', ICONS[name]);
  svg.append(path);
  return svg;
}

function button(cls, label, iconName, { text = false } = {}) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = cls;
  if (iconName) b.append(icon(iconName));
  if (text) {
    const s = document.createElement('span');
    s.textContent = label;
    b.append(s);
  } else {
    b.setAttribute('aria-label', label);
    b.title = label;
  }
  return b;
}

// ---- State, errors ------------------------------------------------------------------------------

function setState(s) {
  document.body.dataset.state = s;
  const ready = s === 'ready';
  const generating = s === 'generating';
  $('prompt').disabled = !(ready || generating);
  $('send-btn').disabled = !ready;
  $('send-btn').hidden = generating;
  $('stop-btn').disabled = !generating;
  $('stop-btn').hidden = !generating;
  $('load-btn').disabled = s === 'loading' || generating || s === 'starting';
  $('cancel-load-btn').hidden = s !== 'loading';
  $('model-switch').disabled = !ready;
  for (const b of document.querySelectorAll('#cache-list button, #loaded-list button')) b.disabled = s === 'loading' || generating || s === 'starting';
  renderCards();
  for (const b of document.querySelectorAll('.regen-btn, .suggestion')) b.disabled = !ready;
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

// ---- The model picker, the cache, the cards -----------------------------------------------------

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
      state.local = (await res.json()).map((m) => ({ ...m, url: new URL(m.url, location.href).href }));
      if (state.local.length) {
        const g = group('This server');
        for (const m of state.local) {
          const o = opt(g, m.url, `${m.name} (${mb(m.size)})`);
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
  // The downloads are this browser's, whichever engine answers.
  const engine = state.localEngine ?? state.engine;
  if (!engine) return;
  try {
    const [list, use] = await Promise.all([engine.cache.list(), engine.cache.usage()]);
    state.cached = list;
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
      del.setAttribute('aria-label', `Delete the downloaded ${m.name}`);
      del.onclick = async () => {
        await engine.cache.delete(m.url);
        refreshCache();
      };
      li.append(name, size, use_, del);
      ul.append(li);
    }
    $('storage').textContent =
      `Models: ${mb(use.models)}` +
      (use.sessions ? ` · saved chats' caches: ${mb(use.sessions)}` : '') +
      ` · site storage: ${mb(use.usage)}` +
      (use.quota ? ` of ${mb(use.quota)} allowed` : '');
  } catch (e) {
    $('storage').textContent = `storage: ${e.message}`;
  }
  renderCards();
}

/** The model cards of the empty state: this server's models, downloaded ones, the curated list. */
function renderCards() {
  const box = $('model-cards');
  const seen = new Set();
  const entries = [];
  const add = (m, origin) => {
    if (seen.has(m.url)) return;
    seen.add(m.url);
    entries.push({ ...m, origin });
  };
  for (const m of state.local) add(m, 'This server');
  for (const m of state.cached) if (m.complete) add({ name: m.name, size: m.size, url: m.url }, 'Downloaded');
  for (const m of CURATED) add(m, 'Hugging Face');
  const dev = state.device;
  const busy = ['loading', 'generating', 'starting'].includes(document.body.dataset.state);
  box.replaceChildren();
  for (const m of entries) {
    const cached = state.cached.find((c) => c.url === m.url);
    const loaded = Object.values(state.infos).find((i) => i.url === m.url && state.models.some((l) => l.id === i.id));
    const card = document.createElement('div');
    card.className = 'card';
    card.setAttribute('role', 'listitem');
    card.dataset.url = m.url;
    const name = document.createElement('div');
    name.className = 'card-name';
    name.textContent = m.name;
    const meta = document.createElement('div');
    meta.className = 'card-meta';
    meta.textContent = `${m.origin === 'Hugging Face' ? '≈' : ''}${mb(m.size)} · ${cached?.complete ? 'downloaded' : m.origin}${m.gpuOnly ? ' · WebGPU only' : ''}`;
    const fit = document.createElement('div');
    if (dev) {
      const f = fitFor({ size: m.size, gpuOnly: !!m.gpuOnly, cached: !!cached?.complete }, dev);
      fit.className = `fit fit-${f.level}`;
      fit.textContent = f.label;
      fit.title = f.why;
      card.dataset.fit = f.level;
      const why = document.createElement('span');
      why.className = 'sr-only';
      why.textContent = `: ${f.why}`;
      fit.append(why);
    } else {
      fit.className = 'fit';
      fit.textContent = 'Checking…';
    }
    const go = document.createElement('button');
    go.type = 'button';
    go.className = 'card-load';
    go.textContent = loaded ? (loaded.id === state.model?.id ? 'Loaded' : 'Use') : cached?.complete ? 'Load' : cached ? 'Resume download' : 'Download & load';
    go.disabled = busy || (loaded && loaded.id === state.model?.id);
    go.setAttribute('aria-label', `${go.textContent}: ${m.name}`);
    go.onclick = () => (loaded ? switchModel(loaded.id) : loadModel(m.url));
    card.append(name, meta, fit, go);
    box.append(card);
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

/** A model id for `load(…, {id})`: the file name, without .gguf. */
function idFor(source) {
  let name = source?.name;
  if (typeof source === 'string') {
    try {
      name = decodeURIComponent(new URL(source, location.href).pathname.split('/').pop());
    } catch {
      name = source;
    }
  }
  return (name || 'model').replace(/\.gguf$/i, '').toLowerCase().replace(/[^a-z0-9._-]+/g, '-').slice(0, 64) || 'model';
}

/**
 * Load a model. By default it replaces the model loaded before (the engine frees that one only
 * once the new file is downloaded and checked); with "Keep the loaded models" it joins them, under
 * an id of its own, and the header gets a switcher.
 */
async function loadModel(source) {
  // A model of this device (a URL or a file) leaves the remote endpoint.
  if (source != null && state.remote) await useRemote('');
  if (!state.engine) return;
  showError(null);
  if (state.genAbort) state.genAbort.abort();
  const keep = $('keep-models').checked;
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
      id: keep ? idFor(source) : undefined,
      n_ctx: Number($('n-ctx').value) || undefined,
      onProgress: (p) => {
        if (p.phase === 'download' && p.total) {
          $('progress').value = p.loaded / p.total;
          $('progress').dataset.loaded = p.loaded;
        }
        $('progress-text').textContent = progressText(p);
      },
    });
    state.infos[info.id] = info;
    // A fresh model holds no conversation's cache yet.
    delete state.live[info.id];
    if (!keep) {
      for (const m of info.models ?? []) {
        if (m.id !== info.id) await state.engine.unload(m.id).catch(() => {});
      }
    }
    $('progress').value = 1;
    $('progress-text').textContent = info.backend === 'remote' ? 'Ready (remote)' : `Ready (load ${(info.load_ms / 1000).toFixed(1)} s)`;
    await refreshModels(info.id);
    setState('ready');
    $('prompt').placeholder = 'Say something…';
    renderEmpty();
    await sessions.restore(state.chat);
  } catch (e) {
    showError(e);
    $('progress-box').hidden = true;
    await refreshModels(state.model?.id).catch(() => {});
    setState(state.model ? 'ready' : 'idle');
  } finally {
    state.loadAbort = null;
    refreshCache();
  }
}

/** Ask the engine what is loaded; select `prefer` (else keep the selection, else its current). */
async function refreshModels(prefer) {
  const info = state.engine ? await state.engine.info().catch(() => null) : null;
  state.models = info?.models ?? (info ? [{ id: info.id, name: info.name, file: info.file, backend: info.backend, n_ctx: info.n_ctx, size: info.size, current: true }] : []);
  const ids = state.models.map((m) => m.id);
  for (const id of Object.keys(state.infos)) if (!ids.includes(id)) delete state.infos[id];
  for (const id of Object.keys(state.live)) if (!ids.includes(id)) delete state.live[id];
  const pick = [prefer, state.model?.id, state.models.find((m) => m.current)?.id].find((id) => id && ids.includes(id));
  if (pick) {
    if (!state.infos[pick] && info?.id === pick) state.infos[pick] = info;
    state.model = state.infos[pick] ?? { ...state.models.find((m) => m.id === pick) };
  } else {
    state.model = null;
  }
  renderModelStatus();
  return state.models;
}

/** Where a model runs, in a few words. */
const backendName = (m) => (m.backend === 'webgpu' ? 'WebGPU' : m.backend === 'remote' ? 'remote' : 'CPU');

function renderModelStatus() {
  const info = state.model;
  const status = $('model-status');
  if (info?.backend === 'remote') {
    status.textContent = `${info.name} · remote ${info.remote}`;
    status.dataset.backend = info.backend;
  } else if (info) {
    status.textContent =
      `${info.name || info.file} · ${info.architecture ?? '?'} · ${info.n_layer ?? '?'} layers · ctx ${info.n_ctx} · ` +
      `backend ${info.backend === 'webgpu' ? `WebGPU (${info.adapter})` : `CPU (wasm) · ${info.threads > 1 ? `${info.threads} threads` : '1 thread'}`}` +
      (info.memory_bytes != null ? ` · wasm memory ${mb(info.memory_bytes)}` : '') +
      (info.fallback ? ` · CPU because ${info.fallback}` : '');
    status.dataset.backend = info.backend;
  } else {
    status.textContent = '';
    delete status.dataset.backend;
  }
  // The switcher (several models) or a badge (one).
  const sw = $('model-switch');
  sw.replaceChildren();
  for (const m of state.models) {
    const o = document.createElement('option');
    o.value = m.id;
    o.textContent = `${m.name || m.file} · ${backendName(m)}`;
    o.selected = m.id === info?.id;
    sw.append(o);
  }
  $('switch-row').hidden = state.models.length < 2;
  const badge = $('model-badge');
  badge.hidden = state.models.length !== 1;
  badge.textContent = info ? `${info.name || info.file} · ${backendName(info)}` : '';
  // The loaded models, each with an Unload button.
  const ul = $('loaded-list');
  ul.replaceChildren();
  if (state.models.length > 1) {
    for (const m of state.models) {
      const li = document.createElement('li');
      li.dataset.id = m.id;
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = m.name || m.file;
      if (m.id === info?.id) {
        li.dataset.current = '1';
        const cur = document.createElement('span');
        cur.className = 'sr-only';
        cur.textContent = ' (in use)';
        name.append(cur);
      }
      const size = document.createElement('span');
      size.className = 'small';
      size.textContent = mb((m.load_memory_bytes || m.size) + (m.kv_bytes || 0));
      const un = document.createElement('button');
      un.type = 'button';
      un.textContent = 'Unload';
      un.setAttribute('aria-label', `Unload ${m.name || m.file}`);
      un.onclick = () => unloadModel(m.id);
      li.append(name, size, un);
      ul.append(li);
    }
  }
  renderCards();
}

async function switchModel(id) {
  if (!state.models.some((m) => m.id === id)) return;
  await refreshModels(id);
  renderEmpty();
  await sessions.restore(state.chat);
}

async function unloadModel(id) {
  try {
    await state.engine.unload(id);
  } catch (e) {
    showError(e);
  }
  await refreshModels();
  if (!state.model) setState('idle');
  renderEmpty();
}

const HINT_LOCAL = 'Enter sends, Shift+Enter adds a line. The model runs on this device; it can be wrong.';

/**
 * Send the chat to an OpenAI-compatible endpoint (`chord serve`, vLLM, SGLang, llama-server)
 * instead of this device; an empty URL goes back to the in-browser engine, whose loaded models
 * stay loaded meanwhile.
 */
async function useRemote(baseURL, apiKey = '') {
  if (state.genAbort) state.genAbort.abort();
  showError(null);
  $('local-btn').hidden = true;
  $('hint').textContent = HINT_LOCAL;
  if (!baseURL) {
    state.remote?.terminate();
    state.remote = null;
    state.engine = state.localEngine;
    await refreshModels().catch(() => {});
    setState(state.model ? 'ready' : 'idle');
    renderEmpty();
    return;
  }
  let remote;
  try {
    remote = await createEngine({ remote: { baseURL, apiKey: apiKey || null } });
  } catch (e) {
    return showError(e);
  }
  state.remote?.terminate();
  state.remote = remote;
  state.engine = remote;
  $('local-btn').hidden = false;
  $('hint').textContent = `Enter sends, Shift+Enter adds a line. Replies come from ${baseURL}; they can be wrong.`;
  await loadModel(null);
  if (!state.model) {
    // The endpoint could not be used (the error is shown): back to this device.
    state.remote = null;
    state.engine = state.localEngine;
    $('local-btn').hidden = true;
    $('hint').textContent = HINT_LOCAL;
    await refreshModels().catch(() => {});
    setState(state.model ? 'ready' : 'idle');
  }
}

// ---- Conversations --------------------------------------------------------------------------------

async function refreshChatList() {
  try {
    state.chats = await chats.listChats();
  } catch (e) {
    showError({ code: 'storage', message: `the saved chats could not be read: ${e.message}` });
    state.chats = [];
  }
  renderChatList();
}

function renderChatList() {
  // Not under a rename or a delete question: that item refreshes the list when it is done.
  if (state.editing) return;
  const ul = $('chat-list');
  ul.replaceChildren();
  $('no-chats').hidden = state.chats.length > 0;
  for (const c of state.chats) {
    const li = document.createElement('li');
    li.className = 'chat-item';
    li.dataset.id = c.id;
    const current = c.id === state.chat?.id;
    if (current) li.setAttribute('aria-current', 'true');
    const open = document.createElement('button');
    open.type = 'button';
    open.className = 'chat-open';
    open.append(icon('chat'));
    const t = document.createElement('span');
    t.className = 'chat-name';
    t.textContent = c.title || 'Untitled chat';
    open.append(t);
    open.title = c.title;
    open.onclick = () => openChat(c.id);
    const ren = button('icon-btn chat-rename', `Rename “${c.title}”`, 'edit');
    ren.onclick = () => startRename(li, c);
    const del = button('icon-btn chat-delete', `Delete “${c.title}”`, 'trash');
    del.onclick = () => confirmDelete(li, c);
    li.append(open, ren, del);
    ul.append(li);
  }
}

function startRename(li, c) {
  const input = document.createElement('input');
  input.className = 'chat-title-input';
  input.value = c.title;
  input.setAttribute('aria-label', 'Chat title');
  input.maxLength = 120;
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    state.editing = false;
    const title = input.value.trim();
    if (save && title && title !== c.title) {
      const chat = c.id === state.chat?.id ? state.chat : (await chats.getChat(c.id)) ?? c;
      chat.title = title;
      await chats.putChat(chat).catch((e) => showError({ code: 'storage', message: `the chat could not be renamed: ${e.message}` }));
      if (chat === state.chat) renderEmpty();
    }
    await refreshChatList();
  };
  input.onkeydown = (ev) => {
    if (ev.key === 'Enter') {
      ev.preventDefault();
      finish(true);
    } else if (ev.key === 'Escape') {
      ev.preventDefault();
      finish(false);
    }
  };
  input.onblur = () => finish(true);
  state.editing = true;
  li.replaceChildren(input);
  input.focus();
  input.select();
}

function confirmDelete(li, c) {
  const q = document.createElement('span');
  q.className = 'chat-name';
  q.textContent = `Delete “${c.title}”?`;
  const yes = document.createElement('button');
  yes.type = 'button';
  yes.className = 'chat-delete-confirm danger';
  yes.textContent = 'Delete';
  yes.onclick = () => {
    state.editing = false;
    removeChat(c);
  };
  const no = document.createElement('button');
  no.type = 'button';
  no.className = 'chat-delete-cancel';
  no.textContent = 'Cancel';
  no.onclick = () => {
    state.editing = false;
    renderChatList();
  };
  state.editing = true;
  li.replaceChildren(q, yes, no);
  yes.focus();
}

async function removeChat(c) {
  if (c.id === state.chat?.id) {
    state.chat.deleted = true;
    state.genAbort?.abort();
  }
  try {
    await chats.deleteChat(c.id);
  } catch (e) {
    showError({ code: 'storage', message: `the chat could not be deleted: ${e.message}` });
  }
  await sessions.remove(c);
  for (const [m, id] of Object.entries(state.live)) if (id === c.id) delete state.live[m];
  if (c.id === state.chat?.id) startNewChat();
  await refreshChatList();
}

/** A new, empty chat (stored once it gets its first message). */
function startNewChat() {
  if (state.genAbort) state.genAbort.abort();
  state.chat = chats.newChat();
  state.editing = false;
  renderChat();
  renderChatList();
  $('stats').textContent = '';
  closeSide();
}

async function openChat(id) {
  if (id === state.chat?.id) return closeSide();
  if (state.genAbort) state.genAbort.abort();
  let chat;
  try {
    chat = await chats.getChat(id);
  } catch (e) {
    return showError({ code: 'storage', message: `the chat could not be read: ${e.message}` });
  }
  if (!chat) return refreshChatList();
  state.chat = chat;
  $('stats').textContent = '';
  // Go on with the model this chat used, when it is loaded.
  const m = modelFor(chat);
  if (m && m.id !== state.model?.id) await refreshModels(m.id);
  state.editing = false;
  renderChat();
  renderChatList();
  closeSide();
  await sessions.restore(chat);
}

/** The loaded model `chat` last used (by id, else by file), or null. */
function modelFor(chat) {
  const want = chat?.model;
  if (!want) return null;
  return state.models.find((m) => m.id === want.id && (!want.file || m.file === want.file)) ?? state.models.find((m) => want.file && m.file === want.file) ?? null;
}

async function saveChat(chat) {
  if (chat.deleted) return;
  chat.updated = Date.now();
  try {
    await chats.putChat(chat);
  } catch (e) {
    showError({ code: 'storage', message: `the chat could not be saved: ${e.message}` });
  }
  await refreshChatList();
}

// ---- Saved sessions ---------------------------------------------------------------------------
// engine.saveSession / restoreSession / deleteSession (when the client has them) keep a chat's KV
// cache in IndexedDB under the chat's id, so that after a reload the open chat goes on without
// prefilling it again. Saved after every reply, restored when a chat is opened (or its model
// loaded) and the engine does not hold its cache already, deleted with the chat. Failures only
// cost the reuse (the next reply prefills the whole chat). All of it is here.

const sessions = {
  supported: () => typeof state.engine?.saveSession === 'function',
  async save(chat, modelId) {
    if (!this.supported() || !modelId) return;
    try {
      const r = await state.engine.saveSession(chat.id, { model: modelId });
      const m = state.models.find((x) => x.id === modelId);
      chat.session = { model: modelId, file: m?.file ?? null, tokens: r?.tokens ?? null, bytes: r?.bytes ?? null, saved: Date.now() };
    } catch (e) {
      console.warn('saveSession failed:', e);
      chat.session = null;
    }
  },
  async restore(chat) {
    const s = chat?.session;
    if (!this.supported() || !s || !chat.messages.length) return;
    const m = state.models.find((x) => x.id === s.model && (!s.file || x.file === s.file));
    if (!m || state.live[m.id] === chat.id) return;
    const t0 = performance.now();
    try {
      const r = await state.engine.restoreSession(chat.id, { model: m.id });
      state.live[m.id] = chat.id;
      if (chat === state.chat) {
        $('stats').textContent = `Session restored: ${r?.tokens ?? '?'} tokens in ${Math.round(performance.now() - t0)} ms, so the next reply skips their prefill.`;
        $('stats').dataset.restored = r?.tokens ?? '';
      }
    } catch (e) {
      console.warn('restoreSession failed:', e);
      if (chat === state.chat) $('stats').textContent = `The saved session could not be restored (${e.message}); the next reply reads the chat again.`;
    }
  },
  async remove(chat) {
    if (!this.supported()) return;
    try {
      await state.engine.deleteSession(chat.id);
    } catch (e) {
      console.warn('deleteSession failed:', e);
    }
  },
};

// ---- Messages -------------------------------------------------------------------------------------

const scroller = () => $('scroller');
const nearBottom = () => {
  const s = scroller();
  return s.scrollHeight - s.scrollTop - s.clientHeight < 120;
};
const toBottom = () => {
  const s = scroller();
  s.scrollTop = s.scrollHeight;
};

/** The empty state: what to do, with model cards, or suggestions once a model is loaded. */
function renderEmpty() {
  const empty = !state.chat?.messages.length;
  $('empty').hidden = !empty;
  $('messages').hidden = empty;
  $('chat-title').textContent = state.chat?.title || 'New chat';
  document.title = state.chat?.title ? `${state.chat.title} · wasm-chord` : 'wasm-chord chat';
  const sug = $('suggestions');
  if (state.model) {
    $('empty-title').textContent = 'What can I help with?';
    $('empty-lead').textContent =
      state.model.backend === 'remote'
        ? `${state.model.name} answers from ${state.model.remote}: what you type is sent there. Ask anything, or try one of these:`
        : `${state.model.name || state.model.file} is loaded and runs on ${state.model.backend === 'webgpu' ? 'the GPU' : 'the CPU'} of this device. Ask anything, or try one of these:`;
    sug.hidden = false;
    if (!sug.childElementCount) {
      for (const s of SUGGESTIONS) {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'suggestion';
        b.textContent = s;
        b.onclick = () => send(s);
        sug.append(b);
      }
    }
  } else {
    $('empty-title').textContent = 'Chat with a language model that runs in your browser';
    $('empty-lead').textContent = 'Pick a model below. It downloads once, stays in this browser and works offline. Nothing you type leaves this device.';
    sug.hidden = true;
  }
  for (const b of sug.children) b.disabled = document.body.dataset.state !== 'ready';
}

/** Show the open chat's messages. */
function renderChat() {
  const box = $('messages');
  box.replaceChildren();
  const list = state.chat?.messages ?? [];
  for (const m of list) {
    if (m.role === 'user') box.append(userEl(m.content));
    else if (m.role === 'assistant') {
      const el = replyEl();
      fillReply(el, m);
      el.dataset.done = '1';
      if (m.meta?.finish) el.dataset.finish = m.meta.finish;
      box.append(el);
    }
  }
  if (list.at(-1)?.role === 'user') {
    // The page was closed while the reply was written: offer a retry.
    const el = replyEl();
    el.classList.add('failed');
    el.dataset.done = '1';
    showMeta(el, { error: 'the reply was interrupted' });
    box.append(el);
  }
  renderEmpty();
  updateRegen();
  if (list.length) toBottom();
  else scroller().scrollTop = 0;
}

function userEl(text) {
  const div = document.createElement('article');
  div.className = 'msg user';
  const r = document.createElement('span');
  r.className = 'role sr-only';
  r.textContent = 'You';
  const body = document.createElement('div');
  body.className = 'text';
  body.dataset.raw = text;
  body.textContent = text;
  div.append(r, body);
  return div;
}

/** An assistant reply's element: role, text (Markdown), notice, numbers, actions. */
function replyEl() {
  const div = document.createElement('article');
  div.className = 'msg assistant';
  const r = document.createElement('span');
  r.className = 'role';
  r.textContent = state.model?.name || 'Assistant';
  const body = document.createElement('div');
  body.className = 'text md';
  body.dataset.raw = '';
  const notice = document.createElement('div');
  notice.className = 'notice';
  notice.hidden = true;
  const meta = document.createElement('div');
  meta.className = 'meta';
  const actions = document.createElement('div');
  actions.className = 'actions';
  const copy = button('icon-btn copy-reply', 'Copy the reply', 'copy');
  copy.onclick = async () => flash(copy, (await copyText(body.dataset.raw)) ? 'Copied' : 'Copy failed');
  const regen = button('regen-btn', 'Regenerate', 'redo', { text: true });
  regen.onclick = () => regenerate();
  regen.hidden = true;
  actions.append(copy, regen);
  div.append(r, body, notice, meta, actions);
  return div;
}

/** Render a reply's text: a JSON-mode reply as a code block, any other as Markdown. */
function renderText(body, text, format) {
  if (format === 'json') {
    body.dataset.raw = text;
    body.replaceChildren(plainCodeBlock(text, 'json'));
  } else {
    renderInto(body, text);
  }
}

/** Fill a reply element from a stored message (text, tool calls, notice, numbers). */
function fillReply(el, m) {
  const meta = m.meta ?? {};
  if (meta.model) el.querySelector('.role').textContent = meta.model;
  renderText(el.querySelector('.text'), m.content ?? '', meta.format);
  for (const call of m.tool_calls ?? []) addToolCall(el, call);
  showMeta(el, meta);
}

function showMeta(el, meta) {
  const notice = el.querySelector('.notice');
  if (meta.dropped > 0) {
    notice.hidden = false;
    notice.dataset.dropped = meta.dropped;
    notice.textContent = `${meta.dropped} older message${meta.dropped === 1 ? '' : 's'} left out to fit the context`;
  } else {
    notice.hidden = true;
  }
  if (meta.error) {
    notice.hidden = false;
    notice.classList.add('error');
    notice.textContent = `${el.classList.contains('failed') || !el.querySelector('.text').dataset.raw ? 'No reply' : 'The reply stopped'}: ${meta.error}`;
  }
  const box = el.querySelector('.meta');
  box.replaceChildren();
  const part = (cls, text, data) => {
    const s = document.createElement('span');
    s.className = cls;
    s.textContent = text;
    Object.assign(s.dataset, data);
    box.append(s);
  };
  if (meta.prompt_tokens != null) {
    part('cached', `${meta.cached ?? 0} of ${meta.prompt_tokens} prompt tokens cached`, { cached: meta.cached ?? 0, prompt: meta.prompt_tokens });
  }
  if (meta.ttft_ms != null) part('ttft', `first token ${(meta.ttft_ms / 1000).toFixed(2)} s`, { ms: Math.round(meta.ttft_ms) });
  if (meta.completion_tokens != null) {
    part('speed', `${meta.completion_tokens} tokens${meta.tok_s ? ` · ${meta.tok_s.toFixed(meta.tok_s < 10 ? 2 : 1)} tok/s` : ''}`, {});
  }
  if (meta.finish === 'abort') part('finish', 'stopped', {});
  else if (meta.finish === 'length') part('finish', 'cut at the token limit', {});
}

/** A tool call, shown as such: the function's name and its arguments. */
function addToolCall(parent, call) {
  const div = document.createElement('div');
  div.className = 'tool-call';
  div.dataset.name = call.function.name;
  div.textContent = `→ ${call.function.name}(${call.function.arguments})`;
  parent.querySelector('.notice').before(div);
}

/** Regenerate only on the last reply, and only when it is the chat's last message. */
function updateRegen() {
  const replies = [...document.querySelectorAll('#messages .msg.assistant')];
  const last = state.chat?.messages.at(-1)?.role;
  replies.forEach((el, i) => {
    const b = el.querySelector('.regen-btn');
    const failed = el.classList.contains('failed');
    const isLast = i === replies.length - 1 && !!el.dataset.done;
    // A failed reply is not stored: it offers a retry of the user message before it.
    b.hidden = !(isLast && (failed ? last === 'user' : last === 'assistant'));
    b.querySelector('span').textContent = failed ? 'Retry' : 'Regenerate';
    b.disabled = document.body.dataset.state !== 'ready';
  });
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

async function send(text) {
  if (!state.model || !text.trim() || document.body.dataset.state !== 'ready') return;
  showError(null);
  const chat = state.chat;
  if (!chat.title) chat.title = chats.titleFrom(text);
  chat.messages.push({ role: 'user', content: text });
  renderEmpty();
  $('messages').append(userEl(text));
  saveChat(chat);
  await generate(chat);
}

/**
 * The last reply again (or a retry of a failed one), from the same messages: the engine reuses
 * the whole prompt from its cache.
 */
async function regenerate() {
  const chat = state.chat;
  const last = chat.messages.at(-1)?.role;
  if (!state.model || document.body.dataset.state !== 'ready' || (last !== 'assistant' && last !== 'user')) return;
  showError(null);
  const el = [...document.querySelectorAll('#messages .msg.assistant')].at(-1);
  if (last === 'assistant') {
    chat.messages.pop();
    el?.remove();
  } else if (el?.classList.contains('failed')) {
    el.remove();
  }
  await generate(chat);
}

/** Stream a reply to `chat`'s messages into a new reply element, then store it. */
async function generate(chat) {
  const el = replyEl();
  const body = el.querySelector('.text');
  el.dataset.streaming = '1';
  el.setAttribute('aria-busy', 'true');
  $('messages').append(el);
  updateRegen();
  toBottom();
  const system = $('system-prompt').value.trim();
  const history = chat.messages.map(({ role, content, tool_calls, tool_call_id, name }) => {
    const m = { role, content };
    if (tool_calls) m.tool_calls = tool_calls;
    if (tool_call_id) m.tool_call_id = tool_call_id;
    if (name) m.name = name;
    return m;
  });
  const messages = system ? [{ role: 'system', content: system }, ...history] : history;
  const model = state.model;
  chat.model = { id: model.id, name: model.name || model.file, file: model.file };
  state.genAbort = new AbortController();
  setState('generating');
  $('stats').textContent = 'generating…';
  delete $('stats').dataset.restored;
  let content = '';
  const toolCalls = [];
  const meta = { model: model.name || model.file };
  let error = null;
  let pending = false;
  const paint = () => {
    pending = false;
    const stick = nearBottom();
    renderText(body, content, meta.format);
    if (stick) toBottom();
  };
  const t0 = performance.now();
  try {
    const response_format = responseFormat();
    if (response_format) meta.format = 'json';
    const stream = await state.engine.chat.completions.create({
      messages,
      model: state.models.some((m) => m.id === model.id) ? model.id : undefined,
      stream: true,
      temperature: Number($('temperature').value),
      max_tokens: Number($('max-tokens').value),
      response_format,
      signal: state.genAbort.signal,
    });
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      for (const call of c?.delta?.tool_calls ?? []) {
        meta.ttft_ms ??= performance.now() - t0;
        toolCalls.push(call);
        addToolCall(el, call);
      }
      if (c?.delta?.content) {
        meta.ttft_ms ??= performance.now() - t0;
        content += c.delta.content;
        // The raw text at once (tests and copy read it); the Markdown once per frame.
        body.dataset.raw = content;
        if (!pending) {
          pending = true;
          requestAnimationFrame(paint);
        }
      }
      if (c?.finish_reason) {
        el.dataset.finish = c.finish_reason;
        meta.finish = c.finish_reason;
      }
      if (chunk.usage) {
        meta.prompt_tokens = chunk.usage.prompt_tokens;
        meta.completion_tokens = chunk.usage.completion_tokens;
        meta.cached = chunk.usage.prompt_tokens_details?.cached_tokens ?? 0;
      }
      if (chunk.dropped_messages != null) meta.dropped = chunk.dropped_messages;
      if (chunk.timings) {
        const t = chunk.timings;
        meta.tok_s = t.tokens_per_s ?? null;
        $('stats').textContent =
          `${chunk.usage ? chunk.usage.completion_tokens : '?'} tokens · ` +
          `${t.tokens_per_s ? t.tokens_per_s.toFixed(t.tokens_per_s < 10 ? 2 : 1) : '?'} tok/s · prompt ${Math.round(t.prompt_ms)} ms` +
          (chunk.usage ? ` (${meta.cached} of ${chunk.usage.prompt_tokens} tokens cached)` : '') +
          ` · backend ${t.backend}` +
          (t.memory_bytes != null ? ` · wasm memory ${mb(t.memory_bytes)}` : '');
        $('stats').dataset.tokPerS = t.tokens_per_s ?? '';
      } else if (c?.finish_reason === 'abort') {
        $('stats').textContent = 'stopped';
      }
    }
    state.live[model.id] = chat.id;
  } catch (e) {
    // Shown in the reply itself (a failed reply offers a retry).
    error = e;
    meta.error = `${e.message || e}${e.code ? ` [${e.code}]` : ''}`;
    $('stats').textContent = '';
    // The worker unloads a model whose GPU device was lost: load it again to go on.
    if (e.code === 'gpu' || e.code === 'not_loaded') await refreshModels().catch(() => {});
    if (e.code === 'aborted') meta.finish = 'abort';
  } finally {
    state.genAbort = null;
    renderText(body, content, meta.format);
    delete el.dataset.streaming;
    el.setAttribute('aria-busy', 'false');
    if (error && !content && !toolCalls.length) {
      showMeta(el, meta);
      el.classList.add('failed');
    } else {
      const reply = toolCalls.length
        ? { role: 'assistant', content: content || null, tool_calls: toolCalls.map(({ index, ...c }) => c), meta }
        : { role: 'assistant', content, meta };
      chat.messages.push(reply);
      showMeta(el, meta);
    }
    el.dataset.done = '1';
    setState(state.model ? 'ready' : 'idle');
    if (chat === state.chat) updateRegen();
    if (!error) await sessions.save(chat, model.id);
    await saveChat(chat);
    el.dataset.saved = '1';
    if (chat === state.chat && !matchMedia('(pointer: coarse)').matches) $('prompt').focus();
  }
}

// ---- The sidebar on a phone -----------------------------------------------------------------------

function openSide() {
  document.body.classList.add('side-open');
  $('backdrop').hidden = false;
  $('menu-btn').setAttribute('aria-expanded', 'true');
  $('new-chat-btn').focus();
}

function closeSide() {
  if (!document.body.classList.contains('side-open')) return;
  document.body.classList.remove('side-open');
  $('backdrop').hidden = true;
  $('menu-btn').setAttribute('aria-expanded', 'false');
}

// ---- Start ----------------------------------------------------------------------------------------

async function main() {
  setState('starting');
  for (const b of document.querySelectorAll('[data-icon]')) b.prepend(icon(b.dataset.icon));
  state.chat = chats.newChat();
  renderChat();
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
  $('remote-btn').onclick = () => useRemote($('remote-url').value.trim(), $('remote-key').value.trim());
  $('local-btn').onclick = () => useRemote('');
  $('stop-btn').onclick = () => state.genAbort?.abort();
  $('new-chat-btn').onclick = startNewChat;
  $('new-chat-top').onclick = startNewChat;
  $('model-switch').onchange = () => switchModel($('model-switch').value);
  $('json-mode').onchange = () => ($('schema-row').hidden = !$('json-mode').checked);
  $('menu-btn').onclick = () => (document.body.classList.contains('side-open') ? closeSide() : openSide());
  $('close-side-btn').onclick = () => {
    closeSide();
    $('menu-btn').focus();
  };
  $('backdrop').onclick = closeSide;
  document.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Escape' || ev.defaultPrevented) return;
    if (document.body.classList.contains('side-open')) closeSide();
    else if (state.genAbort) state.genAbort.abort();
  });
  $('messages').addEventListener('click', onCopyClick);
  const prompt = $('prompt');
  const grow = () => {
    prompt.style.height = 'auto';
    prompt.style.height = `${Math.min(prompt.scrollHeight, 220)}px`;
  };
  prompt.addEventListener('input', grow);
  $('composer').onsubmit = (ev) => {
    ev.preventDefault();
    if (document.body.dataset.state !== 'ready') return;
    const t = prompt.value;
    prompt.value = '';
    grow();
    send(t);
  };
  prompt.onkeydown = (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      $('composer').requestSubmit();
    }
  };
  const picked = fillPicker();
  const listed = refreshChatList();
  probeDevice().then((dev) => {
    state.device = dev;
    $('device-line').textContent = `This device: ${describeDevice(dev)}.`;
    renderCards();
  });
  try {
    state.engine = state.localEngine = await createEngine();
  } catch (e) {
    showError(e);
    setState('failed');
    return;
  }
  await Promise.all([picked, listed]);
  setState('idle');
  renderEmpty();
  refreshCache();
  // ?remote=URL: start on that endpoint (the remote-mode e2e test, or a link to share).
  const remote = new URLSearchParams(location.search).get('remote');
  if (remote) {
    $('remote-url').value = remote;
    $('remote-panel').open = true;
    await useRemote(remote);
  }
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
