//! The forward pass on the GPU: one command submission per step, a step being one decode token
//! or a batch of up to `max_batch` prompt tokens (batched prefill: workgroup z of every layer
//! kernel is the token, attention is causal within the batch).
//!
//! Everything is created once at load: weights (still quantized), activations (`max_batch` rows),
//! the KV cache (f32, or f16 pairs with [`GpuContext::with_kv_f16`]), parameter buffers,
//! pipelines and bind groups, and the list of dispatches of one step. A step only writes its few
//! per-token parameters (`queue.write_buffer`: the tokens' embedding rows, RoPE cos/sin, the
//! attention span), encodes the recorded dispatches and submits once. Attention is single-pass
//! below `split_attention_from` cached positions and split-K above. Greedy decoding takes the
//! argmax on the GPU and sampling (`penalties.wgsl` then `sample.wgsl`: penalties, top-k, top-p,
//! min-p, temperature) draws on the GPU, both reading back 4 bytes. Matrix products run
//! matvec.wgsl for a decode step and matmat.wgsl (each weight read once per tile of 8 tokens)
//! for a prefill batch. A decode step runs the fused kernels of [`fused`] instead (5 dispatches a
//! layer where the architecture allows), a prefill batch the unfused ones through matmat.wgsl.
//!
//! Pipelined decode: [`GpuModel::submit_argmax`] / [`GpuModel::submit_sample`] leave the chosen
//! token on the device (`acts.token`) and [`GpuModel::submit_from_device`] queues the next step
//! from it (embed_token.wgsl reads the id there, one dispatch per chunk of token_embd) before
//! [`GpuModel::read_token`] brings the first back, so the GPU works while the host waits. The
//! readbacks alternate between two staging buffers (two tokens may be outstanding) and natively
//! wait for their own submission only. [`DecodeCounters`] count submissions and readbacks. The
//! engine decides when the next step may go ahead of the token (see [`crate::engine`]).
//!
//! Every family of [`crate::model::Config`] runs here: per-layer head sizes, KV heads, FFN
//! widths and rotary tables (Gemma 4's sliding and full layers, SmolLM3's layers without RoPE,
//! Phi-3's partial rotary and attn_factor), the weightless V norm, Granite's residual and logit
//! multipliers (folded into add.wgsl and matvec_fused.wgsl), Gemma 4's layer output scale and
//! final soft-cap (softcap.wgsl). Buffers are sized for the widest layer.
//!
//! Files by concern: `sampling` (the sampling settings and one-off sampling runs), `dispatch`
//! (recorded dispatches, matrix-product dispatch lists, encoding), [`fused`] (the fused decode
//! kernels' dispatches), `record` (building a model: buffers and the recorded dispatches),
//! `step` (one submission), `kv` (the KV cache's contents out and in, for saved sessions),
//! `loading` (weights uploaded or streamed from a GGUF source), `recurrent` (a hybrid's
//! recurrent state and its checkpoints), `batch` ([`GpuBatch`]: per-slot KV caches and the
//! batched decode step of independent sequences, for the server's continuous batching).

mod batch;
mod dispatch;
pub mod fused;
mod kv;
mod loading;
mod record;
mod recurrent;
mod sampling;
mod step;

// The benchmarks and the native tests use these; the browser build does not.
pub use batch::{BatchToken, GpuBatch};
#[cfg_attr(target_arch = "wasm32", allow(unused_imports))]
pub(crate) use dispatch::{
    encode, encode_batch, matmat_dispatches, matvec_dispatches, matvec_dispatches_rows,
};
pub use dispatch::{matmat_once, matvec_once, matvec_rows};
pub use sampling::{penalties_once, sample_once, GpuSampling, GPU_TOP_K_MAX, SAMPLE_ON_HOST};

use super::kernels::{PipelineKey, Shader};
use super::token_mask::TokenMask;
use super::uniforms::AttentionParams;
use super::{GpuContext, GpuMatrix};
use crate::model::{Config, ModelWeights};
use crate::{Error, Result};
pub(crate) use dispatch::make_dispatch;
pub use dispatch::Dispatch;

/// What a step reads back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Readback {
    None,
    Logits,
    Argmax,
    Sample,
}

