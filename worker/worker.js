// Module worker hosting the wasm engine (pkg/) and the IndexedDB model cache.
//
// Two builds of the module: when the page is cross-origin isolated (COOP/COEP, so
// SharedArrayBuffer exists) the threaded one, pkg/threads/ (atomics and shared memory; the CPU
// kernels split matmul rows and attention heads over rayon's pool of Web Workers, which the
// first load starts with `threads` of them), else the single-threaded pkg/. Both hold the WebGPU
// backend too. info() says which, how many threads, and when one, why (`threads_note`).
// Pages whose browser validates relaxed SIMD get the relaxed-SIMD builds instead:
// pkg/threads-relaxed/ for pkg/threads/, pkg/relaxed/ for pkg/ (`simd: 'relaxed'` in info();
// their kernels choose relaxed dot products per format and shape where they are faster).
// Protocol: ./protocol.js. Load, chat and unload run one at a time, in order; cache requests and
// aborts are answered at once. A crash inside wasm is fatal for this worker: it reports it (and
// marks the cached model it was loading as unusable, so it is not loaded again in a loop), and the
// client starts a fresh worker with a fresh module. A crash on one of the pool's threads leaves
// this worker blocked, unable to say anything: each pool worker reports its own crash
// (./pool-worker.js) on a BroadcastChannel whose name the ready event gives the client, which
// then ends this worker and starts a fresh one.

import { REQUEST, CODE, reply, makeError, toError } from './protocol.js';
import * as store from './store.js';
import { probeAdapter } from './adapter.js';

const post = (m) => self.postMessage(m);
// Several models at once: id → { engine: WasmEngine, info }. A request without `model` goes to
// the most recently loaded one (`current`); a load without `id` replaces the model of id
// 'default', so a page that loads one model at a time keeps doing so.
const models = new Map();
let current = null;
// The current model's engine and info (what the single-model code paths use).
let engine = null;
let modelInfo = null;
const DEFAULT_ID = 'default';
let dead = null; // the fatal error, once the engine has crashed
const aborts = new Map(); // request id → AbortController (loads and chats)
let queue = Promise.resolve();

// The module's exports (from whichever build started).
let WasmEngine, Sha256Hasher, checkGgufHeader, memoryBytes, lastPanic, testTrap, testPoolPanic;
// The threaded build: whether it runs, the size of its pool once started (0: not yet), and why
// the CPU kernels run on one thread when they do.
// `simd`: 'relaxed' when a relaxed-SIMD build runs (pages whose browser validates relaxed
// SIMD), else 'simd128'.
const threading = { build: false, pool: 0, threads: 1, note: null, simd: 'simd128', simd_note: null };

/**
 * Whether this browser compiles relaxed SIMD (Chrome >= 114, Firefox >= 146; not Safari): a
 * one-function module doing i8x16.splat twice and i8x16.relaxed_swizzle (0xfd 0x100).
 */
function hasRelaxedSimd() {
  try {
    return WebAssembly.validate(new Uint8Array([
      0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 15, 1, 13, 0, 65, 1, 253, 15, 65, 2, 253,
      15, 253, 128, 2, 11,
    ]));
  } catch {
    return false;
  }
}
/** The most threads the default asks for (an engine on a big machine leaves cores to the page). */
const MAX_DEFAULT_THREADS = 8;

/**
 * `{ wasm }`: the build `load` imports (a thunk around a literal import(), so that bundlers and
 * scripts/build-web's path rewriting see it), started; or `{ why }` when it is missing or cannot
 * start.
 */
async function tryBuild(load) {
  try {
    const wasm = await load();
    await wasm.default();
    return { wasm };
  } catch (e) {
    return { why: e && e.message ? e.message : String(e) };
  }
}

