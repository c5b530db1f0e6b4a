//! Constrained decoding on the GPU: `token_mask.wgsl` sets the logits of the tokens a grammar
//! does not allow to −∞, inside the step's submission (a decode step's, or the prefill's for
//! the first token), after the head (and penalties) and before `argmax.wgsl` / `sample.wgsl`.
//! The host computes the allowed set per step
//! (llguidance, [`crate::constrain`]) and uploads it as a bitmask of ⌈n/32⌉ words, so the step
//! still reads back 4 bytes. Without a constraint nothing here is created or dispatched.
//!
//! CPU reference: [`crate::sampling::apply_token_mask`] (tests/gpu_token_mask.rs compares them).

use super::kernels::{PipelineKey, Shader};
use super::GpuContext;
use crate::Result;

/// `Params` of token_mask.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TokenMaskParams {
    /// Logits in the buffer.
    pub n: u32,
}

/// Mask words for `n` logits.
pub fn mask_words(n: usize) -> usize {
    n.div_ceil(32)
}

/// Workgroups of token_mask.wgsl for `n` logits (one invocation per mask word, 256 per group).
pub fn mask_groups(n: usize) -> [u32; 3] {
    [mask_words(n).div_ceil(256).max(1) as u32, 1, 1]
}

/// The recorded mask dispatch of a model's decode step, over its logits buffer.
pub(crate) struct TokenMask {
    n: usize,
    bits: wgpu::Buffer,
    pipeline: wgpu::ComputePipeline,
    group: wgpu::BindGroup,
    /// Whether the next argmax/sample step applies the mask.
    pub active: bool,
    /// The words as uploaded (a mask shorter than the logits is padded with zeros: disallowed).
    scratch: Vec<u32>,
}

impl TokenMask {
    pub fn new(ctx: &GpuContext, logits: &wgpu::Buffer, n: usize) -> Result<Self> {
        let key = PipelineKey::new(Shader::TokenMask);
        let bits = ctx.storage_f32("token mask", mask_words(n));
        let params = TokenMaskParams { n: n as u32 };
        let p = ctx.params("token mask", bytemuck::cast_slice(&[params]));
        Ok(TokenMask {
            n,
            pipeline: ctx.pipeline(key)?.pipeline,
            group: ctx.bind(key, &[logits, &bits, &p])?,
            bits,
            active: false,
            scratch: vec![0; mask_words(n)],
        })
    }

    /// Uploads `mask` (bit `i % 32` of word `i / 32` set when token `i` is allowed) for the next
    /// step.
    pub fn upload(&mut self, queue: &wgpu::Queue, mask: &[u32]) {
        let k = mask.len().min(self.scratch.len());
        self.scratch[..k].copy_from_slice(&mask[..k]);
        self.scratch[k..].fill(0);
        queue.write_buffer(&self.bits, 0, bytemuck::cast_slice(&self.scratch));
        self.active = true;
    }

    /// Records the dispatch (when active).
    /// Encode the mask's dispatch when it is active; returns the dispatches encoded (0 or 1).
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) -> usize {
        if !self.active {
            return 0;
        }
        let g = mask_groups(self.n);
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        pass.dispatch_workgroups(g[0], g[1], g[2]);
        1
    }
}

/// Apply `mask` to the `n` logits in `logits`, in place (one submission; tests).
pub fn token_mask_once(
    ctx: &GpuContext,
    logits: &wgpu::Buffer,
    n: usize,
    mask: &[u32],
) -> Result<()> {
    let mut words = vec![0u32; mask_words(n)];
    let k = mask.len().min(words.len());
    words[..k].copy_from_slice(&mask[..k]);
    let bits = ctx.storage_with("token mask", bytemuck::cast_slice(&words));
    let params = TokenMaskParams { n: n as u32 };
    let p = ctx.params("token mask", bytemuck::cast_slice(&[params]));
    ctx.run_once(
        PipelineKey::new(Shader::TokenMask),
        &[logits, &bits, &p],
        mask_groups(n),
    )
}
