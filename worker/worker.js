// Module worker hosting the wasm engine (pkg/) and the IndexedDB model cache.
// Protocol: ./protocol.js. Load, chat and unload run one at a time, in order; cache requests and
// aborts are answered at once. A crash inside wasm is fatal: every later request gets the error.

import init, { WasmEngine, checkGgufHeader, memoryBytes, lastPanic } from '../pkg/wasm_chord.js';
import { REQUEST, CODE, reply, makeError, toError } from './protocol.js';
import * as store from './store.js';

const post = (m) => self.postMessage(m);
let engine = null;
let modelInfo = null;
let dead = null; // the fatal error, once the engine has crashed
const loadAborts = new Map(); // request id → AbortController
let queue = Promise.resolve();

const ready = init().then(
  () => reply.ready(post),
  (e) => die(makeError(CODE.FATAL, `could not start the wasm module: ${e && e.message ? e.message : e}`)),
);

function die(err) {
  dead = toError(err, CODE.FATAL);
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
        loadAborts.get(msg.target)?.abort();
        return reply.done(post, id, true);
      case REQUEST.CACHE_LIST:
        return reply.done(post, id, await store.listModels());
      case REQUEST.CACHE_DELETE:
        return reply.done(post, id, await store.deleteModel(msg.url));
      case REQUEST.CACHE_USAGE:
        return reply.done(post, id, await store.usage());
      case REQUEST.INFO:
        return reply.done(post, id, modelInfo && { ...modelInfo, memory_bytes: memoryBytes() });
      case REQUEST.LOAD:
      case REQUEST.CHAT:
      case REQUEST.UNLOAD:
      case REQUEST.TOKENIZE:
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
        result = chat(msg);
        break;
      case REQUEST.UNLOAD:
        if (engine) engine.free();
        engine = null;
        modelInfo = null;
        result = null;
        break;
      case REQUEST.TOKENIZE:
        if (!engine) throw makeError(CODE.NOT_LOADED, 'no model is loaded');
        result = Array.from(engine.tokenize(msg.text, !!msg.addSpecial, !!msg.parseSpecial));
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
      reply.error(post, id, err);
      die(err);
    } else {
      reply.error(post, id, e);
    }
  }
}

async function load(msg) {
  const { id, source } = msg;
  const ac = new AbortController();
  loadAborts.set(id, ac);
  const progress = (p) => reply.progress(post, id, p);
  try {
    const t0 = performance.now();
    let size;
    let read;
    let url = null;
    let downloadMs = 0;
    let manifest = null;
    if (typeof source === 'string') {
      url = source;
      manifest = await store.download(url, {
        chunkSize: msg.chunkSize || store.DEFAULT_CHUNK,
        signal: ac.signal,
        onProgress: progress,
        check: (bytes, total) => checkGgufHeader(bytes, total),
      });
      downloadMs = performance.now() - t0;
      progress({ phase: 'read', loaded: 0, total: manifest.size });
      const chunks = await store.readChunks(manifest);
      size = manifest.size;
      read = store.chunkReader(chunks, manifest.chunkSize);
    } else if (source instanceof Blob) {
      size = source.size;
      const fr = new FileReaderSync();
      read = (o, l) => new Uint8Array(fr.readAsArrayBuffer(source.slice(o, o + l)));
      checkGgufHeader(read(0, Math.min(size, store.DEFAULT_CHUNK)), size);
    } else {
      throw makeError(CODE.INVALID, 'load needs a URL or a File');
    }
    if (ac.signal.aborted) throw makeError(CODE.ABORTED, 'load aborted');
    progress({ phase: 'load', loaded: size, total: size });
    if (engine) engine.free();
    engine = null;
    modelInfo = null;
    const t1 = performance.now();
    const e = new WasmEngine();
    try {
      e.load(size, read);
    } catch (err) {
      e.free();
      // A file the engine cannot use is not worth keeping in the cache.
      if (url && err && (err.code === 'bad_gguf' || err.code === 'io')) await store.deleteModel(url);
      throw err;
    }
    read = null;
    engine = e;
    modelInfo = {
      ...e.info(),
      url,
      file: url ? manifest.name : source.name || 'local file',
      size,
      download_ms: downloadMs,
      load_ms: performance.now() - t1,
    };
    return { ...modelInfo, memory_bytes: memoryBytes() };
  } finally {
    loadAborts.delete(id);
  }
}

function chat(msg) {
  const { id } = msg;
  if (!engine) throw makeError(CODE.NOT_LOADED, 'no model is loaded');
  const flag = msg.abortFlag ? new Int32Array(msg.abortFlag) : null;
  const aborted = () => flag !== null && Atomics.load(flag, 0) !== 0;
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
  const result = engine.chat(JSON.stringify(msg.messages || []), JSON.stringify(options), (text) => {
    if (text) reply.token(post, id, text, index);
    index++;
    return !aborted();
  });
  return { ...result, backend: 'cpu', memory_bytes: memoryBytes() };
}
