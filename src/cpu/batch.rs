//! One decode step for several independent sequences at once (continuous batching).
//!
//! Each sequence brings its next token, its position and its own KV cache. The batch goes
//! through the layers as an (n_seq, dim) matrix, so every weight matrix is read once per step
//! for the whole batch (the same `matmul` over several rows that prefill uses), while attention
//! runs per sequence over that sequence's cache. Row `i` of the result is exactly what
//! [`CpuModel::forward`] gives for sequence `i` alone: the same operations in the same order,
//! and the fast matrix kernels compute every row on its own.
//!
//! Like llama-server's parallel slots and vLLM's continuous batching, sequences at different
//! positions share a step; the caller decides who joins and who leaves between steps.

use super::matmul::{self, matmul};
use super::{ops, CpuModel, KvCache};
use crate::model::Activation;
use crate::{Error, Result};

/// One sequence's part of a batched step.
pub struct BatchRow<'a> {
    /// The token to run (the last one sampled).
    pub token: u32,
    /// Its position in the sequence (= tokens already in `cache`).
    pub pos: usize,
    pub cache: &'a mut KvCache,
}

impl CpuModel {
    /// Run one token for each row, appending to each row's cache; returns (n_rows, n_vocab)
    /// logits, row `i` for `rows[i]`.
    pub fn forward_batch(&self, rows: &mut [BatchRow<'_>]) -> Result<Vec<f32>> {
        let c = &self.cfg;
        let n = rows.len();
        if n == 0 {
            return Ok(vec![]);
        }
        for r in rows.iter() {
            if r.pos + 1 > r.cache.n_ctx {
                return Err(Error::ContextFull {
                    needed: r.pos + 1,
                    n_ctx: r.cache.n_ctx,
                });
            }
            if r.token as usize >= c.n_vocab {
                return Err(Error::TokenOutOfRange {
                    id: r.token,
                    n_vocab: c.n_vocab,
                });
            }
        }
        let e = c.n_embd;
        let (hd, hdv) = (c.head_dim, c.head_dim_v);
        let (q_dim, kv_dim, v_dim) = (c.n_head * hd, c.n_head_kv * hd, c.n_head_kv * hdv);
        let k = self.kernel;

        // x: (n, n_embd) residual stream, one row per sequence.
        let mut x = vec![0f32; n * e];
        for (t, r) in rows.iter().enumerate() {
            let row = &mut x[t * e..(t + 1) * e];
            self.w.token_embd.dequantize_row(r.token as usize, row)?;
            if let Some(s) = c.embd_scale {
                row.iter_mut().for_each(|v| *v *= s);
            }
        }
        let mut h = vec![0f32; n * e];
        let mut q = vec![0f32; n * q_dim];
        let mut kk = vec![0f32; n * kv_dim];
        let mut vv = vec![0f32; n * v_dim];
        let mut att = vec![0f32; n * c.n_head * hdv];
        let mut proj = vec![0f32; n * e];
        let mut gate = vec![0f32; n * c.n_ff];
        let mut up = vec![0f32; n * c.n_ff];
        let max_pos = rows.iter().map(|r| r.pos).max().unwrap_or(0);
        let mut scores = vec![0f32; max_pos + 1];
        let mut angles = Vec::new();

        for (l, lw) in self.w.layers.iter().enumerate() {
            // Attention block: projections over the batch, attention per sequence.
            for t in 0..n {
                ops::rmsnorm(
                    &mut h[t * e..(t + 1) * e],
                    &x[t * e..(t + 1) * e],
                    &lw.attn_norm,
                    c.rms_eps,
                );
            }
            matmul(&lw.wq, &h, &mut q, n, k)?;
            matmul(&lw.wk, &h, &mut kk, n, k)?;
            matmul(&lw.wv, &h, &mut vv, n, k)?;
            for (buf, bias, dim) in [
                (&mut q, &lw.bq, q_dim),
                (&mut kk, &lw.bk, kv_dim),
                (&mut vv, &lw.bv, v_dim),
            ] {
                if let Some(b) = bias {
                    buf.chunks_exact_mut(dim)
                        .for_each(|r| ops::add_inplace(r, b));
                }
            }
            let inv_freq = if c.swa_layers[l] {
                &self.inv_freq_swa
            } else {
                &self.inv_freq
            };
            for (t, r) in rows.iter_mut().enumerate() {
                let p = r.pos;
                ops::rope_angles(&mut angles, p, inv_freq);
                for head in q[t * q_dim..(t + 1) * q_dim].chunks_exact_mut(hd) {
                    if let Some(w) = &lw.q_norm {
                        ops::rmsnorm_inplace(head, w, c.rms_eps);
                    }
                    ops::rope_with(head, &angles, c.rope_neox);
                    if let Some(s) = c.q_scale {
                        head.iter_mut().for_each(|v| *v *= s);
                    }
                }
                for head in kk[t * kv_dim..(t + 1) * kv_dim].chunks_exact_mut(hd) {
                    if let Some(w) = &lw.k_norm {
                        ops::rmsnorm_inplace(head, w, c.rms_eps);
                    }
                    ops::rope_with(head, &angles, c.rope_neox);
                }
                r.cache.k[l][p * kv_dim..(p + 1) * kv_dim]
                    .copy_from_slice(&kk[t * kv_dim..(t + 1) * kv_dim]);
                r.cache.v[l][p * v_dim..(p + 1) * v_dim]
                    .copy_from_slice(&vv[t * v_dim..(t + 1) * v_dim]);
            }
            for (t, r) in rows.iter().enumerate() {
                let p = r.pos;
                let cache = &*r.cache;
                // Causal, and within the window on sliding-window layers.
                let first = if c.swa_layers[l] {
                    (p + 1).saturating_sub(c.n_swa)
                } else {
                    0
                };
                for hh in 0..c.n_head {
                    let kvh = hh / c.group();
                    let qh = &q[t * q_dim + hh * hd..t * q_dim + (hh + 1) * hd];
                    let s = &mut scores[first..=p];
                    for (j, sc) in s.iter_mut().enumerate() {
                        let kp = first + j;
                        let kr = &cache.k[l][kp * kv_dim + kvh * hd..kp * kv_dim + (kvh + 1) * hd];
                        *sc = matmul::dot_fast(qh, kr) * c.kq_scale;
                    }
                    ops::softmax(s);
                    let out = &mut att
                        [t * c.n_head * hdv + hh * hdv..t * c.n_head * hdv + (hh + 1) * hdv];
                    out.fill(0.0);
                    for (j, &a) in s.iter().enumerate() {
                        let kp = first + j;
                        let vr = &cache.v[l][kp * v_dim + kvh * hdv..kp * v_dim + (kvh + 1) * hdv];
                        for (o, &v) in out.iter_mut().zip(vr) {
                            *o += a * v;
                        }
                    }
                }
            }
            matmul(&lw.wo, &att, &mut proj, n, k)?;
            if let Some(w) = &lw.post_attn_norm {
                proj.chunks_exact_mut(e)
                    .for_each(|r| ops::rmsnorm_inplace(r, w, c.rms_eps));
            }
            ops::add_inplace(&mut x, &proj);

            // Feed-forward block.
            for t in 0..n {
                ops::rmsnorm(
                    &mut h[t * e..(t + 1) * e],
                    &x[t * e..(t + 1) * e],
                    &lw.ffn_norm,
                    c.rms_eps,
                );
            }
            matmul(&lw.w_gate, &h, &mut gate, n, k)?;
            matmul(&lw.w_up, &h, &mut up, n, k)?;
            let act = match c.activation {
                Activation::Silu => ops::silu,
                Activation::GeluTanh => ops::gelu_tanh,
            };
            for (g, &u) in gate.iter_mut().zip(&up) {
                *g = act(*g) * u;
            }
            matmul(&lw.w_down, &gate, &mut proj, n, k)?;
            if let Some(w) = &lw.post_ffn_norm {
                proj.chunks_exact_mut(e)
                    .for_each(|r| ops::rmsnorm_inplace(r, w, c.rms_eps));
            }
            ops::add_inplace(&mut x, &proj);
        }

        // Output head: every row is some sequence's last token.
        let mut xn = vec![0f32; n * e];
        for t in 0..n {
            ops::rmsnorm(
                &mut xn[t * e..(t + 1) * e],
                &x[t * e..(t + 1) * e],
                &self.w.output_norm,
                c.rms_eps,
            );
        }
        let mut logits = vec![0f32; n * c.n_vocab];
        matmul(self.w.output(), &xn, &mut logits, n, k)?;
        Ok(logits)
    }
}
