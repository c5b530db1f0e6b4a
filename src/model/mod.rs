//! Model description: one [`Config`] per model, shared by the CPU and the GPU backends. It
//! holds the hyper-parameters (from GGUF metadata), a [`LayerSpec`] per layer (head sizes, KV
//! heads, rotary dims and base, NoPE, sliding window) and every forward-pass option (norm
//! placement via optional tensors, QK-norm, rope style, scales, soft-caps, activation). The
//! tensor-name → role mapping and the one loader live in `weights.rs`; the RoPE tables in
//! `rope.rs`.
//!
//! Each family follows llama.cpp (ggml-org/llama.cpp, `src/models/<arch>.cpp` and the generic
//! hyper-parameter loading in `src/llama-model.cpp`; the copy inside `llama-ref`, release v0.5.0,
//! behaves the same on every switch used here, checked against its goldens):
//! - `llama`: RMSNorm, SwiGLU, RoPE on adjacent pairs.
//! - `qwen2`: llama + Q/K/V biases, NeoX (half-split) RoPE.
//! - `qwen3` (`models/qwen3.cpp`): NeoX RoPE, per-head RMSNorm on Q and K before RoPE
//!   (`attn_q_norm`/`attn_k_norm`), head size from `attention.key_length`, optional `output`.
//! - `phi3` (`models/phi3.cpp`): fused `attn_qkv` (Q, K, V rows in that order) and fused
//!   `ffn_up` (gate rows, then up rows: ggml's SwiGLU on the two halves), split into their roles
//!   at load; partial NeoX rotary (`rope.dimension_count`); LongRoPE: `rope_factors_short`
//!   divides the frequencies (the long factors apply only past the original context, which
//!   this engine does not run: see [`Config::rope_factors_long`]).
//! - `smollm3` (`models/smollm3.cpp`): llama with RoPE skipped on every 4th layer
//!   (`(il + 1) % 4 == 0`; llama.cpp hard-codes `n_no_rope_layer_step = 4`).
//! - `gemma3`: scaled embeddings, Q/K RMSNorm, post-attention/FFN norms, GELU gate,
//!   sliding-window layers (5 of 6) with their own RoPE base.
//! - `gemma4` (`models/gemma4.cpp`): per-layer sliding pattern
//!   (`attention.sliding_window_pattern`), sliding layers with their own head size
//!   (`attention.key_length_swa`), rotary dims and base, per-layer KV head counts; full layers
//!   may lack `attn_v` (V = the K projection); weightless RMSNorm on V; `rope_freqs` on full
//!   layers only (proportional RoPE); attention scale 1; sandwich norms; GELU; per-layer output
//!   scale (`layer_output_scale`); embeddings × √n_embd; final logit soft-cap. Not covered, and
//!   refused by name: per-layer embeddings (`embedding_length_per_layer_input` > 0, the E2B/E4B
//!   checkpoints), KV sharing across layers (`attention.shared_kv_layers`), MoE layers.
//! - `granite` (`models/granite.cpp`): llama + `embedding_scale`, `residual_scale` (on each
//!   block's output before the residual add), `attention.scale` (Q·K scale) and `logit_scale`
//!   (logits divided by it); `rope.scaling.finetuned = false` turns RoPE off.
//! - `lfm2` (`models/lfm2.cpp`, hyper-parameters in `llama-model.cpp`): a hybrid. A layer with
//!   `attention.head_count_kv[il] == 0` is a short causal convolution ([`Mixer::ShortConv`]):
//!   `shortconv.in_proj` to 3·n_embd (B, C, x), B·x, a depthwise causal convolution of
//!   `shortconv.l_cache` taps (`shortconv.conv`, ggml's `ssm_conv`: the oldest input meets the
//!   first tap), C·(…), `shortconv.out_proj`; its state is the last `l_cache − 1` values of B·x
//!   ([`crate::cpu::KvCache`]). The other layers are attention with Q/K RMSNorm and NeoX RoPE.
//!   The final norm is `token_embd_norm`; the output is tied.
//! - `qwen35` (`models/qwen35.cpp`, `models/delta-net-base.cpp`): a hybrid. A layer is a gated
//!   delta-net ([`Mixer::DeltaNet`], see [`crate::cpu::delta_net`]) unless
//!   `(il + 1) % full_attention_interval == 0` (default 4; `attention.recurrent_layers`
//!   overrides). Its attention layers are gated: `attn_q` holds each head's query then its gate
//!   (sigmoid(gate) multiplies the attention output), with Q/K RMSNorm and multi-section
//!   rotary (IMROPE over `rope.dimension_sections`; for text the first three sections take the
//!   position and the fourth position 0, so its pairs do not turn). `post_attention_norm` is
//!   the norm before the FFN.

