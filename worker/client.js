// The page's handle on the engine worker: an OpenAI-style API over ./protocol.js.
//
//   const engine = await createEngine();
//   await engine.load('/models/smollm2-135m-instruct-q4_k_m.gguf', { onProgress });
//   for await (const chunk of await engine.chat.completions.create({ messages, stream: true }))
//     out.textContent += chunk.choices[0]?.delta?.content ?? '';

import { REQUEST, EVENT, CODE, asThrowable, makeError } from './protocol.js';
import { RemoteEngine } from './remote.js';
import { AutoEngine } from './auto.js';

// With `remote: { baseURL, apiKey, model }` the same API talks to an OpenAI-compatible server
// (./remote.js) instead of a local worker; adding `backend: 'auto'` lets each load choose this
// device or the remote (./auto.js: remote without a hardware WebGPU adapter, or for a model over
// the device's budget, `maxLocalBytes`).
export async function createEngine({ workerUrl, remote, backend, maxLocalBytes } = {}) {
  // Written out as `new Worker(new URL('./worker.js', import.meta.url), …)` so that bundlers
  // (Vite, webpack) find and bundle the worker.
  const local = () =>
    createEngineFrom(() =>
      workerUrl ? new Worker(workerUrl, { type: 'module' }) : new Worker(new URL('./worker.js', import.meta.url), { type: 'module' }),
    );
  if (remote && backend === 'auto') return new AutoEngine({ makeLocal: local, remote, maxLocalBytes });
  if (backend !== undefined && backend !== 'auto') {
    throw asThrowable(makeError(CODE.INVALID, `createEngine: backend must be 'auto' (with remote) or left out, got ${JSON.stringify(backend)}`));
  }
  if (remote) return new RemoteEngine(remote);
  return local();
}

/** An engine over workers made by `spawn()` (a fresh one after a crash); Node uses this. */
export async function createEngineFrom(spawn) {
  const engine = new Engine(spawn);
  await engine.ready;
  return engine;
}

let completionSeq = 0;

class Engine {
  #worker;
  #pending = new Map(); // id → { resolve, reject, onEvent }
  #nextId = 1;
  #dead = null;
  #readyResolve;
  #readyReject;
  #model = null;

  #spawn;
  #terminated = false;
  #wasReady = false;
  // The threaded build's crash reports (worker/pool-worker.js): the channel of the current
  // worker, and the timer that waits briefly for a report's panic text.
  #crashChannel = null;
  #crashTimer = null;

  /** `spawn()` starts a worker; after a crash (a wasm trap) the engine starts a fresh one. */
  constructor(spawn) {
    this.#spawn = spawn;
    this.#start();
    const self_ = this;
    this.chat = { completions: { create: (params) => self_.#create(params) } };
    this.cache = {
      list: () => this.#call(REQUEST.CACHE_LIST),
      delete: (url) => this.#call(REQUEST.CACHE_DELETE, { url: resolveUrl(url) }),
      usage: () => this.#call(REQUEST.CACHE_USAGE),
    };
  }

  #start() {
    const worker = this.#spawn();
    this.#worker = worker;
    this.#dead = null;
    this.#wasReady = false;
    this.ready = new Promise((res, rej) => {
      this.#readyResolve = res;
      this.#readyReject = rej;
    });
    this.ready.catch(() => {});
    worker.onmessage = (ev) => this.#onMessage(ev.data);
    worker.onerror = (ev) => {
      ev.preventDefault?.();
      this.#fatal(makeError(CODE.FATAL, `the engine worker failed: ${ev.message || 'script error'}`));
    };
    worker.onmessageerror = () => this.#fatal(makeError(CODE.FATAL, 'a message from the worker could not be read'));
  }

  /**
   * Whether an abort can also stop a long prompt mid-prefill (needs cross-origin isolation for
   * shared memory). Without it a Stop still ends generation at the next token.
   */
  get hardAbort() {
    return typeof SharedArrayBuffer !== 'undefined' && globalThis.crossOriginIsolated === true;
  }

  #onMessage(msg) {
    if (!msg) return;
    if (msg.kind === EVENT.READY) {
      this.#wasReady = true;
      this.#watchPool(msg.crashChannel);
      return this.#readyResolve();
    }
    if (msg.kind === EVENT.FATAL) return this.#fatal(msg.error);
    const p = this.#pending.get(msg.id);
    if (!p) return;
    if (msg.kind === EVENT.DONE) {
      this.#pending.delete(msg.id);
      p.resolve(msg.result);
    } else if (msg.kind === EVENT.ERROR) {
      this.#pending.delete(msg.id);
      p.reject(asThrowable(msg.error));
    } else if (p.onEvent) {
      p.onEvent(msg);
    }
  }