async function startModule() {
  let wasm = null;
  if (self.crossOriginIsolated === undefined) {
    // Node (node/worker.js has instantiated pkg/ already).
    threading.note = 'the single-threaded build runs here (the threaded one is for cross-origin isolated pages)';
  } else if (!self.crossOriginIsolated) {
    threading.note = 'the page is not cross-origin isolated (no COOP/COEP headers), so the single-threaded build runs';
  } else {
    // Where the browser validates relaxed SIMD, the threaded relaxed-SIMD build first; the
    // plain threaded one where it does not, or when that one is missing or cannot start.
    if (hasRelaxedSimd()) {
      const r = await tryBuild(() => import('../pkg/threads-relaxed/wasm_chord.js'));
      if (r.wasm) threading.simd = 'relaxed';
      else threading.simd_note = `the threaded relaxed-SIMD build is missing or could not start (${r.why})`;
      wasm = r.wasm ?? null;
    }
    if (!wasm) {
      const r = await tryBuild(() => import('../pkg/threads/wasm_chord.js'));
      if (!r.wasm) threading.note = `the threaded build is missing or could not start (${r.why}), so the single-threaded build runs`;
      wasm = r.wasm ?? null;
    }
    threading.build = wasm !== null;
  }
  // Node (crossOriginIsolated undefined) keeps the module node/worker.js instantiated.
  if (!wasm && self.crossOriginIsolated !== undefined && hasRelaxedSimd()) {
    const r = await tryBuild(() => import('../pkg/relaxed/wasm_chord.js'));
    if (r.wasm) threading.simd = 'relaxed';
    else threading.simd_note = `the relaxed-SIMD build is missing or could not start (${r.why})`;
    wasm = r.wasm ?? null;
  }
  if (!wasm) {
    wasm = await import('../pkg/wasm_chord.js');
    await wasm.default();
  }
  ({ WasmEngine, Sha256Hasher, checkGgufHeader, memoryBytes, lastPanic, testTrap, testPoolPanic } = wasm);
  return wasm;
}

/**
 * The BroadcastChannel on which the pool's workers report a crash (./pool-worker.js): one name
 * per engine worker, so that the page tells engines apart.
 */
const CRASH_CHANNEL = `wasm-chord-pool-${self.crypto?.randomUUID?.() ?? `${Date.now()}-${Math.random().toString(36).slice(2)}`}`;

let module = null;
const ready = startModule().then(
  (m) => {
    module = m;
    reply.ready(post, threading.build ? CRASH_CHANNEL : null);
  },
  (e) => die(makeError(CODE.FATAL, `could not start the wasm module: ${e && e.message ? e.message : e}`)),
);

/**
 * `initThreadPool(n)` with each pool worker started from ./pool-worker.js, which reports its
 * crash on CRASH_CHANNEL and then runs wasm-bindgen-rayon's own worker script: `Worker` is
 * wrapped while the pool starts (wasm-bindgen-rayon creates its workers with `new Worker`).
 */
async function initThreadPool(n) {
  const Native = self.Worker;
  // No nested workers here: wasm-bindgen-rayon fails as it would have.
  if (typeof Native !== 'function') return module.initThreadPool(n);
  // The wrapper starts from a blob, as wasm-bindgen-rayon's own script does: a blob worker
  // belongs to this worker's service worker, so its imports come from the offline cache, where
  // a nested worker started from a URL fetches its script past the service worker (Chromium),
  // and offline finds nothing. Its text comes through this worker's fetch (cached offline).
  let wrapper;
  try {
    const res = await fetch(new URL('./pool-worker.js', import.meta.url));
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    wrapper = await res.text();
  } catch (e) {
    console.warn(`wasm-chord: pool crashes are not watched: worker/pool-worker.js could not be read (${e && e.message ? e.message : e})`);
    return module.initThreadPool(n);
  }
  self.Worker = class PoolWorker extends Native {
    constructor(script, options) {
      const config = { channel: CRASH_CHANNEL, script: new URL(script, self.location.href).href };
      const code = `self.__chordPool = ${JSON.stringify(config)};\n${wrapper}`;
      super(URL.createObjectURL(new Blob([code], { type: 'text/javascript' })), { ...options, type: 'module' });
    }
  };
  try {
    await module.initThreadPool(n);
  } finally {
    self.Worker = Native;
  }
}

/**
 * The CPU kernels' thread count for a load: `threads` asked (default: hardwareConcurrency, at
 * most MAX_DEFAULT_THREADS). The threaded build starts its pool once, at the first load that
 * wants more than one thread; a later load can use fewer threads than the pool has, not more.
 */
