//! The WGSL kernels, their bind-group layouts and the pipeline cache.
//!
//! Each kernel lives in its own file under `shaders/`. Kernels over quantized weights
//! (`dequant.wgsl`, `embed_token.wgsl`, `matvec.wgsl`, `matmat.wgsl`) are prefixed with
//! `quant.wgsl` (value helpers), one `layout_*.wgsl` (how blocks sit in the buffer: [`Layout`])
//! and one `fmt_*.wgsl` (the block format's `unit_scale` / `unit_q4`), joined as plain text;
//! variants are specialised with WGSL `override` constants (`ROWS`, `ACT`), and pipelines are cached by [`PipelineKey`].

use std::collections::HashMap;
use std::sync::Mutex;

use super::{GpuContext, GpuError};
use crate::quant::{grids, GgmlType};
use crate::Result;

const QUANT: &str = include_str!("shaders/quant.wgsl");

/// Every shader file, by name: kernels and the helper files they are built from.
pub const SHADER_FILES: &[(&str, &str)] = &[
    ("quant.wgsl", QUANT),
    (
        "layout_packed.wgsl",
        include_str!("shaders/layout_packed.wgsl"),
    ),
    (
        "layout_aligned.wgsl",
        include_str!("shaders/layout_aligned.wgsl"),
    ),
    ("fmt_q4_k.wgsl", include_str!("shaders/fmt_q4_k.wgsl")),
    ("fmt_q6_k.wgsl", include_str!("shaders/fmt_q6_k.wgsl")),
    ("fmt_q5_0.wgsl", include_str!("shaders/fmt_q5_0.wgsl")),
    ("fmt_q8_0.wgsl", include_str!("shaders/fmt_q8_0.wgsl")),
    ("fmt_q4_0.wgsl", include_str!("shaders/fmt_q4_0.wgsl")),
    ("fmt_q4_1.wgsl", include_str!("shaders/fmt_q4_1.wgsl")),
    ("fmt_f16.wgsl", include_str!("shaders/fmt_f16.wgsl")),
    ("fmt_f32.wgsl", include_str!("shaders/fmt_f32.wgsl")),
    ("fmt_q5_1.wgsl", include_str!("shaders/fmt_q5_1.wgsl")),
    ("fmt_q2_k.wgsl", include_str!("shaders/fmt_q2_k.wgsl")),
    ("fmt_q3_k.wgsl", include_str!("shaders/fmt_q3_k.wgsl")),
    ("fmt_q5_k.wgsl", include_str!("shaders/fmt_q5_k.wgsl")),
    ("fmt_bf16.wgsl", include_str!("shaders/fmt_bf16.wgsl")),
    ("fmt_iq4_nl.wgsl", include_str!("shaders/fmt_iq4_nl.wgsl")),
    ("fmt_iq4_xs.wgsl", include_str!("shaders/fmt_iq4_xs.wgsl")),
    ("fmt_iq3_xxs.wgsl", include_str!("shaders/fmt_iq3_xxs.wgsl")),
    ("fmt_iq3_s.wgsl", include_str!("shaders/fmt_iq3_s.wgsl")),
    ("fmt_iq2_xxs.wgsl", include_str!("shaders/fmt_iq2_xxs.wgsl")),
    ("fmt_iq2_xs.wgsl", include_str!("shaders/fmt_iq2_xs.wgsl")),
    ("fmt_iq2_s.wgsl", include_str!("shaders/fmt_iq2_s.wgsl")),
    ("fmt_iq1_s.wgsl", include_str!("shaders/fmt_iq1_s.wgsl")),
    ("fmt_iq1_m.wgsl", include_str!("shaders/fmt_iq1_m.wgsl")),
    ("fmt_mxfp4.wgsl", include_str!("shaders/fmt_mxfp4.wgsl")),
    ("dequant.wgsl", include_str!("shaders/dequant.wgsl")),
    ("embed_token.wgsl", include_str!("shaders/embed_token.wgsl")),
    ("matvec.wgsl", include_str!("shaders/matvec.wgsl")),
    ("matmat.wgsl", include_str!("shaders/matmat.wgsl")),
    ("rmsnorm.wgsl", include_str!("shaders/rmsnorm.wgsl")),
    ("rope.wgsl", include_str!("shaders/rope.wgsl")),
    (
        "attention_common.wgsl",
        include_str!("shaders/attention_common.wgsl"),
    ),
    (
        "attention_row.wgsl",
        include_str!("shaders/attention_row.wgsl"),
    ),
    ("attention.wgsl", include_str!("shaders/attention.wgsl")),
    (
        "attention_split.wgsl",
        include_str!("shaders/attention_split.wgsl"),
    ),
    (
        "attention_combine.wgsl",
        include_str!("shaders/attention_combine.wgsl"),
    ),
    ("softmax.wgsl", include_str!("shaders/softmax.wgsl")),
    ("softcap.wgsl", include_str!("shaders/softcap.wgsl")),
    ("split_gate.wgsl", include_str!("shaders/split_gate.wgsl")),
    ("causal_conv.wgsl", include_str!("shaders/causal_conv.wgsl")),
    ("delta_rule.wgsl", include_str!("shaders/delta_rule.wgsl")),
    ("gate.wgsl", include_str!("shaders/gate.wgsl")),
    ("add.wgsl", include_str!("shaders/add.wgsl")),
    ("argmax.wgsl", include_str!("shaders/argmax.wgsl")),
    ("sample.wgsl", include_str!("shaders/sample.wgsl")),
    ("penalties.wgsl", include_str!("shaders/penalties.wgsl")),
    ("token_mask.wgsl", include_str!("shaders/token_mask.wgsl")),
    ("kv_store.wgsl", include_str!("shaders/kv_store.wgsl")),
    (
        "kv_store_rows.wgsl",
        include_str!("shaders/kv_store_rows.wgsl"),
    ),
    (
        "attention_rows.wgsl",
        include_str!("shaders/attention_rows.wgsl"),
    ),
    ("matvec_row.wgsl", include_str!("shaders/matvec_row.wgsl")),
    (
        "matvec_row_pairs.wgsl",
        include_str!("shaders/matvec_row_pairs.wgsl"),
    ),
    ("matmat_row.wgsl", include_str!("shaders/matmat_row.wgsl")),
    (
        "matmat_row_pairs.wgsl",
        include_str!("shaders/matmat_row_pairs.wgsl"),
    ),
    ("reduce_wg.wgsl", include_str!("shaders/reduce_wg.wgsl")),
    ("reduce_sg.wgsl", include_str!("shaders/reduce_sg.wgsl")),
    (
        "matvec_fused.wgsl",
        include_str!("shaders/matvec_fused.wgsl"),
    ),
    ("matvec_qkv.wgsl", include_str!("shaders/matvec_qkv.wgsl")),
    ("matvec_glu.wgsl", include_str!("shaders/matvec_glu.wgsl")),
];