/// Where a step's input tokens come from.
#[derive(Clone, Copy)]
enum Input<'a> {
    /// Token ids the host knows (a prompt batch, or a decode token read back).
    Host(&'a [u32]),
    /// One token: the one the previous step chose on the device (`acts.token`), not read back
    /// yet (embed_token.wgsl).
    Device,
}

/// A token that a submitted step chose on the device, not read back yet: see
/// [`GpuModel::read_token`]. Two may be outstanding at once (two staging buffers).
#[must_use = "the token is only known once read back"]
pub struct PendingToken {
    /// The step's number among the steps that chose a token; its staging buffer is `seq % 2`.
    seq: u64,
    submission: Option<wgpu::SubmissionIndex>,
}

/// Counts over steps since the model was built (or [`GpuModel::reset_counters`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeCounters {
    /// Command submissions of steps (a recurrent state's copies not counted).
    pub submissions: usize,
    /// Steps whose input token came from the device (pipelined decode).
    pub device_token_steps: usize,
    /// Chosen tokens read back (4 bytes each).
    pub token_readbacks: usize,
    /// Of those, the reads made while a later step was already submitted: the GPU had the
    /// next step queued while the host waited for this token.
    pub overlapped_readbacks: usize,
}

/// What one step encoded: compute dispatches, command submissions and buffer copies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepStats {
    pub dispatches: usize,
    pub submissions: usize,
    pub copies: usize,
}

/// Activation buffers (f32) of up to `max_batch` tokens, token-major: each row as listed, for
/// the widest layer.
struct Acts {
    x: wgpu::Buffer,        // (n_embd) residual stream
    h: wgpu::Buffer,        // (n_embd) normed input of a block
    q_raw: wgpu::Buffer,    // (n_head·head_dim) before the Q norm (Gemma 3/4, Qwen3)
    k_raw: wgpu::Buffer,    // (n_head_kv·head_dim) before the K norm
    v_raw: wgpu::Buffer,    // (n_head_kv·head_dim_v) before the V norm (Gemma 4)
    q: wgpu::Buffer,        // (n_head·head_dim)
    k: wgpu::Buffer,        // (n_head_kv·head_dim)
    v: wgpu::Buffer,        // (n_head_kv·head_dim_v)
    att: wgpu::Buffer,      // (n_head·head_dim_v)
    proj: wgpu::Buffer,     // (n_embd) output of a block
    proj_n: wgpu::Buffer,   // (n_embd) after a post-norm
    gate: wgpu::Buffer,     // (n_ff)
    up: wgpu::Buffer,       // (n_ff)
    scores: wgpu::Buffer,   // (n_head, n_ctx)
    part: wgpu::Buffer,     // (n_head, n_split, 2 + head_dim_v) split-K partials
    conv_in: wgpu::Buffer,  // (3·n_embd) LFM2's in_proj output: B, C, x
    conv_out: wgpu::Buffer, // (n_embd) its short convolution's output
    q_gated: wgpu::Buffer,  // (2·n_head·head_dim) Qwen3.5's queries and output gates
    out_gate: wgpu::Buffer, // (n_head·head_dim) the gates, then the gated attention output
    dn_qkv: wgpu::Buffer,   // (conv_dim) Qwen3.5's delta-net Q, K, V before the convolution
    dn_conv: wgpu::Buffer,  // (conv_dim) after it
    dn_z: wgpu::Buffer,     // (H_v·S) the output gate
    dn_beta: wgpu::Buffer,  // (H_v)
    dn_alpha: wgpu::Buffer, // (H_v)
    dn_out: wgpu::Buffer,   // (H_v·S) the gated, normed output
    last: wgpu::Buffer,     // (n_embd) the residual stream of the batch's last token (1 row)
    logits: wgpu::Buffer,   // (n_vocab) (1 row)
    token: wgpu::Buffer,    // (1) argmax
}