async function setThreads(asked) {
  if (!threading.build) return;
  const want = asked ?? Math.max(1, Math.min(self.navigator?.hardwareConcurrency || 1, MAX_DEFAULT_THREADS));
  if (want > 1 && !threading.pool) {
    try {
      await initThreadPool(want);
    } catch (e) {
      // No Web Workers here (or they failed to start): one thread, said why.
      threading.note = `the thread pool could not start (${e && e.message ? e.message : e})`;
      return;
    }
    threading.pool = module.poolThreads();
  }
  const n = Math.min(want, Math.max(threading.pool, 1));
  module.setCpuThreads(n);
  threading.threads = module.cpuThreads();
  threading.note =
    n > 1 ? (n < want ? `${want} threads asked, but the pool the first load started has ${threading.pool}` : null)
      : want === 1 ? 'threads: 1 was asked' : 'this device reports one core (navigator.hardwareConcurrency)';
}

function die(err) {
  dead = toError(err, CODE.FATAL);
  models.clear();
  current = null;
  engine = null;
  modelInfo = null;
  reply.fatal(post, dead);
}

/** A wasm trap (panic, out of memory) leaves the module unusable; {code, message} errors do not. */
function isFatal(e) {
  return e instanceof WebAssembly.RuntimeError || (e instanceof RangeError && /memory/i.test(e.message));
}

self.onmessage = (ev) => handle(ev.data);

async function handle(msg) {
  const { id, type } = msg || {};
  if (dead) return reply.error(post, id, dead);
  try {
    switch (type) {
      case REQUEST.ABORT:
        aborts.get(msg.target)?.abort();
        return reply.done(post, id, true);
      case REQUEST.CACHE_LIST:
        return reply.done(post, id, await store.listModels());
      case REQUEST.CACHE_DELETE:
        return reply.done(post, id, await store.deleteModel(msg.url));
      case REQUEST.CACHE_USAGE:
        return reply.done(post, id, await store.usage());
      case REQUEST.SESSION_DELETE:
        return reply.done(post, id, await store.deleteSession(checkKey(msg.key)));
      case REQUEST.SESSION_LIST:
        return reply.done(post, id, await store.listSessions());
      case REQUEST.INFO: {
        if (!modelInfo) return reply.done(post, id, null);
        // The KV cache grows with the conversation on the CPU: today's size, not the load's.
        const list = listModels();
        const now = list.find((m) => m.current) ?? modelInfo;
        return reply.done(post, id, { ...modelInfo, kv_bytes: now.kv_bytes, cached_tokens: now.cached_tokens, memory_bytes: memoryBytes(), models: list });
      }
      case REQUEST.TEST_POOL_PANIC:
        // Test hook (tests/e2e/pool-crash.test.mjs): a panic on a pool thread, handled at once
        // (between a pending chat's tokens), that leaves this worker blocked as a real one would.
        await ready;
        if (!testPoolPanic || !threading.pool) {
          throw makeError(CODE.INVALID, 'the pool-panic test hook needs the threaded build with its pool started (load a model with threads > 1 first)');
        }
        testPoolPanic();
        return reply.done(post, id, null);
      case REQUEST.LOAD:
      case REQUEST.CHAT:
      case REQUEST.UNLOAD:
      case REQUEST.TOKENIZE:
      case REQUEST.SESSION_SAVE:
      case REQUEST.SESSION_RESTORE:
        queue = queue.then(() => run(msg));
        return;
      default:
        return reply.error(post, id, makeError(CODE.INVALID, `unknown request type ${type}`));
    }
  } catch (e) {
    reply.error(post, id, e);
  }
}

