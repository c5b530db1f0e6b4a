//! Tensor-name → role mapping and weight loading. Matrices stay in their block formats; only
//! vectors (norm weights, biases) are expanded to f32.

use super::{Arch, Config, Mixer};
use crate::gguf::{GgufHeader, TensorInfo};
use crate::quant::{self, GgmlType};
use crate::source::ByteSource;
use crate::{Error, Result};

/// A weight matrix in its GGUF block format: `rows` rows of `cols` elements, row-major
/// (ggml's ne = [cols, rows]). `y = W·x` has `rows` outputs.
#[derive(Clone, Debug)]
pub struct QMatrix {
    pub name: String,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    /// Bytes of one row.
    pub row_bytes: usize,
    pub data: Vec<u8>,
}

impl QMatrix {
    /// Row `r`'s blocks.
    pub fn row(&self, r: usize) -> &[u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Dequantize row `r` into `out` (`cols` long).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<()> {
        quant::dequantize(self.ty, self.row(r), out).map_err(|source| Error::Tensor {
            tensor: self.name.clone(),
            source,
        })
    }
}

/// An attention layer's weights. Shapes as (out, in).
#[derive(Clone, Debug)]
pub struct AttentionWeights<M = QMatrix> {
    pub wq: M, // (n_head·head_dim, n_embd)
    pub wk: M, // (n_head_kv·head_dim, n_embd)
    /// Gemma 4 full layers without `attn_v`: the `attn_k` blocks again (V = the K projection,
    /// before K's norm and RoPE), so that no backend needs a special case.
    pub wv: M, // (n_head_kv·head_dim_v, n_embd)
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    pub q_norm: Option<Vec<f32>>, // (head_dim): Gemma 3/4, Qwen3, LFM2
    pub k_norm: Option<Vec<f32>>,
    pub wo: M, // (n_embd, n_head·head_dim_v)
}

/// An LFM2 short-convolution layer's weights.
#[derive(Clone, Debug)]
pub struct ShortConvWeights<M = QMatrix> {
    /// (3·n_embd, n_embd): B, C and x, in that order.
    pub in_proj: M,
    pub out_proj: M, // (n_embd, n_embd)
    /// (n_embd, l_cache) taps, channel-major: channel i's taps at `i·l_cache..`, the first
    /// meeting the oldest input.
    pub kernel: Vec<f32>,
}

/// A Qwen3.5 gated delta-net layer's weights (see [`crate::cpu::delta_net`]); S = the head
/// size, H_k / H_v the key / value heads.
#[derive(Clone, Debug)]
pub struct DeltaNetWeights<M = QMatrix> {
    /// `attn_qkv`: (2·H_k·S + H_v·S, n_embd): Q, K, V into the convolution.
    pub qkv: M,
    /// `attn_gate`: (H_v·S, n_embd): z, the output norm's gate.
    pub gate: M,
    /// `ssm_beta`: (H_v, n_embd): the learning rate β = sigmoid(·) per value head.
    pub beta: M,
    /// `ssm_alpha`: (H_v, n_embd): the decay's input per value head.
    pub alpha: M,
    /// `ssm_conv1d`: (conv channels, taps), channel-major, the first tap meeting the oldest.
    pub conv: Vec<f32>,
    /// `ssm_dt.bias` (H_v).
    pub dt_bias: Vec<f32>,
    /// `ssm_a` (H_v): −exp(A_log); the decay is g = softplus(alpha + dt_bias) · a.
    pub a: Vec<f32>,
    /// `ssm_norm` (S): the gated RMSNorm's weight.
    pub norm: Vec<f32>,
    /// `ssm_out`: (n_embd, H_v·S).
    pub out: M,
}

/// A layer's token mixer, by [`Mixer`].
#[derive(Clone, Debug)]
pub enum MixerWeights<M = QMatrix> {
    Attention(AttentionWeights<M>),
    ShortConv(ShortConvWeights<M>),
    DeltaNet(DeltaNetWeights<M>),
}

impl<M> MixerWeights<M> {
    /// The attention weights, for an attention layer.
    pub fn attention(&self) -> Option<&AttentionWeights<M>> {
        match self {
            MixerWeights::Attention(a) => Some(a),
            _ => None,
        }
    }

