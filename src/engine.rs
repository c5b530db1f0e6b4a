//! The engine: load a model from any byte source → tokenize → generate with streaming → text.
//!
//! Backend-agnostic at the API: the CPU forward pass or the WebGPU one runs it. The core is
//! async (`generate_async`) because GPU readbacks are awaited, never blocked on; natively
//! `generate` drives it to completion on the calling thread.
//!
//! Conversations do not start over: the engine keeps the KV cache of the last sequence it ran
//! (on the GPU it lives on the device; on the CPU the [`KvCache`] stays between calls) with
//! the token ids it holds, and a new prompt prefills only what follows the longest common
//! prefix ([`Generation::cached_tokens`]), as llama-server's `cache_prompt` does.
//!
//! GPU decoding is pipelined where the next step does not need the host to see the token
//! first: greedy decoding, and GPU sampling with 1 ≤ top_k ≤ [`GPU_TOP_K_MAX`] and
//! no penalties on a model without recurrent layers, both without a grammar. The step that
//! consumes token i (its embedding taken on the device, embed_token.wgsl) is submitted before
//! token i is read back, so the GPU runs it while the host waits for the 4 bytes, streams the
//! token and checks the stop conditions. A stop (end-of-generation token, stop string, the
//! callback's Stop) is seen one step late: that step's token is discarded, but its input was
//! the real last token, so its KV entry (and a recurrent state that consumed it) is valid and
//! the cache then holds that token too ([`Engine::cached_ids`]). `max_tokens` and the context's
//! end are known ahead and cost no extra step. Sampling's uniform numbers are drawn in the
//! same order as unpipelined, so outputs are unchanged; a token that `sample.wgsl` leaves to
//! the host (only when no logit is finite, given top_k ≤ 64) runs its step again unpipelined.
//! [`Engine::set_pipelining`] turns it off.

use crate::chat::{ChatMessage, ChatTemplate, RenderOptions, TemplateError};
use crate::constrain::{Constrainer, ConstraintCompiler, Grammar};
use crate::cpu::{CpuModel, Kernel, KvCache};
use crate::gguf::GgufHeader;
use crate::gpu::model::{GPU_TOP_K_MAX, SAMPLE_ON_HOST};
use crate::gpu::{GpuContext, GpuModel, GpuSampling, PendingToken};
use crate::sampling::{Sampler, SamplerConfig};
use crate::session::KvPrecision;
use crate::source::ByteSource;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Which compute backend runs the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    #[default]
    Cpu,
    /// WebGPU through wgpu (Vulkan/Metal/DX12 natively, the browser's WebGPU on wasm32).
    Gpu,
}

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub backend: Backend,
    /// CPU kernel (fast or the scalar reference).
    pub kernel: Kernel,
    /// Context size (default: the training context, at most 4096). The GPU backend allocates
    /// its KV cache once at load; the CPU backend grows its cache per request up to it.
    pub n_ctx: Option<usize>,
    /// What `backend: 'auto'` does before the GPU backend loads: decline software adapters,
    /// run the known-answer self-test and the timed probe ([`crate::backend_choice::vet`]).
    /// A declined adapter fails the load with a `gpu` error whose message is the reason, and
    /// the caller loads on the CPU instead. Off: the GPU is forced.
    pub vet_gpu: bool,
}

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Tokens to generate at most.
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Stop when the text contains any of these (the stop string itself is not emitted).
    pub stop: Vec<String>,
    /// Stop on end-of-generation tokens (`<|im_end|>`, `<eos>`, ...).
    pub stop_at_eog: bool,
    /// KV-cache size; default: prompt + max_tokens, capped by the training context.
    pub n_ctx: Option<usize>,
    /// Awaited after every generated token. A browser worker passes a future that yields to its
    /// event loop, so messages (a Stop) are handled between tokens even on the CPU backend.
    pub pause: Option<Pause>,
    /// Constrained decoding: the output follows this JSON schema, grammar or regex (see
    /// [`crate::constrain`]). The grammar is compiled before the prompt runs, so an unusable
    /// one is an error before any token is generated. `None` costs nothing.
    pub grammar: Option<Grammar>,
}

/// Makes the future [`GenerateOptions::pause`] awaits.
pub type Pause = fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 128,
            sampler: SamplerConfig::default(),
            stop: vec![],
            stop_at_eog: true,
            n_ctx: None,
            pause: None,
            grammar: None,
        }
    }
}

/// What the streaming callback sees for each generated token.
#[derive(Debug)]
pub struct TokenEvent<'a> {
    pub index: usize,
    pub id: u32,
    /// Text that became final with this token: whole UTF-8 characters only, and never part of
    /// a stop string. May be empty.
    pub text: &'a str,
}

