//! The uniforms of the layer kernels: each a `#[repr(C)]` [`bytemuck::Pod`] struct that mirrors
//! its WGSL `Params` field by field. Only u32 and f32 fields, so WGSL's uniform layout (4-byte
//! alignment for scalars) and Rust's agree; the derive refuses padding at compile time.

use bytemuck::{Pod, Zeroable};

/// add.wgsl: `y = (y + b_scale·b) · y_scale`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct AddParams {
    /// Values per row.
    pub n: u32,
    /// 1: `b` has a row per token (a residual); 0: one row (a bias).
    pub b_batched: u32,
    /// Granite's `residual_scale` on a block's output; 1 otherwise.
    pub b_scale: f32,
    /// Gemma 4's `layer_output_scale` on the sum; 1 otherwise.
    pub y_scale: f32,
}

impl AddParams {
    /// A plain `y += b`.
    pub fn new(n: usize, b_batched: bool) -> Self {
        AddParams {
            n: n as u32,
            b_batched: u32::from(b_batched),
            b_scale: 1.0,
            y_scale: 1.0,
        }
    }
}

/// rope.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct RopeParams {
    pub n_heads: u32,
    pub head_dim: u32,
    /// Rotated dimensions per head (≤ head_dim).
    pub n_rot: u32,
    /// 1: NeoX pairs (i, i + n_rot/2); 0: adjacent pairs.
    pub neox: u32,
    /// Where this layer's [cos, sin] table starts in a token's row of the cos/sin buffer.
    pub cs_off: u32,
    /// Multiplies every value after the rotation (Gemma 3's q_scale; 1 otherwise).
    pub scale: f32,
    /// Floats per token in the cos/sin buffer.
    pub cs_stride: u32,
}

/// rmsnorm.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct RmsNormParams {
    pub n: u32,
    pub eps: f32,
}

/// attention.wgsl, attention_split.wgsl and attention_combine.wgsl (one buffer for the three;
/// the first two ignore `n_split`). `first` and `n_kv` change every step.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct AttentionParams {
    pub n_ctx: u32,
    /// Q heads per KV head.
    pub group: u32,
    pub head_dim: u32,
    pub head_dim_v: u32,
    /// Values per position in the K cache (n_head_kv·head_dim) and the V cache.
    pub kv_dim: u32,
    pub v_dim: u32,
    pub first: u32,
    /// Cached positions the batch's first token sees (its position + 1).
    pub n_kv: u32,
    pub kq_scale: f32,
    /// Sliding window in positions; 0: none.
    pub window: u32,
    /// Split-K chunks.
    pub n_split: u32,
}

/// softcap.wgsl: `v = cap · tanh(v / cap)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct SoftcapParams {
    pub n: u32,
    pub cap: f32,
}

/// The `Step` every kernel that walks a step's tokens reads (causal_conv.wgsl,
/// delta_rule.wgsl, kv_store.wgsl, ...): the first token's position and the step's tokens.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct StepParams {
    pub pos: u32,
    pub n_tokens: u32,
}

/// causal_conv.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct CausalConvParams {
    /// Channels (LFM2: n_embd; Qwen3.5: Q, K and V).
    pub n: u32,
    /// Taps (L).
    pub taps: u32,
}

/// split_gate.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct SplitGateParams {
    /// Query values per token (n_head·head_dim).
    pub n: u32,
    pub head_dim: u32,
}

/// delta_rule.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct DeltaRuleParams {
    /// Head size S (≤ 256).
    pub s: u32,
    pub k_heads: u32,
    pub v_heads: u32,
    /// Channels of the convolved Q, K, V per token.
    pub conv_dim: u32,
    pub eps: f32,
}

/// embed_token.wgsl: one chunk of token_embd, whose rows `row_start..row_start + rows` it holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct EmbedTokenParams {
    /// Units (of the format's `unit_weights`) per row.
    pub n_units: u32,
    /// Bytes per row, in the uploaded layout.
    pub row_bytes: u32,
    pub row_start: u32,
    pub rows: u32,
    /// The embedding scale (Gemma's √n_embd; 1 otherwise).
    pub scale: f32,
}