    /// The matrices, in a fixed order.
    pub fn matrices(&self) -> Vec<&M> {
        match self {
            MixerWeights::Attention(a) => vec![&a.wq, &a.wk, &a.wv, &a.wo],
            MixerWeights::ShortConv(c) => vec![&c.in_proj, &c.out_proj],
            MixerWeights::DeltaNet(d) => vec![&d.qkv, &d.gate, &d.beta, &d.alpha, &d.out],
        }
    }

    fn try_map<N>(&self, f: &mut impl FnMut(&M) -> Result<N>) -> Result<MixerWeights<N>> {
        Ok(match self {
            MixerWeights::Attention(a) => MixerWeights::Attention(AttentionWeights {
                wq: f(&a.wq)?,
                wk: f(&a.wk)?,
                wv: f(&a.wv)?,
                bq: a.bq.clone(),
                bk: a.bk.clone(),
                bv: a.bv.clone(),
                q_norm: a.q_norm.clone(),
                k_norm: a.k_norm.clone(),
                wo: f(&a.wo)?,
            }),
            MixerWeights::ShortConv(c) => MixerWeights::ShortConv(ShortConvWeights {
                in_proj: f(&c.in_proj)?,
                out_proj: f(&c.out_proj)?,
                kernel: c.kernel.clone(),
            }),
            MixerWeights::DeltaNet(d) => MixerWeights::DeltaNet(DeltaNetWeights {
                qkv: f(&d.qkv)?,
                gate: f(&d.gate)?,
                beta: f(&d.beta)?,
                alpha: f(&d.alpha)?,
                conv: d.conv.clone(),
                dt_bias: d.dt_bias.clone(),
                a: d.a.clone(),
                norm: d.norm.clone(),
                out: f(&d.out)?,
            }),
        })
    }
}

/// Per-layer weights in the backend's matrix type `M`. Shapes as (out, in).
#[derive(Clone, Debug)]
pub struct LayerWeights<M = QMatrix> {
    pub attn_norm: Vec<f32>, // (n_embd): the norm before the mixer
    pub mixer: MixerWeights<M>,
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub w_gate: M, // (n_ff, n_embd)
    pub w_up: M,   // (n_ff, n_embd)
    pub w_down: M, // (n_embd, n_ff)
    pub post_ffn_norm: Option<Vec<f32>>,
    /// Multiplies the layer's output (Gemma 4 `layer_output_scale`).
    pub out_scale: Option<f32>,
}

#[derive(Clone, Debug)]
pub struct ModelWeights<M = QMatrix> {
    pub token_embd: M, // (n_vocab, n_embd)
    pub output_norm: Vec<f32>,
    /// `None` when the output matrix is tied to `token_embd`.
    pub output: Option<M>,
    /// Per-frequency RoPE divisors (`rope_freqs.weight`, or Phi-3's `rope_factors_short`),
    /// (n_rot/2).
    pub rope_freqs: Option<Vec<f32>>,
    pub layers: Vec<LayerWeights<M>>,
}

impl<M> ModelWeights<M> {
    /// The output matrix: `output`, or the token embedding when tied.
    pub fn output_matrix(&self) -> &M {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    /// The same weights with every matrix converted by `f` (e.g. uploaded to a GPU).
    pub fn try_map<N>(&self, mut f: impl FnMut(&M) -> Result<N>) -> Result<ModelWeights<N>> {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Ok(LayerWeights {
                    attn_norm: l.attn_norm.clone(),
                    mixer: l.mixer.try_map(&mut f)?,
                    post_attn_norm: l.post_attn_norm.clone(),
                    ffn_norm: l.ffn_norm.clone(),
                    w_gate: f(&l.w_gate)?,
                    w_up: f(&l.w_up)?,
                    w_down: f(&l.w_down)?,
                    post_ffn_norm: l.post_ffn_norm.clone(),
                    out_scale: l.out_scale,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ModelWeights {
            token_embd: f(&self.token_embd)?,
            output_norm: self.output_norm.clone(),
            output: self.output.as_ref().map(&mut f).transpose()?,
            rope_freqs: self.rope_freqs.clone(),
            layers,
        })
    }
}

impl ModelWeights {
    pub fn output(&self) -> &QMatrix {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    /// Bytes of weights held.
    pub fn bytes(&self) -> usize {
        let m = |q: &QMatrix| q.data.len();
        m(&self.token_embd)
            + self.output.as_ref().map_or(0, m)
            + self
                .layers
                .iter()
                .map(|l| {
                    l.mixer.matrices().into_iter().map(m).sum::<usize>()
                        + m(&l.w_gate)
                        + m(&l.w_up)
                        + m(&l.w_down)
                })
                .sum::<usize>()
    }
}

/// Rows `row_start..row_start + rows` of a matrix tensor (all of it, or one role of a fused
/// tensor), `cols` wide, at byte `offset` of the file.
#[derive(Clone, Debug)]
pub struct TensorSlice<'a> {
    /// The role's name: the tensor's, with `[q]`, `[gate]`, ... for a part of a fused one.
    pub name: String,
    pub info: &'a TensorInfo,
    pub rows: usize,
    pub cols: usize,
    /// Absolute file offset of the first row.
    pub offset: u64,
    /// Bytes of one row in the file.
    pub row_bytes: usize,
}

/// Where the loader puts matrices: the CPU keeps their blocks in memory ([`CpuSink`]), the GPU
/// uploads them straight to buffers.
pub trait MatrixSink {
    type Matrix;
    fn matrix(&mut self, t: &TensorSlice<'_>) -> Result<Self::Matrix>;
}

/// Reads each matrix's blocks into memory.
pub struct CpuSink<'a> {
    pub src: &'a dyn ByteSource,
}

impl MatrixSink for CpuSink<'_> {
    type Matrix = QMatrix;
    fn matrix(&mut self, t: &TensorSlice<'_>) -> Result<QMatrix> {
        Ok(QMatrix {
            name: t.name.clone(),
            ty: t.info.ty,
            rows: t.rows,
            cols: t.cols,
            row_bytes: t.row_bytes,
            data: read_bytes(self.src, &t.name, t.offset, t.rows * t.row_bytes)?,
        })
    }
}

fn read_bytes(src: &dyn ByteSource, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).map_err(|_| Error::OutOfMemory {
        what: format!("tensor `{name}`"),
        needed: len as u64,
        available: None,
        hint: MEMORY_HINT,
    })?;
    buf.resize(len, 0);
    src.read_at(offset, &mut buf)?;
    Ok(buf)
}

struct Loader<'a> {
    header: &'a GgufHeader,
    src: &'a dyn ByteSource,
}