  /**
   * Listen for crashes of the worker's CPU pool (the threaded build). A thread that traps there
   * leaves the engine worker blocked in rayon for good, unable to report anything, so its pool
   * workers report it themselves on this channel; the crash is then fatal for this worker, as a
   * trap on its own thread is.
   */
  #watchPool(name) {
    this.#unwatchPool();
    if (typeof name !== 'string' || typeof BroadcastChannel === 'undefined') return;
    const channel = new BroadcastChannel(name);
    this.#crashChannel = channel;
    let first = null;
    const crashed = (why) => {
      if (this.#crashChannel !== channel) return;
      this.#fatal(makeError(CODE.FATAL, `a CPU thread of the engine crashed: ${why}; the engine restarts (load the model again)`));
    };
    channel.onmessage = (ev) => {
      const m = ev.data;
      if (!m || m.type !== 'pool-crash' || this.#crashChannel !== channel) return;
      if (typeof m.panic === 'string' && m.panic) return crashed(m.panic);
      // The panic's text follows when the crashed worker can still read it: wait briefly.
      if (first === null) {
        first = String(m.message);
        this.#crashTimer = setTimeout(() => crashed(first), 500);
      }
    };
  }

  #unwatchPool() {
    clearTimeout(this.#crashTimer);
    this.#crashTimer = null;
    this.#crashChannel?.close();
    this.#crashChannel = null;
  }

  #fatal(err) {
    if (this.#dead) return;
    this.#dead = err;
    this.#unwatchPool();
    this.#readyReject(asThrowable(err));
    for (const p of this.#pending.values()) p.reject(asThrowable(err));
    this.#pending.clear();
    this.#model = null;
    // A trap leaves that wasm instance unusable: start a fresh worker (and module), so the
    // engine stays usable; the requests in flight were rejected with the fatal error.
    // (Not when the worker never started: that would only fail again.)
    if (!this.#terminated && this.#wasReady) {
      this.#worker.terminate();
      this.#start();
    }
  }

  #request(type, args = {}, onEvent = null) {
    const id = this.#nextId++;
    const promise = new Promise((resolve, reject) => {
      if (this.#dead) return reject(asThrowable(this.#dead));
      this.#pending.set(id, { resolve, reject, onEvent });
      this.#worker.postMessage({ id, type, ...args });
    });
    return { id, promise };
  }

  #call(type, args) {
    return this.#request(type, args).promise;
  }

  /**
   * Download (or reuse from IndexedDB) and load a model: a URL, or a File/Blob. With `id`, the
   * model joins those already loaded (requests choose it with `model: id`); without, it
   * replaces the model loaded without an id. The last loaded is the default for requests.
   */
  async load(source, { onProgress, signal, chunkSize, backend = 'auto', sha256, n_ctx, threads, id: modelId, __testTrap } = {}) {
    await this.ready;
    if (signal?.aborted) throw asThrowable(makeError(CODE.ABORTED, 'load aborted'));
    if (typeof source === 'string') {
      source = resolveUrl(source);
      // Ask the browser not to evict the cache under storage pressure (best effort).
      try {
        await navigator.storage?.persist?.();
      } catch {
        /* not granted: the cache still works */
      }
    }
    const { id, promise } = this.#request(REQUEST.LOAD, { source, chunkSize, backend, sha256, n_ctx, threads, modelId, testTrap: __testTrap === true }, (ev) => {
      if (ev.kind === EVENT.PROGRESS && onProgress) onProgress(ev.progress);
    });
    const onAbort = () => this.#worker.postMessage({ id: this.#nextId++, type: REQUEST.ABORT, target: id });
    signal?.addEventListener('abort', onAbort);
    try {
      this.#model = await promise;
      return this.#model;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  info() {
    return this.#call(REQUEST.INFO);
  }

