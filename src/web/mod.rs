//! wasm-only glue: the `WasmEngine` class the worker hosts.
//!
//! The model bytes stay outside wasm memory (IndexedDB chunks as Blobs, or a local File); the
//! engine reads them through a synchronous JS callback `read(offset, length) -> Uint8Array`
//! (`FileReaderSync` in the worker). On WebGPU each tensor goes from there straight into its GPU
//! buffer, so wasm memory holds one tensor at a time; on the CPU backend wasm memory holds the
//! quantized weights. The worker calls one method at a time. Errors cross into JS as plain
//! objects `{code, message}`.
//!
//! Threads: the build with the feature `web-threads` (pkg/threads/, for cross-origin isolated
//! pages: atomics and shared memory) also exports `initThreadPool(n)`, which starts rayon's pool
//! on `n` Web Workers over the same memory; the CPU kernels then split matmul rows and attention
//! heads over it (`cpu::matmul::set_threads`: `setCpuThreads`). The worker calls it once, before
//! the first load. The WebGPU backend is in this build as well.

use crate::chat::tools::Tools;
use crate::conversation::fit_chat;
use crate::engine::{Backend, Control, Engine, FinishReason, LoadOptions};
use crate::session::KvPrecision;
use crate::source::ByteSource;
use crate::{Error, Result};
use serde_json::{json, Value as Json};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

/// A byte source over a synchronous JS function `read(offset, length) -> Uint8Array`.
struct JsSource {
    size: u64,
    read: js_sys::Function,
}

fn js_message(v: &JsValue) -> String {
    if let Some(s) = v.as_string() {
        return s;
    }
    js_sys::Reflect::get(v, &JsValue::from_str("message"))
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| format!("{v:?}"))
}

impl ByteSource for JsSource {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let ctx = || format!("reading {} bytes at offset {offset}", buf.len());
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.size) {
            return Err(Error::io(
                format!("{} of a {}-byte model", ctx(), self.size),
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        let got = self
            .read
            .call2(
                &JsValue::NULL,
                &JsValue::from_f64(offset as f64),
                &JsValue::from_f64(buf.len() as f64),
            )
            .map_err(|e| Error::io(ctx(), std::io::Error::other(js_message(&e))))?;
        let arr: js_sys::Uint8Array = got.dyn_into().map_err(|_| {
            Error::io(
                ctx(),
                std::io::Error::other("the read callback did not return a Uint8Array"),
            )
        })?;
        if arr.length() as usize != buf.len() {
            return Err(Error::io(
                ctx(),
                std::io::Error::other(format!("the read callback returned {} bytes", arr.length())),
            ));
        }
        arr.copy_to(buf);
        Ok(())
    }
}

/// `{code, message}` as a JS object.
fn js_error(code: &str, message: &str) -> JsValue {
    let o = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&o, &"code".into(), &code.into());
    let _ = js_sys::Reflect::set(&o, &"message".into(), &message.into());
    o.into()
}

fn to_js(e: Error) -> JsValue {
    js_error(e.code(), &e.to_string())
}

fn invalid(msg: impl Into<String>) -> JsValue {
    to_js(Error::InvalidRequest(msg.into()))
}

fn json_to_js(v: &Json) -> JsValue {
    js_sys::JSON::parse(&v.to_string()).unwrap_or(JsValue::NULL)
}

/// Bytes of wasm linear memory in use (grows, never shrinks).
#[wasm_bindgen(js_name = memoryBytes)]
pub fn memory_bytes() -> f64 {
    (core::arch::wasm32::memory_size(0) as f64) * 65536.0
}

/// Starts rayon's pool on `n` Web Workers (wasm-bindgen-rayon's `initThreadPool`): only in the
/// threaded build, once, before anything runs on the CPU backend.
#[cfg(feature = "web-threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// Whether this is the threaded build (feature `web-threads`).
#[wasm_bindgen(js_name = threadedBuild)]
pub fn threaded_build() -> bool {
    cfg!(feature = "web-threads")
}

/// The threads the CPU kernels use: 1 in the single-threaded build; in the threaded build,
/// what `setCpuThreads` asked for (1 until then).
#[wasm_bindgen(js_name = cpuThreads)]
pub fn cpu_threads() -> usize {
    crate::cpu::matmul::threads()
}

