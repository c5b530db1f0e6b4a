// Remote mode: the same engine API as client.js, served by any OpenAI-compatible server
// (`chord serve --model ...`, vLLM, SGLang, llama.cpp's llama-server, ...).
//
//   const engine = await createEngine({ remote: { baseURL: 'http://127.0.0.1:8080/v1', apiKey, model } });
//   for await (const chunk of await engine.chat.completions.create({ messages, stream: true }))
//     out.textContent += chunk.choices[0]?.delta?.content ?? '';
//
// Streaming reads the server-sent events of POST {baseURL}/chat/completions; aborting the
// signal (or breaking out of the loop) closes the connection, which stops generation on the
// server. As with the local engine, the last chunk carries finish_reason and usage (asked for
// with `stream_options.include_usage` and merged into it). Errors are EngineErrors with a
// code from protocol.js's closed list: invalid (400/404/413/422), busy (429/503), http (any
// other status, 401/403 included), each with `status`; network, aborted, bad_response.

import { CODE, asThrowable, makeError } from './protocol.js';

const PARAMS = [
  'max_tokens',
  'temperature',
  'top_p',
  'top_k',
  'min_p',
  'repeat_penalty',
  'presence_penalty',
  'frequency_penalty',
  'seed',
  'stop',
  'response_format',
  'tools',
  'tool_choice',
];

function engineError(code, message, extra = {}) {
  return Object.assign(asThrowable(makeError(code, message)), extra);
}

function codeForStatus(status) {
  if (status === 400 || status === 404 || status === 413 || status === 422) return CODE.INVALID;
  if (status === 429 || status === 503) return CODE.BUSY;
  return CODE.HTTP;
}

/** An error response (OpenAI-shaped JSON or plain text) as an EngineError. */
async function httpError(res) {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.text();
    try {
      const j = JSON.parse(body);
      const e = j.error ?? j;
      if (typeof e === 'string') message = e;
      else if (e && typeof e.message === 'string') message = e.message;
    } catch {
      if (body.trim()) message = body.trim().slice(0, 500);
    }
  } catch {
    /* the body could not be read: keep the status line */
  }
  return engineError(codeForStatus(res.status), message, { status: res.status });
}

function isAbort(e, signal) {
  return signal?.aborted || e?.name === 'AbortError';
}

/** Server-sent events from a fetch body: yields each event's `data` (lines joined). */
async function* sseData(body, signal) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      let r;
      try {
        r = await reader.read();
      } catch (e) {
        if (isAbort(e, signal)) return;
        throw engineError(CODE.NETWORK, `the stream broke: ${e?.message ?? e}`);
      }
      if (r.done) break;
      buf += decoder.decode(r.value, { stream: true });
      buf = buf.replace(/\r\n?/g, '\n');
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const data = block
          .split('\n')
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).replace(/^ /, ''))
          .join('\n');
        if (data) yield data;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

export class RemoteEngine {
  #baseURL;
  #apiKey;
  #model;
  #fetch;
  #controllers = new Set();
  #dead = null;

