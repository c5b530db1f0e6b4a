// The whole message protocol between the page (client.js) and the worker (worker.js).
//
// Page → worker: a request  { id, type, ...args }        (every request has an id)
// Worker → page: events     { id, kind: 'progress', progress }   load/download progress
//                           { id, kind: 'token', text, index }   one piece of streamed text
//                           { id, kind: 'done', result }         the request's result (last)
//                           { id, kind: 'error', error }         the request failed (last)
//                           { kind: 'fatal', error }             the engine died: every
//                                                                pending request is rejected
//                           { kind: 'ready', crashChannel }      the worker is up; in the
//                                                                threaded build, the name of
//                                                                the BroadcastChannel where its
//                                                                pool's workers report a crash
// Pool worker → page, on that channel (worker/pool-worker.js):
//                           { type: 'pool-crash', message, panic? }  a CPU thread crashed: the
//                                                                engine worker is blocked for good
// Errors are always plain objects { code, message }.

export const REQUEST = Object.freeze({
  LOAD: 'load', // { source: url string | File | Blob, chunkSize?, backend?: 'auto'|'webgpu'|'cpu', sha256?, n_ctx?, threads?, modelId? } → info
  CHAT: 'chat', // { messages, options, abortFlag?: SharedArrayBuffer, model? } → tokens, then completion result
  ABORT: 'abort', // { target: id } → aborts a pending load or chat (a chat stops at its next token)
  INFO: 'info', // {} → the current model's info with models: [every loaded model] (or null)
  TOKENIZE: 'tokenize', // { text, addSpecial, parseSpecial, model? } → ids
  UNLOAD: 'unload', // { model? } → null (without model: every model)
  CACHE_LIST: 'cache.list', // {} → [{ url, size, stored, complete, etag, name, updated, sha256, verified, canDetectChange, warning, unusable }]
  CACHE_DELETE: 'cache.delete', // { url } → boolean
  CACHE_USAGE: 'cache.usage', // {} → { usage, quota, models, sessions }
  // Saved sessions: a model's KV cache of its last conversation, kept in storage under a key.
  SESSION_SAVE: 'session.save', // { key, model?, precision?: 'f16'|'f32' } → { key, model, name, tokens, bytes, precision, saved, ms }
  SESSION_RESTORE: 'session.restore', // { key, model? } → { key, tokens, bytes, ms }
  SESSION_DELETE: 'session.delete', // { key } → boolean
  SESSION_LIST: 'session.list', // {} → [{ key, model, name, tokens, bytes, precision, saved }], newest first
  // Test hook only (tests/e2e/pool-crash.test.mjs): a panic on a thread of the pool; never replies.
  TEST_POOL_PANIC: '__test.poolPanic', // {} → (the client's pool-crash detection rejects it)
});

export const EVENT = Object.freeze({
  PROGRESS: 'progress',
  TOKEN: 'token',
  DONE: 'done',
  ERROR: 'error',
  FATAL: 'fatal',
  READY: 'ready',
});

// Every error code, from the engine (Rust) and from the worker alike: one closed list, the
// mirror of `wasm_chord::error::Code` (src/error.rs); tests/error_codes.rs checks that the two
// lists are the same and that the worker and the client use no other code.
export const CODE = Object.freeze({
  BAD_GGUF: 'bad_gguf', // the file is not a well-formed GGUF
  UNSUPPORTED_TYPE: 'unsupported_type', // a tensor's block format is not implemented
  BAD_TENSOR: 'bad_tensor', // a tensor is missing or has the wrong shape
  TOKENIZER: 'tokenizer', // the vocabulary is unusable
  CHAT_TEMPLATE: 'chat_template', // the chat template failed to parse or render
  UNSUPPORTED_MODEL: 'unsupported_model', // the architecture is not implemented
  CONTEXT_FULL: 'context_full', // the prompt does not fit the context
  BAD_TOKEN: 'bad_token', // a token id outside the vocabulary
  INVALID: 'invalid', // a bad request: the message names the field
  TENSOR_NOT_FOUND: 'tensor_not_found',
  BAD_METADATA: 'bad_metadata', // a metadata key is missing or unusable
  GPU: 'gpu', // the GPU backend could not start or run
  OUT_OF_MEMORY: 'out_of_memory',
  IO: 'io', // reading the model's bytes failed
  BUSY: 'busy',
  NOT_LOADED: 'not_loaded',
  HTTP: 'http', // the server answered with an error status
  NETWORK: 'network', // the connection failed (resumable)
  NOT_GGUF: 'not_gguf', // the bytes are not a GGUF file
  QUOTA: 'quota', // not enough storage for the model
  ABORTED: 'aborted', // cancelled by the caller
  BAD_RESPONSE: 'bad_response', // wrong length or range, missing headers, changed file
  INTEGRITY: 'integrity', // the bytes do not match the expected SHA-256
  UNUSABLE: 'unusable', // a cached model the engine failed on: delete it to try again
  STORAGE: 'storage', // IndexedDB or the cache directory failed
  FATAL: 'fatal', // the wasm module trapped (on any of its threads); the client starts a fresh worker
  BAD_GRAMMAR: 'bad_grammar', // a schema/grammar/regex that cannot constrain decoding
  CONSTRAINT: 'constraint', // constrained decoding failed mid-generation
  BAD_SESSION: 'bad_session', // a saved session that is corrupt or from another model, or none under that key
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
  ready: (post, crashChannel = null) => post({ kind: EVENT.READY, crashChannel }),
};