fn file(name: &str) -> &'static str {
    SHADER_FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .unwrap_or("")
}

/// A block format the GPU reads: its reader (`fmt_*.wgsl`, giving `unit_scale` / `unit_q4` over
/// units of `unit_weights`) and how its blocks may sit in a buffer. The reader's own constants
/// (`UNIT_W`, `BLOCK_BYTES`, `ALIGN_LEAD`, `TABLE_BYTES`) must agree; tests/gpu_kernels.rs checks that they do.
#[derive(Clone, Copy, Debug)]
pub struct GpuFormat {
    pub ty: GgmlType,
    /// The reader, by its name in [`SHADER_FILES`].
    pub file: &'static str,
    /// Weights per unit (the reader's `UNIT_W`): the granularity of dequant.wgsl. Kernels read
    /// four weights at a time (`unit_q4`).
    pub unit_weights: usize,
    /// For a format `layout_aligned.wgsl` reads: the zero bytes put before each block when it
    /// is uploaded (the reader's `ALIGN_LEAD`; 0 also for blocks that are word-aligned as they
    /// are). `None`: packed only.
    pub align_lead: Option<usize>,
    /// The lookup table the reader finds in the first `TABLE_BYTES` of every weight buffer,
    /// ahead of the blocks (the grids of the IQ formats, as little-endian words; see
    /// fmt_iq2_xxs.wgsl for why there), or `None`.
    pub table: Option<fn() -> Vec<u32>>,
    /// Units come in pairs over shared bytes (Q4_K: units 2k and 2k+1 are the low and high
    /// nibbles of the same qs), and the reader gives `PAIRS_PER_BLOCK`, `pair_scale` and
    /// `pair_qs`: matvec and matmat then read each shared word once and decode both halves
    /// (matvec_row_pairs.wgsl, matmat_row_pairs.wgsl) instead of one quad of one unit per step.
    pub pairs: bool,
}

const fn fmt(
    ty: GgmlType,
    file: &'static str,
    unit_weights: usize,
    align_lead: Option<usize>,
) -> GpuFormat {
    GpuFormat {
        ty,
        file,
        unit_weights,
        align_lead,
        table: None,
        pairs: false,
    }
}

