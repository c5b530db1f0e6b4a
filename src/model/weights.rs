//! Tensor-name → role mapping and weight loading. Matrices stay in their block formats; only
//! vectors (norm weights, biases) are expanded to f32.

use super::{Arch, Config};
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

/// Per-layer weights. Shapes as (out, in).
#[derive(Clone, Debug)]
pub struct LayerWeights {
    pub attn_norm: Vec<f32>, // (n_embd)
    pub wq: QMatrix,         // (n_head·head_dim, n_embd)
    pub wk: QMatrix,         // (n_head_kv·head_dim, n_embd)
    pub wv: QMatrix,         // (n_head_kv·head_dim_v, n_embd)
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    pub q_norm: Option<Vec<f32>>, // (head_dim), Gemma 3
    pub k_norm: Option<Vec<f32>>,
    pub wo: QMatrix, // (n_embd, n_head·head_dim_v)
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub w_gate: QMatrix, // (n_ff, n_embd)
    pub w_up: QMatrix,   // (n_ff, n_embd)
    pub w_down: QMatrix, // (n_embd, n_ff)
    pub post_ffn_norm: Option<Vec<f32>>,
}

#[derive(Clone, Debug)]
pub struct ModelWeights {
    pub token_embd: QMatrix, // (n_vocab, n_embd)
    pub output_norm: Vec<f32>,
    /// `None` when the output matrix is tied to `token_embd`.
    pub output: Option<QMatrix>,
    /// Per-frequency RoPE divisors (`rope_freqs.weight`), (n_rot/2).
    pub rope_freqs: Option<Vec<f32>>,
    pub layers: Vec<LayerWeights>,
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
                    m(&l.wq)
                        + m(&l.wk)
                        + m(&l.wv)
                        + m(&l.wo)
                        + m(&l.w_gate)
                        + m(&l.w_up)
                        + m(&l.w_down)
                })
                .sum::<usize>()
    }
}

struct Loader<'a> {
    header: &'a GgufHeader,
    src: &'a dyn ByteSource,
}

impl Loader<'_> {
    fn info(&self, name: &str) -> Result<&TensorInfo> {
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
        let mut buf = Vec::new();
        buf.try_reserve_exact(len).map_err(|_| Error::OutOfMemory {
            what: format!("tensor `{}`", t.name),
            needed: len as u64,
            available: None,
            hint: MEMORY_HINT,
        })?;
        buf.resize(len, 0);
        self.src
            .read_at(self.header.tensor_range(t).start, &mut buf)?;
        Ok(buf)
    }

    fn shape_err(t: &TensorInfo, want: &[usize]) -> Error {
        Error::BadModelTensor {
            tensor: t.name.clone(),
            problem: format!("shape {:?}, expected {want:?}", t.dims),
        }
    }

    /// A matrix with ne = [cols, rows].
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix> {
        let t = self.info(name)?;
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
        Ok(QMatrix {
            name: name.to_owned(),
            ty: t.ty,
            rows,
            cols,
            row_bytes: t.n_bytes as usize / rows,
            data: self.bytes(t)?,
        })
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
    /// Read every weight the architecture needs from `src`, checking shapes against `cfg`.
    pub fn load(header: &GgufHeader, src: &dyn ByteSource, cfg: &mut Config) -> Result<Self> {
        check_fits(header)?;
        let ld = Loader { header, src };
        let e = cfg.n_embd;
        let embd = ld.info("token_embd.weight")?;
        let n_vocab = embd.dims.get(1).copied().unwrap_or(0) as usize;
        if cfg.n_vocab != 0 && cfg.n_vocab != n_vocab {
            return Err(Loader::shape_err(embd, &[e, cfg.n_vocab]));
        }
        cfg.n_vocab = n_vocab;
        let token_embd = ld.matrix("token_embd.weight", n_vocab, e)?;
        let output = match header.tensor("output.weight") {
            Some(_) => Some(ld.matrix("output.weight", n_vocab, e)?),
            None => None,
        };
        let (q_dim, kv_dim, v_dim) = (
            cfg.n_head * cfg.head_dim,
            cfg.kv_dim(),
            cfg.n_head_kv * cfg.head_dim_v,
        );
        let gemma = cfg.arch == Arch::Gemma3;
        // Not sized by the header's claim alone: a crafted block_count must not allocate.
        let mut layers = Vec::with_capacity(cfg.n_layer.min(header.tensors.len()));
        for l in 0..cfg.n_layer {
            let p = |s: &str| format!("blk.{l}.{s}");
            let norm = |s: &str| ld.vector(&p(s), e);
            layers.push(LayerWeights {
                attn_norm: norm("attn_norm.weight")?,
                wq: ld.matrix(&p("attn_q.weight"), q_dim, e)?,
                wk: ld.matrix(&p("attn_k.weight"), kv_dim, e)?,
                wv: ld.matrix(&p("attn_v.weight"), v_dim, e)?,
                bq: ld.optional_vector(&p("attn_q.bias"), q_dim)?,
                bk: ld.optional_vector(&p("attn_k.bias"), kv_dim)?,
                bv: ld.optional_vector(&p("attn_v.bias"), v_dim)?,
                q_norm: ld.optional_vector(&p("attn_q_norm.weight"), cfg.head_dim)?,
                k_norm: ld.optional_vector(&p("attn_k_norm.weight"), cfg.head_dim)?,
                wo: ld.matrix(&p("attn_output.weight"), e, cfg.n_head * cfg.head_dim_v)?,
                post_attn_norm: if gemma {
                    Some(norm("post_attention_norm.weight")?)
                } else {
                    None
                },
                ffn_norm: norm("ffn_norm.weight")?,
                w_gate: ld.matrix(&p("ffn_gate.weight"), cfg.n_ff, e)?,
                w_up: ld.matrix(&p("ffn_up.weight"), cfg.n_ff, e)?,
                w_down: ld.matrix(&p("ffn_down.weight"), e, cfg.n_ff)?,
                post_ffn_norm: if gemma {
                    Some(norm("post_ffw_norm.weight")?)
                } else {
                    None
                },
            });
        }
        Ok(ModelWeights {
            token_embd,
            output_norm: ld.vector("output_norm.weight", e)?,
            output,
            rope_freqs: ld.optional_vector("rope_freqs.weight", cfg.n_rot / 2)?,
            layers,
        })
    }
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
