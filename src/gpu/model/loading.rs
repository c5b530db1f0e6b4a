//! Weights for the GPU: uploaded from a [`ModelWeights`] in memory, or streamed from a GGUF
//! source tensor by tensor.

use super::super::{GpuContext, GpuMatrix};
use crate::gguf::GgufHeader;
use crate::model::{Arch, Config, ModelWeights};
use crate::source::ByteSource;
use crate::{Error, Result};

/// One layer's weights on the GPU (matrices) and on the host (vectors, expanded to f32).
pub(super) struct GpuLayer {
    pub(super) attn_norm: Vec<f32>,
    pub(super) wq: GpuMatrix,
    pub(super) wk: GpuMatrix,
    pub(super) wv: GpuMatrix,
    pub(super) bq: Option<Vec<f32>>,
    pub(super) bk: Option<Vec<f32>>,
    pub(super) bv: Option<Vec<f32>>,
    pub(super) q_norm: Option<Vec<f32>>,
    pub(super) k_norm: Option<Vec<f32>>,
    pub(super) wo: GpuMatrix,
    pub(super) post_attn_norm: Option<Vec<f32>>,
    pub(super) ffn_norm: Vec<f32>,
    pub(super) w_gate: GpuMatrix,
    pub(super) w_up: GpuMatrix,
    pub(super) w_down: GpuMatrix,
    pub(super) post_ffn_norm: Option<Vec<f32>>,
}

/// [`ModelWeights`] with its matrices uploaded.
pub(super) struct GpuWeights {
    pub(super) token_embd: GpuMatrix,
    pub(super) output_norm: Vec<f32>,
    pub(super) output: Option<GpuMatrix>,
    pub(super) rope_freqs: Option<Vec<f32>>,
    pub(super) layers: Vec<GpuLayer>,
}

impl GpuWeights {
    /// Upload weights already in memory.
    pub(super) fn upload(ctx: &GpuContext, w: &ModelWeights) -> Result<GpuWeights> {
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
    pub(super) fn stream(
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
