// The whole message protocol between the page (client.js) and the worker (worker.js).
//
// Page → worker: a request  { id, type, ...args }        (every request has an id)
// Worker → page: events     { id, kind: 'progress', progress }   load/download progress
//                           { id, kind: 'token', text, index }   one piece of streamed text
//                           { id, kind: 'done', result }         the request's result (last)
//                           { id, kind: 'error', error }         the request failed (last)
//                           { kind: 'fatal', error }             the engine died: every
//                                                                pending request is rejected
//                           { kind: 'ready' }                    the worker is up
// Errors are always plain objects { code, message }.

export const REQUEST = Object.freeze({
  LOAD: 'load', // { source: url string | File | Blob, chunkSize?, backend?: 'auto'|'webgpu'|'cpu' } → info
  CHAT: 'chat', // { messages, options, abortFlag?: SharedArrayBuffer } → tokens, then completion result
  ABORT: 'abort', // { target: id } → aborts a pending load or chat (a chat stops at its next token)
  INFO: 'info', // {} → model info (or null)
  TOKENIZE: 'tokenize', // { text, addSpecial, parseSpecial } → ids
  UNLOAD: 'unload', // {} → null
  CACHE_LIST: 'cache.list', // {} → [{ url, size, stored, complete, etag, name, updated }]
  CACHE_DELETE: 'cache.delete', // { url } → boolean
  CACHE_USAGE: 'cache.usage', // {} → { usage, quota, models }
});

export const EVENT = Object.freeze({
  PROGRESS: 'progress',
  TOKEN: 'token',
  DONE: 'done',
  ERROR: 'error',
  FATAL: 'fatal',
  READY: 'ready',
});

// Stable error codes used by the JS side (the Rust engine adds its own: bad_gguf, io, ...).
export const CODE = Object.freeze({
  HTTP: 'http', // the server answered with an error status
  NETWORK: 'network', // the connection failed (resumable)
  NOT_GGUF: 'not_gguf', // the bytes are not a GGUF file
  QUOTA: 'quota', // not enough storage for the model
  ABORTED: 'aborted', // cancelled by the caller
  BAD_RESPONSE: 'bad_response', // wrong length, missing headers, changed file
  NOT_LOADED: 'not_loaded',
  BUSY: 'busy',
  FATAL: 'fatal', // the wasm engine crashed; create a new engine
  INVALID: 'invalid_request',
  INTERNAL: 'internal',
});

/** A `{code, message}` error object from anything thrown. */
export function toError(e, fallbackCode = CODE.INTERNAL) {
  if (e && typeof e === 'object' && typeof e.code === 'string' && typeof e.message === 'string') {
    return { code: e.code, message: e.message };
  }
  if (e && e.name === 'AbortError') return { code: CODE.ABORTED, message: 'aborted' };
  const message = e && e.message ? String(e.message) : String(e);
  return { code: fallbackCode, message };
}

export function makeError(code, message) {
  return { code, message };
}

/** An Error instance carrying `code`, for rejecting promises on the page. */
export function asThrowable(err) {
  const e = new Error(err.message);
  e.code = err.code;
  return e;
}

// Worker side: the one place that turns results and errors into replies.
export const reply = {
  progress: (post, id, progress) => post({ id, kind: EVENT.PROGRESS, progress }),
  token: (post, id, text, index) => post({ id, kind: EVENT.TOKEN, text, index }),
  done: (post, id, result) => post({ id, kind: EVENT.DONE, result }),
  error: (post, id, e) => post({ id, kind: EVENT.ERROR, error: toError(e) }),
  fatal: (post, e) => post({ kind: EVENT.FATAL, error: toError(e, CODE.FATAL) }),
  ready: (post) => post({ kind: EVENT.READY }),
};
