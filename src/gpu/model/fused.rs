//! The fused decode kernels' dispatches: `matvec_qkv.wgsl` (RMSNorm + Q/K/V + biases + RoPE + KV
//! store), `matvec_glu.wgsl` (RMSNorm + gate and up + activation) and `matvec_fused.wgsl` (the
//! output projections with the residual add, the output head with its RMSNorm), so a decode
//! layer is 5 dispatches (6 with split-K attention) instead of 17.
//!
//! What we took from other engines:
//! - llama.cpp's ggml-webgpu (ggml/src/ggml-webgpu/ggml-webgpu.cpp) fuses RMS_NORM + MUL into
//!   one pipeline chosen by a pipeline key, and specialises pipelines per quant type from
//!   templated WGSL; we specialise per format combination with [`kernels::suffixed`] readers
//!   (`Shader::MatvecQkv([(type, layout); 3])`) and override constants.
//! - llama.cpp's CUDA backend fuses RMS_NORM + MUL (+ ROPE) and ROPE + VIEW + SET_ROWS (the KV
//!   cache write: `ggml_cuda_should_fuse_rope_set_rows`); here RoPE and the cache write are the
//!   epilogue of the Q/K/V product itself, so attention reads the new K/V from the cache.
//! - Rather than a separate norm pass, every workgroup recomputes the RMSNorm scale (Σx² over
//!   n_embd values, in cache after the first workgroup), trading a few KB of cached reads for a
//!   dispatch and a barrier.
//!
//! [`kernels::suffixed`]: super::super::kernels::suffixed

use super::super::kernels::{groups_2d, PipelineKey, Shader};
use super::super::{GpuContext, GpuMatrix};
use super::dispatch::{make_dispatch, Dispatch};
use crate::Result;

/// Uniform of matvec_fused.wgsl (`Params`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FusedParams {
    pub rows: u32,
    pub cols: u32,
    pub row_bytes: u32,
    pub y_off: u32,
    pub eps: f32,
    pub scale: f32,
}

/// Uniform of matvec_qkv.wgsl (`Params`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct QkvParams {
    pub cols: u32,
    pub eps: f32,
    pub q_rows: u32,
    pub k_rows: u32,
    pub v_rows: u32,
    pub q_row_bytes: u32,
    pub k_row_bytes: u32,
    pub v_row_bytes: u32,
    pub head_dim: u32,
    pub neox: u32,
    pub cs_off: u32,
    pub q_scale: f32,
    pub has_bias: u32,
}

/// Uniform of matvec_glu.wgsl (`Params`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GluParams {
    pub rows: u32,
    pub cols: u32,
    pub gate_row_bytes: u32,
    pub up_row_bytes: u32,
    pub eps: f32,
}

/// Floats in the cos/sin uniform of matvec_qkv.wgsl (`array<vec4<f32>, 128>`): the first
/// token's row of the cos/sin tables (a layer fuses when its table lies within it).
pub const QKV_CS_FLOATS: usize = 512;

/// Rows per workgroup of the fused kernels for rows of `cols` columns: as matvec.wgsl (a
/// multiple of 4 for matvec_qkv.wgsl's RoPE quads; even for matvec_glu.wgsl's row pairs).
pub fn fused_rows(cols: usize) -> u32 {
    super::dispatch::matvec_rows(cols).max(4)
}

/// What matvec_fused.wgsl does around the product: `y (+)= scale · W·h`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FusedEnds {
    /// `Some(eps)`: h = RMSNorm(x)·wt; `None`: h = x.
    pub norm: Option<f32>,
    /// Add to y (a residual) instead of writing it.
    pub add: bool,
    pub scale: f32,
}

impl FusedEnds {
    /// An output projection added to the residual stream, times `scale`.
    pub fn residual(scale: f32) -> Self {
        FusedEnds {
            norm: None,
            add: true,
            scale,
        }
    }

    /// The output head: the output norm in front, the logits times `scale`.
    pub fn head(eps: f32, scale: f32) -> Self {
        FusedEnds {
            norm: Some(eps),
            add: false,
            scale,
        }
    }
}

/// y (+)= scale · W·h for one token, as `ends` says (`wt` any buffer without a norm): one
/// dispatch per row range of W.
pub fn fused_dispatches(
    ctx: &GpuContext,
    m: &GpuMatrix,
    x: &wgpu::Buffer,
    wt: &wgpu::Buffer,
    y: &wgpu::Buffer,
    ends: FusedEnds,
) -> Result<Vec<Dispatch>> {
    let rows = fused_rows(m.cols);
    let key = PipelineKey {
        rows,
        norm: u32::from(ends.norm.is_some()),
        add: u32::from(ends.add),
        ..PipelineKey::new(Shader::MatvecFused(m.ty, m.layout))
    };
    m.chunks
        .iter()
        .map(|c| {
            let p = FusedParams {
                rows: c.rows as u32,
                cols: m.cols as u32,
                row_bytes: m.row_bytes as u32,
                y_off: c.row_start as u32,
                eps: ends.norm.unwrap_or(0.0),
                scale: ends.scale,
            };
            let pb = ctx.uniform("matvec_fused", &p);
            let groups = groups_2d(c.rows.div_ceil(rows as usize));
            make_dispatch(ctx, key, &[&c.buffer, x, wt, y, &pb], groups)
        })
        .collect()
}