/// The size of rayon's pool: call only after `initThreadPool` (before, it would build a pool of
/// one on this thread, and `initThreadPool` would then fail). 1 in the single-threaded build.
#[wasm_bindgen(js_name = poolThreads)]
pub fn pool_threads() -> usize {
    #[cfg(feature = "web-threads")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "web-threads"))]
    return 1;
}

/// How many threads the CPU kernels use: at most `poolThreads()` (1: the calling thread only).
#[wasm_bindgen(js_name = setCpuThreads)]
pub fn set_cpu_threads(n: usize) {
    crate::cpu::matmul::set_threads(n);
}

static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Keep the panic message: a panic traps wasm (`unreachable`), and the worker reports this text
/// in its fatal error instead.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            if let Ok(mut p) = LAST_PANIC.lock() {
                *p = Some(info.to_string());
            }
        }));
    });
}

/// Panics (a wasm trap): the worker's test hook for crash recovery (tests/e2e/robust.test.mjs).
#[wasm_bindgen(js_name = testTrap)]
pub fn test_trap() {
    install_panic_hook();
    panic!("test trap");
}

/// Panics on a thread of rayon's pool while this thread waits for it: the test hook for
/// pool-crash detection (tests/e2e/pool-crash.test.mjs). Called from outside the pool (the
/// engine worker's thread), `join` hands the whole job to a pool thread and blocks the caller
/// until it ends; the panic traps that pool worker's wasm (panic=abort), so the caller stays
/// blocked for good, as it would after a real crash there. Only in the threaded build; the
/// worker calls it only once the pool has started (before, rayon would build a pool here).
#[cfg(feature = "web-threads")]
#[wasm_bindgen(js_name = testPoolPanic)]
pub fn test_pool_panic() {
    install_panic_hook();
    rayon::join(|| panic!("test pool panic"), || ());
}

/// The message of the panic that trapped the module, if any.
#[wasm_bindgen(js_name = lastPanic)]
pub fn last_panic() -> Option<String> {
    LAST_PANIC.lock().ok().and_then(|p| p.clone())
}

/// The engine the worker hosts. Shared behind `Rc<RefCell>` so the async methods (GPU load,
/// generation that yields between tokens) can hold it across awaits; the worker runs one
/// request at a time, and an overlapping call gets a `busy` error instead of a panic.
#[wasm_bindgen]
pub struct WasmEngine {
    engine: Rc<RefCell<Option<Engine>>>,
}

impl Default for WasmEngine {
    fn default() -> Self {
        Self::new()
    }
}

fn finish_name(f: &FinishReason) -> &'static str {
    match f {
        FinishReason::Eog | FinishReason::StopString(_) => "stop",
        FinishReason::Length => "length",
        FinishReason::Cancelled => "abort",
    }
}

fn busy() -> JsValue {
    js_error(
        crate::error::Code::Busy.as_str(),
        "the engine is busy with another request",
    )
}

fn not_loaded() -> JsValue {
    js_error(crate::error::Code::NotLoaded.as_str(), "no model is loaded")
}

/// The yield channel and the closure its port calls.
type YieldChannel = (web_sys::MessageChannel, Closure<dyn FnMut()>);

thread_local! {
    /// One MessageChannel for the whole module (kept alive here, so the browser never collects
    /// it under a pending yield) and the resolver of the yield in flight.
    static YIELD: RefCell<Option<YieldChannel>> =
        const { RefCell::new(None) };
    static YIELD_WAKE: RefCell<Option<js_sys::Function>> = const { RefCell::new(None) };
}

/// A future that resolves in a later task of the event loop (a message to ourselves: no 4 ms
/// timer clamp), so the worker handles its pending messages (a Stop) between two tokens.
fn yield_to_event_loop() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
    Box::pin(async {
        let p = js_sys::Promise::new(&mut |resolve, _| {
            let sent = YIELD.with(|y| {
                let mut y = y.borrow_mut();
                if y.is_none() {
                    let ch = web_sys::MessageChannel::new().ok()?;
                    let wake = Closure::<dyn FnMut()>::new(|| {
                        if let Some(f) = YIELD_WAKE.with(|w| w.borrow_mut().take()) {
                            let _ = f.call0(&JsValue::NULL);
                        }
                    });
                    ch.port1()
                        .set_onmessage(Some(wake.as_ref().unchecked_ref()));
                    *y = Some((ch, wake));
                }
                let (ch, _) = y.as_ref()?;
                YIELD_WAKE.with(|w| *w.borrow_mut() = Some(resolve.clone()));
                ch.port2().post_message(&JsValue::NULL).ok()
            });
            if sent.is_none() {
                let _ = resolve.call0(&JsValue::NULL);
            }
        });
        let _ = wasm_bindgen_futures::JsFuture::from(p).await;
    })
}

