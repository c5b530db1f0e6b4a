// `backend: 'auto'` with a remote configured: each load picks this device or the remote server,
// behind one engine API (the local worker of ./client.js, or ./remote.js).
//
//   const engine = await createEngine({ backend: 'auto', remote: { baseURL, apiKey, model } });
//   await engine.load('/models/smollm2-135m-instruct-q4_k_m.gguf');
//   (await engine.info()).route   // 'local' or 'remote'; route_reason says why remote
//
// The policy (`chooseRoute`): remote when the browser has no hardware WebGPU adapter (no WebGPU,
// no adapter, or only a software renderer: the CPU path would be the only local choice), or when
// the model is larger than this device's budget (`maxLocalBytes`; by default half the memory the
// browser reports in navigator.deviceMemory, else 2 GiB); otherwise local. A model whose size is
// unknown (no Content-Length) stays local. The remote serves its configured model (or its first),
// not the URL given to load(). Everything else (chat, info, unload, models, the cache and
// sessions of the local engine) goes to the engine the last load chose.

import { CODE, asThrowable, makeError } from './protocol.js';
import { RemoteEngine } from './remote.js';
import { probeAdapter } from './adapter.js';

const GIB = 2 ** 30;

/** The default budget for a local model: half the device memory the browser reports, else 2 GiB. */
export function defaultLocalBudget(deviceMemoryGiB) {
  return typeof deviceMemoryGiB === 'number' && deviceMemoryGiB > 0 ? (deviceMemoryGiB * GIB) / 2 : 2 * GIB;
}

/**
 * Local or remote for one model: `{ route, reason }` (reason null for local).
 * `gpu`: probeAdapter's result; `modelBytes`: the model's size (null: unknown); `budget`: bytes.
 */
export function chooseRoute({ gpu, modelBytes, budget }) {
  if (!gpu.hardware) return { route: 'remote', reason: `${gpu.why}: the remote server runs it` };
  if (modelBytes != null && modelBytes > budget) {
    const mb = (n) => `${Math.round(n / 1e6)} MB`;
    return { route: 'remote', reason: `the model (${mb(modelBytes)}) is larger than this device's budget (${mb(budget)})` };
  }
  return { route: 'local', reason: null };
}

/** The size of a model source in bytes: a File/Blob's size, a URL's Content-Length, else null. */
async function sourceBytes(source, fetchImpl) {
  if (typeof Blob !== 'undefined' && source instanceof Blob) return source.size;
  if (typeof source !== 'string') return null;
  try {
    const res = await fetchImpl(new URL(source, globalThis.location?.href).href, { method: 'HEAD' });
    const n = Number(res.headers.get('content-length'));
    return res.ok && Number.isFinite(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

export class AutoEngine {
  #local = null; // the local Engine, made at the first local load
  #makeLocal;
  #remote;
  #current = null;
  #route = null; // { route, reason }
  #budget;
  #gpu;

  /**
   * `makeLocal()` resolves to a local engine (client.js's Engine); `remote` is RemoteEngine's
   * options; `maxLocalBytes` overrides the default budget; `gpu` (tests) replaces the probe of
   * navigator.gpu with a fixed answer.
   */
  constructor({ makeLocal, remote, maxLocalBytes = null, gpu = null }) {
    this.#makeLocal = makeLocal;
    this.#remote = new RemoteEngine(remote);
    if (maxLocalBytes !== null && !(Number.isFinite(maxLocalBytes) && maxLocalBytes >= 0)) {
      throw asThrowable(makeError(CODE.INVALID, `maxLocalBytes must be a number of bytes, got ${JSON.stringify(maxLocalBytes)}`));
    }
    this.#budget = maxLocalBytes ?? defaultLocalBudget(globalThis.navigator?.deviceMemory);
    this.#gpu = gpu;
    this.ready = Promise.resolve();
    this.chat = { completions: { create: (params) => this.#engine().chat.completions.create(params) } };
    this.models = { list: () => this.#remote.models.list() };
    this.cache = {
      list: async () => (await this.#localEngine()).cache.list(),
      delete: async (url) => (await this.#localEngine()).cache.delete(url),
      usage: async () => (await this.#localEngine()).cache.usage(),
    };
  }

  /** Where the last load went: `{ route: 'local'|'remote', reason }`, or null before a load. */
  get route() {
    return this.#route;
  }

  get hardAbort() {
    return this.#current?.hardAbort ?? false;
  }

  #engine() {
    if (!this.#current) throw asThrowable(makeError(CODE.NOT_LOADED, 'no model is loaded: call load() first'));
    return this.#current;
  }

  async #localEngine() {
    if (!this.#local) this.#local = await this.#makeLocal();
    return this.#local;
  }

  /** Pick the route for `source` (see the policy above), then load there. */
  async load(source, opts = {}) {
    const gpu = this.#gpu ?? (await probeAdapter(globalThis.navigator?.gpu));
    const bytes = gpu.hardware ? await sourceBytes(source, globalThis.fetch.bind(globalThis)) : null;
    const route = chooseRoute({ gpu, modelBytes: bytes, budget: this.#budget });
    const engine = route.route === 'remote' ? this.#remote : await this.#localEngine();
    const info = route.route === 'remote' ? await engine.load(null, opts) : await engine.load(source, opts);
    this.#current = engine;
    this.#route = route;
    return this.#withRoute(info);
  }

  #withRoute(info) {
    return info && { ...info, route: this.#route.route, route_reason: this.#route.reason };
  }

  async info() {
    if (!this.#current) return null;
    return this.#withRoute(await this.#current.info());
  }

  tokenize(...args) {
    return this.#engine().tokenize(...args);
  }

  unload(...args) {
    return this.#engine().unload(...args);
  }

  saveSession(...args) {
    return this.#localEngine().then((e) => e.saveSession(...args));
  }

  restoreSession(...args) {
    return this.#localEngine().then((e) => e.restoreSession(...args));
  }

  deleteSession(...args) {
    return this.#localEngine().then((e) => e.deleteSession(...args));
  }

  listSessions() {
    return this.#localEngine().then((e) => e.listSessions());
  }

  terminate() {
    this.#local?.terminate();
    this.#remote.terminate();
  }
}