/// [`fmt`] with a lookup table ahead of the blocks.
const fn fmt_table(
    ty: GgmlType,
    file: &'static str,
    unit_weights: usize,
    align_lead: Option<usize>,
    table: fn() -> Vec<u32>,
) -> GpuFormat {
    GpuFormat {
        table: Some(table),
        ..fmt(ty, file, unit_weights, align_lead)
    }
}

/// A grid of u64 rows as little-endian words (low word first).
fn grid64(g: &[u64]) -> Vec<u32> {
    g.iter()
        .flat_map(|&r| [r as u32, (r >> 32) as u32])
        .collect()
}

fn iq2xxs_grid() -> Vec<u32> {
    grid64(&grids::IQ2XXS_GRID)
}
fn iq2xs_grid() -> Vec<u32> {
    grid64(&grids::IQ2XS_GRID)
}
fn iq2s_grid() -> Vec<u32> {
    grid64(&grids::IQ2S_GRID)
}
fn iq3xxs_grid() -> Vec<u32> {
    grids::IQ3XXS_GRID.to_vec()
}
fn iq3s_grid() -> Vec<u32> {
    grids::IQ3S_GRID.to_vec()
}
fn iq1s_grid() -> Vec<u32> {
    grid64(&grids::IQ1S_GRID)
}

/// Every block format with GPU kernels.
pub const FORMATS: [GpuFormat; 23] = {
    use GgmlType::*;
    [
        GpuFormat {
            pairs: true,
            ..fmt(Q4_K, "fmt_q4_k.wgsl", 32, Some(0))
        },
        fmt(Q6_K, "fmt_q6_k.wgsl", 16, Some(0)),
        fmt(Q5_0, "fmt_q5_0.wgsl", 32, Some(2)),
        fmt(Q8_0, "fmt_q8_0.wgsl", 32, Some(2)),
        fmt(Q4_0, "fmt_q4_0.wgsl", 32, Some(2)),
        fmt(Q4_1, "fmt_q4_1.wgsl", 32, Some(0)),
        fmt(F16, "fmt_f16.wgsl", 4, None),
        fmt(F32, "fmt_f32.wgsl", 4, None),
        fmt(Q5_1, "fmt_q5_1.wgsl", 32, Some(0)),
        fmt(Q2_K, "fmt_q2_k.wgsl", 16, Some(0)),
        fmt(Q3_K, "fmt_q3_k.wgsl", 16, Some(0)),
        fmt(Q5_K, "fmt_q5_k.wgsl", 32, Some(0)),
        fmt(BF16, "fmt_bf16.wgsl", 4, None),
        fmt(IQ4_NL, "fmt_iq4_nl.wgsl", 32, Some(2)),
        fmt(IQ4_XS, "fmt_iq4_xs.wgsl", 32, Some(0)),
        fmt_table(IQ3_XXS, "fmt_iq3_xxs.wgsl", 32, Some(2), iq3xxs_grid),
        fmt_table(IQ3_S, "fmt_iq3_s.wgsl", 32, Some(2), iq3s_grid),
        fmt_table(IQ2_XXS, "fmt_iq2_xxs.wgsl", 32, Some(2), iq2xxs_grid),
        fmt_table(IQ2_XS, "fmt_iq2_xs.wgsl", 16, Some(2), iq2xs_grid),
        fmt_table(IQ2_S, "fmt_iq2_s.wgsl", 16, Some(2), iq2s_grid),
        fmt_table(IQ1_S, "fmt_iq1_s.wgsl", 32, Some(2), iq1s_grid),
        fmt_table(IQ1_M, "fmt_iq1_m.wgsl", 8, Some(0), iq1s_grid),
        fmt(MXFP4, "fmt_mxfp4.wgsl", 32, Some(3)),
    ]
};

/// Block formats with GPU kernels (those of [`FORMATS`], in its order).
pub const GPU_TYPES: [GgmlType; FORMATS.len()] = {
    let mut v = [GgmlType::F32; FORMATS.len()];
    let mut i = 0;
    while i < v.len() {
        v[i] = FORMATS[i].ty;
        i += 1;
    }
    v
};

/// The GPU format of `ty`, or `None` when the GPU has no kernel for it.
pub fn gpu_format(ty: GgmlType) -> Option<&'static GpuFormat> {
    FORMATS.iter().find(|f| f.ty == ty)
}

/// The format helper file of `ty`, or `None` when the GPU has no kernel for it.
pub fn format_file(ty: GgmlType) -> Option<&'static str> {
    gpu_format(ty).map(|f| file(f.file))
}