impl<'a> Loader<'a> {
    fn info(&self, name: &str) -> Result<&'a TensorInfo> {
        self.header
            .tensor(name)
            .ok_or_else(|| Error::BadModelTensor {
                tensor: name.to_owned(),
                problem: "missing from the model".into(),
            })
    }

    fn bytes(&self, t: &TensorInfo) -> Result<Vec<u8>> {
        let len = usize::try_from(t.n_bytes).map_err(|_| Error::BadModelTensor {
            tensor: t.name.clone(),
            problem: format!("{} bytes do not fit in memory", t.n_bytes),
        })?;
        read_bytes(self.src, &t.name, self.header.tensor_range(t).start, len)
    }

    fn shape_err(t: &TensorInfo, want: &[usize]) -> Error {
        Error::BadModelTensor {
            tensor: t.name.clone(),
            problem: format!("shape {:?}, expected {want:?}", t.dims),
        }
    }

    /// A matrix tensor with ne = [cols, rows], split into parts of `parts` rows each (one
    /// part for an ordinary tensor; Q/K/V or gate/up for a fused one).
    fn slices(
        &self,
        name: &str,
        parts: &[(&str, usize)],
        cols: usize,
    ) -> Result<Vec<TensorSlice<'a>>> {
        let t = self.info(name)?;
        let rows: usize = parts.iter().map(|p| p.1).sum();
        if t.dims != [cols as u64, rows as u64] {
            return Err(Self::shape_err(t, &[cols, rows]));
        }
        if rows == 0 || cols == 0 {
            return Err(Error::BadModelTensor {
                tensor: t.name.clone(),
                problem: format!("shape {:?} has no elements", t.dims),
            });
        }
        if !t.ty.is_supported() {
            return Err(Error::Tensor {
                tensor: t.name.clone(),
                source: quant::QuantError::Unsupported(t.ty),
            });
        }
        let row_bytes = t.n_bytes as usize / rows;
        let mut at = self.header.tensor_range(t).start;
        let mut out = Vec::new();
        for &(role, n) in parts {
            out.push(TensorSlice {
                name: if role.is_empty() {
                    name.to_owned()
                } else {
                    format!("{name}[{role}]")
                },
                info: t,
                rows: n,
                cols,
                offset: at,
                row_bytes,
            });
            at += (n * row_bytes) as u64;
        }
        Ok(out)
    }

    fn matrix<S: MatrixSink>(
        &self,
        sink: &mut S,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<S::Matrix> {
        sink.matrix(&self.slices(name, &[("", rows)], cols)?[0])
    }

    /// A vector of `n` values, expanded to f32.
    fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        let t = self.info(name)?;
        if t.n_elements != n as u64 || t.dims.first() != Some(&(n as u64)) {
            return Err(Self::shape_err(t, &[n]));
        }
        let bytes = self.bytes(t)?;
        quant::dequantize_to_vec(t.ty, &bytes, n).map_err(|source| Error::Tensor {
            tensor: name.to_owned(),
            source,
        })
    }

    /// A tensor of `n` values of any shape (checked by the caller), expanded to f32.
    fn vector_of(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        let t = self.info(name)?;
        if t.n_elements != n as u64 {
            return Err(Self::shape_err(t, &[n]));
        }
        let bytes = self.bytes(t)?;
        quant::dequantize_to_vec(t.ty, &bytes, n).map_err(|source| Error::Tensor {
            tensor: name.to_owned(),
            source,
        })
    }

    /// Layer `l`'s attention weights: separate Q, K, V or Phi-3's fused `attn_qkv` split into
    /// its roles; Gemma 4's full layers without `attn_v` take the K blocks again.
    fn attention<S: MatrixSink>(
        &self,
        sink: &mut S,
        cfg: &Config,
        l: usize,
    ) -> Result<AttentionWeights<S::Matrix>> {
        let spec = &cfg.layers[l];
        let e = cfg.n_embd;
        let p = |s: &str| format!("blk.{l}.{s}");
        let (q_dim, kv_dim, v_dim) = (spec.q_dim(cfg.n_head), spec.kv_dim(), spec.v_dim());
        // Qwen3.5: each head's query, then its output gate.
        let q_rows = if cfg.attn_output_gate {
            2 * q_dim
        } else {
            q_dim
        };
        let fused = cfg.arch == Arch::Phi3 && self.header.tensor(&p("attn_qkv.weight")).is_some();
        let (wq, wk, wv) = if fused {
            let s = self.slices(
                &p("attn_qkv.weight"),
                &[("q", q_dim), ("k", kv_dim), ("v", v_dim)],
                e,
            )?;
            (
                sink.matrix(&s[0])?,
                sink.matrix(&s[1])?,
                sink.matrix(&s[2])?,
            )
        } else {
            let wq = self.matrix(sink, &p("attn_q.weight"), q_rows, e)?;
            let wk = self.matrix(sink, &p("attn_k.weight"), kv_dim, e)?;
            let wv = match self.header.tensor(&p("attn_v.weight")) {
                None if cfg.arch == Arch::Gemma4 && v_dim == kv_dim => {
                    self.matrix(sink, &p("attn_k.weight"), kv_dim, e)?
                }
                _ => self.matrix(sink, &p("attn_v.weight"), v_dim, e)?,
            };
            (wq, wk, wv)
        };
        Ok(AttentionWeights {
            wq,
            wk,
            wv,
            bq: self.optional_vector(&p("attn_q.bias"), q_dim)?,
            bk: self.optional_vector(&p("attn_k.bias"), kv_dim)?,
            bv: self.optional_vector(&p("attn_v.bias"), v_dim)?,
            q_norm: self.optional_vector(&p("attn_q_norm.weight"), spec.head_dim)?,
            k_norm: self.optional_vector(&p("attn_k_norm.weight"), spec.head_dim)?,
            wo: self.matrix(
                sink,
                &p("attn_output.weight"),
                e,
                cfg.n_head * spec.head_dim_v,
            )?,
        })
    }

    /// Layer `l`'s gated delta-net weights (Qwen3.5).
    fn delta_net<S: MatrixSink>(
        &self,
        sink: &mut S,
        cfg: &Config,
        l: usize,
    ) -> Result<DeltaNetWeights<S::Matrix>> {
        let Some(d) = cfg.delta_net else {
            return Err(Error::UnsupportedModel(format!(
                "{}: layer {l} is a delta-net without its ssm.* metadata",
                cfg.arch.name()
            )));
        };
        let e = cfg.n_embd;
        let p = |s: &str| format!("blk.{l}.{s}");
        let conv_name = p("ssm_conv1d.weight");
        let t = self.info(&conv_name)?;
        if t.dims != [d.conv_taps as u64, d.conv_dim() as u64] {
            return Err(Self::shape_err(t, &[d.conv_taps, d.conv_dim()]));
        }
        Ok(DeltaNetWeights {
            qkv: self.matrix(sink, &p("attn_qkv.weight"), d.conv_dim(), e)?,
            gate: self.matrix(sink, &p("attn_gate.weight"), d.value_dim(), e)?,
            beta: self.matrix(sink, &p("ssm_beta.weight"), d.v_heads, e)?,
            alpha: self.matrix(sink, &p("ssm_alpha.weight"), d.v_heads, e)?,
            conv: self.vector_of(&conv_name, d.conv_taps * d.conv_dim())?,
            dt_bias: self.vector(&p("ssm_dt.bias"), d.v_heads)?,
            a: self.vector(&p("ssm_a"), d.v_heads)?,
            norm: self.vector(&p("ssm_norm.weight"), d.head_dim)?,
            out: self.matrix(sink, &p("ssm_out.weight"), e, d.value_dim())?,
        })
    }

    fn optional_vector(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>> {
        match self.header.tensor(name) {
            Some(_) => self.vector(name, n).map(Some),
            None => Ok(None),
        }
    }
}