async function run(msg) {
  const { id } = msg;
  if (dead) return reply.error(post, id, dead);
  try {
    await ready;
    if (dead) return reply.error(post, id, dead);
    let result;
    switch (msg.type) {
      case REQUEST.LOAD:
        result = await load(msg);
        break;
      case REQUEST.CHAT:
        result = await chat(msg);
        break;
      case REQUEST.UNLOAD:
        unload(msg.model);
        result = null;
        break;
      case REQUEST.TOKENIZE:
        if (typeof msg.text !== 'string') throw makeError(CODE.INVALID, 'text must be a string');
        result = Array.from(pick(msg.model).engine.tokenize(msg.text, !!msg.addSpecial, !!msg.parseSpecial));
        break;
      case REQUEST.SESSION_SAVE:
        result = await saveSession(msg);
        break;
      case REQUEST.SESSION_RESTORE:
        result = await restoreSession(msg);
        break;
    }
    reply.done(post, id, result);
  } catch (e) {
    if (isFatal(e)) {
      let why = e.message;
      try {
        why = lastPanic() || why;
      } catch {
        /* the module may be too broken to ask */
      }
      const err = makeError(CODE.FATAL, `the engine crashed: ${why}`);
      if (msg.type === REQUEST.LOAD && typeof msg.source === 'string') {
        await store.markUnusable(msg.source, err).catch(() => {});
      }
      // Fatal first: the client starts a fresh worker before the caller sees the rejection.
      die(err);
      reply.error(post, id, err);
    } else if (msg.type === REQUEST.CHAT && e && e.code === CODE.GPU && models.has(msg.model ?? current)) {
      // A lost GPU device (or a failed readback) leaves the GPU model unusable: unload it so
      // the page loads it again (on the CPU if WebGPU stays unavailable); the cache is intact.
      unload(msg.model ?? current);
      reply.error(post, id, makeError(CODE.GPU, `${e.message}; the model was unloaded: load it again (the cached copy is intact)`));
    } else {
      reply.error(post, id, e);
    }
  }
}

/**
 * The backend to load on. 'cpu' and 'webgpu' are taken as asked. 'auto' takes WebGPU when the
 * browser has a hardware adapter (./adapter.js: not a fallback adapter, not a software renderer
 * by name); the engine then vets it further before loading (a known-answer self-test and a
 * timed probe against the CPU: src/backend_choice.rs). Returns [backend, why the CPU was chosen
 * (or null), the adapter's name (or null)].
 */
async function pickBackend(wanted) {
  if (wanted === 'cpu') return ['cpu', null, null];
  if (wanted !== 'auto' && wanted !== 'webgpu' && wanted !== undefined) {
    throw makeError(CODE.INVALID, `unknown backend ${JSON.stringify(wanted)}: use "auto", "webgpu" or "cpu"`);
  }
  // Ask once here so 'auto' falls back quietly; the engine requests its own adapter again.
  const found = await probeAdapter(self.navigator?.gpu);
  if (!found.adapter) {
    if (wanted === 'webgpu') {
      throw makeError(CODE.GPU, self.navigator?.gpu ? 'WebGPU is present but no adapter was found' : 'this browser has no WebGPU (navigator.gpu is missing)');
    }
    return ['cpu', found.why, null];
  }
  if (wanted === 'auto' && !found.hardware) return ['cpu', `${found.why}, slower than the CPU path`, null];
  return ['webgpu', null, found.name || 'unnamed adapter'];
}

const SHA256 = /^[0-9a-f]{64}$/;

/** The load request's fields, checked: `invalid` errors name the field. */
function checkLoad(msg) {
  const { source, chunkSize, sha256, modelId, n_ctx, threads } = msg;
  if (typeof source === 'string') {
    let u;
    try {
      u = new URL(source, self.location.href);
    } catch {
      throw makeError(CODE.INVALID, `source: ${JSON.stringify(source.slice(0, 200))} is not a URL`);
    }
    if (!['http:', 'https:', 'blob:'].includes(u.protocol) && !(u.protocol === 'file:' && store.canOpenFiles())) {
      throw makeError(CODE.INVALID, `source: ${u.protocol} URLs cannot be downloaded (use http, https or a File)`);
    }
  } else if (!(source instanceof Blob)) {
    throw makeError(CODE.INVALID, 'source: load needs a URL string or a File/Blob');
  }
  if (chunkSize !== undefined && chunkSize !== null) {
    if (!Number.isInteger(chunkSize) || chunkSize < 65536 || chunkSize > 1 << 30) {
      throw makeError(CODE.INVALID, `chunkSize must be an integer from 65536 to ${1 << 30}, got ${JSON.stringify(chunkSize)}`);
    }
  }
  if (sha256 !== undefined && sha256 !== null && (typeof sha256 !== 'string' || !SHA256.test(sha256.toLowerCase()))) {
    throw makeError(CODE.INVALID, 'sha256 must be 64 hex digits');
  }
  if (modelId !== undefined && modelId !== null && (typeof modelId !== 'string' || !modelId)) {
    throw makeError(CODE.INVALID, `id must be a non-empty string, got ${JSON.stringify(modelId)}`);
  }
  if (n_ctx !== undefined && n_ctx !== null && (!Number.isInteger(n_ctx) || n_ctx < 1)) {
    throw makeError(CODE.INVALID, `n_ctx must be a positive integer, got ${JSON.stringify(n_ctx)}`);
  }
  if (threads !== undefined && threads !== null && (!Number.isInteger(threads) || threads < 1 || threads > 256)) {
    throw makeError(CODE.INVALID, `threads must be an integer from 1 to 256, got ${JSON.stringify(threads)}`);
  }
}