/// The GPU-supported types as a list for messages (`"Q4_K, Q6_K, ..."`).
pub fn gpu_type_names() -> String {
    GPU_TYPES.map(|t| t.name()).join(", ")
}

/// How a matrix's blocks sit in its GPU buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// The GGUF bytes unchanged; unaligned fields are read through two-word funnel shifts
    /// (`layout_packed.wgsl`).
    Packed,
    /// Word-aligned blocks read with single loads (`layout_aligned.wgsl`): Q4_K, Q5_K, Q2_K,
    /// Q4_1, Q5_1, IQ4_XS and IQ1_M as they are, the others (Q6_K, Q3_K, Q8_0, Q5_0, Q4_0, the
    /// other IQ formats, MXFP4) repacked at upload, each block padded to whole words (see
    /// [`aligned_block`]).
    Aligned,
}

/// For a block format `layout_aligned.wgsl` reads: the zero bytes put before each block and the
/// block size in the buffer (for blocks aligned already, such as Q4_K and Q4_1: as in the file).
pub fn aligned_block(ty: GgmlType) -> Option<(usize, usize)> {
    let lead = gpu_format(ty)?.align_lead?;
    let bytes = ty.block_geometry().1;
    Some((lead, (lead + bytes).next_multiple_of(4)))
}

/// The layouts `ty` can be uploaded in: packed, and aligned where the format has it.
pub fn layouts(ty: GgmlType) -> Vec<Layout> {
    let mut v = vec![Layout::Packed];
    v.extend(aligned_block(ty).map(|_| Layout::Aligned));
    v
}

/// Weights per unit (the granularity of `dequant.wgsl`; see [`GpuFormat::unit_weights`]), or
/// the block size for a format without GPU kernels.
pub fn unit_weights(ty: GgmlType) -> usize {
    gpu_format(ty).map_or(ty.block_size(), |f| f.unit_weights)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    Dequant(GgmlType, Layout),
    /// The embedding row of the token a previous step left on the device (pipelined decode).
    EmbedToken(GgmlType, Layout),
    Matvec(GgmlType, Layout),
    /// Quantized matrix × a batch of activations (prefill): [`MATMAT_TOKENS`] tokens per
    /// workgroup share each dequantized weight.
    Matmat(GgmlType, Layout),
    RmsNorm,
    Rope,
    Attention,
    /// Split-K attention, pass 1: partial softmax statistics per chunk of 256 positions.
    AttentionSplit,
    /// Split-K attention, pass 2: merge the chunks.
    AttentionCombine,
    Softmax,
    /// The final logit soft-cap (Gemma 4).
    Softcap,
    /// A depthwise causal convolution with its recurrent state, over a step's tokens: LFM2's
    /// gated short convolution (`gated` 1), or Qwen3.5's over Q, K and V with SiLU (`gated` 0).
    CausalConv,
    /// Qwen3.5's attn_q output split into queries and output gates.
    SplitGate,
    /// Qwen3.5's gated delta rule with its state, over a step's tokens.
    DeltaRule,
    Gate,
    Add,
    Argmax,
    Sample,
    Penalties,
    /// Constrained decoding: the grammar's bitmask of allowed tokens applied to the logits.
    TokenMask,
    KvStore,
    /// kv_store.wgsl for a step of independent sequences: each token to its own slot and
    /// position (batched decode, [`crate::gpu::GpuBatch`]).
    KvStoreRows,
    /// attention.wgsl for a step of independent sequences: each token over its own slot's cache.
    AttentionRows,
    /// One token's y (+)= W·RMSNorm(x) (decode: the output projections with the residual add
    /// fused, `PipelineKey::add`; the output head with the norm fused, `PipelineKey::norm`).
    MatvecFused(GgmlType, Layout),
    /// One decode token's RMSNorm + Q/K/V products + biases + RoPE + KV store, the three
    /// matrices in their own formats.
    MatvecQkv([(GgmlType, Layout); 3]),
    /// One decode token's RMSNorm + gate and up products + activation.
    MatvecGlu([(GgmlType, Layout); 2]),
}

/// A pipeline: the kernel plus its `override` constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub kernel: Shader,
    /// `ROWS` of matvec.wgsl and matmat.wgsl (rows per workgroup; a power of two ≤ 256).
    pub rows: u32,
    /// `ACT` of gate.wgsl and matvec_glu.wgsl: 0 SiLU, 1 GELU (tanh).
    pub act: u32,
    /// `NORM` of matvec_fused.wgsl: 1 fuses the RMSNorm of the input.
    pub norm: u32,
    /// `ADD` of matvec_fused.wgsl: 1 adds the product to the output (the residual).
    pub add: u32,
    /// `KV_F16` of kv_store.wgsl, attention.wgsl and attention_split.wgsl: 1 when the KV cache
    /// holds f16 pairs, 0 for f32.
    pub kv_f16: u32,
    /// `GATED` of causal_conv.wgsl: 1 for LFM2's B·x … C· around the convolution, 0 for SiLU
    /// after it.
    pub gated: u32,
}