  constructor({ baseURL, apiKey = null, model = null, fetch: fetchImpl = null } = {}) {
    if (typeof baseURL !== 'string' || !baseURL) {
      throw engineError(CODE.INVALID, 'remote.baseURL must be a URL such as http://127.0.0.1:8080/v1');
    }
    this.#baseURL = baseURL.replace(/\/+$/, '');
    this.#apiKey = apiKey || null;
    this.#model = model || null;
    this.#fetch = fetchImpl || globalThis.fetch.bind(globalThis);
    this.ready = Promise.resolve();
    const self_ = this;
    this.chat = { completions: { create: (params) => self_.#create(params) } };
    this.models = { list: () => this.#listModels() };
    this.cache = {
      list: async () => [],
      delete: async () => false,
      usage: async () => ({ usage: null, quota: null, models: 0 }),
    };
  }

  /** Aborting reaches the server: closing the connection stops its generation. */
  get hardAbort() {
    return true;
  }

  get remote() {
    return { baseURL: this.#baseURL, model: this.#model };
  }

  #headers(json = false) {
    const h = { Accept: json ? 'application/json' : 'text/event-stream, application/json' };
    if (json) h['Content-Type'] = 'application/json';
    if (this.#apiKey) h.Authorization = `Bearer ${this.#apiKey}`;
    return h;
  }

  async #request(path, { method = 'GET', body, signal } = {}) {
    if (this.#dead) throw this.#dead;
    const ctl = new AbortController();
    const onAbort = () => ctl.abort();
    if (signal?.aborted) ctl.abort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    this.#controllers.add(ctl);
    const done = () => {
      signal?.removeEventListener('abort', onAbort);
      this.#controllers.delete(ctl);
    };
    let res;
    try {
      res = await this.#fetch(`${this.#baseURL}${path}`, {
        method,
        headers: this.#headers(body !== undefined),
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: ctl.signal,
      });
    } catch (e) {
      done();
      if (isAbort(e, ctl.signal)) throw engineError(CODE.ABORTED, 'aborted');
      throw engineError(CODE.NETWORK, `cannot reach ${this.#baseURL}: ${e?.message ?? e}`);
    }
    if (!res.ok) {
      const err = await httpError(res);
      done();
      throw err;
    }
    return { res, done, ctl };
  }

  async #listModels() {
    const { res, done } = await this.#request('/models');
    try {
      const j = await res.json();
      if (!Array.isArray(j?.data)) throw engineError(CODE.BAD_RESPONSE, 'GET /models did not answer {data: [...]}');
      return j.data;
    } finally {
      done();
    }
  }

  /**
   * Choose the model: an id the server lists (`source`), or the configured one, or the
   * server's first. Nothing is downloaded.
   */
  async load(source = null, { signal } = {}) {
    if (signal?.aborted) throw engineError(CODE.ABORTED, 'load aborted');
    const models = await this.#listModels();
    const want = typeof source === 'string' && source ? source : this.#model;
    if (want) {
      if (!models.some((m) => m.id === want)) {
        throw engineError(CODE.INVALID, `the server has no model \`${want}\` (it lists: ${models.map((m) => m.id).join(', ') || 'none'})`);
      }
      this.#model = want;
    } else if (models.length) {
      this.#model = models[0].id;
    } else {
      throw engineError(CODE.NOT_LOADED, 'the server lists no models');
    }
    return this.info();
  }

  async info() {
    if (!this.#model) return null;
    return {
      id: this.#model,
      // The model requests go to (the page's model list); the server's others: models.list().
      models: [{ id: this.#model, name: this.#model, file: null, backend: 'remote', n_ctx: null, size: 0, kv_bytes: 0, current: true }],
      gpu_vetting: null,
      architecture: null,
      name: this.#model,
      n_ctx: null,
      n_vocab: null,
      n_layer: null,
      n_embd: null,
      backend: 'remote',
      remote: this.#baseURL,
      adapter: null,
      fallback: null,
      chat_template: true,
      url: this.#baseURL,
      size: 0,
      download_ms: 0,
      load_ms: 0,
      load_memory_bytes: 0,
      memory_bytes: 0,
    };
  }

  async tokenize() {
    throw engineError(CODE.INVALID, 'tokenize is not part of the OpenAI API: it needs a local engine');
  }

  /** Forget the chosen model (`id`: only if it is that one). Nothing is freed on the server. */
  async unload(id = null) {
    if (!id || id === this.#model) this.#model = null;
    return null;
  }

  /** Abort every request in flight; later calls fail. */
  terminate() {
    this.#dead = engineError(CODE.FATAL, 'the engine was terminated');
    for (const c of this.#controllers) c.abort();
    this.#controllers.clear();
  }

  async #create(params = {}) {
    const { messages, stream = false, signal } = params;
    if (!Array.isArray(messages) || messages.length === 0) {
      throw engineError(CODE.INVALID, 'messages must be a non-empty array');
    }
    const body = { model: params.model ?? this.#model ?? undefined, messages, stream };
    for (const k of PARAMS) if (params[k] !== undefined && params[k] !== null) body[k] = params[k];
    if (stream) body.stream_options = { include_usage: true };
    if (!stream) {
      const { res, done } = await this.#request('/chat/completions', { method: 'POST', body, signal });
      try {
        return await res.json();
      } catch (e) {
        if (isAbort(e, signal)) throw engineError(CODE.ABORTED, 'aborted');
        throw engineError(CODE.BAD_RESPONSE, `the server's answer is not JSON: ${e?.message ?? e}`);
      } finally {
        done();
      }
    }
    const { res, done, ctl } = await this.#request('/chat/completions', { method: 'POST', body, signal });
    const meta = { id: null, created: Math.floor(Date.now() / 1000), model: body.model ?? null };
    // Timings as the local engine reports them, measured here when the server sends none.
    const t0 = performance.now();
    let tFirst = null;
    let n = 0;
    const withTimings = (c) => {
      if (!c.timings) {
        const genMs = tFirst == null ? 0 : performance.now() - tFirst;
        c.timings = {
          prompt_ms: (tFirst ?? performance.now()) - t0,
          gen_ms: genMs,
          tokens_per_s: n > 1 && genMs > 0 ? ((n - 1) * 1000) / genMs : null,
          backend: 'remote',
          memory_bytes: null,
        };
      }
      return c;
    };
    async function* chunks() {
      let held = null; // the chunk with finish_reason, until usage and [DONE] arrive
      try {
        for await (const data of sseData(res.body, ctl.signal)) {
          if (data === '[DONE]') break;
          let c;
          try {
            c = JSON.parse(data);
          } catch {
            throw engineError(CODE.BAD_RESPONSE, `a stream event is not JSON: ${data.slice(0, 200)}`);
          }
          if (c.error) {
            const e = c.error;
            throw engineError(CODE.HTTP, typeof e === 'string' ? e : (e.message ?? JSON.stringify(e)));
          }
          meta.id ??= c.id;
          meta.model = c.model ?? meta.model;
          if (c.choices?.[0]?.delta?.content) {
            tFirst ??= performance.now();
            n += 1;
          }
          if (!c.choices?.length) {
            // stream_options.include_usage: usage after the last choice.
            if (c.usage && held) held.usage = c.usage;
            continue;
          }
          if (held) {
            yield held;
            held = null;
          }
          if (c.choices[0].finish_reason) held = c;
          else yield c;
        }
        if (ctl.signal.aborted) {
          if (held) yield held;
          yield { id: meta.id, object: 'chat.completion.chunk', created: meta.created, model: meta.model, choices: [{ index: 0, delta: {}, finish_reason: 'abort' }], usage: null };
          return;
        }
        if (!held) throw engineError(CODE.BAD_RESPONSE, 'the stream ended without a finish_reason');
        yield withTimings(held);
      } finally {
        // A consumer that breaks out early closes the connection: the server stops.
        if (!ctl.signal.aborted) ctl.abort();
        done();
      }
    }
    return chunks();
  }
}