mod checkpoints;
mod rope;
mod weights;

pub use checkpoints::Checkpoints;
pub use rope::{rope_inv_freq, RopeTables};
pub use weights::{
    load_weights, AttentionWeights, CpuSink, DeltaNetWeights, LayerWeights, MatrixSink,
    MixerWeights, ModelWeights, QMatrix, ShortConvWeights, TensorSlice,
};

use crate::gguf::GgufHeader;
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// SmolLM2, TinyLlama, Llama 2/3.x, Mistral: RMSNorm, SwiGLU, RoPE on adjacent pairs.
    Llama,
    /// Qwen2/2.5: as Llama plus Q/K/V biases, NeoX (half-split) RoPE.
    Qwen2,
    /// Qwen3: NeoX RoPE, per-head Q/K RMSNorm.
    Qwen3,
    /// Phi-3/3.5, Phi-4-mini: fused QKV and gate/up, partial NeoX rotary, LongRoPE factors.
    Phi3,
    /// SmolLM3: llama with every 4th layer without RoPE.
    SmolLm3,
    /// Gemma 3: scaled embeddings, Q/K RMSNorm, post-attention/FFN norms, GELU gate,
    /// sliding-window layers with their own RoPE base.
    Gemma3,
    /// Gemma 4 (dense, without per-layer embeddings): see the module doc.
    Gemma4,
    /// Granite 3.x: llama with embedding, residual, attention and logit multipliers.
    Granite,
    /// LFM2: short-convolution layers between attention layers (see the module doc).
    Lfm2,
    /// Qwen3.5: gated delta-net layers between gated attention layers (see the module doc).
    Qwen35,
}

impl Arch {
    /// Every architecture the engine runs, by its GGUF name.
    pub const ALL: [(&'static str, Arch); 10] = [
        ("llama", Arch::Llama),
        ("qwen2", Arch::Qwen2),
        ("qwen3", Arch::Qwen3),
        ("phi3", Arch::Phi3),
        ("smollm3", Arch::SmolLm3),
        ("gemma3", Arch::Gemma3),
        ("gemma4", Arch::Gemma4),
        ("granite", Arch::Granite),
        ("lfm2", Arch::Lfm2),
        ("qwen35", Arch::Qwen35),
    ];

    pub fn from_name(name: &str) -> Option<Arch> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|&(_, a)| a)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("?", |(n, _)| n)
    }

    /// The supported names, comma-separated, for error messages.
    pub fn supported_list() -> String {
        Self::ALL
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// GELU, tanh approximation.
    GeluTanh,
}

/// How a layer mixes information across positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mixer {
    /// Attention over the KV cache.
    Attention,
    /// LFM2's short causal convolution over the last `Config::shortconv_l_cache` positions
    /// (a recurrent state instead of a KV cache; no KV heads).
    ShortConv,
    /// Qwen3.5's gated delta-net ([`Config::delta_net`]): a short convolution and an S×S state
    /// per value head instead of a KV cache.
    DeltaNet,
}

/// The shape of Qwen3.5's gated delta-net layers (`ssm.*` metadata).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeltaNetSpec {
    /// Taps of the convolution over Q, K and V (`ssm.conv_kernel`).
    pub conv_taps: usize,
    /// Key and value head size S (`ssm.state_size`; `ssm.inner_size / ssm.time_step_rank`).
    pub head_dim: usize,
    /// Key heads (`ssm.group_count`).
    pub k_heads: usize,
    /// Value heads (`ssm.time_step_rank`), a multiple of the key heads: value head j reads key
    /// head j mod k_heads.
    pub v_heads: usize,
}

impl DeltaNetSpec {
    pub fn key_dim(&self) -> usize {
        self.k_heads * self.head_dim
    }
    pub fn value_dim(&self) -> usize {
        self.v_heads * self.head_dim
    }
    /// Channels of the convolution: Q, K and V.
    pub fn conv_dim(&self) -> usize {
        2 * self.key_dim() + self.value_dim()
    }
    /// Floats of one layer's recurrent state: the convolution's last taps − 1 inputs, then an
    /// S×S matrix per value head.
    pub fn state_len(&self) -> usize {
        (self.conv_taps - 1) * self.conv_dim() + self.v_heads * self.head_dim * self.head_dim
    }
}

