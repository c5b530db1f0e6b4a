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
//! for a prefill batch.

use super::kernels::{groups_2d, unit_weights, Kernel, PipelineKey, MATMAT_TOKENS, SPLIT_CHUNK};
use super::token_mask::TokenMask;
use super::{GpuContext, GpuMatrix};
use crate::cpu::ops::rope_inv_freq;
use crate::gguf::GgufHeader;
use crate::model::{Activation, Arch, Config, ModelWeights};
use crate::source::ByteSource;
use crate::{Error, Result};

/// When a recorded dispatch runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum When {
    Always,
    /// Single-pass attention: contexts up to `split_attention_from` positions.
    Short,
    /// Split-K attention: longer contexts.
    Long,
}

/// Which batches a recorded dispatch runs for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Batch {
    Any,
    /// One token (a decode step): matvec.wgsl.
    Single,
    /// Several tokens (prefill): matmat.wgsl.
    Multi,
}

/// One recorded dispatch.
pub(crate) struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    group: wgpu::BindGroup,
    groups: [u32; 3],
    when: When,
    batch: Batch,
    /// Tokens per workgroup along z (1, or [`MATMAT_TOKENS`] for matmat.wgsl).
    tile: u32,
}

/// What a step reads back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Readback {
    None,
    Logits,
    Argmax,
    Sample,
}

/// The most candidates `sample.wgsl` extracts (a larger set is still sampled exactly when the
/// choice falls among them, else on the host: see [`GpuModel::step_sample`]).
pub const GPU_TOP_K_MAX: usize = 64;

/// What `sample.wgsl` writes when the host must decide (a top-p or min-p cut, or the draw, past
/// its [`GPU_TOP_K_MAX`] candidates, or 64 < top_k < n).
pub const SAMPLE_ON_HOST: u32 = u32::MAX;

/// Sampling settings for [`GpuModel::step_sample`], `sampling::Sampler`'s chain on the GPU:
/// penalties (`penalties.wgsl`) → top-k → top-p → min-p → temperature → draw (`sample.wgsl`),
/// with `uniform`, the number in [0, 1) that picks the token, drawn on the host from the seeded
/// RNG (`Sampler::next_uniform`, as `Sampler` draws once per token when the temperature is
/// above 0). Temperature ≤ 0 is greedy after the penalties; top_k 0 is all tokens, top_p ≥ 1
/// and min_p 0 are off, as in [`SamplerConfig`](crate::sampling::SamplerConfig).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GpuSampling {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// How many recent tokens of the history the penalties look at.
    pub penalty_last_n: usize,
    pub uniform: f64,
}

impl Default for GpuSampling {
    /// `SamplerConfig::default()`'s settings (greedy, no penalties), uniform 0.
    fn default() -> Self {
        GpuSampling::new(&crate::sampling::SamplerConfig::default(), 0.0)
    }
}

impl GpuSampling {
    /// The settings of `cfg` with the uniform number `uniform`.
    pub fn new(cfg: &crate::sampling::SamplerConfig, uniform: f64) -> Self {
        GpuSampling {
            temperature: cfg.temperature,
            top_k: cfg.top_k,
            top_p: cfg.top_p,
            min_p: cfg.min_p,
            repeat_penalty: cfg.repeat_penalty,
            presence_penalty: cfg.presence_penalty,
            frequency_penalty: cfg.frequency_penalty,
            penalty_last_n: cfg.penalty_last_n,
            uniform,
        }
    }

    /// The same settings as a [`SamplerConfig`](crate::sampling::SamplerConfig) (seed 0).
    pub fn config(&self) -> crate::sampling::SamplerConfig {
        crate::sampling::SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            penalty_last_n: self.penalty_last_n,
            seed: 0,
        }
    }

    /// Whether any penalty is on.
    pub fn has_penalties(&self) -> bool {
        self.repeat_penalty != 1.0 || self.presence_penalty != 0.0 || self.frequency_penalty != 0.0
    }

    /// The parameter words of `sample.wgsl` over `n` logits.
    pub fn words(&self, n: usize) -> [u32; 6] {
        [
            n as u32,
            self.top_k.min(u32::MAX as usize) as u32,
            self.temperature.to_bits(),
            self.top_p.to_bits(),
            (self.uniform as f32).to_bits(),
            self.min_p.to_bits(),
        ]
    }

    /// The distinct tokens of the last `penalty_last_n` of `history` with their counts, as
    /// `penalties.wgsl`'s (id, count) pairs (by id).
    pub fn seen(&self, history: &[u32]) -> Vec<u32> {
        let recent = &history[history.len().saturating_sub(self.penalty_last_n)..];
        let mut ids = recent.to_vec();
        ids.sort_unstable();
        let mut pairs = Vec::new();
        for run in ids.chunk_by(|a, b| a == b) {
            pairs.extend([run[0], run.len() as u32]);
        }
        pairs
    }

    /// The parameter words of `penalties.wgsl` over `n` logits and `n_seen` pairs.
    pub fn penalty_words(&self, n: usize, n_seen: usize) -> [u32; 5] {
        [
            n as u32,
            n_seen as u32,
            self.repeat_penalty.to_bits(),
            self.presence_penalty.to_bits(),
            self.frequency_penalty.to_bits(),
        ]
    }
}

