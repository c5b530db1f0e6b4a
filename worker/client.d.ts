// Types for worker/client.js.

export interface EngineError extends Error {
  /** One code of the closed list `CODE` in protocol.js (= `wasm_chord::error::Code`). */
  code: ErrorCode;
  /** The HTTP status, for errors a remote server answered (remote mode). */
  status?: number;
}

export type ErrorCode =
  | 'bad_gguf' | 'unsupported_type' | 'bad_tensor' | 'tokenizer' | 'chat_template' | 'unsupported_model'
  | 'context_full' | 'bad_token' | 'invalid' | 'tensor_not_found' | 'bad_metadata' | 'gpu' | 'out_of_memory'
  | 'io' | 'busy' | 'not_loaded' | 'http' | 'network' | 'not_gguf' | 'quota' | 'aborted' | 'bad_response'
  | 'integrity' | 'unusable' | 'storage' | 'fatal' | 'bad_grammar' | 'constraint' | 'bad_session' | 'internal';

export interface Progress {
  phase: 'download' | 'read' | 'load';
  loaded: number;
  total: number | null;
  /** Bytes per second over this download (cached bytes excluded). */
  speed?: number;
  /** Seconds left, when known. */
  eta?: number | null;
}

export interface ModelInfo {
  architecture: string;
  name: string | null;
  /** The context size in use (set at load with `n_ctx`). */
  n_ctx: number;
  /** The model's training context. */
  n_ctx_train: number;
  /** Bytes of the KV cache. */
  kv_bytes: number;
  /** Tokens the KV cache holds (the last conversation's), which a prompt starting with them reuses. */
  cached_tokens: number;
  n_vocab: number;
  n_layer: number;
  n_embd: number;
  /** 'remote': an OpenAI-compatible server (createEngine({ remote })); the sizes are then null. */
  backend: 'cpu' | 'webgpu' | 'remote';
  /** The server's base URL, in remote mode. */
  remote?: string;
  /** With createEngine({ remote, backend: 'auto' }): where the last load went, and why remote
   *  (no hardware WebGPU adapter, or a model over the device's budget); null when local. */
  route?: 'local' | 'remote';
  route_reason?: string | null;
  /** The WebGPU adapter (name, backend, f16, subgroups, max binding), on the WebGPU backend. */
  adapter: string | null;
  /** The model's id (`load(url, {id})`; 'default' without one). */
  id: string;
  /** Every loaded model (in `info()` and `load()` results). */
  models?: LoadedModel[];
  /** Why 'auto' chose the CPU (no WebGPU, no adapter, a software renderer, a failed self-test,
   *  a GPU slower than the CPU, the GPU refused the model), else null. */
  fallback: string | null;
  /** What 'auto' checked on the adapter it took (self-test formats and time, the probe's
   *  estimates), else null (CPU, or 'webgpu' forced). */
  gpu_vetting: string | null;
  chat_template: boolean;
  url: string | null;
  size: number;
  download_ms: number;
  load_ms: number;
  /** Wasm memory the load added (wasm memory only grows, so this is the load's peak need). */
  load_memory_bytes: number;
  memory_bytes: number;
  /** Whether the threaded build of the module runs (the page is cross-origin isolated). */
  threaded_build: boolean;
  /** The threads the CPU kernels split matmul rows and attention heads over (1: single-threaded). */
  threads: number;
  /** Why the CPU kernels use one thread (no cross-origin isolation, `threads: 1` asked, the
   *  threaded build missing, one core), or fewer than asked; else null. */
  threads_note: string | null;
}

export interface ToolCall {
  /** `call_` and 24 hex digits. */
  id: string;
  type: 'function';
  /** `arguments` is a JSON text that validates against the function's `parameters`. */
  function: { name: string; arguments: string };
}

export interface LoadedModel {
  id: string;
  name: string | null;
  file: string;
  backend: 'cpu' | 'webgpu';
  n_ctx: number;
  size: number;
  load_memory_bytes: number;
  kv_bytes: number;
  /** Tokens its KV cache holds (its last conversation). */
  cached_tokens: number;
  /** Whether requests without `model` go to it (the most recently loaded). */
  current: boolean;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | 'developer' | string;
  content: string | null;
  /** An assistant message's calls, passed back into the chat template. */
  tool_calls?: ToolCall[];
  /** A `tool` message: the call it answers. */
  tool_call_id?: string;
  name?: string;
}