/// What to do when the weights do not fit.
const MEMORY_HINT: &str = if cfg!(target_arch = "wasm32") {
    " (wasm32 memory is at most 4 GiB): use a smaller model, or the WebGPU backend, which keeps \
     the weights in GPU memory"
} else {
    ""
};

/// On wasm32, fail before reading anything when the tensors cannot fit in what is left of the
/// 4 GiB address space, instead of trapping on an allocation half-way through the load.
fn check_fits(header: &GgufHeader) -> Result<()> {
    #[cfg(target_arch = "wasm32")]
    {
        let needed: u64 = header.tensors.iter().map(|t| t.n_bytes).sum();
        let used = core::arch::wasm32::memory_size(0) as u64 * 65536;
        check_budget(needed, used, 4 << 30)?;
    }
    let _ = header;
    Ok(())
}

/// `needed` bytes of weights in an address space of `limit` bytes of which `used` are taken,
/// keeping 64 MiB for the KV cache and activations.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn check_budget(needed: u64, used: u64, limit: u64) -> Result<()> {
    let available = limit.saturating_sub(used + (64 << 20));
    if needed > available {
        return Err(Error::OutOfMemory {
            what: "the model's weights".into(),
            needed,
            available: Some(available),
            hint: MEMORY_HINT,
        });
    }
    Ok(())
}

