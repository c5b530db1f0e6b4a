//! Model description: hyper-parameters per architecture (from GGUF metadata), the tensor-name →
//! role mapping, and the weights, still in their block formats.

mod weights;

pub use weights::{LayerWeights, ModelWeights, QMatrix};

use crate::gguf::GgufHeader;
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// SmolLM2, TinyLlama, Llama 2/3.x, Mistral: RMSNorm, SwiGLU, RoPE on adjacent pairs.
    Llama,
    /// Qwen2/2.5: as Llama plus Q/K/V biases, NeoX (half-split) RoPE.
    Qwen2,
    /// Gemma 3: scaled embeddings, Q/K RMSNorm, post-attention/FFN norms, GELU gate,
    /// sliding-window layers with their own RoPE base.
    Gemma3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// GELU, tanh approximation.
    GeluTanh,
}

/// Hyper-parameters, with every architecture switch made explicit.
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
    /// RoPE base of sliding-window layers (Gemma 3).
    pub rope_base_swa: f32,
    /// Linear RoPE scaling: positions are multiplied by this (1 = none).
    pub rope_freq_scale: f32,
    /// Half-split ("NeoX") RoPE instead of adjacent pairs.
    pub rope_neox: bool,
    /// Multiply embeddings by this (Gemma: √n_embd).
    pub embd_scale: Option<f32>,
    pub activation: Activation,
    /// Scale applied to Q after RoPE (Gemma 3), in place of the usual 1/√head_dim on scores.
    pub q_scale: Option<f32>,
    /// Scale applied to Q·K.
    pub kq_scale: f32,
    /// Sliding-window size; layers with `swa_layers[l]` only see the last `n_swa` positions.
    pub n_swa: usize,
    pub swa_layers: Vec<bool>,
}

fn count(h: &GgufHeader, v: u64, what: &str) -> Result<usize> {
    let n = usize::try_from(v).ok().filter(|&n| n > 0 && n <= 1 << 24);
    n.ok_or_else(|| Error::Metadata {
        key: format!("{}.{what}", h.architecture().unwrap_or("?")),
        problem: format!("{v} is not a usable size"),
    })
}

impl Config {
    pub fn from_header(h: &GgufHeader) -> Result<Config> {
        let arch = match h.architecture()? {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "gemma3" => Arch::Gemma3,
            other => {
                return Err(Error::UnsupportedModel(format!(
                    "architecture `{other}` (supported: llama, qwen2, gemma3)"
                )))
            }
        };
        let n_embd = count(h, h.embedding_length()?, "embedding_length")?;
        let n_layer = count(h, h.block_count()?, "block_count")?;
        let n_head = count(h, h.head_count()?, "attention.head_count")?;
        let n_head_kv = count(h, h.head_count_kv()?, "attention.head_count_kv")?;
        if n_head % n_head_kv != 0 {
            return Err(Error::Metadata {
                key: "attention.head_count_kv".into(),
                problem: format!("{n_head} heads cannot be grouped over {n_head_kv} KV heads"),
            });
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
        let head_dim_v = match h.value_length()? {
            Some(v) => count(h, v, "attention.value_length")?,
            None => head_dim,
        };
        let n_rot = match h.rope_dimension_count()? {
            Some(r) => count(h, r, "rope.dimension_count")?,
            None => head_dim,
        };
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(Error::Metadata {
                key: "rope.dimension_count".into(),
                problem: format!("{n_rot} must be even and at most the head size {head_dim}"),
            });
        }
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
        let n_ff = count(h, h.feed_forward_length()?, "feed_forward_length")?;
        let n_vocab = h.tokenizer_tokens()?.map_or(0, |t| t.len());
        let rms_eps = h.rms_eps()?.unwrap_or(1e-5);
        let rope_base = h.rope_freq_base()?;
        let rope_freq_scale = match h.rope_scaling()? {
            None => 1.0,
            Some(s) if s.kind == "none" => 1.0,
            Some(s) if s.kind == "linear" => 1.0 / s.factor.unwrap_or(1.0),
            Some(s) => {
                return Err(Error::UnsupportedModel(format!(
                    "RoPE scaling `{}` is not implemented (supported: none, linear)",
                    s.kind
                )))
            }
        };
        let n_swa = usize::try_from(h.sliding_window()?.unwrap_or(0)).unwrap_or(usize::MAX);
        let n_ctx_train = h.context_length()?;
        let n_ctx_train = u32::try_from(n_ctx_train)
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| Error::Metadata {
                key: format!("{}.context_length", h.architecture().unwrap_or("?")),
                problem: format!("{n_ctx_train} is not a usable size"),
            })?;
        let gemma = arch == Arch::Gemma3;
        // Gemma 3: five sliding-window layers, then one global layer.
        let swa_layers = (0..n_layer)
            .map(|l| gemma && n_swa > 0 && l % 6 < 5)
            .collect();
        Ok(Config {
            arch,
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            head_dim_v,
            n_rot,
            n_ff,
            n_ctx_train,
            rms_eps,
            rope_base,
            rope_base_swa: h.arch_f32("rope.freq_base_swa")?.unwrap_or(10_000.0),
            rope_freq_scale,
            rope_neox: arch != Arch::Llama,
            embd_scale: gemma.then(|| (n_embd as f32).sqrt()),
            activation: if gemma {
                Activation::GeluTanh
            } else {
                Activation::Silu
            },
            // llama.cpp: Gemma 3 27B (62 layers) scales by 1/√(n_embd/n_head).
            q_scale: gemma.then(|| {
                if n_layer == 62 {
                    1.0 / ((n_embd / n_head) as f32).sqrt()
                } else {
                    1.0 / (head_dim as f32).sqrt()
                }
            }),
            kq_scale: if gemma {
                1.0
            } else {
                1.0 / (head_dim as f32).sqrt()
            },
            n_swa,
            swa_layers,
        })
    }

    /// Q heads per KV head.
    pub fn group(&self) -> usize {
        self.n_head / self.n_head_kv
    }

    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}