/** A JSON schema (draft 2020-12 subset that llguidance supports; unsupported keywords are an error). */
export type JsonSchema = Record<string, unknown> | boolean;

export type ResponseFormat =
  | { type: 'text' }
  /** Any JSON object. */
  | { type: 'json_object' }
  /** JSON that validates against `schema`. */
  | { type: 'json_schema'; json_schema: { name: string; schema: JsonSchema; strict?: boolean; description?: string } };

export interface Tool {
  type: 'function';
  function: { name: string; description?: string; parameters?: JsonSchema };
}

export type ToolChoice = 'auto' | 'none' | 'required' | { type: 'function'; function: { name: string } };

export interface CompletionParams {
  messages: ChatMessage[];
  /** The id of a loaded model (default: the most recently loaded). */
  model?: string;
  stream?: boolean;
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  repeat_penalty?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  stop?: string | string[];
  seed?: number;
  n_ctx?: number;
  /** Constrained decoding: the reply always parses (and validates against the schema). */
  response_format?: ResponseFormat;
  /**
   * Extension: a Lark grammar (llguidance's dialect, https://github.com/guidance-ai/llguidance/blob/main/docs/syntax.md)
   * the reply must match; not together with response_format.
   */
  grammar?: string;
  /** Functions the model may call (rendered by the model's own chat template). */
  tools?: Tool[];
  /** 'required' and a named function force one call whose arguments validate. */
  tool_choice?: ToolChoice;
  /** Reuse the previous request's common prefix from the KV cache (default true). */
  cache_prompt?: boolean;
  /** When prompt + max_tokens does not fit the context: drop the oldest whole turns (default)
   * or keep every message ('error': a prompt longer than the context is a context_full error). */
  context_overflow?: 'drop_oldest' | 'error';
  signal?: AbortSignal;
}

export type FinishReason = 'stop' | 'length' | 'abort' | 'tool_calls';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Leading prompt tokens taken from the previous request's KV cache, not prefilled again. */
  prompt_tokens_details: { cached_tokens: number };
}

export interface Timings {
  prompt_ms: number;
  gen_ms: number;
  tokens_per_s: number | null;
  backend: string;
  memory_bytes: number;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: {
    index: 0;
    delta: { role?: 'assistant'; content?: string; tool_calls?: (ToolCall & { index: number })[] };
    finish_reason: FinishReason | null;
  }[];
  /** On the last chunk only. */
  usage?: Usage | null;
  timings?: Timings;
  /** On the last chunk only. */
  dropped_messages?: number;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: { index: 0; message: { role: 'assistant'; content: string | null; tool_calls?: ToolCall[] }; finish_reason: FinishReason }[];
  usage: Usage;
  timings: Timings;
  /** Messages left out (oldest turns) so the prompt fit the context. */
  dropped_messages: number;
}

export interface CachedModel {
  url: string;
  name: string;
  size: number;
  stored: number;
  complete: boolean;
  etag: string | null;
  updated: number;
  /** SHA-256 of the stored bytes (once complete). */
  sha256: string | null;
  /** The bytes matched a SHA-256 known before the download (the `sha256` option or the host's). */
  verified: boolean;
  /** False when the server sent neither ETag nor Last-Modified (see `warning`). */
  canDetectChange: boolean;
  warning: string | null;
  /** Set when the engine failed on this file: it is not loaded again until deleted. */
  unusable: { code: ErrorCode; message: string } | null;
}

export interface SavedSession {
  key: string;
  /** The id of the model it was saved from, and that model's name and URL. */
  model: string;
  name: string | null;
  url: string | null;
  /** Tokens (positions) the session holds. */
  tokens: number;
  bytes: number;
  precision: 'f16' | 'f32';
  /** Date.now() when it was saved. */
  saved: number;
}

/**
 * A local engine (a Web Worker). When the wasm module traps (a panic or out of memory: on the
 * worker's own thread, or, in the threaded build, on a thread of its CPU pool, which the pool
 * worker reports on a BroadcastChannel since the engine worker is then blocked), every pending
 * request and stream rejects with an `EngineError` of code 'fatal' (for a pool thread: "a CPU
 * thread of the engine crashed: <panic text>"), and the engine starts a fresh worker by itself:
 * the same object stays usable, with no model loaded (`load()` again; the cache is intact).
 * Only `terminate()` ends it for good.
 */