impl PipelineKey {
    pub fn new(kernel: Shader) -> Self {
        PipelineKey {
            kernel,
            rows: 4,
            act: 0,
            norm: 0,
            add: 0,
            kv_f16: 0,
            gated: 0,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Bind {
    Read,
    ReadWrite,
    Uniform,
}

impl Shader {
    fn name(self) -> &'static str {
        match self {
            Shader::Dequant(..) => "dequant",
            Shader::EmbedToken(..) => "embed_token",
            Shader::Matvec(..) => "matvec",
            Shader::Matmat(..) => "matmat",
            Shader::RmsNorm => "rmsnorm",
            Shader::Rope => "rope",
            Shader::Attention => "attention",
            Shader::AttentionSplit => "attention_split",
            Shader::AttentionCombine => "attention_combine",
            Shader::Softmax => "softmax",
            Shader::Softcap => "softcap",
            Shader::CausalConv => "causal_conv",
            Shader::SplitGate => "split_gate",
            Shader::DeltaRule => "delta_rule",
            Shader::Gate => "gate",
            Shader::Add => "add",
            Shader::Argmax => "argmax",
            Shader::Sample => "sample",
            Shader::Penalties => "penalties",
            Shader::TokenMask => "token_mask",
            Shader::KvStore => "kv_store",
            Shader::KvStoreRows => "kv_store_rows",
            Shader::AttentionRows => "attention_rows",
            Shader::MatvecFused(..) => "matvec_fused",
            Shader::MatvecQkv(..) => "matvec_qkv",
            Shader::MatvecGlu(..) => "matvec_glu",
        }
    }

    /// The complete WGSL source with the workgroup-memory reductions (every device, the
    /// browser's path), or `None` for a format without GPU kernels (or without an aligned
    /// layout, for [`Layout::Aligned`]).
    pub fn source(self) -> Option<String> {
        self.source_with(false)
    }

    /// Whether the kernel reduces rows through reduce_wg.wgsl / reduce_sg.wgsl (the
    /// matvec family), so that it has a subgroup variant.
    pub fn reduces(self) -> bool {
        matches!(
            self,
            Shader::Matvec(..)
                | Shader::MatvecFused(..)
                | Shader::MatvecQkv(..)
                | Shader::MatvecGlu(..)
        )
    }

    /// [`Shader::source`], with the subgroup reductions (reduce_sg.wgsl: subgroup builtins)
    /// when `subgroups` and the kernel [`reduces`](Shader::reduces); only for a device with
    /// `wgpu::Features::SUBGROUP`.
    pub fn source_with(self, subgroups: bool) -> Option<String> {
        let main = file(&format!("{}.wgsl", self.name()));
        let reduce = file(if subgroups {
            "reduce_sg.wgsl"
        } else {
            "reduce_wg.wgsl"
        });
        match self {
            Shader::Dequant(ty, l) | Shader::EmbedToken(ty, l) => {
                Some([QUANT, layout_file(ty, l)?, format_file(ty)?, main].join("\n"))
            }
            Shader::Matvec(ty, l) => {
                let parts = [
                    QUANT,
                    layout_file(ty, l)?,
                    format_file(ty)?,
                    row_file(ty, false),
                    reduce,
                    main,
                ];
                Some(hoist_directives(&parts.join("\n")))
            }
            Shader::Matmat(ty, l) => {
                let parts = [
                    QUANT,
                    layout_file(ty, l)?,
                    format_file(ty)?,
                    row_file(ty, true),
                    main,
                ];
                Some(parts.join("\n"))
            }
            Shader::MatvecFused(..) | Shader::MatvecQkv(..) | Shader::MatvecGlu(..) => {
                let mut parts = Vec::new();
                for (i, (ty, l)) in self.formats().into_iter().enumerate() {
                    parts.push(suffixed(&reader_source(ty, l)?, i));
                }
                parts.push(reduce.to_owned());
                parts.push(main.to_owned());
                Some(hoist_directives(&parts.join("\n")))
            }
            Shader::Attention | Shader::AttentionRows => {
                let parts = [
                    file("attention_common.wgsl"),
                    file("attention_row.wgsl"),
                    main,
                ];
                Some(parts.join("\n"))
            }
            Shader::AttentionSplit => Some([file("attention_common.wgsl"), main].join("\n")),
            _ => Some(main.to_owned()),
        }
    }

    /// The block format and layout a kernel over quantized weights reads (the first, for the
    /// fused kernels over several matrices).
    pub fn weights(self) -> Option<(GgmlType, Layout)> {
        self.formats().first().copied()
    }

    /// The block format and layout of each weight matrix the kernel reads, in binding order.
    pub fn formats(self) -> Vec<(GgmlType, Layout)> {
        match self {
            Shader::Dequant(t, l)
            | Shader::EmbedToken(t, l)
            | Shader::Matvec(t, l)
            | Shader::Matmat(t, l)
            | Shader::MatvecFused(t, l) => vec![(t, l)],
            Shader::MatvecQkv(f) => f.to_vec(),
            Shader::MatvecGlu(f) => f.to_vec(),
            _ => vec![],
        }
    }

    fn bindings(self) -> &'static [Bind] {
        use Bind::*;
        match self {
            Shader::Dequant(..) => &[Read, ReadWrite, Uniform],
            Shader::EmbedToken(..) => &[Read, ReadWrite, Read, Uniform],
            Shader::Matvec(..) | Shader::RmsNorm => &[Read, Read, ReadWrite, Uniform],
            Shader::Matmat(..) => &[Read, Read, ReadWrite, Uniform, Uniform],
            Shader::Rope => &[ReadWrite, Read, Uniform],
            Shader::Attention => &[Read, Read, Read, ReadWrite, ReadWrite, Uniform],
            Shader::AttentionSplit => &[Read, Read, Read, ReadWrite, Uniform],
            Shader::AttentionCombine => &[Read, ReadWrite, Uniform],
            Shader::Softmax | Shader::Softcap => &[ReadWrite, Uniform],
            Shader::CausalConv => &[Read, Read, ReadWrite, ReadWrite, Uniform, Uniform],
            Shader::SplitGate => &[Read, ReadWrite, ReadWrite, Uniform],
            Shader::DeltaRule => &[
                Read, Read, Read, Read, Read, ReadWrite, ReadWrite, Uniform, Uniform,
            ],
            Shader::Gate | Shader::Add => &[ReadWrite, Read, Uniform],
            Shader::Argmax | Shader::Sample => &[Read, ReadWrite, Uniform],
            Shader::Penalties | Shader::TokenMask => &[ReadWrite, Read, Uniform],
            Shader::KvStore => &[Read, ReadWrite, Uniform, Uniform],
            Shader::KvStoreRows => &[Read, ReadWrite, Uniform, Read],
            Shader::AttentionRows => &[Read, Read, Read, ReadWrite, ReadWrite, Uniform, Read],
            Shader::MatvecFused(..) => &[Read, Read, Read, ReadWrite, Uniform],
            Shader::MatvecQkv(..) => &[
                Read, Read, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, Uniform, Uniform,
                Uniform,
            ],
            Shader::MatvecGlu(..) => &[Read, Read, Read, Read, ReadWrite, Uniform],
        }
    }

    /// The kernels that read no weight format (norms, RoPE, attention, sampling, masks, KV).
    pub const FORMAT_FREE: [Shader; 19] = [
        Shader::RmsNorm,
        Shader::Rope,
        Shader::Attention,
        Shader::AttentionSplit,
        Shader::AttentionCombine,
        Shader::Softmax,
        Shader::Softcap,
        Shader::CausalConv,
        Shader::SplitGate,
        Shader::DeltaRule,
        Shader::Gate,
        Shader::Add,
        Shader::Argmax,
        Shader::Sample,
        Shader::Penalties,
        Shader::TokenMask,
        Shader::KvStore,
        Shader::KvStoreRows,
        Shader::AttentionRows,
    ];

    /// Every kernel, for every format with GPU kernels and each of its layouts.
    pub fn all() -> Vec<Shader> {
        let mut v = Vec::new();
        for &t in &GPU_TYPES {
            for l in layouts(t) {
                v.extend([
                    Shader::Dequant(t, l),
                    Shader::EmbedToken(t, l),
                    Shader::Matvec(t, l),
                    Shader::Matmat(t, l),
                    Shader::MatvecFused(t, l),
                    Shader::MatvecQkv([(t, l); 3]),
                    Shader::MatvecGlu([(t, l); 2]),
                ]);
            }
        }
        v.extend(Shader::FORMAT_FREE);
        v
    }
}

/// The layout file of `l`, or `None` for [`Layout::Aligned`] of a format without it.
fn layout_file(ty: GgmlType, l: Layout) -> Option<&'static str> {
    match l {
        Layout::Packed => Some(file("layout_packed.wgsl")),
        Layout::Aligned => aligned_block(ty).map(|_| file("layout_aligned.wgsl")),
    }
}