/// The callback's answer: go on, or cancel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token, or a constrained output whose grammar is complete.
    Eog,
    /// A stop string (given).
    StopString(String),
    /// `max_tokens` reached.
    Length,
    /// The callback asked to stop.
    Cancelled,
}

#[derive(Clone, Debug)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    pub ids: Vec<u32>,
    pub text: String,
    pub finish: FinishReason,
    pub prompt_ms: f64,
    pub gen_ms: f64,
    /// Leading prompt tokens whose keys and values came from the previous request's cache
    /// (not prefilled again).
    pub cached_tokens: usize,
}

/// Milliseconds from an arbitrary origin (0 on wasm32 without a clock).
fn now_ms() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        static T0: OnceLock<std::time::Instant> = OnceLock::new();
        T0.get_or_init(std::time::Instant::now)
            .elapsed()
            .as_secs_f64()
            * 1e3
    }
    #[cfg(target_arch = "wasm32")]
    {
        0.0
    }
}

/// The loaded model: the forward pass of the backend in use ([`Backend`] is the choice).
enum LoadedModel {
    Cpu(Box<CpuModel>),
    Gpu(Box<GpuModel>),
}

pub struct Engine {
    pub header: GgufHeader,
    pub tokenizer: Tokenizer,
    template: std::result::Result<ChatTemplate, TemplateError>,
    model: LoadedModel,
    cfg: crate::model::Config,
    /// Adapter description on the GPU backend.
    adapter: Option<String>,
    /// What vetting the adapter found (`LoadOptions::vet_gpu`).
    gpu_vetting: Option<String>,
    /// llguidance's tables for this vocabulary, built at the first constrained request.
    constraint_compiler: Option<ConstraintCompiler>,
    /// The context size: the KV cache never holds more positions.
    n_ctx: usize,
    /// The last sequence's cache, reused by the next request's common prefix.
    session: Session,
    /// Reuse the common prefix (on by default; off, every request prefills its whole prompt).
    prefix_reuse: bool,
    /// Pipelined GPU decoding where it applies (on by default; see the module docs).
    pipelining: bool,
}

/// What the KV cache holds between requests.
#[derive(Default)]
struct Session {
    /// The ids at positions `0..ids.len()` of the cache, keys and values written.
    ids: Vec<u32>,
    /// The CPU backend's cache (the GPU backend's lives on the device).
    cpu: Option<KvCache>,
}

/// Length of the common prefix of `a` and `b`.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Drive a future to completion on this thread (natively: GPU readbacks poll the device).
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

/// On wasm32 nothing may block: run a future that finishes without waiting (the CPU backend's
/// never waits), or say that the caller needs the async API.
#[cfg(target_arch = "wasm32")]
fn run_now<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => Err(Error::InvalidRequest(
            "the GPU backend is asynchronous in the browser: use the *_async methods".into(),
        )),
    }
}