/// A model on the GPU, ready to decode.
pub struct GpuModel {
    pub ctx: GpuContext,
    pub cfg: Config,
    pub n_ctx: usize,
    /// Most tokens one submission runs (prompts are cut into batches of this size); see
    /// [`GpuModel::limit_batch`].
    pub max_batch: usize,
    /// The batch the activation buffers hold.
    alloc_batch: usize,
    /// Attention runs split-K (attention_split + attention_combine) once a step's last position
    /// reaches this many cached positions, single-pass (attention.wgsl) below.
    pub split_attention_from: usize,
    token_embd: GpuMatrix,
    embd_pipeline: wgpu::ComputePipeline,
    /// Per token of a batch: the embedding parameters, and a bind group per chunk.
    embd_params: Vec<wgpu::Buffer>,
    embd_groups: Vec<Vec<wgpu::BindGroup>>,
    /// The embedding of the token on the device (pipelined decode): one bind group per chunk.
    embd_token_pipeline: wgpu::ComputePipeline,
    embd_token_groups: Vec<wgpu::BindGroup>,
    /// The layers' dispatches, in order.
    layers: Vec<Dispatch>,
    /// Output norm and logits.
    head: Vec<Dispatch>,
    argmax: Dispatch,
    sample: Dispatch,
    sample_params: wgpu::Buffer,
    /// Penalties before sampling: the dispatch, its (id, count) pairs buffer and its capacity
    /// in pairs (grown on demand), its parameters, and whether the next sample step runs it.
    penalties: Dispatch,
    seen: wgpu::Buffer,
    seen_cap: usize,
    penalty_params: wgpu::Buffer,
    penalize: bool,
    last_step: std::cell::Cell<StepStats>,
    /// Constrained decoding's mask before argmax/sample (created at the first constrained step).
    token_mask: Option<TokenMask>,
    /// The rotary tables, and the step's cos/sin rows of them.
    rope: record::RopeRows,
    rope_cs: wgpu::Buffer,
    /// The first token's cos/sin as a uniform (matvec_qkv.wgsl).
    rope_cs_token: wgpu::Buffer,
    /// The attention parameters of each distinct layer shape, rewritten every step.
    attn_params: Vec<(AttentionParams, wgpu::Buffer)>,
    /// The step's position (kv_store.wgsl).
    step_params: wgpu::Buffer,
    acts: Acts,
    /// Per layer: the K and V caches (also among the buffers kept alive), for saved sessions.
    kv_cache: Vec<(wgpu::Buffer, wgpu::Buffer)>,
    /// Values per position of each layer's K and V cache.
    kv_widths: Vec<(usize, usize)>,
    /// The recurrent layers' state buffers (LFM2: the convolution's; Qwen3.5: the
    /// convolution's and the delta rule's), in layer order.
    recurrent_state: Vec<wgpu::Buffer>,
    /// Positions the recurrent state has consumed.
    recurrent_pos: usize,
    /// Device copies of the recurrent state and their positions, oldest first.
    checkpoints: crate::model::Checkpoints<Vec<wgpu::Buffer>>,
    stage_logits: wgpu::Buffer,
    /// Staging for chosen tokens: step number `seq` copies to `stage_token[seq % 2]`.
    stage_token: [wgpu::Buffer; 2],
    /// Steps so far that chose a token (the next one's `seq`).
    token_steps: std::cell::Cell<u64>,
    last_submission: std::cell::RefCell<Option<wgpu::SubmissionIndex>>,
    counters: std::cell::Cell<DecodeCounters>,
    /// Weights, caches and parameter buffers the bind groups refer to.
    _keep: Vec<GpuMatrix>,
    /// The output matrix is token_embd.
    tied: bool,
    /// The output head's norm weights and matrix (None: token_embd), for [`GpuBatch`].
    head_norm: wgpu::Buffer,
    output: Option<GpuMatrix>,
    _buffers: Vec<wgpu::Buffer>,
}

/// The most tokens of one prefill submission (fewer when the attention scores of a batch would
/// exceed one binding).
pub const MAX_BATCH: usize = 64;

/// Contexts from which attention runs split-K by default ([`GpuModel::split_attention_from`]).
pub const SPLIT_ATTENTION_FROM: usize = 512;

impl GpuModel {
    /// Upload `w` (still quantized) and record a step's dispatches, with a KV cache of `n_ctx`
    /// positions. Fails with a typed error when a tensor type has no kernel or a buffer cannot
    /// fit the device's limits.
    pub fn new(ctx: GpuContext, cfg: Config, w: &ModelWeights, n_ctx: usize) -> Result<GpuModel> {
        if let Some(gap) = cfg.gpu_unsupported() {
            return Err(Error::UnsupportedModel(gap));
        }
        let gw = loading::upload(&ctx, w)?;
        GpuModel::build(ctx, cfg, gw, n_ctx)
    }