/// The row loop of `ty` for matvec (`row_dot`) or, with `matmat`, for matmat (`row_dots`): the
/// paired reader for formats with [`GpuFormat::pairs`], else the one-quad-per-step loop.
fn row_file(ty: GgmlType, matmat: bool) -> &'static str {
    let pairs = gpu_format(ty).is_some_and(|f| f.pairs);
    file(match (matmat, pairs) {
        (false, false) => "matvec_row.wgsl",
        (false, true) => "matvec_row_pairs.wgsl",
        (true, false) => "matmat_row.wgsl",
        (true, true) => "matmat_row_pairs.wgsl",
    })
}

/// The reader of one weight matrix for the fused kernels: quant.wgsl + the layout file + the
/// format file + its row loop (`row_dot`), or `None` without a GPU kernel for `ty` / `l`.
fn reader_source(ty: GgmlType, l: Layout) -> Option<String> {
    Some(
        [
            QUANT,
            layout_file(ty, l)?,
            format_file(ty)?,
            row_file(ty, false),
        ]
        .join("\n"),
    )
}

/// `src` with every name it declares at the top level (a line starting with `fn`, `const`,
/// `override`, `var`, `struct` or `alias`) and the weight binding `w` suffixed with `_{i}`, so
/// that several matrices' readers (quant + layout + fmt + matvec_row) sit in one module without
/// clashing. Member accesses (`.w`) are left alone. WGSL has no modules or namespaces; this is
/// the textual equivalent, as ggml-webgpu assembles its shaders from templates
/// (ggml/src/ggml-webgpu/wgsl-shaders/*.tmpl.wgsl, expanded by a Python preprocessor).
pub fn suffixed(src: &str, i: usize) -> String {
    let mut names = std::collections::HashSet::from(["w".to_owned()]);
    for line in src.lines() {
        let mut rest = line;
        for kw in ["fn ", "const ", "override ", "struct ", "alias ", "var "] {
            if let Some(r) = line.strip_prefix(kw) {
                rest = r;
            }
        }
        if let Some(r) = line.strip_prefix("var<") {
            rest = r.split_once('>').map_or("", |(_, r)| r);
        }
        if rest.len() == line.len() {
            continue;
        }
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            names.insert(name);
        }
    }
    let mut out = String::with_capacity(src.len() + src.len() / 8);
    let mut chars = src.char_indices().peekable();
    let mut prev = ' ';
    while let Some((at, c)) = chars.next() {
        if c.is_ascii_alphabetic() || c == '_' {
            let mut end = at + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if !(d.is_ascii_alphanumeric() || d == '_') {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            let word = &src[at..end];
            out.push_str(word);
            if prev != '.' && names.contains(word) {
                out.push_str(&format!("_{i}"));
            }
            prev = 'a';
        } else if c.is_ascii_digit() {
            // A number (and any suffix such as `u`, `0x1f`) is no name.
            out.push(c);
            while let Some(&(_, d)) = chars.peek() {
                if !(d.is_ascii_alphanumeric() || d == '_' || d == '.') {
                    break;
                }
                out.push(d);
                chars.next();
            }
            prev = '0';
        } else {
            out.push(c);
            if !c.is_whitespace() {
                prev = c;
            }
        }
    }
    out
}