/// What differs from layer to layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSpec {
    pub mixer: Mixer,
    pub n_head_kv: usize,
    /// Head size of Q and K.
    pub head_dim: usize,
    /// Head size of V.
    pub head_dim_v: usize,
    pub n_ff: usize,
    /// Rotated dimensions per head (even, ≤ head_dim); 0 = no RoPE on this layer (NoPE).
    pub n_rot: usize,
    pub rope_base: f32,
    /// Divide the frequencies by the model's `rope_freqs` factors (when it has them).
    pub rope_freqs: bool,
    /// Sliding-window layer: attends to the last `Config::n_swa` positions only.
    pub swa: bool,
}

impl LayerSpec {
    pub fn q_dim(&self, n_head: usize) -> usize {
        n_head * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
    pub fn v_dim(&self) -> usize {
        self.n_head_kv * self.head_dim_v
    }
}

/// Hyper-parameters, with every architecture switch made explicit.
///
/// The scalar head sizes, KV heads and rotary dims are those of the full-attention layers
/// (of every layer, except on Gemma 4); `layers` has each layer's own.
#[derive(Clone, Debug)]
pub struct Config {
    pub arch: Arch,
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Head dimension of Q and K.
    pub head_dim: usize,
    /// Head dimension of V.
    pub head_dim_v: usize,
    /// Rotated dimensions per head (≤ head_dim).
    pub n_rot: usize,
    pub n_ff: usize,
    pub n_ctx_train: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    /// RoPE base of sliding-window layers (Gemma 3/4).
    pub rope_base_swa: f32,
    /// Linear RoPE scaling: positions are multiplied by this (1 = none).
    pub rope_freq_scale: f32,
    /// Half-split ("NeoX") RoPE instead of adjacent pairs.
    pub rope_neox: bool,
    /// Multiply embeddings by this (Gemma: √n_embd; Granite: `embedding_scale`).
    pub embd_scale: Option<f32>,
    pub activation: Activation,
    /// Scale applied to Q after RoPE (Gemma 3), in place of the usual 1/√head_dim on scores.
    pub q_scale: Option<f32>,
    /// Scale applied to Q·K.
    pub kq_scale: f32,
    /// Sliding-window size; layers with `swa_layers[l]` only see the last `n_swa` positions.
    pub n_swa: usize,
    pub swa_layers: Vec<bool>,
    /// Per-layer shapes and rope settings.
    pub layers: Vec<LayerSpec>,
    /// RMSNorm without weight on V (Gemma 4).
    pub v_norm: bool,
    /// Multiply each block's output by this before the residual add (Granite).
    pub residual_scale: Option<f32>,
    /// Divide the logits by this (Granite `logit_scale`).
    pub logit_scale: Option<f32>,
    /// `cap · tanh(logits / cap)` on the output (Gemma 4 `final_logit_softcapping`).
    pub final_softcap: Option<f32>,
    /// `rope.scaling.attn_factor`: multiplies the rotated dimensions (ggml's `mscale`, the cos
    /// and sin factor of `rope_ext`); Phi-3 LongRoPE models carry it.
    pub rope_mscale: f32,
    /// Phi-3 LongRoPE: the model carries `rope_factors_long` for contexts past
    /// `rope.scaling.original_context_length`; the engine uses the short factors, exact up to
    /// that length (llama.cpp picks by the context size it is given).
    pub rope_factors_long: bool,
    /// Taps of the short convolutions (LFM2 `shortconv.l_cache`); 0 without such layers.
    pub shortconv_l_cache: usize,
    /// Qwen3.5's delta-net layers' shape, when the model has them.
    pub delta_net: Option<DeltaNetSpec>,
    /// Qwen3.5's gated attention: `attn_q` holds each head's query then its output gate.
    pub attn_output_gate: bool,
    /// Multi-section rotary (`rope.dimension_sections`, IMROPE): the pairs of the fourth section
    /// do not turn for text (see the module doc).
    pub rope_sections: Option<[usize; 4]>,
}

fn count(h: &GgufHeader, v: u64, what: &str) -> Result<usize> {
    let n = usize::try_from(v).ok().filter(|&n| n > 0 && n <= 1 << 24);
    n.ok_or_else(|| Error::Metadata {
        key: format!("{}.{what}", h.architecture().unwrap_or("?")),
        problem: format!("{v} is not a usable size"),
    })
}

fn unsupported(arch: Arch, feature: &str) -> Error {
    Error::UnsupportedModel(format!("{}: {feature} is not implemented", arch.name()))
}

/// `{arch}.{suffix}` given either once for every layer or as one value per layer (llama.cpp's
/// `get_key_or_arr`).
fn per_layer_u64(h: &GgufHeader, suffix: &str, n_layer: usize) -> Result<Option<Vec<u64>>> {
    let key = format!("{}.{suffix}", h.architecture()?);
    let Some(v) = h.metadata.get(&key) else {
        return Ok(None);
    };
    if let Some(n) = v.as_u64() {
        return Ok(Some(vec![n; n_layer]));
    }
    let bad = |problem: String| Error::Metadata {
        key: key.clone(),
        problem,
    };
    let a = v.as_array().ok_or_else(|| {
        bad(format!(
            "expected an integer or an array, found {}",
            v.type_name()
        ))
    })?;
    let vals: Vec<u64> = if let Some(x) = a.as_u32s() {
        x.iter().map(|&x| u64::from(x)).collect()
    } else if let Some(x) = a.as_i32s() {
        x.iter().map(|&x| x.max(0) as u64).collect()
    } else if let crate::gguf::Array::Bool(b) = a {
        // Flags per layer (Qwen3.5's `attention.recurrent_layers`).
        b.iter().map(|&x| u64::from(x)).collect()
    } else {
        return Err(bad("expected an array of integers".into()));
    };
    if vals.len() != n_layer {
        return Err(bad(format!("{} values for {n_layer} layers", vals.len())));
    }
    Ok(Some(vals))
}

/// Gemma 4's `attention.sliding_window_pattern`: an array of booleans (true = sliding), or a
/// period `n` (every `n`-th layer full, the others sliding).
fn swa_pattern(h: &GgufHeader, n_layer: usize) -> Result<Option<Vec<bool>>> {
    let key = format!("{}.attention.sliding_window_pattern", h.architecture()?);
    let Some(v) = h.metadata.get(&key) else {
        return Ok(None);
    };
    if let Some(n) = v.as_u64().filter(|&n| n > 0) {
        return Ok(Some((0..n_layer).map(|l| (l as u64) % n < n - 1).collect()));
    }
    let bad = |problem: String| Error::Metadata {
        key: key.clone(),
        problem,
    };
    let a = v.as_array().ok_or_else(|| {
        bad(format!(
            "expected a period or an array, found {}",
            v.type_name()
        ))
    })?;
    let pat: Vec<bool> = match a {
        crate::gguf::Array::Bool(b) => b.clone(),
        _ => match (a.as_u32s(), a.as_i32s()) {
            (Some(x), _) => x.iter().map(|&x| x != 0).collect(),
            (_, Some(x)) => x.iter().map(|&x| x != 0).collect(),
            _ => return Err(bad("expected an array of booleans".into())),
        },
    };
    if pat.len() != n_layer {
        return Err(bad(format!("{} values for {n_layer} layers", pat.len())));
    }
    Ok(Some(pat))
}

fn check_rot(n_rot: usize, head_dim: usize, key: &str) -> Result<()> {
    if n_rot > head_dim || !n_rot.is_multiple_of(2) {
        return Err(Error::Metadata {
            key: key.into(),
            problem: format!("{n_rot} must be even and at most the head size {head_dim}"),
        });
    }
    Ok(())
}

impl Config {
    pub fn from_header(h: &GgufHeader) -> Result<Config> {
        let name = h.architecture()?;
        let arch = Arch::from_name(name).ok_or_else(|| {
            Error::UnsupportedModel(format!(
                "architecture `{name}` (supported: {})",
                Arch::supported_list()
            ))
        })?;
        let n_embd = count(h, h.embedding_length()?, "embedding_length")?;
        let n_all = count(h, h.block_count()?, "block_count")?;
        // Qwen3.5 GGUFs may append multi-token-prediction blocks (`nextn_predict_layers`) after
        // the main stack: the engine runs the main stack only.
        let nextn = match arch {
            Arch::Qwen35 => h.arch_u64("nextn_predict_layers")?.unwrap_or(0),
            _ => 0,
        };
        let n_layer = usize::try_from(nextn)
            .ok()
            .and_then(|x| n_all.checked_sub(x))
            .filter(|&n| n > 0)
            .ok_or_else(|| Error::Metadata {
                key: format!("{name}.nextn_predict_layers"),
                problem: format!("{nextn} of {n_all} blocks leaves no main layers"),
            })?;
        // Per-layer arrays cover every block; the main layers' values come first.
        let layer_array = |suffix: &str| -> Result<Option<Vec<u64>>> {
            Ok(per_layer_u64(h, suffix, n_all)?.map(|mut v| {
                v.truncate(n_layer);
                v
            }))
        };
        let n_head = count(h, h.head_count()?, "attention.head_count")?;
        let kv_heads = match layer_array("attention.head_count_kv")? {
            Some(v) => v,
            None => vec![n_head as u64; n_layer],
        };
        // LFM2: no KV heads marks a short-convolution layer.
        let kv_heads = kv_heads
            .into_iter()
            .map(|n| match n {
                0 if arch == Arch::Lfm2 => Ok(0),
                n => count(h, n, "attention.head_count_kv"),
            })
            .collect::<Result<Vec<_>>>()?;
        for &kv in kv_heads.iter().filter(|&&kv| kv > 0) {
            if n_head % kv != 0 {
                return Err(Error::Metadata {
                    key: format!("{name}.attention.head_count_kv"),
                    problem: format!("{n_head} heads cannot be grouped over {kv} KV heads"),
                });
            }
        }
        let head_dim = match h.key_length()? {
            Some(k) => count(h, k, "attention.key_length")?,
            None if n_head > n_embd => {
                return Err(Error::Metadata {
                    key: format!("{}.attention.head_count", h.architecture()?),
                    problem: format!(
                        "{n_head} heads leave no dimensions of the {n_embd} embedding values                          (set attention.key_length)"
                    ),
                })
            }
            None => n_embd / n_head,
        };
        if head_dim == 0 {
            return Err(Error::Metadata {
                key: format!("{name}.attention.head_count"),
                problem: format!("{n_head} heads leave no room in {n_embd} dimensions"),
            });
        }
        let head_dim_v = match h.value_length()? {
            Some(v) => count(h, v, "attention.value_length")?,
            None => head_dim,
        };
        let n_rot = match h.rope_dimension_count()? {
            Some(r) => count(h, r, "rope.dimension_count")?,
            None => head_dim,
        };
        check_rot(n_rot, head_dim, "rope.dimension_count")?;
        let n_ffs = match layer_array("feed_forward_length")? {
            Some(v) => v,
            None => vec![h.feed_forward_length()?; n_layer],
        };
        let n_ffs = n_ffs
            .into_iter()
            .map(|n| count(h, n, "feed_forward_length"))
            .collect::<Result<Vec<_>>>()?;
        // Q/K/V widths: beyond any real model (and beyond usize on wasm32) is a bad header.
        for (heads, dim, what) in [
            (
                n_head,
                head_dim,
                "attention.head_count × attention.key_length",
            ),
            (
                n_head,
                head_dim_v,
                "attention.head_count × attention.value_length",
            ),
        ] {
            if heads.checked_mul(dim).is_none_or(|w| w > 1 << 24) {
                return Err(Error::Metadata {
                    key: format!("{}.attention.head_count", h.architecture()?),
                    problem: format!("{what} = {heads} × {dim} is not a usable size"),
                });
            }
        }
        let n_vocab = h.tokenizer_tokens()?.map_or(0, |t| t.len());
        let rms_eps = h.rms_eps()?.unwrap_or(1e-5);
        let rope_base = h.rope_freq_base()?;
        let rope_freq_scale = match h.rope_scaling()? {
            None => 1.0,
            Some(s) if s.kind == "none" => 1.0,
            Some(s) if s.kind == "linear" => 1.0 / s.factor.unwrap_or(1.0),
            // Phi-3's LongRoPE works through the factor tensors (see `rope_factors_long`).
            Some(s) if s.kind == "longrope" && arch == Arch::Phi3 => 1.0,
            Some(s) => {
                return Err(Error::UnsupportedModel(format!(
                    "{name}: RoPE scaling `{}` is not implemented (supported: none, linear)",
                    s.kind
                )))
            }
        };
        let n_ctx_train = h.context_length()?;
        let n_ctx_train = u32::try_from(n_ctx_train)
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| Error::Metadata {
                key: format!("{}.context_length", h.architecture().unwrap_or("?")),
                problem: format!("{n_ctx_train} is not a usable size"),
            })?;
        let rope_mscale = h.arch_f32("rope.scaling.attn_factor")?.unwrap_or(1.0);
        if !(rope_mscale.is_finite() && rope_mscale > 0.0) {
            return Err(Error::Metadata {
                key: format!("{name}.rope.scaling.attn_factor"),
                problem: format!("{rope_mscale} is not a positive factor"),
            });
        }
        // Features of these families that the forward pass does not have: refuse by name.
        if h.arch_u64("expert_count")?.unwrap_or(0) > 0 {
            return Err(unsupported(arch, "mixture of experts (expert_count > 0)"));
        }
        let gemma3 = arch == Arch::Gemma3;
        let gemma4 = arch == Arch::Gemma4;
        if gemma4 {
            if h.arch_u64("embedding_length_per_layer_input")?.unwrap_or(0) > 0 {
                return Err(unsupported(
                    arch,
                    "per-layer embeddings (embedding_length_per_layer_input > 0, as in \
                     Gemma 4 E2B/E4B)",
                ));
            }
            if h.arch_u64("attention.shared_kv_layers")?.unwrap_or(0) > 0 {
                return Err(unsupported(
                    arch,
                    "KV cache sharing across layers (attention.shared_kv_layers > 0)",
                ));
            }
        }
        let n_swa = match arch {
            // llama.cpp ignores Phi-3's window (`models/phi3.cpp`: "Phi SWA is currently
            // disabled"), and so do we, to match it.
            Arch::Phi3 => 0,
            _ => h.sliding_window()?.unwrap_or(0) as usize,
        };
        let swa_layers: Vec<bool> = match arch {
            // Gemma 3: five sliding-window layers, then one global layer.
            Arch::Gemma3 => (0..n_layer).map(|l| n_swa > 0 && l % 6 < 5).collect(),
            Arch::Gemma4 => swa_pattern(h, n_layer)?
                .ok_or_else(|| Error::Metadata {
                    key: format!("{name}.attention.sliding_window_pattern"),
                    problem: "missing".into(),
                })?
                .into_iter()
                .map(|s| s && n_swa > 0)
                .collect(),
            _ => vec![false; n_layer],
        };
        let rope_base_swa = match h.arch_f32("rope.freq_base_swa")? {
            Some(b) => b,
            None if gemma3 => 10_000.0,
            None => rope_base,
        };
        // Gemma 4's sliding layers have their own head size and rotary dims.
        let (head_dim_swa, n_rot_swa) = if gemma4 {
            let hd = match h.arch_u64("attention.key_length_swa")? {
                Some(k) => count(h, k, "attention.key_length_swa")?,
                None => head_dim,
            };
            if let Some(v) = h.arch_u64("attention.value_length_swa")? {
                if v as usize != hd {
                    return Err(unsupported(
                        arch,
                        "value_length_swa different from key_length_swa",
                    ));
                }
            }
            let r = match h.arch_u64("rope.dimension_count_swa")? {
                Some(r) => count(h, r, "rope.dimension_count_swa")?,
                None => n_rot,
            };
            check_rot(r, hd, "rope.dimension_count_swa")?;
            if head_dim_v != head_dim {
                return Err(unsupported(arch, "value_length different from key_length"));
            }
            (hd, r)
        } else {
            (head_dim, n_rot)
        };
        // RoPE on or off per layer: SmolLM3 skips it on every 4th layer; Granite uses
        // `rope.scaling.finetuned` as its switch (default on).
        let granite_rope = h
            .get_bool(&format!("{name}.rope.scaling.finetuned"))?
            .unwrap_or(true);
        let rope_on = |l: usize| match arch {
            Arch::SmolLm3 => !(l + 1).is_multiple_of(4),
            Arch::Granite => granite_rope,
            _ => true,
        };
        // Qwen3.5: delta-net layers, from `attention.recurrent_layers` or the interval.
        let delta_layers: Vec<bool> = if arch == Arch::Qwen35 {
            match layer_array("attention.recurrent_layers")? {
                Some(v) => v.iter().map(|&r| r != 0).collect(),
                None => {
                    let every = h.arch_u64("full_attention_interval")?.unwrap_or(4).max(1);
                    (0..n_layer as u64).map(|l| (l + 1) % every != 0).collect()
                }
            }
        } else {
            vec![false; n_layer]
        };
        let layers = (0..n_layer)
            .map(|l| {
                let swa = swa_layers[l];
                let conv = kv_heads[l] == 0;
                let delta = delta_layers[l];
                let rope = rope_on(l) && !conv && !delta;
                let (hd, hdv, rot) = if swa && gemma4 {
                    (head_dim_swa, head_dim_swa, n_rot_swa)
                } else {
                    (head_dim, head_dim_v, n_rot)
                };
                LayerSpec {
                    mixer: if conv {
                        Mixer::ShortConv
                    } else if delta {
                        Mixer::DeltaNet
                    } else {
                        Mixer::Attention
                    },
                    n_head_kv: if delta { 0 } else { kv_heads[l] },
                    head_dim: hd,
                    head_dim_v: hdv,
                    n_ff: n_ffs[l],
                    n_rot: if rope { rot } else { 0 },
                    rope_base: if swa { rope_base_swa } else { rope_base },
                    // Gemma 4: proportional RoPE on the full layers only.
                    rope_freqs: !(gemma4 && swa),
                    swa,
                }
            })
            .collect::<Vec<_>>();
        let granite = arch == Arch::Granite;
        let positive = |key: &str| -> Result<Option<f32>> {
            match h.arch_f32(key)? {
                Some(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
                Some(v) => Err(Error::Metadata {
                    key: format!("{name}.{key}"),
                    problem: format!("{v} is not a positive scale"),
                }),
                None => Ok(None),
            }
        };
        let embd_scale = match arch {
            Arch::Gemma3 | Arch::Gemma4 => Some((n_embd as f32).sqrt()),
            Arch::Granite => positive("embedding_scale")?,
            _ => None,
        };
        let shortconv_l_cache = if layers.iter().any(|l| l.mixer == Mixer::ShortConv) {
            let key = format!("{name}.shortconv.l_cache");
            match h.arch_u64("shortconv.l_cache")? {
                Some(n) if (2..=64).contains(&n) => n as usize,
                Some(n) => {
                    return Err(Error::Metadata {
                        key,
                        problem: format!("{n} taps: expected 2 to 64"),
                    })
                }
                None => {
                    return Err(Error::Metadata {
                        key,
                        problem: "missing (the model has short-convolution layers)".into(),
                    })
                }
            }
        } else {
            0
        };
        let delta_net = if delta_layers.iter().any(|&d| d) {
            let get = |key: &str| -> Result<usize> {
                let v = h.arch_u64(key)?.ok_or_else(|| Error::Metadata {
                    key: format!("{name}.{key}"),
                    problem: "missing (the model has delta-net layers)".into(),
                })?;
                count(h, v, key)
            };
            let spec = DeltaNetSpec {
                conv_taps: get("ssm.conv_kernel")?,
                head_dim: get("ssm.state_size")?,
                k_heads: get("ssm.group_count")?,
                v_heads: get("ssm.time_step_rank")?,
            };
            let inner = get("ssm.inner_size")?;
            let bad = |key: &str, problem: String| Error::Metadata {
                key: format!("{name}.{key}"),
                problem,
            };
            if inner != spec.value_dim() {
                return Err(bad(
                    "ssm.inner_size",
                    format!(
                        "{inner} is not time_step_rank × state_size = {}",
                        spec.value_dim()
                    ),
                ));
            }
            if !spec.v_heads.is_multiple_of(spec.k_heads) {
                return Err(bad(
                    "ssm.time_step_rank",
                    format!(
                        "{} value heads do not tile {} key heads",
                        spec.v_heads, spec.k_heads
                    ),
                ));
            }
            if !(2..=64).contains(&spec.conv_taps) || spec.head_dim > 1024 {
                return Err(bad(
                    "ssm.conv_kernel",
                    format!("{} taps, state size {}", spec.conv_taps, spec.head_dim),
                ));
            }
            Some(spec)
        } else {
            None
        };
        let rope_sections = match arch {
            Arch::Qwen35 => per_layer_u64(h, "rope.dimension_sections", 4)?
                .map(|v| [v[0], v[1], v[2], v[3]].map(|x| x as usize)),
            _ => None,
        };
        let attention = |l: &&LayerSpec| l.mixer == Mixer::Attention;
        if !layers.iter().any(|l| attention(&l)) {
            return Err(unsupported(arch, "a model without attention layers"));
        }
        // Full-attention values for the scalar fields.
        let full = layers
            .iter()
            .filter(attention)
            .find(|l| !l.swa)
            .or_else(|| layers.iter().find(attention))
            .unwrap_or(&layers[0])
            .clone();
        Ok(Config {
            arch,
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_head_kv: full.n_head_kv,
            head_dim,
            head_dim_v,
            n_rot,
            n_ff: n_ffs.iter().copied().max().unwrap_or(0),
            n_ctx_train,
            rms_eps,
            rope_base,
            rope_base_swa,
            rope_freq_scale,
            rope_neox: !matches!(arch, Arch::Llama | Arch::SmolLm3 | Arch::Granite),
            embd_scale,
            activation: if gemma3 || gemma4 {
                Activation::GeluTanh
            } else {
                Activation::Silu
            },
            // llama.cpp: Gemma 3 27B (62 layers) scales by 1/√(n_embd/n_head).
            q_scale: gemma3.then(|| {
                if n_layer == 62 {
                    1.0 / ((n_embd / n_head) as f32).sqrt()
                } else {
                    1.0 / (head_dim as f32).sqrt()
                }
            }),
            kq_scale: if gemma3 || gemma4 {
                1.0
            } else if let Some(s) = granite
                .then(|| positive("attention.scale"))
                .transpose()?
                .flatten()
            {
                s
            } else {
                1.0 / (head_dim as f32).sqrt()
            },
            n_swa,
            swa_layers,
            layers,
            v_norm: gemma4,
            residual_scale: if granite {
                positive("residual_scale")?
            } else {
                None
            },
            logit_scale: if granite {
                positive("logit_scale")?
            } else {
                None
            },
            final_softcap: if gemma4 {
                positive("final_logit_softcapping")?
            } else {
                None
            },
            rope_mscale,
            rope_factors_long: h.tensor("rope_factors_long.weight").is_some(),
            shortconv_l_cache,
            delta_net,
            attn_output_gate: arch == Arch::Qwen35,
            rope_sections,
        })
    }