/// Model and backend facts for `info()`.
fn describe(e: &Engine) -> Json {
    let cfg = e.config();
    let h = &e.header;
    json!({
        "architecture": h.architecture().unwrap_or("?"),
        "name": h.model_name().ok().flatten(),
        "n_ctx": e.n_ctx(),
        "n_ctx_train": cfg.n_ctx_train,
        "kv_bytes": e.kv_bytes(),
        "cached_tokens": e.cached_ids().len(),
        "n_vocab": cfg.n_vocab,
        "n_layer": cfg.n_layer,
        "n_embd": cfg.n_embd,
        "backend": match e.backend() { Backend::Cpu => "cpu", Backend::Gpu => "webgpu" },
        "adapter": e.adapter(),
        "gpu_vetting": e.gpu_vetting(),
        "chat_template": e.chat_template().is_ok(),
    })
}

// Holding the engine's borrow across the awaits is the point: every other call on this engine
// uses `try_borrow*` and gets a `busy` error meanwhile, never a panic.
#[allow(clippy::await_holding_refcell_ref)]
async fn chat_async(
    cell: Rc<RefCell<Option<Engine>>>,
    messages_json: String,
    options_json: String,
    on_token: js_sys::Function,
) -> Result<JsValue, JsValue> {
    let r = crate::request::parse_chat(&messages_json, &options_json).map_err(to_js)?;
    let (msgs, mut opts, mut render, o) = (r.messages, r.options, r.render, r.raw);
    let (cache_prompt, overflow) = (r.cache_prompt, r.overflow);
    opts.pause = Some(yield_to_event_loop);
    let mut guard = cell.try_borrow_mut().map_err(|_| busy())?;
    let e = guard.as_mut().ok_or_else(not_loaded)?;
    let tools = match (o.get("tools"), o.get("tool_choice")) {
        (None, None) => None,
        (t, c) => {
            let source = e.chat_template().map_err(to_js)?.source();
            Tools::from_request(t, c, source).map_err(to_js)?
        }
    };
    if let Some(t) = &tools {
        t.apply(&mut render, &mut opts.grammar).map_err(to_js)?;
    }
    if !cache_prompt {
        e.forget_prefix();
    }
    let fitted = fit_chat(e, &msgs, &render, &opts, overflow).map_err(to_js)?;
    let ids = fitted.ids;
    let mut filter = tools.as_ref().map(Tools::stream_filter);
    let t0 = js_sys::Date::now();
    let mut t_first = None;
    let mut cb_error = None;
    let g = e
        .generate_async(&ids, &opts, &mut |ev| {
            t_first.get_or_insert_with(js_sys::Date::now);
            let shown = match &mut filter {
                Some(f) => std::borrow::Cow::Owned(f.push(ev.text)),
                None => std::borrow::Cow::Borrowed(ev.text),
            };
            match on_token.call2(
                &JsValue::NULL,
                &JsValue::from_str(&shown),
                &JsValue::from(ev.id),
            ) {
                Ok(r) if r == JsValue::FALSE => Control::Stop,
                Ok(_) => Control::Continue,
                Err(err) => {
                    cb_error = Some(err);
                    Control::Stop
                }
            }
        })
        .await
        .map_err(to_js)?;
    if let Some(err) = cb_error {
        return Err(err);
    }
    let t_end = js_sys::Date::now();
    let t_first = t_first.unwrap_or(t_end);
    let parsed = tools.as_ref().map(|t| t.parse(&g.text));
    let has_calls = parsed.as_ref().is_some_and(|p| !p.tool_calls.is_empty());
    // Text the filter held back that turned out not to be a call is streamed now.
    if let Some(f) = &mut filter {
        let rest = f.finish(has_calls);
        if !rest.is_empty() {
            let _ = on_token.call2(&JsValue::NULL, &JsValue::from_str(&rest), &JsValue::NULL);
        }
    }
    let (content, tool_calls) = match parsed {
        Some(p) if has_calls => (
            p.content,
            p.tool_calls.iter().map(|c| c.to_json()).collect::<Vec<_>>(),
        ),
        _ => (Some(g.text.clone()), Vec::new()),
    };
    let finish = if has_calls && g.finish == FinishReason::Eog {
        "tool_calls"
    } else {
        finish_name(&g.finish)
    };
    Ok(json_to_js(&json!({
        "text": g.text,
        "content": content,
        "tool_calls": tool_calls,
        "finish_reason": finish,
        "prompt_tokens": g.prompt_ids.len(),
        "cached_tokens": g.cached_tokens,
        "dropped_messages": fitted.dropped_messages,
        "completion_tokens": g.ids.len(),
        "prompt_ms": t_first - t0,
        "gen_ms": t_end - t_first,
        "backend": match e.backend() { Backend::Cpu => "cpu", Backend::Gpu => "webgpu" },
    })))
}