    /// Load a GGUF model from `src` tensor by tensor: each matrix goes straight from the source
    /// into GPU buffers (through an 8 MiB bounce buffer), so the weights never sit in memory.
    pub fn load(
        ctx: GpuContext,
        src: &dyn crate::source::ByteSource,
        n_ctx: usize,
    ) -> Result<GpuModel> {
        let header = crate::source::read_header(src)?;
        let cfg = Config::from_header(&header)?;
        Self::load_parsed(ctx, &header, cfg, src, n_ctx)
    }

    /// [`GpuModel::load`] with the header and description already parsed (once, by the
    /// engine). Refuses, naming them, the model features the GPU forward pass lacks, before any
    /// upload.
    pub fn load_parsed(
        ctx: GpuContext,
        header: &crate::gguf::GgufHeader,
        mut cfg: Config,
        src: &dyn crate::source::ByteSource,
        n_ctx: usize,
    ) -> Result<GpuModel> {
        if let Some(gap) = cfg.gpu_unsupported() {
            return Err(Error::UnsupportedModel(gap));
        }
        let gw = loading::stream(&ctx, header, src, &mut cfg)?;
        GpuModel::build(ctx, cfg, gw, n_ctx)
    }

    /// Bytes of weight matrices a decode step reads, as uploaded: every layer's, and the output
    /// matrix (token_embd when tied; else one row of it, not counted, nor the f32 vectors).
    pub fn step_weight_bytes(&self) -> usize {
        let out = if self.tied {
            self.token_embd.bytes()
        } else {
            0
        };
        self._keep.iter().map(|m| m.bytes()).sum::<usize>() + out
    }