impl Engine {
    /// Load natively, blocking until the model is ready (the GPU backend included).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(src: &dyn ByteSource, opts: &LoadOptions) -> Result<Engine> {
        block_on(Self::load_async(src, opts))
    }

    /// Load with the CPU backend (no await point: usable from synchronous code on wasm32).
    #[cfg(target_arch = "wasm32")]
    pub fn load(src: &dyn ByteSource, opts: &LoadOptions) -> Result<Engine> {
        if opts.backend != Backend::Cpu {
            return Err(Error::InvalidRequest(
                "the GPU backend loads asynchronously: use Engine::load_async".into(),
            ));
        }
        let (header, model) = CpuModel::load(src, opts.kernel)?;
        Self::assemble(header, LoadedModel::Cpu(Box::new(model)), None, opts.n_ctx)
    }

    pub async fn load_async(src: &dyn ByteSource, opts: &LoadOptions) -> Result<Engine> {
        Self::load_async_with(src, None, opts).await
    }

    /// [`Engine::load_async`] with the header already parsed where the caller has it (the
    /// browser's download checks it as the first chunk arrives); else it is parsed here. Either
    /// way it is parsed once and passed down to the backend's loader.
    pub async fn load_async_with(
        src: &dyn ByteSource,
        header: Option<GgufHeader>,
        opts: &LoadOptions,
    ) -> Result<Engine> {
        let header = match header {
            Some(h) => h,
            None => crate::source::read_header(src)?,
        };
        let cfg = crate::model::Config::from_header(&header)?;
        // A context size the model cannot take is an error before any weight is read.
        context_size(&cfg, opts.n_ctx)?;
        match opts.backend {
            Backend::Cpu => {
                let model = CpuModel::load_parsed(&header, cfg, src, opts.kernel)?;
                Self::assemble(header, LoadedModel::Cpu(Box::new(model)), None, opts.n_ctx)
            }
            Backend::Gpu => {
                // What the GPU forward pass lacks, by name, before a device starts; under
                // `auto` (vet_gpu) a `gpu` error, on which the browser falls back to the CPU.
                if let Some(gap) = cfg.gpu_unsupported() {
                    return Err(match opts.vet_gpu {
                        true => crate::gpu::GpuError::Unsuitable(gap).into(),
                        false => Error::UnsupportedModel(gap),
                    });
                }
                let n_ctx = context_size(&cfg, opts.n_ctx)?;
                let ctx = GpuContext::new().await?;
                let adapter = ctx.describe();
                let vetting = match opts.vet_gpu {
                    true => Some(crate::backend_choice::vet(&ctx, &header).await?.summary()),
                    false => None,
                };
                let gpu = GpuModel::load_parsed(ctx, &header, cfg, src, n_ctx)?;
                let model = LoadedModel::Gpu(Box::new(gpu));
                let mut e = Self::assemble(header, model, Some(adapter), None)?;
                e.gpu_vetting = vetting;
                Ok(e)
            }
        }
    }

    fn assemble(
        header: GgufHeader,
        model: LoadedModel,
        adapter: Option<String>,
        n_ctx: Option<usize>,
    ) -> Result<Engine> {
        let tokenizer = Tokenizer::from_gguf(&header)?;
        let template = ChatTemplate::from_gguf(&header);
        let (cfg, n_ctx) = match &model {
            // The CPU cache grows per request: by default up to the training context.
            LoadedModel::Cpu(m) => (
                m.cfg.clone(),
                context_size(&m.cfg, n_ctx.or(Some(m.cfg.n_ctx_train.max(1))))?,
            ),
            LoadedModel::Gpu(m) => (m.cfg.clone(), m.n_ctx),
        };
        Ok(Engine {
            header,
            tokenizer,
            template,
            model,
            cfg,
            adapter,
            gpu_vetting: None,
            constraint_compiler: None,
            n_ctx,
            session: Session::default(),
            prefix_reuse: true,
            pipelining: true,
        })
    }

    /// The context size (positions the KV cache can hold), fixed at load.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Switch reusing the previous request's common prefix on or off (off: every request
    /// prefills its whole prompt, as a fresh engine would).
    pub fn set_prefix_reuse(&mut self, on: bool) {
        self.prefix_reuse = on;
        if !on {
            self.forget_prefix();
        }
    }

    /// Switch pipelined GPU decoding on (the default) or off (each step waits for the previous
    /// token on the host); see the module docs. Outputs are the same either way.
    pub fn set_pipelining(&mut self, on: bool) {
        self.pipelining = on;
    }

    /// Drop what the cache holds: the next request prefills its whole prompt.
    pub fn forget_prefix(&mut self) {
        self.session.ids.clear();
    }

    /// The ids whose keys and values the cache holds (a later prompt that starts with them
    /// prefills only the rest).
    pub fn cached_ids(&self) -> &[u32] {
        &self.session.ids
    }

    /// SHA-256 of the model's description: what a saved session is checked against.
    pub fn model_fingerprint(&self) -> [u8; 32] {
        crate::session::model_fingerprint(&self.header)
    }

    /// Values per position of each layer's cache: (keys, values).
    fn kv_widths(&self) -> Vec<(usize, usize)> {
        match &self.model {
            LoadedModel::Cpu(m) => m
                .cfg
                .layers
                .iter()
                .map(|l| (l.kv_dim(), l.v_dim()))
                .collect(),
            LoadedModel::Gpu(m) => m.kv_widths(),
        }
    }

    /// The cache of the last sequence as a saved session ([`crate::session`]): the ids it
    /// holds and their keys and values, in `precision`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save_session(&self, precision: KvPrecision) -> Result<Vec<u8>> {
        block_on(self.save_session_async(precision))
    }

    /// As [`Engine::save_session`]; on the GPU the cache is read back from the device.
    pub async fn save_session_async(&self, precision: KvPrecision) -> Result<Vec<u8>> {
        let ids = &self.session.ids;
        let n = ids.len();
        let kv = match (&self.model, &self.session.cpu) {
            (LoadedModel::Gpu(m), _) => m.read_kv(n).await?,
            (LoadedModel::Cpu(_), Some(c)) => c.snapshot(n)?,
            (LoadedModel::Cpu(_), None) => crate::session::KvLayers {
                precision: KvPrecision::F32,
                layers: vec![(Vec::new(), Vec::new()); self.cfg.layers.len()],
                states: self
                    .cfg
                    .state_lens()
                    .iter()
                    .map(|&n| vec![0.0; n])
                    .collect(),
            },
        };
        let widths = self.kv_widths();
        let fp = self.model_fingerprint();
        Ok(crate::session::encode(&fp, ids, &widths, kv, precision))
    }

    /// Restores a saved session: the cache holds its ids again, so the next prompt that
    /// starts with them prefills only the rest. Everything is checked first (checksum, model,
    /// sizes); a session that does not fit is an error that leaves the cache as it was.
    /// Returns the number of positions restored.
    pub fn restore_session(&mut self, bytes: &[u8]) -> Result<usize> {
        let s = crate::session::decode(
            bytes,
            &self.model_fingerprint(),
            &self.kv_widths(),
            &self.cfg.state_lens(),
        )?;
        let n = s.ids.len();
        if n > self.n_ctx {
            return Err(Error::ContextFull {
                needed: n,
                n_ctx: self.n_ctx,
            });
        }
        if let Some(&id) = s.ids.iter().find(|&&t| t as usize >= self.cfg.n_vocab) {
            return Err(Error::TokenOutOfRange {
                id,
                n_vocab: self.cfg.n_vocab,
            });
        }
        // What the cache held is overwritten from here on.
        self.session.ids.clear();
        match &mut self.model {
            LoadedModel::Cpu(m) => match &mut self.session.cpu {
                Some(c) => c.restore(&s.kv, n)?,
                None => {
                    let mut c = KvCache::try_new(&m.cfg, n.max(1))?;
                    c.restore(&s.kv, n)?;
                    self.session.cpu = Some(c);
                }
            },
            LoadedModel::Gpu(m) => m.write_kv(s.kv, n)?,
        }
        self.session.ids = s.ids;
        Ok(n)
    }

    /// Bytes of the KV cache (the CPU's as allocated so far; the GPU's at load).
    pub fn kv_bytes(&self) -> usize {
        match &self.model {
            LoadedModel::Cpu(_) => self.session.cpu.as_ref().map_or(0, KvCache::bytes),
            LoadedModel::Gpu(m) => m.kv_bytes(),
        }
    }

    pub fn config(&self) -> &crate::model::Config {
        &self.cfg
    }

    pub fn backend(&self) -> Backend {
        match self.model {
            LoadedModel::Cpu(_) => Backend::Cpu,
            LoadedModel::Gpu(_) => Backend::Gpu,
        }
    }

    /// The CPU forward pass, when that is the backend (the batched server steps it directly).
    pub fn cpu_model(&self) -> Option<&CpuModel> {
        match &self.model {
            LoadedModel::Cpu(m) => Some(m),
            LoadedModel::Gpu(_) => None,
        }
    }

    /// The GPU forward pass, when that is the backend: its counters show the pipelining, and
    /// the batched server prefills and steps its slots through it ([`crate::gpu::GpuBatch`]).
    pub fn gpu_model(&self) -> Option<&GpuModel> {
        match &self.model {
            LoadedModel::Gpu(m) => Some(m),
            LoadedModel::Cpu(_) => None,
        }
    }

    /// What vetting the GPU adapter found before loading (`LoadOptions::vet_gpu`), if it ran.
    pub fn gpu_vetting(&self) -> Option<&str> {
        self.gpu_vetting.as_deref()
    }

    /// The GPU adapter in use (name, backend, features), if any.
    pub fn adapter(&self) -> Option<&str> {
        self.adapter.as_deref()
    }

    /// Token ids of `text`; `add_special` adds BOS/EOS per the metadata, `parse_special` turns
    /// special-token texts into their tokens.
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode(text, add_special, parse_special)?)
    }

    /// The model's chat template (an error if it has none).
    pub fn chat_template(&self) -> Result<&ChatTemplate> {
        self.template
            .as_ref()
            .map_err(|e| Error::Template(e.clone()))
    }

    /// The rendered chat prompt, as llama.cpp would feed it (a leading BOS text removed when the
    /// tokenizer adds BOS itself).
    pub fn render_chat(&self, messages: &[ChatMessage], opts: &RenderOptions) -> Result<String> {
        let v = self.tokenizer.vocab();
        Ok(self
            .chat_template()?
            .render_prompt(messages, opts, v.add_bos(), v.add_eos())?)
    }

    /// Prompt ids of a conversation: rendered, then tokenized with special tokens parsed.
    pub fn chat_prompt_ids(
        &self,
        messages: &[ChatMessage],
        opts: &RenderOptions,
    ) -> Result<Vec<u32>> {
        let text = self.render_chat(messages, opts)?;
        self.tokenize(&text, true, true)
    }

    /// Compiles a grammar for this model's vocabulary (errors name what is unusable). The
    /// vocabulary tables are built on the first call and kept.
    pub fn compile_grammar(&mut self, grammar: &Grammar) -> Result<Constrainer> {
        let compiler = match self.constraint_compiler.take() {
            Some(c) => c,
            None => {
                let env = crate::constrain::token_env(&self.tokenizer, self.cfg.n_vocab)?;
                ConstraintCompiler::new(&env)?
            }
        };
        let compiled = compiler.compile(grammar);
        self.constraint_compiler = Some(compiler);
        Ok(compiled?)
    }

    /// Last-position logits of `prompt` (a fresh context).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn logits(&mut self, prompt: &[u32]) -> Result<Vec<f32>> {
        block_on(self.logits_async(prompt))
    }

    #[cfg(target_arch = "wasm32")]
    pub fn logits(&mut self, prompt: &[u32]) -> Result<Vec<f32>> {
        run_now(self.logits_async(prompt))
    }

    pub async fn logits_async(&mut self, prompt: &[u32]) -> Result<Vec<f32>> {
        // On the GPU this overwrites the device's cache from position 0.
        self.forget_prefix();
        let mut cache = self.new_cache(prompt.len().max(1))?;
        self.forward(prompt, 0, &mut cache).await
    }

    fn new_cache(&self, n_ctx: usize) -> Result<Option<KvCache>> {
        match &self.model {
            LoadedModel::Cpu(m) => KvCache::try_new(&m.cfg, n_ctx).map(Some),
            LoadedModel::Gpu(_) => Ok(None),
        }
    }

    /// Logits of the last of `tokens`, run at `pos..`.
    async fn forward(
        &mut self,
        tokens: &[u32],
        pos: usize,
        cache: &mut Option<KvCache>,
    ) -> Result<Vec<f32>> {
        run_forward(&mut self.model, tokens, pos, cache).await
    }
}