/// Sample from `n` logits already in `logits` on the GPU with `sample.wgsl` (no penalties; one
/// submission, a 4-byte readback): the id, or [`SAMPLE_ON_HOST`].
pub async fn sample_once(
    ctx: &GpuContext,
    logits: &wgpu::Buffer,
    n: usize,
    s: &GpuSampling,
) -> Result<u32> {
    let p = ctx.params("sample", &s.words(n));
    let out = ctx.storage_f32("sampled token", 1);
    ctx.run_once(
        PipelineKey::new(Kernel::Sample),
        &[logits, &out, &p],
        [1, 1, 1],
    )?;
    Ok(ctx.read_u32(&out, 1).await?[0])
}

/// Apply `s`'s penalties for `history` to the `n` logits in `logits`, in place
/// (`penalties.wgsl`, one submission).
pub fn penalties_once(
    ctx: &GpuContext,
    logits: &wgpu::Buffer,
    n: usize,
    s: &GpuSampling,
    history: &[u32],
) -> Result<()> {
    let seen = s.seen(history);
    let sb = ctx.storage_with("seen tokens", bytemuck::cast_slice(&seen));
    let p = ctx.params("penalties", &s.penalty_words(n, seen.len() / 2));
    ctx.run_once(
        PipelineKey::new(Kernel::Penalties),
        &[logits, &sb, &p],
        [1, 1, 1],
    )
}

/// Activation buffers (f32) of up to `max_batch` tokens, token-major: each row as listed.
struct Acts {
    x: wgpu::Buffer,      // (n_embd) residual stream
    h: wgpu::Buffer,      // (n_embd) normed input of a block
    q_raw: wgpu::Buffer,  // (n_head·head_dim) before the Q norm (Gemma 3)
    k_raw: wgpu::Buffer,  // (n_head_kv·head_dim) before the K norm
    q: wgpu::Buffer,      // (n_head·head_dim)
    k: wgpu::Buffer,      // (n_head_kv·head_dim)
    v: wgpu::Buffer,      // (n_head_kv·head_dim_v)
    att: wgpu::Buffer,    // (n_head·head_dim_v)
    proj: wgpu::Buffer,   // (n_embd) output of a block
    proj_n: wgpu::Buffer, // (n_embd) after a post-norm
    gate: wgpu::Buffer,   // (n_ff)
    up: wgpu::Buffer,     // (n_ff)
    scores: wgpu::Buffer, // (n_head, n_ctx)
    part: wgpu::Buffer,   // (n_head, n_split, 2 + head_dim_v) split-K partials
    last: wgpu::Buffer,   // (n_embd) the residual stream of the batch's last token (1 row)
    logits: wgpu::Buffer, // (n_vocab) (1 row)
    token: wgpu::Buffer,  // (1) argmax
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
    n_split: usize,
    token_embd: GpuMatrix,
    embd_pipeline: wgpu::ComputePipeline,
    embd_params: wgpu::Buffer,
    embd_groups: Vec<wgpu::BindGroup>,
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
    /// Constrained decoding's mask before argmax/sample (created at the first constrained step).
    token_mask: Option<TokenMask>,
    inv_freq: Vec<f64>,
    inv_freq_swa: Vec<f64>,
    rope_cs: wgpu::Buffer,
    attn_params: wgpu::Buffer,
    attn_params_swa: wgpu::Buffer,
    /// The step's position (kv_store.wgsl).
    step_params: wgpu::Buffer,
    acts: Acts,
    stage_logits: wgpu::Buffer,
    stage_token: wgpu::Buffer,
    /// Weights, caches and parameter buffers the bind groups refer to.
    _keep: Vec<GpuMatrix>,
    /// The output matrix is token_embd.
    tied: bool,
    _buffers: Vec<wgpu::Buffer>,
}

/// Records the dispatches of a step while the model is built.
struct Recorder<'a> {
    ctx: &'a GpuContext,
    cfg: &'a Config,
    dispatches: Vec<Dispatch>,
    buffers: Vec<wgpu::Buffer>,
    step_params: wgpu::Buffer,
}