/** Engine errors that say the file itself is unusable (not the browser, memory or the GPU). */
const FILE_ERRORS = new Set([CODE.BAD_TENSOR, CODE.BAD_METADATA, CODE.TOKENIZER, CODE.UNSUPPORTED_MODEL, CODE.UNSUPPORTED_TYPE, CODE.TENSOR_NOT_FOUND, CODE.CHAT_TEMPLATE]);

async function load(msg) {
  checkLoad(msg);
  const { id, source } = msg;
  const ac = new AbortController();
  aborts.set(id, ac);
  const progress = (p) => reply.progress(post, id, p);
  let parsed = null;
  try {
    const t0 = performance.now();
    let size;
    let read;
    let url = null;
    let downloadMs = 0;
    let manifest = null;
    // The header as the first bytes' check parsed it (a ParsedHeader in wasm memory), handed to
    // loadAsync so that it is parsed once; null when the check did not run (a model already
    // downloaded) or the first bytes did not hold it all.
    const checkHeader = (bytes, total) => {
      const r = checkGgufHeader(bytes, total);
      if (r.complete) {
        parsed?.free();
        parsed = r.header;
      }
      return r;
    };
    if (typeof source === 'string' && source.startsWith('file:')) {
      // Node: a local file, read in place (not cached).
      ({ size, read } = store.openFile(source));
      checkHeader(read(0, Math.min(size, store.DEFAULT_CHUNK)), size);
    } else if (typeof source === 'string') {
      url = source;
      manifest = await store.download(url, {
        chunkSize: msg.chunkSize || store.DEFAULT_CHUNK,
        signal: ac.signal,
        onProgress: progress,
        check: checkHeader,
        sha256: msg.sha256 ? msg.sha256.toLowerCase() : null,
        newHasher: () => new Sha256Hasher(),
      });
      downloadMs = performance.now() - t0;
      progress({ phase: 'read', loaded: 0, total: manifest.size });
      // Blob handles: the bytes stay on disk until a tensor is read.
      const chunks = await store.readChunks(manifest);
      size = manifest.size;
      read = store.chunkReader(chunks, manifest.chunkSize);
    } else if (source instanceof Blob) {
      size = source.size;
      read = store.chunkReader([source], size);
      checkHeader(read(0, Math.min(size, store.DEFAULT_CHUNK)), size);
    }
    if (ac.signal.aborted) throw makeError(CODE.ABORTED, 'load aborted');
    // Test hook (tests/e2e/robust.test.mjs): a real trap inside the module, where a crafted
    // model's would happen.
    if (msg.testTrap === true) testTrap();
    progress({ phase: 'load', loaded: size, total: size });
    const modelId = msg.modelId ?? DEFAULT_ID;
    // The model of the same id is replaced: free it first.
    if (models.has(modelId)) unload(modelId);
    const wanted = msg.backend ?? 'auto';
    let [backend, fallback, adapterName] = await pickBackend(wanted);
    await setThreads(msg.threads);
    const t1 = performance.now();
    const memBefore = memoryBytes();
    let e = new WasmEngine();
    try {
      try {
        // 'auto' has the engine vet the adapter (self-test, timed probe); 'webgpu' forces it.
        // loadAsync takes the parsed header (the wasm object is spent either way).
        const header = parsed;
        parsed = null;
        await e.loadAsync(size, read, backend, wanted === 'auto', msg.n_ctx ?? undefined, header ?? undefined);
      } catch (err) {
        // 'auto' falls back to the CPU when the GPU cannot take the model or was declined.
        if (backend !== 'webgpu' || wanted !== 'auto' || !err || err.code !== 'gpu') throw err;
        fallback = err.message;
        backend = 'cpu';
        e.free();
        e = new WasmEngine();
        await e.loadAsync(size, read, backend, false, msg.n_ctx ?? undefined);
      }
    } catch (err) {
      e.free();
      // A corrupt file is not worth keeping in the cache; one the engine cannot use is kept,
      // marked with its error, so it is not loaded again until deleted.
      if (url && err && (err.code === CODE.BAD_GGUF || err.code === CODE.IO)) await store.deleteModel(url);
      else if (url && err && FILE_ERRORS.has(err.code)) await store.markUnusable(url, err);
      // Out of memory (wasm or device): say what else holds it.
      if (err && (err.code === CODE.GPU || err.code === CODE.OUT_OF_MEMORY) && models.size) {
        throw makeError(err.code, `${err.message}${loadedNames()} (unload one first)`);
      }
      throw err;
    }
    read = null;
    const engineInfo = e.info();
    const info = {
      id: modelId,
      ...engineInfo,
      // wgpu does not see the browser adapter's name: take it from navigator.gpu.
      adapter: engineInfo.adapter && backend === 'webgpu' ? `${adapterName}: ${engineInfo.adapter.replace(/^.*?\), /, '')}` : engineInfo.adapter,
      fallback,
      url,
      file: url ? manifest.name : typeof source === 'string' ? decodeURIComponent(source.slice(source.lastIndexOf('/') + 1)) : source.name || 'local file',
      size,
      download_ms: downloadMs,
      load_ms: performance.now() - t1,
      // Wasm memory only grows: what the load added is its peak need.
      load_memory_bytes: memoryBytes() - memBefore,
      // The CPU kernels' threads (the threaded build's pool) and, when one, why.
      threaded_build: threading.build,
      threads: threading.threads,
      threads_note: threading.note,
      simd: threading.simd,
      // In the relaxed-SIMD build on the CPU, `{decode, prefill}`: this model's formats (e.g.
      // 'Q4_K') whose relaxed dot products beat their i16 kernels here, for one token and for
      // tiles of several (each timed once, now rather than at the first token); else none.
      relaxed_dot_products: threading.simd === 'relaxed' && engineInfo.backend === 'cpu' ? e.relaxedDotProducts() : { decode: [], prefill: [] },
      simd_note: threading.simd_note,
    };
    models.set(modelId, { engine: e, info });
    select(modelId);
    return { ...modelInfo, memory_bytes: memoryBytes(), models: listModels() };
  } finally {
    parsed?.free();
    aborts.delete(id);
  }
}