/// The default context size cap: a GPU allocates the whole cache at load.
const DEFAULT_N_CTX: usize = 4096;

/// The context size for `requested` (default: the training context, at most 4096), checked
/// against the model.
fn context_size(cfg: &crate::model::Config, requested: Option<usize>) -> Result<usize> {
    let n_train = cfg.n_ctx_train.max(1);
    match requested {
        None => Ok(n_train.min(DEFAULT_N_CTX)),
        Some(0) => Err(Error::InvalidRequest("n_ctx must be at least 1".into())),
        Some(n) if n > n_train => Err(Error::InvalidRequest(format!(
            "n_ctx {n} is larger than the model's training context of {n_train} tokens"
        ))),
        Some(n) => Ok(n),
    }
}

async fn run_forward(
    model: &mut LoadedModel,
    tokens: &[u32],
    pos: usize,
    cache: &mut Option<KvCache>,
) -> Result<Vec<f32>> {
    match (model, cache) {
        (LoadedModel::Cpu(m), Some(c)) => m.forward(tokens, pos, c),
        (LoadedModel::Gpu(m), _) => m.forward(tokens, pos).await,
        (LoadedModel::Cpu(_), None) => Err(Error::InvalidRequest("no KV cache".into())),
    }
}

/// One decode step that returns the greedy token: on the GPU the arg-max is taken there and
/// only 4 bytes come back.
async fn step_greedy(
    model: &mut LoadedModel,
    token: u32,
    pos: usize,
    cache: &mut Option<KvCache>,
) -> Result<u32> {
    match model {
        LoadedModel::Gpu(m) => m.step_argmax(token, pos).await,
        LoadedModel::Cpu(_) => {
            let l = run_forward(model, &[token], pos, cache).await?;
            Ok(crate::sampling::argmax(&l) as u32)
        }
    }
}