impl Recorder<'_> {
    fn dispatch(
        &mut self,
        key: PipelineKey,
        bufs: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<()> {
        let d = make_dispatch(self.ctx, key, bufs, groups)?;
        self.dispatches.push(d);
        Ok(())
    }

    fn params(&mut self, label: &str, words: &[u32]) -> wgpu::Buffer {
        let b = self.ctx.params(label, words);
        self.buffers.push(b.clone());
        b
    }

    fn vector(&mut self, label: &str, v: &[f32]) -> wgpu::Buffer {
        let b = self.ctx.storage_with(label, bytemuck::cast_slice(v));
        self.buffers.push(b.clone());
        b
    }

    /// y = W·x per token, one dispatch per row range of W: matvec.wgsl for a single token,
    /// matmat.wgsl (weights read once per tile of tokens) for a batch.
    fn matvec(&mut self, m: &GpuMatrix, x: &wgpu::Buffer, y: &wgpu::Buffer) -> Result<()> {
        for mut d in matvec_dispatches(self.ctx, m, x, y)? {
            d.batch = Batch::Single;
            self.dispatches.push(d);
        }
        let step = self.step_params.clone();
        for mut d in matmat_dispatches(self.ctx, m, x, y, &step)? {
            d.batch = Batch::Multi;
            self.dispatches.push(d);
        }
        Ok(())
    }

    /// y = rmsnorm(x)·w over `rows` rows of `n`.
    fn rmsnorm(
        &mut self,
        x: &wgpu::Buffer,
        w: &[f32],
        y: &wgpu::Buffer,
        n: usize,
        rows: usize,
    ) -> Result<()> {
        let wb = self.vector("norm weight", w);
        let p = self.params("rmsnorm", &[n as u32, self.cfg.rms_eps.to_bits()]);
        self.dispatch(
            PipelineKey::new(Kernel::RmsNorm),
            &[x, &wb, y, &p],
            [rows as u32, 1, 1],
        )
    }

    /// y += b per token; `b` has a row per token when `batched`, else one row (a bias).
    fn add(&mut self, y: &wgpu::Buffer, b: &wgpu::Buffer, n: usize, batched: bool) -> Result<()> {
        let p = self.params("add", &[n as u32, u32::from(batched)]);
        self.dispatch(
            PipelineKey::new(Kernel::Add),
            &[y, b, &p],
            [n.div_ceil(64) as u32, 1, 1],
        )
    }

    fn rope(
        &mut self,
        v: &wgpu::Buffer,
        cs: &wgpu::Buffer,
        heads: usize,
        swa: bool,
        scale: f32,
    ) -> Result<()> {
        let c = self.cfg;
        let cs_off = if swa { c.n_rot } else { 0 };
        let p = self.params(
            "rope",
            &[
                heads as u32,
                c.head_dim as u32,
                c.n_rot as u32,
                u32::from(c.rope_neox),
                cs_off as u32,
                scale.to_bits(),
                (2 * c.n_rot) as u32,
            ],
        );
        let n = heads * c.head_dim / 2;
        self.dispatch(
            PipelineKey::new(Kernel::Rope),
            &[v, cs, &p],
            [n.div_ceil(64) as u32, 1, 1],
        )
    }

    /// Append `n` values of `src` to the cache `dst` at the step's position.
    fn store_kv(&mut self, src: &wgpu::Buffer, dst: &wgpu::Buffer, n: usize) -> Result<()> {
        let p = self.params("kv_store", &[n as u32]);
        let step = self.step_params.clone();
        let key = PipelineKey {
            kv_f16: u32::from(self.ctx.kv_f16),
            ..PipelineKey::new(Kernel::KvStore)
        };
        self.dispatch(key, &[src, dst, &p, &step], [n.div_ceil(64) as u32, 1, 1])
    }
}

fn make_dispatch(
    ctx: &GpuContext,
    key: PipelineKey,
    bufs: &[&wgpu::Buffer],
    groups: [u32; 3],
) -> Result<Dispatch> {
    Ok(Dispatch {
        pipeline: ctx.pipeline(key)?.pipeline,
        group: ctx.bind(key, bufs)?,
        groups,
        when: When::Always,
        batch: Batch::Any,
        tile: 1,
    })
}

/// Rows per workgroup of matvec.wgsl (and matmat.wgsl) for a matrix of `cols` columns: each row
/// gets a power of two of invocations (8 to 64) close to its number of quads (4 weights), so
/// short rows do not leave most of the workgroup idle.
pub fn matvec_rows(cols: usize) -> u32 {
    let per_row = (cols / 4).next_power_of_two().clamp(8, 64);
    (256 / per_row) as u32
}

/// The dispatches of y = W·x, one per row range of W (each writes its rows of y).
pub(crate) fn matvec_dispatches(
    ctx: &GpuContext,
    m: &GpuMatrix,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    matvec_dispatches_rows(ctx, m, x, y, matvec_rows(m.cols))
}

/// [`matvec_dispatches`] with `rows` rows per workgroup (a power of two ≤ 256; benchmarks
/// sweep it).
pub(crate) fn matvec_dispatches_rows(
    ctx: &GpuContext,
    m: &GpuMatrix,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    rows: u32,
) -> Result<Vec<Dispatch>> {
    row_dispatches(ctx, m, (Kernel::Matvec(m.ty, m.layout), rows), &[x, y], 1)
}

/// The dispatches of Y = W·X over a batch of tokens (matmat.wgsl; X and Y token-major, `step`
/// holds the step's position and its number of tokens), one per row range of W; workgroup z
/// is a tile of [`MATMAT_TOKENS`] tokens.
pub(crate) fn matmat_dispatches(
    ctx: &GpuContext,
    m: &GpuMatrix,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    let rows = matvec_rows(m.cols);
    let kernel = (Kernel::Matmat(m.ty, m.layout), rows);
    row_dispatches(ctx, m, kernel, &[x, y, step], MATMAT_TOKENS as u32)
}

/// One dispatch of `kernel` (matvec.wgsl or matmat.wgsl, with its rows per workgroup) per row
/// range of `m`: bindings (chunk, io[0], io[1], params, io[2..]), params (rows of the chunk,
/// cols, row_bytes, first row, rows of W).
fn row_dispatches(
    ctx: &GpuContext,
    m: &GpuMatrix,
    (kernel, rows): (Kernel, u32),
    io: &[&wgpu::Buffer],
    tile: u32,
) -> Result<Vec<Dispatch>> {
    let key = PipelineKey {
        rows,
        ..PipelineKey::new(kernel)
    };
    m.chunks
        .iter()
        .map(|c| {
            let p = ctx.params(
                &m.name,
                &[
                    c.rows as u32,
                    m.cols as u32,
                    m.row_bytes as u32,
                    c.row_start as u32,
                    m.rows as u32,
                ],
            );
            let groups = groups_2d(c.rows.div_ceil(key.rows as usize));
            let mut bindings = vec![&c.buffer, io[0], io[1], &p];
            bindings.extend_from_slice(&io[2..]);
            let mut d = make_dispatch(ctx, key, &bindings, groups)?;
            d.tile = tile;
            Ok(d)
        })
        .collect()
}