#[wasm_bindgen]
impl WasmEngine {
    #[wasm_bindgen(constructor)]
    pub fn new() -> WasmEngine {
        install_panic_hook();
        WasmEngine {
            engine: Rc::new(RefCell::new(None)),
        }
    }

    /// Load a model of `size` bytes read through `read(offset, length) -> Uint8Array` on the
    /// CPU backend (synchronous).
    pub fn load(&mut self, size: f64, read: js_sys::Function) -> Result<(), JsValue> {
        let src = source(size, read)?;
        let mut slot = self.engine.try_borrow_mut().map_err(|_| busy())?;
        *slot = None;
        *slot = Some(Engine::load(&src, &LoadOptions::default()).map_err(to_js)?);
        Ok(())
    }

    /// Load on `backend` (`"webgpu"` or `"cpu"`): a Promise that resolves once the model is
    /// ready. On WebGPU the tensors go from `read` straight into GPU buffers one at a time, so
    /// wasm memory never holds the file; the CPU backend keeps the quantized weights in wasm
    /// memory. A missing adapter or a model too large for it rejects with `{code, message}`.
    /// `vetGpu` (what `backend: 'auto'` passes): decline a software adapter, one that fails the
    /// known-answer self-test, or one slower than the CPU, rejecting with a `gpu` error whose
    /// message is the reason (`crate::backend_choice`). `n_ctx` (optional) sets the context
    /// size, at most the model's training context. `header` (optional): the file's header as
    /// `checkGgufHeader` parsed it, taken instead of parsing it again (ignored when parsed
    /// against another size).
    #[wasm_bindgen(js_name = loadAsync)]
    pub fn load_async(
        &mut self,
        size: f64,
        read: js_sys::Function,
        backend: &str,
        vet_gpu: Option<bool>,
        n_ctx: Option<f64>,
        header: Option<ParsedHeader>,
    ) -> Result<js_sys::Promise, JsValue> {
        let n_ctx = match n_ctx {
            None => None,
            Some(n) if n.is_finite() && n >= 1.0 && n.fract() == 0.0 => Some(n as usize),
            Some(n) => {
                return Err(invalid(format!(
                    "n_ctx must be a positive integer, not {n}"
                )))
            }
        };
        let backend = match backend {
            "webgpu" | "gpu" => Backend::Gpu,
            "cpu" => Backend::Cpu,
            b => {
                return Err(invalid(format!(
                    "unknown backend {b:?}: use \"webgpu\" or \"cpu\""
                )))
            }
        };
        let src = source(size, read)?;
        let header = header.filter(|h| h.size == src.size).map(|h| h.header);
        let cell = self.engine.clone();
        // Free the old model before the new one is read.
        *cell.try_borrow_mut().map_err(|_| busy())? = None;
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let opts = LoadOptions {
                backend,
                vet_gpu: vet_gpu.unwrap_or(false),
                n_ctx,
                ..Default::default()
            };
            let engine = Engine::load_async_with(&src, header, &opts)
                .await
                .map_err(to_js)?;
            *cell.try_borrow_mut().map_err(|_| busy())? = Some(engine);
            Ok(JsValue::UNDEFINED)
        }))
    }

    pub fn loaded(&self) -> bool {
        self.engine.try_borrow().is_ok_and(|e| e.is_some())
    }

    pub fn unload(&mut self) -> Result<(), JsValue> {
        *self.engine.try_borrow_mut().map_err(|_| busy())? = None;
        Ok(())
    }

    /// `{architecture, name, n_ctx, n_ctx_train, kv_bytes, cached_tokens, n_vocab, n_layer, n_embd, backend,
    /// adapter, gpu_vetting, chat_template}` (`n_ctx`: the context size in use).
    pub fn info(&self) -> Result<JsValue, JsValue> {
        let e = self.engine.try_borrow().map_err(|_| busy())?;
        Ok(json_to_js(&describe(e.as_ref().ok_or_else(not_loaded)?)))
    }

    /// Where this model's CPU matmuls use relaxed-SIMD dot products, `{decode, prefill}`: its
    /// formats (GGUF names, e.g. `Q4_K`) whose one-token matmuls and whose multi-token tiles
    /// do. In the relaxed-SIMD build, those where a timing (here, once per format and shape,
    /// tens of ms) found them faster than the i16 kernels on this CPU; else none.
    #[wasm_bindgen(js_name = relaxedDotProducts)]
    pub fn relaxed_dot_products(&self) -> Result<JsValue, JsValue> {
        let e = self.engine.try_borrow().map_err(|_| busy())?;
        let e = e.as_ref().ok_or_else(not_loaded)?;
        let formats: Vec<_> = e.header.tensors.iter().map(|t| t.ty).collect();
        let c = crate::cpu::matmul::relaxed_dot_products(&formats);
        let names = |v: Vec<crate::quant::GgmlType>| v.iter().map(|t| t.name()).collect::<Vec<_>>();
        Ok(json_to_js(
            &json!({ "decode": names(c.decode), "prefill": names(c.tiles) }),
        ))
    }

    /// How many positions of the last sequence the cache holds (what a saved session keeps and
    /// a request sharing that prefix skips); cheaper than `info()` for just this.
    #[wasm_bindgen(js_name = cachedTokens)]
    pub fn cached_tokens(&self) -> Result<usize, JsValue> {
        let e = self.engine.try_borrow().map_err(|_| busy())?;
        Ok(e.as_ref().ok_or_else(not_loaded)?.cached_ids().len())
    }

    pub fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, JsValue> {
        let e = self.engine.try_borrow().map_err(|_| busy())?;
        e.as_ref()
            .ok_or_else(not_loaded)?
            .tokenize(text, add_special, parse_special)
            .map_err(to_js)
    }

    /// The cache of the last sequence as a saved session (`crate::session`): a Promise of its
    /// bytes (a Uint8Array). `precision`: `"f16"` (the default: half the bytes of an f32
    /// cache) or `"f32"` (restores bit for bit). On WebGPU the cache is read back from the
    /// device.
    #[wasm_bindgen(js_name = saveSessionAsync)]
    pub fn save_session_async(
        &self,
        precision: Option<String>,
    ) -> Result<js_sys::Promise, JsValue> {
        let precision = match precision.as_deref() {
            None => KvPrecision::default(),
            Some(p) => KvPrecision::parse(p).map_err(to_js)?,
        };
        let cell = self.engine.clone();
        Ok(wasm_bindgen_futures::future_to_promise(save_session(
            cell, precision,
        )))
    }

    /// Restores a saved session's cache (checked whole first: a `bad_session` error for a
    /// corrupt one or one of another model, leaving the cache as it was). Returns the number
    /// of tokens the cache now holds: a chat whose prompt starts with them prefills the rest.
    #[wasm_bindgen(js_name = restoreSession)]
    pub fn restore_session(&self, bytes: &[u8]) -> Result<f64, JsValue> {
        let mut e = self.engine.try_borrow_mut().map_err(|_| busy())?;
        let e = e.as_mut().ok_or_else(not_loaded)?;
        Ok(e.restore_session(bytes).map_err(to_js)? as f64)
    }

    /// Chat: `messages_json` is an OpenAI-style message array; `options_json` holds
    /// `max_tokens, temperature, top_p, top_k, min_p, repeat_penalty, presence_penalty,
    /// frequency_penalty, seed, stop, n_ctx, now` (`now`: `{year, month, day, hour, minute,
    /// second}`, since wasm has no clock), `response_format` (`{type: "json_object"}` or
    /// `{type: "json_schema", json_schema: {name, schema, strict}}`), `grammar` (Lark),
    /// `tools`, `tool_choice`, `cache_prompt` (`false`: prefill the whole prompt instead of
    /// reusing the previous request's common prefix) and `context_overflow` (`"drop_oldest"`,
    /// the default, drops the oldest whole turns until prompt + max_tokens fits; `"error"`
    /// keeps every message). `on_token(text, id)` gets each piece of final text (tool calls
    /// are held back); returning `false` cancels. A Promise of `{text, content, tool_calls,
    /// finish_reason, prompt_tokens, cached_tokens, dropped_messages, completion_tokens,
    /// prompt_ms, gen_ms, backend}` (`tool_calls`: `[{id, type: "function", function: {name,
    /// arguments}}]`, `finish_reason` `"tool_calls"` when there are some). It yields to the
    /// event loop between tokens, so the worker sees a Stop message while it generates.
    #[wasm_bindgen(js_name = chatAsync)]
    pub fn chat_async(
        &self,
        messages_json: String,
        options_json: String,
        on_token: js_sys::Function,
    ) -> js_sys::Promise {
        let cell = self.engine.clone();
        wasm_bindgen_futures::future_to_promise(chat_async(
            cell,
            messages_json,
            options_json,
            on_token,
        ))
    }
}