/// `src` with its `enable` directives moved to the top, once each (WGSL wants them first).
fn hoist_directives(src: &str) -> String {
    let mut head = Vec::new();
    let mut body = String::with_capacity(src.len());
    for line in src.lines() {
        if line.starts_with("enable ") {
            if !head.contains(&line) {
                head.push(line);
            }
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    head.into_iter()
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        + &body
}

/// A compiled pipeline with its explicit bind-group layout.
#[derive(Clone)]
pub struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Pipelines, created on first use and then shared.
#[derive(Default)]
pub(crate) struct PipelineCache {
    cache: Mutex<HashMap<PipelineKey, Pipeline>>,
}

impl GpuContext {
    /// Whether `key`'s pipeline reduces through subgroups (reduce_sg.wgsl): the kernel has the
    /// variant, the context allows it ([`GpuContext::subgroups`]: the device has SUBGROUP and
    /// no test turned it off), and no subgroup can span two rows (the adapter's largest
    /// subgroup ≤ 256 / rows invocations per row).
    pub fn uses_subgroups(&self, key: PipelineKey) -> bool {
        let max = self.info.subgroup_max_size;
        self.subgroups
            && key.kernel.reduces()
            && max.is_power_of_two()
            && max <= 256 / key.rows.max(1)
    }

    /// The pipeline for `key`, compiled on first use.
    pub fn pipeline(&self, key: PipelineKey) -> Result<Pipeline> {
        let mut cache = self
            .pipelines
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        let k = key.kernel;
        let subgroups = self.uses_subgroups(key);
        let src = k
            .source_with(subgroups)
            .ok_or_else(|| GpuError::UnsupportedType {
                tensor: k.name().into(),
                ty: k.weights().map_or(GgmlType::F32, |(t, _)| t),
            })?;
        let label = format!("{key:?}{}", if subgroups { " (subgroups)" } else { "" });
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        };
        let module = if self.shader_checks {
            self.device.create_shader_module(desc)
        } else {
            // SAFETY: our own kernels, not user input: every index stays inside its binding by
            // construction (tests compare each kernel with the CPU reference on every shape
            // class) and every loop is bounded by its parameters.
            unsafe {
                let checks = wgpu::ShaderRuntimeChecks::unchecked();
                self.device.create_shader_module_trusted(desc, checks)
            }
        };
        let entries: Vec<wgpu::BindGroupLayoutEntry> = k
            .bindings()
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match b {
                    Bind::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Bind::Read | Bind::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: *b == Bind::Read,
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(&label),
                entries: &entries,
            });
        let pl = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&label),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let constants: Vec<(&str, f64)> = match k {
            Shader::Matvec(..) | Shader::Matmat(..) => vec![("ROWS", f64::from(key.rows))],
            Shader::MatvecFused(..) => vec![
                ("ROWS", f64::from(key.rows)),
                ("NORM", f64::from(key.norm)),
                ("ADD", f64::from(key.add)),
            ],
            Shader::MatvecQkv(..) => vec![
                ("ROWS", f64::from(key.rows)),
                ("KV_F16", f64::from(key.kv_f16)),
            ],
            Shader::MatvecGlu(..) => {
                vec![("ROWS", f64::from(key.rows)), ("ACT", f64::from(key.act))]
            }
            Shader::Gate => vec![("ACT", f64::from(key.act))],
            Shader::CausalConv => vec![("GATED", f64::from(key.gated))],
            Shader::KvStore
            | Shader::KvStoreRows
            | Shader::Attention
            | Shader::AttentionRows
            | Shader::AttentionSplit => {
                vec![("KV_F16", f64::from(key.kv_f16))]
            }
            _ => vec![],
        };
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: Some(&pl),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        let p = Pipeline { pipeline, layout };
        cache.insert(key, p.clone());
        Ok(p)
    }

    /// A bind group for `key`'s layout over whole buffers, in binding order.
    pub fn bind(&self, key: PipelineKey, buffers: &[&wgpu::Buffer]) -> Result<wgpu::BindGroup> {
        let p = self.pipeline(key)?;
        self.count_created();
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        Ok(self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(key.kernel.name()),
            layout: &p.layout,
            entries: &entries,
        }))
    }

    /// Encode and submit one dispatch (tests and one-off work; the model batches its dispatches).
    pub fn run_once(
        &self,
        key: PipelineKey,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<()> {
        let p = self.pipeline(key)?;
        let bg = self.bind(key, buffers)?;
        let cmd = self.one_pass(key.kernel.name(), |pass| {
            pass.set_pipeline(&p.pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        });
        self.queue.submit([cmd]);
        Ok(())
    }

    /// A command buffer holding one compute pass that `fill` records (one-off products, tests
    /// and benchmarks; a model step records its own).
    pub fn one_pass(
        &self,
        label: &str,
        fill: impl FnOnce(&mut wgpu::ComputePass<'_>),
    ) -> wgpu::CommandBuffer {
        let desc = wgpu::CommandEncoderDescriptor { label: Some(label) };
        let mut enc = self.device.create_command_encoder(&desc);
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: None,
            });
            fill(&mut pass);
        }
        enc.finish()
    }
}

/// Tokens per workgroup of matmat.wgsl (its `TOK`).
pub const MATMAT_TOKENS: usize = 8;

/// Cache positions per workgroup of attention_split.wgsl.
pub const SPLIT_CHUNK: usize = 256;

/// Workgroups for `n` groups of work, spread over x and y (≤ 32768 along x).
pub fn groups_2d(n: usize) -> [u32; 3] {
    let n = n.max(1);
    let x = n.min(32768);
    [x as u32, n.div_ceil(32768) as u32, 1]
}