impl ModelWeights {
    /// Read every weight the architecture needs from `src` into memory, checking shapes
    /// against `cfg`.
    pub fn load(header: &GgufHeader, src: &dyn ByteSource, cfg: &mut Config) -> Result<Self> {
        check_fits(header)?;
        load_weights(header, src, cfg, &mut CpuSink { src })
    }
}

/// The one loader: maps tensor names to roles (splitting fused tensors), checks every shape
/// against `cfg` (setting `cfg.n_vocab` from the embedding), reads vectors into memory and
/// hands each matrix to `sink`.
pub fn load_weights<S: MatrixSink>(
    header: &GgufHeader,
    src: &dyn ByteSource,
    cfg: &mut Config,
    sink: &mut S,
) -> Result<ModelWeights<S::Matrix>> {
    let ld = Loader { header, src };
    let e = cfg.n_embd;
    let embd = ld.info("token_embd.weight")?;
    let n_vocab = embd.dims.get(1).copied().unwrap_or(0) as usize;
    if n_vocab == 0 || (cfg.n_vocab != 0 && cfg.n_vocab != n_vocab) {
        return Err(Loader::shape_err(embd, &[e, cfg.n_vocab]));
    }
    cfg.n_vocab = n_vocab;
    let token_embd = ld.matrix(sink, "token_embd.weight", n_vocab, e)?;
    let output = match header.tensor("output.weight") {
        Some(_) => Some(ld.matrix(sink, "output.weight", n_vocab, e)?),
        None => None,
    };
    let fused = cfg.arch == Arch::Phi3;
    let gemma = matches!(cfg.arch, Arch::Gemma3 | Arch::Gemma4);
    let mut layers = Vec::with_capacity(cfg.n_layer.min(header.tensors.len()));
    for l in 0..cfg.n_layer {
        let spec = cfg.layers[l].clone();
        let p = |s: &str| format!("blk.{l}.{s}");
        let norm = |s: &str| ld.vector(&p(s), e);
        let mixer = match spec.mixer {
            Mixer::ShortConv => {
                let taps = cfg.shortconv_l_cache;
                let name = p("shortconv.conv.weight");
                let t = ld.info(&name)?;
                if t.dims != [taps as u64, e as u64] {
                    return Err(Loader::shape_err(t, &[taps, e]));
                }
                MixerWeights::ShortConv(ShortConvWeights {
                    in_proj: ld.matrix(sink, &p("shortconv.in_proj.weight"), 3 * e, e)?,
                    out_proj: ld.matrix(sink, &p("shortconv.out_proj.weight"), e, e)?,
                    kernel: ld.vector_of(&name, taps * e)?,
                })
            }
            Mixer::Attention => MixerWeights::Attention(ld.attention(sink, cfg, l)?),
            Mixer::DeltaNet => MixerWeights::DeltaNet(ld.delta_net(sink, cfg, l)?),
        };
        let (w_gate, w_up) = if fused && header.tensor(&p("ffn_gate.weight")).is_none() {
            let s = ld.slices(
                &p("ffn_up.weight"),
                &[("gate", spec.n_ff), ("up", spec.n_ff)],
                e,
            )?;
            (sink.matrix(&s[0])?, sink.matrix(&s[1])?)
        } else {
            (
                ld.matrix(sink, &p("ffn_gate.weight"), spec.n_ff, e)?,
                ld.matrix(sink, &p("ffn_up.weight"), spec.n_ff, e)?,
            )
        };
        let out_scale = ld
            .optional_vector(&p("layer_output_scale.weight"), 1)?
            .map(|v| v[0]);
        layers.push(LayerWeights {
            attn_norm: norm("attn_norm.weight")?,
            mixer,
            post_attn_norm: if gemma {
                Some(norm("post_attention_norm.weight")?)
            } else {
                None
            },
            // Qwen3.5's norm before the FFN is its `post_attention_norm`.
            ffn_norm: match cfg.arch {
                Arch::Qwen35 => norm("post_attention_norm.weight")?,
                _ => norm("ffn_norm.weight")?,
            },
            w_gate,
            w_up,
            w_down: ld.matrix(sink, &p("ffn_down.weight"), e, spec.n_ff)?,
            post_ffn_norm: if gemma {
                Some(norm("post_ffw_norm.weight")?)
            } else {
                None
            },
            out_scale,
        });
    }
    // Rope factor tensors are (n_rot/2) of the full layers. Phi-3 LongRoPE: the short factors
    // (see `Config::rope_factors_long`).
    let n_freqs = cfg.n_rot / 2;
    let rope_freqs = match ld.optional_vector("rope_freqs.weight", n_freqs)? {
        Some(f) => Some(f),
        None => ld.optional_vector("rope_factors_short.weight", n_freqs)?,
    };
    // LFM2 names its final norm `token_embd_norm`.
    let output_norm = match cfg.arch {
        Arch::Lfm2 => "token_embd_norm.weight",
        _ => "output_norm.weight",
    };
    Ok(ModelWeights {
        token_embd,
        output_norm: ld.vector(output_norm, e)?,
        output,
        rope_freqs,
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::check_budget;

    #[test]
    fn weights_larger_than_the_address_space_are_refused_up_front() {
        let gib = 1u64 << 30;
        assert!(check_budget(3 * gib, 100 << 20, 4 * gib).is_ok());
        let e = check_budget(4 * gib, 100 << 20, 4 * gib).unwrap_err();
        assert_eq!(e.code(), "out_of_memory");
        let msg = e.to_string();
        assert!(
            msg.contains("the model's weights need 4294967296 bytes of memory, but only"),
            "{msg}"
        );
    }
}