// As `chat_async`: the borrow is held across the readback, so other calls get `busy`.
#[allow(clippy::await_holding_refcell_ref)]
async fn save_session(
    cell: Rc<RefCell<Option<Engine>>>,
    precision: KvPrecision,
) -> Result<JsValue, JsValue> {
    let guard = cell.try_borrow().map_err(|_| busy())?;
    let e = guard.as_ref().ok_or_else(not_loaded)?;
    let bytes = e.save_session_async(precision).await.map_err(to_js)?;
    Ok(js_sys::Uint8Array::from(&bytes[..]).into())
}

fn source(size: f64, read: js_sys::Function) -> Result<JsSource, JsValue> {
    if !(size.is_finite() && size > 0.0) {
        return Err(invalid(format!("bad model size {size}")));
    }
    Ok(JsSource {
        size: size as u64,
        read,
    })
}

/// Incremental SHA-256 for verifying downloads in the worker: `update(bytes)` as chunks arrive,
/// then `finish()` → lowercase hex.
#[wasm_bindgen]
pub struct Sha256Hasher {
    inner: Option<sha2::Sha256>,
}

impl Default for Sha256Hasher {
    fn default() -> Self {
        Self::new()
    }
}

#[wasm_bindgen]
impl Sha256Hasher {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Sha256Hasher {
        use sha2::Digest;
        Sha256Hasher {
            inner: Some(sha2::Sha256::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) -> Result<(), JsValue> {
        use sha2::Digest;
        match &mut self.inner {
            Some(h) => {
                h.update(bytes);
                Ok(())
            }
            None => Err(invalid("update after finish")),
        }
    }

    /// The digest as 64 lowercase hex digits; the hasher is spent afterwards.
    pub fn finish(&mut self) -> Result<String, JsValue> {
        use sha2::Digest;
        let h = self
            .inner
            .take()
            .ok_or_else(|| invalid("finish called twice"))?;
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// A GGUF header parsed by [`check_gguf_header`] from a file's first bytes, for `loadAsync`
/// to take instead of parsing the header again: the URL → model path parses it once, as the
/// first chunk arrives. JS owns it until `loadAsync` takes it (or `free()`).
#[wasm_bindgen]
pub struct ParsedHeader {
    header: crate::gguf::GgufHeader,
    /// The file size it was parsed against.
    size: u64,
}

/// Check the start of a GGUF file of `size` bytes as soon as it arrives: `{complete: true,
/// architecture, name, n_tensors, version, header}` when the whole header is in `bytes`
/// (`header` a [`ParsedHeader`] for `loadAsync`), `{complete: false, need}` when the header
/// runs on, or throws `{code, message}` for a file that is not GGUF, is malformed, or is
/// shorter than its tensors need (truncated).
#[wasm_bindgen(js_name = checkGgufHeader)]
pub fn check_gguf_header(bytes: &[u8], size: f64) -> Result<JsValue, JsValue> {
    use crate::gguf::{parse_header, HeaderParse};
    match parse_header(bytes, Some(size as u64)).map_err(|e| to_js(e.into()))? {
        HeaderParse::Complete(h) => {
            let info = json_to_js(&json!({
                "complete": true,
                "version": h.version,
                "architecture": h.architecture().ok(),
                "name": h.model_name().ok().flatten(),
                "n_tensors": h.tensors.len(),
            }));
            let parsed = ParsedHeader {
                header: h,
                size: size as u64,
            };
            js_sys::Reflect::set(&info, &"header".into(), &parsed.into())?;
            Ok(info)
        }
        HeaderParse::NeedBytes(n) => Ok(json_to_js(&json!({"complete": false, "need": n}))),
    }
}