    /// Run `tokens` at positions `pos..pos + n` and return the last token's logits (n_vocab).
    /// The tokens go in batches of up to `max_batch`, one submission each (causal attention
    /// within a batch).
    pub async fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Ok(vec![]);
        }
        self.run_batches(tokens, pos, Readback::Logits)?;
        let n = self.cfg.n_vocab;
        let b = self.ctx.map_read(&self.stage_logits, n * 4).await?;
        Ok(bytemuck::pod_collect_to_vec(&b))
    }

    /// Run `tokens` (at least one) in batches of up to `max_batch`, the last batch with
    /// `readback`.
    fn run_batches(&mut self, tokens: &[u32], pos: usize, readback: Readback) -> Result<()> {
        self.check_span(pos, tokens.len())?;
        // A recurrent state goes on from where it stands, or from a checkpoint.
        self.rewind(pos)?;
        let n_batches = tokens.len().div_ceil(self.max_batch);
        for (i, batch) in tokens.chunks(self.max_batch).enumerate() {
            let rb = if i + 1 == n_batches {
                readback
            } else {
                Readback::None
            };
            self.step(Input::Host(batch), pos + i * self.max_batch, rb)?;
        }
        self.recurrent_pos = pos + tokens.len();
        Ok(())
    }

    /// Run `tokens` at positions `pos..pos + n` without reading anything back (a prompt's
    /// tokens before its last, e.g. to checkpoint a recurrent state there).
    pub fn run(&mut self, tokens: &[u32], pos: usize) -> Result<()> {
        if tokens.is_empty() {
            return Ok(());
        }
        self.run_batches(tokens, pos, Readback::None)
    }

    /// Run at most `n` (≥ 1, ≤ the allocated batch) tokens per submission; 1 is the
    /// token-by-token path.
    pub fn limit_batch(&mut self, n: usize) {
        self.max_batch = n.clamp(1, self.alloc_batch);
    }

    /// Run one token at `pos` and return the greedy next token, taken on the GPU (a 4-byte
    /// readback).
    pub async fn step_argmax(&mut self, token: u32, pos: usize) -> Result<u32> {
        self.forward_argmax(&[token], pos).await
    }

    /// Run `tokens` (a prompt, in batches as [`GpuModel::forward`]) and return the greedy next
    /// token, taken on the GPU: 4 bytes come back, not the n_vocab logits.
    pub async fn forward_argmax(&mut self, tokens: &[u32], pos: usize) -> Result<u32> {
        let p = self.submit_argmax(tokens, pos)?;
        self.read_token(p).await
    }

    /// [`GpuModel::forward_argmax`] without the wait: the token stays on the device, where
    /// [`GpuModel::submit_from_device`] can take it before the host reads it.
    pub fn submit_argmax(&mut self, tokens: &[u32], pos: usize) -> Result<PendingToken> {
        if tokens.is_empty() {
            return Err(Error::InvalidRequest("no tokens to run".into()));
        }
        self.run_batches(tokens, pos, Readback::Argmax)?;
        Ok(self.pending())
    }

    /// Pipelined decode: submit one step at `pos` whose input is the token the last submitted
    /// step chose on the device (not read back yet), choosing the next token by argmax, or by
    /// `sample` (no penalties: their history would need the token on the host). Pair with
    /// [`GpuModel::read_token`] of the previous step after this submission, so the GPU runs
    /// this step while the host waits. Should that token be [`SAMPLE_ON_HOST`], this step
    /// embedded nothing and its result is meaningless: run the previous step again.
    pub fn submit_from_device(
        &mut self,
        pos: usize,
        sample: Option<&GpuSampling>,
    ) -> Result<PendingToken> {
        if self.token_steps.get() == 0 {
            return Err(Error::InvalidRequest(
                "no step has chosen a token on the device yet".into(),
            ));
        }
        self.check_span(pos, 1)?;
        let readback = match sample {
            Some(s) if s.has_penalties() => {
                return Err(Error::InvalidRequest(
                    "penalties need the token on the host: sample with step_sample".into(),
                ))
            }
            Some(s) => {
                let words = s.words(self.cfg.n_vocab);
                let q = &self.ctx.queue;
                q.write_buffer(&self.sample_params, 0, bytemuck::cast_slice(&words));
                self.penalize = false;
                Readback::Sample
            }
            None => Readback::Argmax,
        };
        self.rewind(pos)?;
        self.step(Input::Device, pos, readback)?;
        self.recurrent_pos = pos + 1;
        Ok(self.pending())
    }

    /// The last submitted step's token, to read back later.
    fn pending(&self) -> PendingToken {
        PendingToken {
            seq: self.token_steps.get() - 1,
            submission: self.last_submission.borrow().clone(),
        }
    }

    /// The token a submitted step chose (a 4-byte readback; natively this waits for that step
    /// only). It may be [`SAMPLE_ON_HOST`] after a sampling step. Fails when two later steps
    /// have reused its staging buffer.
    pub async fn read_token(&mut self, p: PendingToken) -> Result<u32> {
        if self.token_steps.get() > p.seq + 2 {
            return Err(Error::InvalidRequest(
                "a token was read back after two later steps".into(),
            ));
        }
        let mut counters = self.counters.get();
        counters.token_readbacks += 1;
        if self.token_steps.get() > p.seq + 1 {
            counters.overlapped_readbacks += 1;
        }
        self.counters.set(counters);
        let stage = &self.stage_token[(p.seq % 2) as usize];
        let b = self.ctx.map_read_after(stage, 4, p.submission).await?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Counts of submissions and readbacks: see [`DecodeCounters`].
    pub fn counters(&self) -> DecodeCounters {
        self.counters.get()
    }

    /// Start [`GpuModel::counters`] again from zero.
    pub fn reset_counters(&mut self) {
        self.counters.set(DecodeCounters::default());
    }

    /// Run one token at `pos` and return the next token sampled on the GPU (see
    /// [`GpuSampling`]): the penalties for `history` (its last `penalty_last_n` tokens), then
    /// top-k, top-p, min-p and temperature with `params.uniform`, as `sampling::Sampler` does.
    /// One submission and a 4-byte readback; only when `sample.wgsl` cannot decide among its
    /// [`GPU_TOP_K_MAX`] candidates (top_k 0 with the cut or the draw past them, or
    /// 64 < top_k < n_vocab) are the (penalised) logits read back and sampled on the host with
    /// the same uniform number.
    pub async fn step_sample(
        &mut self,
        token: u32,
        pos: usize,
        params: &GpuSampling,
        history: &[u32],
    ) -> Result<u32> {
        self.forward_sample(&[token], pos, params, history).await
    }

    /// [`GpuModel::step_sample`] after a whole prompt (in batches as [`GpuModel::forward`]):
    /// the first generated token sampled on the GPU too.
    pub async fn forward_sample(
        &mut self,
        tokens: &[u32],
        pos: usize,
        params: &GpuSampling,
        history: &[u32],
    ) -> Result<u32> {
        let p = self.submit_sample(tokens, pos, params, history)?;
        let id = self.read_token(p).await?;
        if id != SAMPLE_ON_HOST {
            return Ok(id);
        }
        let logits = self
            .ctx
            .read_f32(&self.acts.logits, self.cfg.n_vocab)
            .await?;
        let u = params.uniform;
        Ok(crate::sampling::choose(&params.config(), &logits, || u))
    }

    /// [`GpuModel::forward_sample`] without the wait: the token (or [`SAMPLE_ON_HOST`]) stays
    /// on the device, as with [`GpuModel::submit_argmax`].
    pub fn submit_sample(
        &mut self,
        tokens: &[u32],
        pos: usize,
        params: &GpuSampling,
        history: &[u32],
    ) -> Result<PendingToken> {
        if tokens.is_empty() {
            return Err(Error::InvalidRequest("no tokens to run".into()));
        }
        self.check_span(pos, tokens.len())?;
        let n = self.cfg.n_vocab;
        let words = params.words(n);
        let q = &self.ctx.queue;
        q.write_buffer(&self.sample_params, 0, bytemuck::cast_slice(&words));
        self.penalize = params.has_penalties();
        if self.penalize {
            let seen = params.seen(history);
            let n_seen = seen.len() / 2;
            if n_seen > self.seen_cap {
                self.seen_cap = n_seen.next_power_of_two();
                self.seen = self.ctx.storage_f32("seen tokens", 2 * self.seen_cap);
                self.penalties = make_dispatch(
                    &self.ctx,
                    PipelineKey::new(Shader::Penalties),
                    &[&self.acts.logits, &self.seen, &self.penalty_params],
                    [1, 1, 1],
                )?;
            }
            let q = &self.ctx.queue;
            if !seen.is_empty() {
                q.write_buffer(&self.seen, 0, bytemuck::cast_slice(&seen));
            }
            let pw = params.penalty_words(n, n_seen);
            q.write_buffer(&self.penalty_params, 0, bytemuck::cast_slice(&pw));
        }
        self.run_batches(tokens, pos, Readback::Sample)?;
        Ok(self.pending())
    }

    /// Bytes of the KV cache on the device (every layer's keys and values, f32 or f16).
    pub fn kv_bytes(&self) -> usize {
        let per_pos: usize = self.cfg.layers.iter().map(|l| l.kv_dim() + l.v_dim()).sum();
        self.n_ctx * per_pos * if self.ctx.kv_f16 { 2 } else { 4 }
    }

    /// What the last step encoded: see [`StepStats`].
    pub fn last_step(&self) -> StepStats {
        self.last_step.get()
    }

    /// Constrained decoding: the following argmax and sample steps apply `mask` (bit `i % 32` of
    /// word `i / 32` set when token `i` is allowed) to the logits on the GPU before choosing;
    /// `None` turns it off. See [`super::token_mask`].
    pub fn set_token_mask(&mut self, mask: Option<&[u32]>) -> Result<()> {
        match (mask, &mut self.token_mask) {
            (None, Some(m)) => m.active = false,
            (None, None) => {}
            (Some(bits), Some(m)) => m.upload(&self.ctx.queue, bits),
            (Some(bits), None) => {
                let mut m = TokenMask::new(&self.ctx, &self.acts.logits, self.cfg.n_vocab)?;
                m.upload(&self.ctx.queue, bits);
                self.token_mask = Some(m);
            }
        }
        Ok(())
    }

    /// The logits the last step left on the GPU (penalised when it sampled with penalties).
    pub async fn last_logits(&self) -> Result<Vec<f32>> {
        self.ctx.read_f32(&self.acts.logits, self.cfg.n_vocab).await
    }

    fn check_span(&self, pos: usize, n: usize) -> Result<()> {
        if pos + n > self.n_ctx {
            return Err(Error::ContextFull {
                needed: pos + n,
                n_ctx: self.n_ctx,
            });
        }
        Ok(())
    }
}