/** Make `modelId` the current model (the target of requests without `model`). */
function select(modelId) {
  const m = modelId != null ? models.get(modelId) : null;
  current = m ? modelId : null;
  engine = m ? m.engine : null;
  modelInfo = m ? m.info : null;
}

/** The loaded model `modelId` (default: the current one), or a not_loaded error naming those loaded. */
function pick(modelId) {
  const m = models.get(modelId ?? current);
  if (m) return m;
  if (modelId == null || !models.size) throw makeError(CODE.NOT_LOADED, 'no model is loaded');
  throw makeError(CODE.NOT_LOADED, `no model ${JSON.stringify(modelId)} is loaded${loadedNames()}`);
}

/** Free `modelId`, or every model when it is absent; the most recently loaded other model becomes current. */
function unload(modelId) {
  const ids = modelId == null ? [...models.keys()] : [modelId];
  if (modelId != null && !models.has(modelId)) throw makeError(CODE.NOT_LOADED, `no model ${JSON.stringify(modelId)} is loaded${loadedNames()}`);
  for (const k of ids) {
    models.get(k).engine.free();
    models.delete(k);
  }
  if (current === null || !models.has(current)) select([...models.keys()].pop() ?? null);
}

/** Every loaded model: id, name, backend, context, memory and the tokens its cache holds. */
function listModels() {
  return [...models.entries()].map(([id, { engine: e, info }]) => {
    let now = info;
    try {
      now = e.info();
    } catch {
      /* busy generating: the load-time figures */
    }
    return { id, name: info.name, file: info.file, backend: info.backend, n_ctx: info.n_ctx, size: info.size, load_memory_bytes: info.load_memory_bytes, kv_bytes: now.kv_bytes, cached_tokens: now.cached_tokens, current: id === current };
  });
}