    /// Whether some layers keep a recurrent state (which cannot be rewound token by token; see
    /// [`crate::cpu::KvCache::resume_point`]).
    pub fn has_recurrent(&self) -> bool {
        self.layers.iter().any(|l| l.mixer != Mixer::Attention)
    }

    /// Floats of each layer's recurrent state (0 for attention layers): a short convolution's
    /// last L−1 inputs, a delta-net's convolution inputs and S×S matrices.
    pub fn state_lens(&self) -> Vec<usize> {
        let conv = self.shortconv_l_cache.saturating_sub(1) * self.n_embd;
        let delta = self.delta_net.map_or(0, |d| d.state_len());
        self.layers
            .iter()
            .map(|l| match l.mixer {
                Mixer::Attention => 0,
                Mixer::ShortConv => conv,
                Mixer::DeltaNet => delta,
            })
            .collect()
    }

    /// The features of this model the GPU backend does not run yet, if any.
    pub fn gpu_unsupported(&self) -> Option<String> {
        // delta_rule.wgsl keeps a head's S values in one workgroup of 256.
        let s = self.delta_net.map_or(0, |d| d.head_dim);
        (s > 256).then(|| {
            format!(
                "{} on the GPU backend: delta-net heads of {s} (at most 256) are not \
                 implemented; use the CPU backend",
                self.arch.name()
            )
        })
    }

    /// Q heads per KV head.
    pub fn group(&self) -> usize {
        self.n_head / self.n_head_kv
    }

    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// The largest Q, K and V widths and FFN size over the layers, for scratch buffers.
    pub fn max_dims(&self) -> (usize, usize, usize, usize) {
        let m = |f: &dyn Fn(&LayerSpec) -> usize| self.layers.iter().map(f).max().unwrap_or(0);
        (
            m(&|l| l.q_dim(self.n_head)),
            m(&|l| l.kv_dim()),
            m(&|l| l.v_dim()),
            m(&|l| l.n_ff),
        )
    }
}