  tokenize(text, { addSpecial = true, parseSpecial = false, model } = {}) {
    return this.#call(REQUEST.TOKENIZE, { text, addSpecial, parseSpecial, model });
  }

  /** Free the model `id`, or every model without it. */
  async unload(id) {
    const r = await this.#call(REQUEST.UNLOAD, id == null ? {} : { model: id });
    this.#model = await this.info();
    return r;
  }

  /**
   * Save the KV cache of the model's last conversation under `key` (IndexedDB; Node: the cache
   * directory), so that after a reload `restoreSession(key)` continues it without prefilling
   * it again. `precision`: 'f16' (default: half the bytes) or 'f32' (restores bit for bit).
   */
  saveSession(key, { model, precision } = {}) {
    return this.#call(REQUEST.SESSION_SAVE, { key, model, precision });
  }

  /**
   * Load the session saved under `key` into the model's cache: the next request whose prompt
   * starts with the saved tokens prefills only the rest (`cached_tokens` says how many were
   * reused). A session of another model, a corrupt one or none under `key` is a `bad_session`
   * error that leaves the cache as it was.
   */
  restoreSession(key, { model } = {}) {
    return this.#call(REQUEST.SESSION_RESTORE, { key, model });
  }

  deleteSession(key) {
    return this.#call(REQUEST.SESSION_DELETE, { key });
  }

  /** Every saved session: [{ key, model, name, tokens, bytes, precision, saved }], newest first. */
  listSessions() {
    return this.#call(REQUEST.SESSION_LIST);
  }

  /**
   * Test hook (tests/e2e/pool-crash.test.mjs): a panic on a thread of the CPU pool, in the
   * threaded build once a load has started the pool. It never resolves: the crash rejects it,
   * with every other pending request, as `fatal`.
   */
  __testPoolPanic() {
    return this.#call(REQUEST.TEST_POOL_PANIC);
  }

  /** Stop the worker for good; pending requests are rejected. */
  terminate() {
    this.#terminated = true;
    this.#worker.terminate();
    this.#fatal(makeError(CODE.FATAL, 'the engine was terminated'));
  }

  async #create(params = {}) {
    const { messages, stream = false, signal } = params;
    if (!Array.isArray(messages) || messages.length === 0) {
      throw asThrowable(makeError(CODE.INVALID, 'messages must be a non-empty array'));
    }
    const options = {};
    for (const k of ['max_tokens', 'temperature', 'top_p', 'top_k', 'min_p', 'repeat_penalty', 'presence_penalty', 'frequency_penalty', 'seed', 'stop', 'n_ctx', 'response_format', 'grammar', 'tools', 'tool_choice', 'cache_prompt', 'context_overflow']) {
      if (params[k] !== undefined && params[k] !== null) options[k] = params[k];
    }
    const cid = `chatcmpl-${Date.now().toString(36)}-${++completionSeq}`;
    const created = Math.floor(Date.now() / 1000);
    // The id asked for, else the current model's id when it was loaded with one, else its name.
    const current = this.#model?.id && this.#model.id !== 'default' ? this.#model.id : this.#model?.name;
    const model = params.model ?? current ?? 'wasm-chord';
    const sab = this.hardAbort ? new SharedArrayBuffer(4) : null;
    const flag = sab ? new Int32Array(sab) : null;