/** "; loaded: a (name, cpu, 105 MB), b (...)" for error messages, or '' when nothing is loaded. */
function loadedNames() {
  if (!models.size) return '';
  const list = [...models.entries()].map(([id, { info }]) => `${id} (${info.name || info.file}, ${info.backend}, ${Math.round(info.size / 1e6)} MB)`);
  return `; loaded: ${list.join(', ')}`;
}

async function chat(msg) {
  const { id } = msg;
  if (!Array.isArray(msg.messages)) throw makeError(CODE.INVALID, 'messages must be an array');
  if (msg.options !== undefined && (msg.options === null || typeof msg.options !== 'object' || Array.isArray(msg.options))) {
    throw makeError(CODE.INVALID, 'options must be an object');
  }
  const { engine, info } = pick(msg.model);
  // Two ways to stop: an ABORT message (handled between tokens, since generation yields to the
  // event loop) and, with cross-origin isolation, a shared flag that is seen even mid-prefill.
  const ac = new AbortController();
  aborts.set(id, ac);
  const flag = msg.abortFlag ? new Int32Array(msg.abortFlag) : null;
  const aborted = () => ac.signal.aborted || (flag !== null && Atomics.load(flag, 0) !== 0);
  try {
    if (aborted()) {
      return { text: '', finish_reason: 'abort', prompt_tokens: 0, completion_tokens: 0, prompt_ms: 0, gen_ms: 0 };
    }
    const d = new Date();
    const now = {
      year: d.getFullYear(),
      month: d.getMonth() + 1,
      day: d.getDate(),
      hour: d.getHours(),
      minute: d.getMinutes(),
      second: d.getSeconds(),
    };
    const options = { ...(msg.options || {}), now };
    let index = 0;
    let json;
    try {
      json = [JSON.stringify(msg.messages), JSON.stringify(options)];
    } catch (e) {
      throw makeError(CODE.INVALID, `messages and options must be plain JSON data: ${e.message}`);
    }
    const result = await engine.chatAsync(json[0], json[1], (text) => {
      if (aborted()) return false;
      if (text) reply.token(post, id, text, index);
      index++;
      return true;
    });
    return { ...result, model: info.id, memory_bytes: memoryBytes() };
  } finally {
    aborts.delete(id);
  }
}

/** A session key: a non-empty string of at most 512 characters. */
function checkKey(key) {
  if (typeof key !== 'string' || !key || key.length > 512) {
    throw makeError(CODE.INVALID, `key must be a non-empty string of at most 512 characters, got ${JSON.stringify(key)?.slice(0, 80)}`);
  }
  return key;
}

/** Save the model's cache (its last conversation) under `key`: f16 by default. */
async function saveSession(msg) {
  const key = checkKey(msg.key);
  if (msg.precision !== undefined && msg.precision !== 'f16' && msg.precision !== 'f32') {
    throw makeError(CODE.INVALID, `precision must be "f16" or "f32", got ${JSON.stringify(msg.precision)}`);
  }
  const { engine: e, info } = pick(msg.model);
  const t0 = performance.now();
  const tokens = e.cachedTokens();
  const data = await e.saveSessionAsync(msg.precision ?? undefined);
  const facts = { model: info.id, name: info.name || info.file, file: info.file, url: info.url, tokens, precision: msg.precision ?? 'f16' };
  const saved = await store.putSession(key, data, facts);
  return { ...saved, ms: performance.now() - t0 };
}

/** Restore the session saved under `key` into the model's cache. */
async function restoreSession(msg) {
  const key = checkKey(msg.key);
  const { engine: e } = pick(msg.model);
  const t0 = performance.now();
  const rec = await store.getSession(key);
  const tokens = e.restoreSession(rec.data);
  return { key, tokens, bytes: rec.data.byteLength, ms: performance.now() - t0 };
}