/// What matvec_qkv.wgsl needs besides the matrices: the shapes of the attention block.
#[derive(Clone, Copy, Debug)]
pub struct QkvShape {
    pub head_dim: usize,
    pub neox: bool,
    /// Where this layer's table starts in the cos/sin uniform (floats).
    pub cs_off: usize,
    pub q_scale: f32,
    pub eps: f32,
    pub has_bias: bool,
    pub kv_f16: bool,
}

/// Buffers of a matvec_qkv.wgsl dispatch, in binding order after the three matrices.
pub struct QkvBuffers<'a> {
    pub x: &'a wgpu::Buffer,
    /// attn_norm weight, then bq, bk, bv when the shape has biases.
    pub vecs: &'a wgpu::Buffer,
    pub q: &'a wgpu::Buffer,
    pub k_cache: &'a wgpu::Buffer,
    pub v_cache: &'a wgpu::Buffer,
    /// The step's parameters (pos first).
    pub step: &'a wgpu::Buffer,
    /// The token's cos/sin ([`QKV_CS_FLOATS`] floats, uniform).
    pub cos_sin: &'a wgpu::Buffer,
}

/// Whether matvec_qkv.wgsl can take Q, K and V of these shapes: one chunk each, RoPE over the
/// whole head, heads of whole quads, the layer's cos/sin table (at `cs_off`) within the
/// uniform.
pub fn qkv_fusable(m: [&GpuMatrix; 3], head_dim: usize, n_rot: usize, cs_off: usize) -> bool {
    m.iter()
        .all(|w| w.chunks.len() == 1 && w.rows.is_multiple_of(4) && w.cols == m[0].cols)
        && n_rot == head_dim
        && head_dim.is_multiple_of(4)
        && cs_off + n_rot <= QKV_CS_FLOATS
}

/// The one dispatch of matvec_qkv.wgsl for `m` = [Wq, Wk, Wv] (see [`qkv_fusable`]).
pub fn qkv_dispatch(
    ctx: &GpuContext,
    m: [&GpuMatrix; 3],
    b: &QkvBuffers<'_>,
    s: &QkvShape,
) -> Result<Dispatch> {
    let rows = fused_rows(m[0].cols);
    let key = PipelineKey {
        rows,
        kv_f16: u32::from(s.kv_f16),
        ..PipelineKey::new(Shader::MatvecQkv([
            (m[0].ty, m[0].layout),
            (m[1].ty, m[1].layout),
            (m[2].ty, m[2].layout),
        ]))
    };
    let p = QkvParams {
        cols: m[0].cols as u32,
        eps: s.eps,
        q_rows: m[0].rows as u32,
        k_rows: m[1].rows as u32,
        v_rows: m[2].rows as u32,
        q_row_bytes: m[0].row_bytes as u32,
        k_row_bytes: m[1].row_bytes as u32,
        v_row_bytes: m[2].row_bytes as u32,
        head_dim: s.head_dim as u32,
        neox: u32::from(s.neox),
        cs_off: s.cs_off as u32,
        q_scale: s.q_scale,
        has_bias: u32::from(s.has_bias),
    };
    let pb = ctx.uniform("matvec_qkv", &p);
    let total = m.iter().map(|m| m.rows).sum::<usize>();
    let bufs = [
        &m[0].chunks[0].buffer,
        &m[1].chunks[0].buffer,
        &m[2].chunks[0].buffer,
        b.x,
        b.vecs,
        b.q,
        b.k_cache,
        b.v_cache,
        &pb,
        b.step,
        b.cos_sin,
    ];
    make_dispatch(ctx, key, &bufs, groups_2d(total.div_ceil(rows as usize)))
}

/// Whether matvec_glu.wgsl can take these gate and up matrices: one chunk each, same shape.
pub fn glu_fusable(gate: &GpuMatrix, up: &GpuMatrix) -> bool {
    gate.chunks.len() == 1 && up.chunks.len() == 1 && (gate.rows, gate.cols) == (up.rows, up.cols)
}

/// The one dispatch of matvec_glu.wgsl: y = act(W_gate·h) · (W_up·h), h = RMSNorm(x)·wt;
/// `act` 0 SiLU, 1 GELU (tanh).
#[allow(clippy::too_many_arguments)]
pub fn glu_dispatch(
    ctx: &GpuContext,
    gate: &GpuMatrix,
    up: &GpuMatrix,
    x: &wgpu::Buffer,
    wt: &wgpu::Buffer,
    y: &wgpu::Buffer,
    act: u32,
    eps: f32,
) -> Result<Dispatch> {
    let rows = fused_rows(gate.cols);
    let key = PipelineKey {
        rows,
        act,
        ..PipelineKey::new(Shader::MatvecGlu([
            (gate.ty, gate.layout),
            (up.ty, up.layout),
        ]))
    };
    let p = GluParams {
        rows: gate.rows as u32,
        cols: gate.cols as u32,
        gate_row_bytes: gate.row_bytes as u32,
        up_row_bytes: up.row_bytes as u32,
        eps,
    };
    let pb = ctx.uniform("matvec_glu", &p);
    let groups = groups_2d(gate.rows.div_ceil(rows as usize / 2));
    let bufs = [&gate.chunks[0].buffer, &up.chunks[0].buffer, x, wt, y, &pb];
    make_dispatch(ctx, key, &bufs, groups)
}

/// Run dispatches once (tests): one submission.
pub fn run_dispatches(ctx: &GpuContext, ds: &[Dispatch]) {
    let cmd = ctx.one_pass("fused", |pass| {
        super::dispatch::encode(pass, ds);
    });
    ctx.queue.submit([cmd]);
}