export interface Engine {
  /** Whether a Stop also interrupts a long prompt mid-prefill (needs cross-origin isolation). */
  readonly hardAbort: boolean;
  /**
   * backend: 'auto' (default: WebGPU on a hardware adapter that passes the self-test, else the CPU), 'webgpu' (forced) or 'cpu'.
   * sha256: the file's expected SHA-256 (64 hex digits); a mismatch fails with `integrity` and caches nothing.
   */
  load(
    source: string | Blob,
    opts?: {
      onProgress?: (p: Progress) => void;
      signal?: AbortSignal;
      chunkSize?: number;
      backend?: 'auto' | 'webgpu' | 'cpu';
      sha256?: string;
      /** The context size, at most the training context (default: the training context; on WebGPU at most 4096). */
      n_ctx?: number;
      /** The CPU kernels' threads, on a cross-origin isolated page (the threaded build; default:
       *  navigator.hardwareConcurrency, at most 8). The first load that wants more than one starts
       *  the pool; later loads can use fewer threads, not more. */
      threads?: number;
      /** Load beside the models already loaded under this id (without: replace the model loaded without one). */
      id?: string;
    },
  ): Promise<ModelInfo>;
  info(): Promise<ModelInfo | null>;
  tokenize(text: string, opts?: { addSpecial?: boolean; parseSpecial?: boolean; model?: string }): Promise<number[]>;
  /** Free the model `id`, or every model without it. */
  unload(id?: string): Promise<null>;
  /** Save the model's KV cache (its last conversation) under `key`, in IndexedDB. */
  saveSession(key: string, opts?: { model?: string; precision?: 'f16' | 'f32' }): Promise<SavedSession & { ms: number }>;
  /** Restore the session saved under `key` into the model's cache (`bad_session` if it is corrupt, of another model, or missing). */
  restoreSession(key: string, opts?: { model?: string }): Promise<{ key: string; tokens: number; bytes: number; ms: number }>;
  deleteSession(key: string): Promise<boolean>;
  listSessions(): Promise<SavedSession[]>;
  terminate(): void;
  chat: {
    completions: {
      create(p: CompletionParams & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
      create(p: CompletionParams & { stream?: false }): Promise<ChatCompletion>;
    };
  };
  cache: {
    list(): Promise<CachedModel[]>;
    delete(url: string): Promise<boolean>;
    usage(): Promise<{ usage: number | null; quota: number | null; models: number; sessions: number }>;
  };
}

/** An OpenAI-compatible server: chord serve, vLLM, SGLang, llama-server, ... */
export interface RemoteOptions {
  /** Up to and including the API prefix, e.g. 'http://127.0.0.1:8080/v1'. */
  baseURL: string;
  /** Sent as `Authorization: Bearer ...`. */
  apiKey?: string | null;
  /** The model id (default: the one load() picks, else the server's first). */
  model?: string | null;
  /** A fetch implementation (default: globalThis.fetch). */
  fetch?: typeof fetch;
}

export interface OpenAIModel {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
}

/** The same API against a server. load(id?) picks a model the server lists (nothing is
 *  downloaded); tokenize() is not available; abort closes the connection, which stops the
 *  server's generation; a non-streaming request that is aborted rejects with code 'aborted'. */
export interface RemoteEngine extends Engine {
  readonly remote: { baseURL: string; model: string | null };
  models: { list(): Promise<OpenAIModel[]> };
}

/** createEngine({ remote, backend: 'auto' }): each load() picks this device or the remote:
 *  remote without a hardware WebGPU adapter or for a model larger than `maxLocalBytes`
 *  (default: half of navigator.deviceMemory, else 2 GiB; a model of unknown size stays local).
 *  The remote serves its configured model. info() adds `route` and `route_reason`. */
export interface AutoEngine extends Engine {
  readonly route: { route: 'local' | 'remote'; reason: string | null } | null;
  models: { list(): Promise<OpenAIModel[]> };
}

export function createEngine(opts: {
  remote: RemoteOptions;
  backend: 'auto';
  maxLocalBytes?: number;
  workerUrl?: string | URL;
}): Promise<AutoEngine>;
export function createEngine(opts: { remote: RemoteOptions }): Promise<RemoteEngine>;
export function createEngine(opts?: { workerUrl?: string | URL }): Promise<Engine>;