impl Engine {
    /// Generate after `prompt`, streaming each token through `on_token` (natively, blocking).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn generate(
        &mut self,
        prompt: &[u32],
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(&TokenEvent) -> Control,
    ) -> Result<Generation> {
        block_on(self.generate_async(prompt, opts, on_token))
    }

    /// Generate with the CPU backend (wasm32: synchronous calls cannot wait for a GPU).
    #[cfg(target_arch = "wasm32")]
    pub fn generate(
        &mut self,
        prompt: &[u32],
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(&TokenEvent) -> Control,
    ) -> Result<Generation> {
        run_now(self.generate_async(prompt, opts, on_token))
    }

    /// The context a request of `prompt_len` tokens runs in: the GPU's allocated cache; on the
    /// CPU `opts.n_ctx`, by default prompt + `max_tokens`, within the load's context size.
    pub fn request_n_ctx(&self, prompt_len: usize, opts: &GenerateOptions) -> usize {
        match &self.model {
            LoadedModel::Gpu(m) => m.n_ctx,
            LoadedModel::Cpu(_) => opts
                .n_ctx
                .unwrap_or(prompt_len.saturating_add(opts.max_tokens).min(self.n_ctx)),
        }
    }

    /// Generate after `prompt`, streaming each token through `on_token`.
    pub async fn generate_async(
        &mut self,
        prompt: &[u32],
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(&TokenEvent) -> Control,
    ) -> Result<Generation> {
        if prompt.is_empty() {
            return Err(Error::InvalidRequest("the prompt is empty".into()));
        }
        let n_ctx = self.request_n_ctx(prompt.len(), opts);
        if prompt.len() >= n_ctx {
            return Err(Error::ContextFull {
                needed: prompt.len() + 1,
                n_ctx,
            });
        }
        let mut constraint = match &opts.grammar {
            Some(g) => Some(self.compile_grammar(g)?),
            None => None,
        };
        if let LoadedModel::Gpu(m) = &mut self.model {
            m.set_token_mask(None)?;
        }
        // Keep the common prefix of what the cache holds (at least the last prompt token runs
        // again: its logits start generation).
        let session = &mut self.session;
        let mut cached = if self.prefix_reuse {
            common_prefix(&session.ids, prompt).min(prompt.len() - 1)
        } else {
            0
        };
        if let LoadedModel::Cpu(m) = &self.model {
            match &mut session.cpu {
                Some(c) => c.try_grow(n_ctx)?,
                None => session.cpu = Some(KvCache::try_new(&m.cfg, n_ctx)?),
            }
            // A recurrent state resumes where it stands or from a checkpoint.
            if let Some(c) = &session.cpu {
                cached = c.resume_point(cached);
            }
        }
        if let LoadedModel::Gpu(m) = &self.model {
            cached = m.resume_point(cached);
        }
        session.ids.truncate(cached);
        let cache = &mut session.cpu;
        let fresh = &prompt[cached..];
        let mut sampler = Sampler::new(opts.sampler.clone());
        // Greedy without penalties needs no logits on the host: on the GPU a step reads back 4 bytes.
        let c = &opts.sampler;
        let greedy = c.temperature <= 0.0
            && c.repeat_penalty == 1.0
            && c.presence_penalty == 0.0
            && c.frequency_penalty == 0.0;
        // Pipelined GPU decoding (module docs): greedy, or sampling that the GPU always decides
        // (top_k within its candidates) without penalties, whose history needs the host, and
        // not on a recurrent model (a step run again would need its state back); never with a
        // grammar, whose next mask needs the token.
        let pipe = match &self.model {
            LoadedModel::Gpu(m) if self.pipelining && constraint.is_none() => {
                if greedy {
                    Pipe::Greedy
                } else if (1..=GPU_TOP_K_MAX).contains(&c.top_k)
                    && c.temperature > 0.0
                    && !GpuSampling::new(c, 0.0).has_penalties()
                    && !m.has_recurrent()
                {
                    Pipe::Sample
                } else {
                    Pipe::Off
                }
            }
            _ => Pipe::Off,
        };
        // The submitted step that consumes the token in hand (`next`), with its sampling
        // settings: its own token is still on the device.
        let mut ahead: Option<(PendingToken, GpuSampling)> = None;
        let mut history = prompt.to_vec();
        let mut out = Generation {
            prompt_ids: prompt.to_vec(),
            ids: vec![],
            text: String::new(),
            finish: FinishReason::Length,
            prompt_ms: 0.0,
            gen_ms: 0.0,
            cached_tokens: cached,
        };
        let t0 = now_ms();
        // The first token obeys the constraint too: on the GPU its mask is applied after the
        // prefill's head (whose logits are the last position's row), on the CPU to the logits.
        let first_mask = match &mut constraint {
            Some(c) => Some(c.mask()?),
            None => None,
        };
        if let (Some(mask), LoadedModel::Gpu(m)) = (first_mask, &mut self.model) {
            m.set_token_mask(Some(mask))?;
        }
        // On the GPU, a recurrent state is checkpointed before the prompt's last token (as
        // `CpuModel::prefill` does on the CPU): the rest of the prompt runs first.
        let (mut gpu_tokens, mut gpu_pos) = (fresh, cached);
        if let LoadedModel::Gpu(m) = &mut self.model {
            if m.has_recurrent() {
                let (head, last) = fresh.split_at(fresh.len() - 1);
                if head.is_empty() {
                    m.rewind(cached)?;
                } else {
                    m.run(head, cached)?;
                }
                m.checkpoint();
                (gpu_tokens, gpu_pos) = (last, cached + head.len());
            }
        }
        let mut next = match &mut self.model {
            LoadedModel::Gpu(m) if pipe != Pipe::Off => {
                // The prompt, then (when a first decode step will run) that step from the
                // token on the device, then the first token's readback.
                let s = pipe.settings(c, &mut sampler);
                let first = match pipe {
                    Pipe::Sample => m.submit_sample(gpu_tokens, gpu_pos, &s, &history)?,
                    _ => m.submit_argmax(gpu_tokens, gpu_pos)?,
                };
                let pos = prompt.len();
                if opts.max_tokens > 1 && pos < n_ctx {
                    ahead = Some(pipe.submit(m, pos, c, &mut sampler)?);
                }
                match m.read_token(first).await? {
                    SAMPLE_ON_HOST => {
                        // The step queued behind embedded nothing: run the prompt's last
                        // batch again, unpipelined (the host samples its logits).
                        ahead = None;
                        m.forward_sample(gpu_tokens, gpu_pos, &s, &history).await?
                    }
                    id => id,
                }
            }
            // On the GPU the first token is taken there too: 4 bytes come back, not the logits.
            LoadedModel::Gpu(m) if greedy => m.forward_argmax(gpu_tokens, gpu_pos).await?,
            LoadedModel::Gpu(m) => {
                let u = if c.temperature > 0.0 {
                    sampler.next_uniform()
                } else {
                    0.0
                };
                let s = crate::gpu::GpuSampling::new(c, u);
                m.forward_sample(gpu_tokens, gpu_pos, &s, &history).await?
            }
            LoadedModel::Cpu(m) => {
                let c = cache
                    .as_mut()
                    .ok_or_else(|| Error::InvalidRequest("no KV cache".into()))?;
                let mut logits = m.prefill(fresh, cached, c)?;
                if let Some(mask) = first_mask {
                    crate::sampling::apply_token_mask(&mut logits, mask);
                }
                sampler.sample(&mut logits, &history)
            }
        };
        session.ids = prompt.to_vec();
        out.prompt_ms = now_ms() - t0;
        let t1 = now_ms();
        let tokenizer = &self.tokenizer;
        let mut decoder = tokenizer.stream_decoder(false);
        let mut stops = StopMatcher::new(&opts.stop);
        for i in 0..opts.max_tokens {
            let id = next;
            history.push(id);
            out.ids.push(id);
            if opts.stop_at_eog && tokenizer.vocab().is_eog(id) {
                out.finish = FinishReason::Eog;
                // Flush what was held back for stop strings: no stop string can complete now.
                let tail = stops.flush(&decoder.finish());
                out.text.push_str(&tail);
                on_token(&TokenEvent {
                    index: i,
                    id,
                    text: &tail,
                });
                break;
            }
            if let Some(c) = &mut constraint {
                c.commit(id)?;
            }
            let piece = decoder.push(id)?;
            if let Some(pause) = opts.pause {
                // Before the callback, so a Stop that arrived meanwhile is seen at once.
                pause().await;
            }
            let (emit, hit) = stops.push(&piece);
            out.text.push_str(&emit);
            let control = on_token(&TokenEvent {
                index: i,
                id,
                text: &emit,
            });
            if let Some(s) = hit {
                out.finish = FinishReason::StopString(s);
                break;
            }
            if control == Control::Stop {
                out.finish = FinishReason::Cancelled;
                break;
            }
            let pos = prompt.len() + i;
            let complete = constraint.as_ref().is_some_and(Constrainer::is_done);
            if complete {
                out.finish = FinishReason::Eog;
            }
            if complete || i + 1 == opts.max_tokens || pos + 1 > n_ctx {
                let tail = stops.flush(&decoder.finish());
                out.text.push_str(&tail);
                if !tail.is_empty() {
                    on_token(&TokenEvent {
                        index: i,
                        id,
                        text: &tail,
                    });
                }
                break;
            }
            let mask = match &mut constraint {
                Some(c) => Some(c.mask()?),
                None => None,
            };
            if let (Some(mask), LoadedModel::Gpu(m)) = (mask, &mut self.model) {
                // Applied on the GPU before argmax.wgsl / sample.wgsl (a 4-byte readback still).
                m.set_token_mask(Some(mask))?;
            }
            next = if let (Pipe::Greedy | Pipe::Sample, LoadedModel::Gpu(m)) =
                (pipe, &mut self.model)
            {
                // The step consuming `id` is submitted (now, if it was not yet); the one after
                // it goes in before `id`'s successor is read back.
                let (p, s) = match ahead.take() {
                    Some(a) => a,
                    None => {
                        let s = pipe.settings(c, &mut sampler);
                        let p = match pipe {
                            Pipe::Sample => m.submit_sample(&[id], pos, &s, &history)?,
                            _ => m.submit_argmax(&[id], pos)?,
                        };
                        (p, s)
                    }
                };
                if i + 2 < opts.max_tokens && pos + 1 < n_ctx {
                    ahead = Some(pipe.submit(m, pos + 1, c, &mut sampler)?);
                }
                match m.read_token(p).await? {
                    SAMPLE_ON_HOST => {
                        ahead = None;
                        m.step_sample(id, pos, &s, &history).await?
                    }
                    t => t,
                }
            } else if let (Some(mask), LoadedModel::Cpu(_)) = (mask, &self.model) {
                let mut l = run_forward(&mut self.model, &[id], pos, cache).await?;
                crate::sampling::apply_token_mask(&mut l, mask);
                sampler.sample(&mut l, &history)
            } else if greedy {
                step_greedy(&mut self.model, id, pos, cache).await?
            } else if let LoadedModel::Gpu(m) = &mut self.model {
                // Penalties and sampling on the GPU, on the sampler's seeded stream (one
                // uniform number per token when the temperature is above 0, as `Sampler`
                // draws): a 4-byte readback.
                let u = if c.temperature > 0.0 {
                    sampler.next_uniform()
                } else {
                    0.0
                };
                let s = crate::gpu::GpuSampling::new(c, u);
                m.step_sample(id, pos, &s, &history).await?
            } else {
                let mut l = run_forward(&mut self.model, &[id], pos, cache).await?;
                sampler.sample(&mut l, &history)
            };
            // `id` is in the cache now (a Stop later leaves every such token valid).
            session.ids.push(id);
        }
        if let (Some(_), Some(&id)) = (&ahead, out.ids.last()) {
            // The step after the stop ran (pipelined): its input, the last token, is cached.
            session.ids.push(id);
        }
        out.gen_ms = now_ms() - t1;
        if let LoadedModel::Gpu(m) = &mut self.model {
            m.set_token_mask(None)?;
        }
        Ok(out)
    }
}