/// Run Y = W·X once for `n_tok` tokens (X: `n_tok` rows of `cols`, Y: `n_tok` rows of `rows`)
/// with matmat.wgsl (for tests and benchmarks): one submission.
pub fn matmat_once(
    ctx: &GpuContext,
    m: &GpuMatrix,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    n_tok: usize,
) -> Result<()> {
    let step = ctx.params("matmat batch", &[0, n_tok as u32]);
    let ds = matmat_dispatches(ctx, m, x, y, &step)?;
    let cmd = ctx.one_pass("matmat", |pass| {
        encode_batch(pass, &ds, n_tok as u32, false)
    });
    ctx.queue.submit([cmd]);
    Ok(())
}

/// Run y = W·x once (for tests and one-off products): one submission.
pub fn matvec_once(
    ctx: &GpuContext,
    m: &GpuMatrix,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<()> {
    let ds = matvec_dispatches(ctx, m, x, y)?;
    ctx.queue
        .submit([ctx.one_pass("matvec", |pass| encode(pass, &ds))]);
    Ok(())
}

/// The most tokens of one prefill submission (fewer when the attention scores of a batch would
/// exceed one binding).
pub const MAX_BATCH: usize = 64;

/// Contexts from which attention runs split-K by default ([`GpuModel::split_attention_from`]).
pub const SPLIT_ATTENTION_FROM: usize = 512;

/// Encode `ds` over a batch of `nb` tokens (workgroup z is the token, or a tile of tokens for
/// matmat.wgsl), with the split-K attention when `long`, else the single-pass one, and the
/// matrix products for one token (matvec) or for several (matmat).
pub(crate) fn encode_batch(pass: &mut wgpu::ComputePass<'_>, ds: &[Dispatch], nb: u32, long: bool) {
    let skip = if long { When::Short } else { When::Long };
    let skip_batch = if nb > 1 { Batch::Single } else { Batch::Multi };
    for d in ds
        .iter()
        .filter(|d| d.when != skip && d.batch != skip_batch)
    {
        pass.set_pipeline(&d.pipeline);
        pass.set_bind_group(0, &d.group, &[]);
        pass.dispatch_workgroups(d.groups[0], d.groups[1], nb.div_ceil(d.tile));
    }
}

fn encode(pass: &mut wgpu::ComputePass<'_>, ds: &[Dispatch]) {
    for d in ds {
        pass.set_pipeline(&d.pipeline);
        pass.set_bind_group(0, &d.group, &[]);
        pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
    }
}

impl GpuModel {
    /// Upload `w` (still quantized) and record a step's dispatches, with a KV cache of `n_ctx`
    /// positions. Fails with a typed error when a tensor type has no kernel or a buffer cannot
    /// fit the device's limits.
    pub fn new(ctx: GpuContext, cfg: Config, w: &ModelWeights, n_ctx: usize) -> Result<GpuModel> {
        let gw = GpuWeights::upload(&ctx, w)?;
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
        let mut cfg = Config::from_header(&header)?;
        let gw = GpuWeights::stream(&ctx, &header, src, &mut cfg)?;
        GpuModel::build(ctx, cfg, gw, n_ctx)
    }

    /// Record a step's dispatches over uploaded weights.
    fn build(ctx: GpuContext, cfg: Config, w: GpuWeights, n_ctx: usize) -> Result<GpuModel> {
        let c = &cfg;
        let (e, hd, hdv) = (c.n_embd, c.head_dim, c.head_dim_v);
        let (q_dim, kv_dim, v_dim) = (c.n_head * hd, c.kv_dim(), c.n_head_kv * hdv);
        let n_ctx = n_ctx.max(1);
        let n_split = n_ctx.div_ceil(SPLIT_CHUNK);
        let per_token = (c.n_head * n_ctx)
            .max(c.n_head * n_split * (2 + hdv))
            .max(c.n_ff)
            .max(q_dim)
            .max(c.n_head * hdv)
            * 4;
        let max_batch =
            (ctx.max_binding as usize / per_token.max(1)).clamp(1, MAX_BATCH.min(n_ctx));
        ctx.check_fits(
            "the KV cache of one layer",
            (n_ctx * kv_dim.max(v_dim) * 4) as u64,
        )?;
        ctx.check_fits("the attention scores", (c.n_head * n_ctx * 4) as u64)?;
        ctx.check_fits("the logits", (c.n_vocab * 4) as u64)?;

        let f = |l: &str, n: usize| ctx.storage_f32(l, n);
        let b = |l: &str, n: usize| ctx.storage_f32(l, n * max_batch);
        let acts = Acts {
            x: b("x", e),
            h: b("h", e),
            q_raw: b("q_raw", q_dim),
            k_raw: b("k_raw", kv_dim),
            q: b("q", q_dim),
            k: b("k", kv_dim),
            v: b("v", v_dim),
            att: b("att", c.n_head * hdv),
            proj: b("proj", e),
            proj_n: b("proj_n", e),
            gate: b("gate", c.n_ff),
            up: b("up", c.n_ff),
            scores: b("scores", c.n_head * n_ctx),
            part: b("split-K partials", c.n_head * n_split * (2 + hdv)),
            last: f("last", e),
            logits: f("logits", c.n_vocab),
            token: f("token", 1),
        };
        let rope_cs = b("rope cos/sin", 2 * c.n_rot);
        let attn_params = ctx.params("attention", &[]);
        let attn_params_swa = ctx.params("attention (sliding window)", &[]);
        let step_params = ctx.params("step", &[]);

        let mut rec = Recorder {
            ctx: &ctx,
            cfg: c,
            dispatches: Vec::new(),
            buffers: Vec::new(),
            step_params: step_params.clone(),
        };
        let mut keep = Vec::new();
        let a = &acts;
        let GpuWeights {
            token_embd,
            output_norm,
            output,
            rope_freqs,
            layers,
        } = w;
        for (l, lw) in layers.into_iter().enumerate() {
            let (wq, wk, wv, wo) = (lw.wq, lw.wk, lw.wv, lw.wo);
            let (wg, wu, wd) = (lw.w_gate, lw.w_up, lw.w_down);
            // f32 words: one value each, or two f16.
            let words = |n: usize| if ctx.kv_f16 { n.div_ceil(2) } else { n };
            let kc = f(&format!("blk.{l} K cache"), words(n_ctx * kv_dim));
            let vc = f(&format!("blk.{l} V cache"), words(n_ctx * v_dim));
            let swa = c.swa_layers[l];

            // Attention block.
            rec.rmsnorm(&a.x, &lw.attn_norm, &a.h, e, 1)?;
            let qo = if lw.q_norm.is_some() { &a.q_raw } else { &a.q };
            let ko = if lw.k_norm.is_some() { &a.k_raw } else { &a.k };
            rec.matvec(&wq, &a.h, qo)?;
            rec.matvec(&wk, &a.h, ko)?;
            rec.matvec(&wv, &a.h, &a.v)?;
            for (buf, bias, n) in [
                (qo, &lw.bq, q_dim),
                (ko, &lw.bk, kv_dim),
                (&a.v, &lw.bv, v_dim),
            ] {
                if let Some(b) = bias {
                    let bb = rec.vector("bias", b);
                    rec.add(buf, &bb, n, false)?;
                }
            }
            if let Some(wn) = &lw.q_norm {
                rec.rmsnorm(&a.q_raw, wn, &a.q, hd, c.n_head)?;
            }
            if let Some(wn) = &lw.k_norm {
                rec.rmsnorm(&a.k_raw, wn, &a.k, hd, c.n_head_kv)?;
            }
            rec.rope(&a.q, &rope_cs, c.n_head, swa, c.q_scale.unwrap_or(1.0))?;
            rec.rope(&a.k, &rope_cs, c.n_head_kv, swa, 1.0)?;
            rec.store_kv(&a.k, &kc, kv_dim)?;
            rec.store_kv(&a.v, &vc, v_dim)?;
            let ap = if swa { &attn_params_swa } else { &attn_params };
            let nh = c.n_head as u32;
            for (key, bufs, groups, when) in [
                (
                    Kernel::Attention,
                    &[&a.q, &kc, &vc, &a.att, &a.scores, ap][..],
                    [nh, 1, 1],
                    When::Short,
                ),
                (
                    Kernel::AttentionSplit,
                    &[&a.q, &kc, &vc, &a.part, ap][..],
                    [nh, n_split as u32, 1],
                    When::Long,
                ),
                (
                    Kernel::AttentionCombine,
                    &[&a.part, &a.att, ap][..],
                    [nh, 1, 1],
                    When::Long,
                ),
            ] {
                let key = PipelineKey {
                    kv_f16: u32::from(ctx.kv_f16),
                    ..PipelineKey::new(key)
                };
                let mut d = make_dispatch(&ctx, key, bufs, groups)?;
                d.when = when;
                rec.dispatches.push(d);
            }
            rec.matvec(&wo, &a.att, &a.proj)?;
            match &lw.post_attn_norm {
                Some(wn) => {
                    rec.rmsnorm(&a.proj, wn, &a.proj_n, e, 1)?;
                    rec.add(&a.x, &a.proj_n, e, true)?;
                }
                None => rec.add(&a.x, &a.proj, e, true)?,
            }

            // Feed-forward block.
            rec.rmsnorm(&a.x, &lw.ffn_norm, &a.h, e, 1)?;
            rec.matvec(&wg, &a.h, &a.gate)?;
            rec.matvec(&wu, &a.h, &a.up)?;
            let act = match c.activation {
                Activation::Silu => 0,
                Activation::GeluTanh => 1,
            };
            let p = rec.params("gate", &[c.n_ff as u32]);
            rec.dispatch(
                PipelineKey {
                    act,
                    ..PipelineKey::new(Kernel::Gate)
                },
                &[&a.gate, &a.up, &p],
                [c.n_ff.div_ceil(64) as u32, 1, 1],
            )?;
            rec.matvec(&wd, &a.gate, &a.proj)?;
            match &lw.post_ffn_norm {
                Some(wn) => {
                    rec.rmsnorm(&a.proj, wn, &a.proj_n, e, 1)?;
                    rec.add(&a.x, &a.proj_n, e, true)?;
                }
                None => rec.add(&a.x, &a.proj, e, true)?,
            }
            keep.extend([wq, wk, wv, wo, wg, wu, wd]);
            rec.buffers.extend([kc, vc]);
        }

        // Output head: norm, then logits (the output matrix, or token_embd when tied).
        let layer_dispatches = std::mem::take(&mut rec.dispatches);
        rec.rmsnorm(&a.last, &output_norm, &a.h, e, 1)?;
        let mut head = std::mem::take(&mut rec.dispatches);
        let tied = output.is_none();
        match output {
            Some(om) => {
                head.extend(matvec_dispatches(&ctx, &om, &a.h, &a.logits)?);
                keep.push(om);
            }
            None => head.extend(matvec_dispatches(&ctx, &token_embd, &a.h, &a.logits)?),
        }
        let ap = ctx.params("argmax", &[c.n_vocab as u32]);
        let argmax = make_dispatch(
            &ctx,
            PipelineKey::new(Kernel::Argmax),
            &[&a.logits, &a.token, &ap],
            [1, 1, 1],
        )?;

        let sample_params = ctx.params("sample", &[]);
        let penalty_params = ctx.params("penalties", &[]);
        let seen_cap = n_ctx.max(64);
        let seen = ctx.storage_f32("seen tokens", 2 * seen_cap);
        let penalties = make_dispatch(
            &ctx,
            PipelineKey::new(Kernel::Penalties),
            &[&a.logits, &seen, &penalty_params],
            [1, 1, 1],
        )?;
        let sample = make_dispatch(
            &ctx,
            PipelineKey::new(Kernel::Sample),
            &[&a.logits, &a.token, &sample_params],
            [1, 1, 1],
        )?;

        // Embedding: dequantize the token's row of token_embd, times the embedding scale.
        let embd_key = PipelineKey::new(Kernel::Dequant(token_embd.ty, token_embd.layout));
        let embd_params = ctx.params("embedding", &[]);
        let embd_groups = token_embd
            .chunks
            .iter()
            .map(|ch| ctx.bind(embd_key, &[&ch.buffer, &a.x, &embd_params]))
            .collect::<Result<Vec<_>>>()?;
        let embd_pipeline = ctx.pipeline(embd_key)?.pipeline;

        let ff = rope_freqs.as_deref();
        let inv_freq = rope_inv_freq(c.n_rot, c.rope_base, c.rope_freq_scale, ff);
        let inv_freq_swa = rope_inv_freq(c.n_rot, c.rope_base_swa, c.rope_freq_scale, ff);
        let mut buffers = rec.buffers;
        buffers.push(ap);
        let stage_logits = ctx.staging("logits readback", (c.n_vocab * 4) as u64);
        let stage_token = ctx.staging("token readback", 4);
        Ok(GpuModel {
            n_ctx,
            max_batch,
            alloc_batch: max_batch,
            split_attention_from: SPLIT_ATTENTION_FROM,
            n_split,
            token_embd,
            embd_pipeline,
            embd_params,
            embd_groups,
            layers: layer_dispatches,
            head,
            argmax,
            sample,
            sample_params,
            penalties,
            seen,
            seen_cap,
            penalty_params,
            penalize: false,
            token_mask: None,
            inv_freq,
            inv_freq_swa,
            rope_cs,
            attn_params,
            attn_params_swa,
            step_params,
            acts,
            stage_logits,
            stage_token,
            _keep: keep,
            tied,
            _buffers: buffers,
            cfg,
            ctx,
        })
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
        self.check_span(pos, tokens.len())?;
        let n_batches = tokens.len().div_ceil(self.max_batch);
        for (i, batch) in tokens.chunks(self.max_batch).enumerate() {
            let rb = if i + 1 == n_batches {
                Readback::Logits
            } else {
                Readback::None
            };
            self.step(batch, pos + i * self.max_batch, rb)?;
        }
        let n = self.cfg.n_vocab;
        let b = self.ctx.map_read(&self.stage_logits, n * 4).await?;
        Ok(bytemuck::pod_collect_to_vec(&b))
    }

    /// Run at most `n` (≥ 1, ≤ the allocated batch) tokens per submission; 1 is the
    /// token-by-token path.
    pub fn limit_batch(&mut self, n: usize) {
        self.max_batch = n.clamp(1, self.alloc_batch);
    }

    /// Run one token at `pos` and return the greedy next token, taken on the GPU (a 4-byte
    /// readback).
    pub async fn step_argmax(&mut self, token: u32, pos: usize) -> Result<u32> {
        self.check_span(pos, 1)?;
        self.step(&[token], pos, Readback::Argmax)?;
        let b = self.ctx.map_read(&self.stage_token, 4).await?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
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
        self.check_span(pos, 1)?;
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
                    PipelineKey::new(Kernel::Penalties),
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
        self.step(&[token], pos, Readback::Sample)?;
        let b = self.ctx.map_read(&self.stage_token, 4).await?;
        let id = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if id != SAMPLE_ON_HOST {
            return Ok(id);
        }
        let logits = self.ctx.read_f32(&self.acts.logits, n).await?;
        let u = params.uniform;
        Ok(crate::sampling::choose(&params.config(), &logits, || u))
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

    /// Write the step's parameters for `tokens` (at most `max_batch`) at positions
    /// `pos..pos + n`, encode every dispatch and submit once.
    fn step(&mut self, tokens: &[u32], pos: usize, readback: Readback) -> Result<()> {
        let c = &self.cfg;
        let nb = tokens.len();
        debug_assert!(nb >= 1 && nb <= self.max_batch);
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= c.n_vocab) {
            return Err(Error::TokenOutOfRange {
                id,
                n_vocab: c.n_vocab,
            });
        }
        let q = &self.ctx.queue;
        let te = &self.token_embd;
        let n_units = te.cols / unit_weights(te.ty);
        let scale = c.embd_scale.unwrap_or(1.0);
        let embd_key = PipelineKey::new(Kernel::Dequant(te.ty, te.layout));
        // The embedding rows: the first token through the recorded bind groups, the others
        // (a prefill batch) through bind groups made here.
        let mut embd = Vec::with_capacity(nb);
        for (t, &token) in tokens.iter().enumerate() {
            let (chunk, row) = te.chunk_of(token as usize);
            let words = [
                n_units as u32,
                (row * te.row_bytes) as u32,
                (t * c.n_embd) as u32,
                scale.to_bits(),
            ];
            if t == 0 {
                q.write_buffer(&self.embd_params, 0, bytemuck::cast_slice(&words));
                embd.push(self.embd_groups[chunk].clone());
            } else {
                let p = self.ctx.params("embedding", &words);
                let bufs = [&te.chunks[chunk].buffer, &self.acts.x, &p];
                embd.push(self.ctx.bind(embd_key, &bufs)?);
            }
        }

        // RoPE cos/sin of pos·inv_freq, in f64 as the CPU reference: global, then sliding-window,
        // for each token of the batch.
        let mut cs = Vec::with_capacity(2 * c.n_rot * nb);
        for t in 0..nb {
            for f in self.inv_freq.iter().chain(&self.inv_freq_swa) {
                let th = (pos + t) as f64 * f;
                cs.extend([th.cos() as f32, th.sin() as f32]);
            }
        }
        q.write_buffer(&self.rope_cs, 0, bytemuck::cast_slice(&cs));
        let step_words = [pos as u32, nb as u32];
        q.write_buffer(&self.step_params, 0, bytemuck::cast_slice(&step_words));

        for (buf, window) in [(&self.attn_params, 0), (&self.attn_params_swa, c.n_swa)] {
            let words = [
                self.n_ctx as u32,
                c.group() as u32,
                c.head_dim as u32,
                c.head_dim_v as u32,
                c.kv_dim() as u32,
                (c.n_head_kv * c.head_dim_v) as u32,
                0,
                (pos + 1) as u32,
                c.kq_scale.to_bits(),
                window as u32,
                self.n_split as u32,
            ];
            q.write_buffer(buf, 0, bytemuck::cast_slice(&words));
        }

        let dev = &self.ctx.device;
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("decode step"),
        });
        {
            // One compute pass: the embeddings and every layer, over the batch (z = token).
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("layers"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.embd_pipeline);
            let g = groups_2d(n_units.div_ceil(64));
            for bg in &embd {
                pass.set_bind_group(0, bg, &[]);
                pass.dispatch_workgroups(g[0], g[1], g[2]);
            }
            let long = pos + nb >= self.split_attention_from;
            encode_batch(&mut pass, &self.layers, nb as u32, long);
        }
        if readback != Readback::None {
            // The last token's residual stream, then the head (and argmax or sampling).
            let e4 = (c.n_embd * 4) as u64;
            enc.copy_buffer_to_buffer(&self.acts.x, (nb as u64 - 1) * e4, &self.acts.last, 0, e4);
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("head"),
                timestamp_writes: None,
            });
            encode(&mut pass, &self.head);
            match readback {
                Readback::Argmax => {
                    if let Some(m) = &self.token_mask {
                        m.encode(&mut pass);
                    }
                    encode(&mut pass, std::slice::from_ref(&self.argmax))
                }
                Readback::Sample => {
                    if self.penalize {
                        encode(&mut pass, std::slice::from_ref(&self.penalties));
                    }
                    if let Some(m) = &self.token_mask {
                        m.encode(&mut pass);
                    }
                    encode(&mut pass, std::slice::from_ref(&self.sample));
                }
                Readback::None | Readback::Logits => {}
            }
        }
        match readback {
            Readback::Logits => {
                let n = (c.n_vocab * 4) as u64;
                enc.copy_buffer_to_buffer(&self.acts.logits, 0, &self.stage_logits, 0, n);
            }
            Readback::Argmax | Readback::Sample => {
                enc.copy_buffer_to_buffer(&self.acts.token, 0, &self.stage_token, 0, 4)
            }
            Readback::None => {}
        }
        q.submit([enc.finish()]);
        Ok(())
    }
}

