//! Sampling on the GPU: [`GpuSampling`] (the settings `penalties.wgsl` and `sample.wgsl` read)
//! and one-off runs of those kernels for tests ([`sample_once`], [`penalties_once`]).

use super::super::kernels::{PipelineKey, Shader};
use super::super::GpuContext;
use crate::Result;

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
        PipelineKey::new(Shader::Sample),
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
        PipelineKey::new(Shader::Penalties),
        &[logits, &sb, &p],
        [1, 1, 1],
    )
}