/// Which pipelined GPU decoding a request runs (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pipe {
    Off,
    Greedy,
    Sample,
}

impl Pipe {
    /// The settings of the next sampling step, its uniform number drawn now (greedy: unused).
    fn settings(self, c: &SamplerConfig, sampler: &mut Sampler) -> GpuSampling {
        let u = if self == Pipe::Sample {
            sampler.next_uniform()
        } else {
            0.0
        };
        GpuSampling::new(c, u)
    }

    /// Submit the step at `pos` that consumes the token the last step left on the device.
    fn submit(
        self,
        m: &mut GpuModel,
        pos: usize,
        c: &SamplerConfig,
        sampler: &mut Sampler,
    ) -> Result<(PendingToken, GpuSampling)> {
        let s = self.settings(c, sampler);
        let p = m.submit_from_device(pos, (self == Pipe::Sample).then_some(&s))?;
        Ok((p, s))
    }
}

/// Holds back text that could be the start of a stop string, so streamed text never shows
/// part of one.
pub(crate) struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

impl StopMatcher {
    pub(crate) fn new(stops: &[String]) -> Self {
        StopMatcher {
            stops: stops.to_vec(),
            pending: String::new(),
        }
    }

    /// Add text; returns (text safe to emit, the stop string hit if any).
    pub(crate) fn push(&mut self, text: &str) -> (String, Option<String>) {
        self.pending.push_str(text);
        let stops = self.stops.iter().filter(|s| !s.is_empty());
        // The earliest complete stop string wins.
        if let Some((at, s)) = stops
            .clone()
            .filter_map(|s| self.pending.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, _)| *at)
        {
            let emit = self.pending[..at].to_owned();
            self.pending.clear();
            return (emit, Some(s.clone()));
        }
        // Keep the longest suffix that is a prefix of some stop string.
        let mut keep = 0;
        for s in stops {
            for (i, _) in self.pending.char_indices() {
                let suffix = &self.pending[i..];
                if suffix.len() > keep && s.starts_with(suffix) {
                    keep = suffix.len();
                }
            }
        }
        let cut = self.pending.len() - keep;
        let emit = self.pending[..cut].to_owned();
        self.pending.drain(..cut);
        (emit, None)
    }

    /// End of generation: everything pending (plus `more`) is final.
    pub(crate) fn flush(&mut self, more: &str) -> String {
        let mut s = std::mem::take(&mut self.pending);
        s.push_str(more);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::StopMatcher;

    #[test]
    fn stop_strings_are_held_back_and_cut() {
        let stops = vec!["\nUser:".to_string(), "END".to_string()];
        let mut m = StopMatcher::new(&stops);
        assert_eq!(m.push("Hello"), ("Hello".into(), None));
        assert_eq!(m.push(" wor"), (" wor".into(), None));
        assert_eq!(m.push("ld\nUs"), ("ld".into(), None));
        assert_eq!(m.push("er: hi"), ("".into(), Some("\nUser:".into())));
        let mut m = StopMatcher::new(&stops);
        assert_eq!(m.push("EN"), ("".into(), None));
        assert_eq!(m.push("x"), ("ENx".into(), None));
        assert_eq!(m.push("E"), ("".into(), None));
        assert_eq!(m.flush(""), "E");
    }
}