/// One layer's weights on the GPU (matrices) and on the host (vectors, expanded to f32).
struct GpuLayer {
    attn_norm: Vec<f32>,
    wq: GpuMatrix,
    wk: GpuMatrix,
    wv: GpuMatrix,
    bq: Option<Vec<f32>>,
    bk: Option<Vec<f32>>,
    bv: Option<Vec<f32>>,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    wo: GpuMatrix,
    post_attn_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    w_gate: GpuMatrix,
    w_up: GpuMatrix,
    w_down: GpuMatrix,
    post_ffn_norm: Option<Vec<f32>>,
}

/// [`ModelWeights`] with its matrices uploaded.
struct GpuWeights {
    token_embd: GpuMatrix,
    output_norm: Vec<f32>,
    output: Option<GpuMatrix>,
    rope_freqs: Option<Vec<f32>>,
    layers: Vec<GpuLayer>,
}

impl GpuWeights {
    /// Upload weights already in memory.
    fn upload(ctx: &GpuContext, w: &ModelWeights) -> Result<GpuWeights> {
        let up = |q| GpuMatrix::upload(ctx, q);
        let layers = w
            .layers
            .iter()
            .map(|l| {
                Ok(GpuLayer {
                    attn_norm: l.attn_norm.clone(),
                    wq: up(&l.wq)?,
                    wk: up(&l.wk)?,
                    wv: up(&l.wv)?,
                    bq: l.bq.clone(),
                    bk: l.bk.clone(),
                    bv: l.bv.clone(),
                    q_norm: l.q_norm.clone(),
                    k_norm: l.k_norm.clone(),
                    wo: up(&l.wo)?,
                    post_attn_norm: l.post_attn_norm.clone(),
                    ffn_norm: l.ffn_norm.clone(),
                    w_gate: up(&l.w_gate)?,
                    w_up: up(&l.w_up)?,
                    w_down: up(&l.w_down)?,
                    post_ffn_norm: l.post_ffn_norm.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GpuWeights {
            token_embd: up(&w.token_embd)?,
            output_norm: w.output_norm.clone(),
            output: w.output.as_ref().map(up).transpose()?,
            rope_freqs: w.rope_freqs.clone(),
            layers,
        })
    }

    /// Read and upload every weight the architecture needs, tensor by tensor, checking shapes
    /// against `cfg` (the same names and rules as `ModelWeights::load`).
    fn stream(
        ctx: &GpuContext,
        h: &GgufHeader,
        src: &dyn ByteSource,
        cfg: &mut Config,
    ) -> Result<GpuWeights> {
        let info = |name: &str| {
            h.tensor(name).ok_or_else(|| Error::BadModelTensor {
                tensor: name.to_owned(),
                problem: "missing from the model".into(),
            })
        };
        let shape_err = |name: &str, dims: &[u64], want: &[usize]| Error::BadModelTensor {
            tensor: name.to_owned(),
            problem: format!("shape {dims:?}, expected {want:?}"),
        };
        let matrix = |name: &str, rows: usize, cols: usize| -> Result<GpuMatrix> {
            let t = info(name)?;
            if t.dims != [cols as u64, rows as u64] {
                return Err(shape_err(name, &t.dims, &[cols, rows]));
            }
            let at = h.tensor_range(t).start;
            let layout = ctx.layout_for(t.ty);
            GpuMatrix::upload_from(ctx, name, t.ty, (rows, cols), src, at, layout)
        };
        let vector = |name: &str, n: usize| -> Result<Vec<f32>> {
            let t = info(name)?;
            if t.n_elements != n as u64 || t.dims.first() != Some(&(n as u64)) {
                return Err(shape_err(name, &t.dims, &[n]));
            }
            let r = h.tensor_range(t);
            let mut bytes = vec![0u8; (r.end - r.start) as usize];
            src.read_at(r.start, &mut bytes)?;
            crate::quant::dequantize_to_vec(t.ty, &bytes, n).map_err(|source| Error::Tensor {
                tensor: name.to_owned(),
                source,
            })
        };
        let optional = |name: &str, n: usize| match h.tensor(name) {
            Some(_) => vector(name, n).map(Some),
            None => Ok(None),
        };

        let e = cfg.n_embd;
        let embd = info("token_embd.weight")?;
        let n_vocab = embd.dims.get(1).copied().unwrap_or(0) as usize;
        if cfg.n_vocab != 0 && cfg.n_vocab != n_vocab {
            return Err(shape_err(
                "token_embd.weight",
                &embd.dims,
                &[e, cfg.n_vocab],
            ));
        }
        cfg.n_vocab = n_vocab;
        let (q_dim, kv_dim, v_dim) = (
            cfg.n_head * cfg.head_dim,
            cfg.kv_dim(),
            cfg.n_head_kv * cfg.head_dim_v,
        );
        let gemma = cfg.arch == Arch::Gemma3;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let p = |s: &str| format!("blk.{l}.{s}");
            let gemma_norm = |s: &str| {
                if gemma {
                    vector(&p(s), e).map(Some)
                } else {
                    Ok(None)
                }
            };
            layers.push(GpuLayer {
                attn_norm: vector(&p("attn_norm.weight"), e)?,
                wq: matrix(&p("attn_q.weight"), q_dim, e)?,
                wk: matrix(&p("attn_k.weight"), kv_dim, e)?,
                wv: matrix(&p("attn_v.weight"), v_dim, e)?,
                bq: optional(&p("attn_q.bias"), q_dim)?,
                bk: optional(&p("attn_k.bias"), kv_dim)?,
                bv: optional(&p("attn_v.bias"), v_dim)?,
                q_norm: optional(&p("attn_q_norm.weight"), cfg.head_dim)?,
                k_norm: optional(&p("attn_k_norm.weight"), cfg.head_dim)?,
                wo: matrix(&p("attn_output.weight"), e, cfg.n_head * cfg.head_dim_v)?,
                post_attn_norm: gemma_norm("post_attention_norm.weight")?,
                ffn_norm: vector(&p("ffn_norm.weight"), e)?,
                w_gate: matrix(&p("ffn_gate.weight"), cfg.n_ff, e)?,
                w_up: matrix(&p("ffn_up.weight"), cfg.n_ff, e)?,
                w_down: matrix(&p("ffn_down.weight"), e, cfg.n_ff)?,
                post_ffn_norm: gemma_norm("post_ffw_norm.weight")?,
            });
        }
        Ok(GpuWeights {
            token_embd: matrix("token_embd.weight", n_vocab, e)?,
            output_norm: vector("output_norm.weight", e)?,
            output: match h.tensor("output.weight") {
                Some(_) => Some(matrix("output.weight", n_vocab, e)?),
                None => None,
            },
            rope_freqs: optional("rope_freqs.weight", cfg.n_rot / 2)?,
            layers,
        })
    }
}