    const queue = [];
    let wake = null;
    let finished = false;
    let failure = null;
    let softAborted = false;
    let first = true;
    const push = (c) => {
      queue.push(c);
      if (wake) wake();
    };
    const onEvent = (ev) => {
      if (ev.kind !== EVENT.TOKEN || softAborted) return;
      const delta = first ? { role: 'assistant', content: ev.text } : { content: ev.text };
      first = false;
      push({ id: cid, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: null }] });
    };
    const { id: reqId, promise } = this.#request(REQUEST.CHAT, { messages, options, abortFlag: sab, model: params.model }, stream ? onEvent : null);
    let abortSent = false;
    const stopWorker = () => {
      if (flag) Atomics.store(flag, 0, 1);
      if (!abortSent && !this.#dead) {
        abortSent = true;
        this.#worker.postMessage({ id: this.#nextId++, type: REQUEST.ABORT, target: reqId });
      }
    };
    const onAbort = () => {
      stopWorker();
      // The worker stops at its next token; without shared memory (no hard stop mid-prefill)
      // the caller stops seeing tokens now.
      if (!flag) {
        softAborted = true;
        if (wake) wake();
      }
    };
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });

    const usageOf = (r) => ({
      prompt_tokens: r.prompt_tokens,
      completion_tokens: r.completion_tokens,
      total_tokens: r.prompt_tokens + r.completion_tokens,
      // What the previous request's cache held (not prefilled again), as OpenAI reports it.
      prompt_tokens_details: { cached_tokens: r.cached_tokens ?? 0 },
    });
    // The reply's message: tool calls as OpenAI's `tool_calls` (content null when only calls).
    const messageOf = (r) => {
      const calls = r.tool_calls || [];
      if (!calls.length) return { role: 'assistant', content: r.text };
      return { role: 'assistant', content: r.content ?? null, tool_calls: calls };
    };
    // Tool calls stream as one delta each, with their index (OpenAI's shape, whole arguments).
    const toolCallDeltas = (r) =>
      (r.tool_calls || []).map((c, index) => ({
        id: cid,
        object: 'chat.completion.chunk',
        created,
        model,
        choices: [{ index: 0, delta: { ...(first && index === 0 ? { role: 'assistant' } : {}), tool_calls: [{ index, ...c }] }, finish_reason: null }],
      }));
    const timingsOf = (r) => ({
      prompt_ms: r.prompt_ms,
      gen_ms: r.gen_ms,
      tokens_per_s: r.gen_ms > 0 ? (Math.max(0, r.completion_tokens - 1) * 1000) / r.gen_ms : null,
      backend: r.backend,
      memory_bytes: r.memory_bytes,
    });

    if (!stream) {
      try {
        const r = await promise;
        return {
          id: cid,
          object: 'chat.completion',
          created,
          model,
          choices: [{ index: 0, message: messageOf(r), finish_reason: softAborted ? 'abort' : r.finish_reason }],
          usage: usageOf(r),
          timings: timingsOf(r),
          // Oldest whole turns left out so the prompt and max_tokens fit the context.
          dropped_messages: r.dropped_messages ?? 0,
        };
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
    }

    let result = null;
    promise.then(
      (r) => {
        result = r;
        finished = true;
        if (wake) wake();
      },
      (e) => {
        failure = e;
        finished = true;
        if (wake) wake();
      },
    );
    async function* chunks() {
      try {
        for (;;) {
          while (queue.length) yield queue.shift();
          if (softAborted) {
            // The worker stops at its next token: wait briefly for its count of what it generated.
            if (!finished) await Promise.race([promise.catch(() => {}), new Promise((r) => setTimeout(r, 1000))]);
            yield {
              id: cid,
              object: 'chat.completion.chunk',
              created,
              model,
              choices: [{ index: 0, delta: {}, finish_reason: 'abort' }],
              usage: finished && result ? usageOf(result) : null,
            };
            return;
          }
          if (finished) {
            if (failure) throw failure;
            yield* toolCallDeltas(result);
            yield {
              id: cid,
              object: 'chat.completion.chunk',
              created,
              model,
              choices: [{ index: 0, delta: {}, finish_reason: result.finish_reason }],
              usage: usageOf(result),
              timings: timingsOf(result),
              dropped_messages: result.dropped_messages ?? 0,
            };
            return;
          }
          await new Promise((r) => (wake = r));
          wake = null;
        }
      } finally {
        signal?.removeEventListener('abort', onAbort);
        // A consumer that breaks out early cancels generation.
        if (!finished) stopWorker();
      }
    }
    return chunks();
  }
}

function resolveUrl(url) {
  try {
    return new URL(url, globalThis.location?.href).href;
  } catch {
    return url;
  }
}
