//! Qwen3.5's gated delta-net layer on the CPU, token by token (the recurrent form).
//!
//! Follows llama.cpp (ggml-org/llama.cpp): `src/models/qwen35.cpp`
//! (`build_layer_attn_linear`, `build_norm_gated`) and `src/models/delta-net-base.cpp`
//! (`build_delta_net_autoregressive`, the rule that its chunked form computes for many tokens
//! at once). For a layer with S-sized heads, H_k key heads and H_v value heads, per token:
//!
//! 1. `attn_qkv` → Q, K, V (2·H_k·S + H_v·S channels) through a depthwise causal convolution
//!    of `ssm.conv_kernel` taps (ggml's `ssm_conv`: its state is the last taps − 1 inputs),
//!    then SiLU;
//! 2. Q and K per head: L2-normalised (x / max(‖x‖, eps), eps = the RMSNorm eps), Q × 1/√S;
//! 3. per value head j (key head j mod H_k): β = sigmoid(`ssm_beta`·h), the decay
//!    g = softplus(`ssm_alpha`·h + `ssm_dt.bias`) · `ssm_a` (≤ 0), and the gated delta rule
//!    over the S×S state M (M[i][v]: key index i, value index v):
//!    M ← e^g·M;  d = β·(v − Mᵀk);  M ← M + k dᵀ;  o = Mᵀq;
//! 4. o per head: RMSNorm with `ssm_norm`, times SiLU(z), z = `attn_gate`·h;
//! 5. `ssm_out`.
//!
//! The state (convolution inputs, then one M per value head, each stored value-major: row v
//! holds M[·][v]) lives in [`super::KvCache`] beside the attention layers' keys and values.
//!
//! Two forms of step 3, chosen by the [`Kernel`]: the reference goes over a head's matrix
//! twice (decay and Mᵀk for every row, then the update and Mᵀq), each row's sums in element
//! order. Each row's new values depend only on that row (d_r needs only row r's Mᵀk), so the
//! fast path finishes one row while it is in L1, both dots in 16 SIMD lanes (AVX2 on x86_64,
//! SIMD128 in the web build) summed pairwise at the end: one pass over the state per token.
//! Its sums are reassociated, so it agrees with the reference to f32 rounding, not in bits.
//! A chunked form (parallel over a prompt's tokens) is not built: prompts run token by token.

use super::matmul::{lane_sum, Kernel};
use super::ops;
use super::short_conv::causal_conv_step;
use crate::model::DeltaNetSpec;

/// The layer's per-token inputs, projected from the normed residual stream.
pub struct DeltaInputs<'a> {
    /// Q, K, V before the convolution (conv_dim).
    pub qkv: &'a [f32],
    /// z, the output gate (H_v·S).
    pub z: &'a [f32],
    /// β before its sigmoid (H_v).
    pub beta: &'a [f32],
    /// The decay's input before dt_bias and softplus (H_v).
    pub alpha: &'a [f32],
}

/// The layer's fixed vectors.
pub struct DeltaParams<'a> {
    pub spec: DeltaNetSpec,
    /// (conv_dim, taps), channel-major.
    pub conv: &'a [f32],
    pub dt_bias: &'a [f32],
    pub a: &'a [f32],
    /// The gated norm's weight (S).
    pub norm: &'a [f32],
    pub eps: f32,
}

/// ggml's softplus: log(1 + eˣ), x itself past 20.
fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// x / max(‖x‖, eps), in place (ggml's `l2_norm`).
fn l2_normalize(x: &mut [f32], eps: f32) {
    let ss: f32 = x.iter().map(|v| v * v).sum();
    let scale = 1.0 / ss.sqrt().max(eps);
    x.iter_mut().for_each(|v| *v *= scale);
}

/// One token through the layer's recurrence: updates `state` (see the module doc) and writes
/// the gated, normed output (H_v·S) to `out`. `conv_out` is scratch (conv_dim).
pub fn delta_net_step(
    p: &DeltaParams<'_>,
    x: &DeltaInputs<'_>,
    state: &mut [f32],
    conv_out: &mut [f32],
    out: &mut [f32],
    kernel: Kernel,
) {
    let d = p.spec;
    let s = d.head_dim;
    let conv_len = (d.conv_taps - 1) * d.conv_dim();
    let (conv_state, mats) = state.split_at_mut(conv_len);
    causal_conv_step(conv_state, p.conv, x.qkv, conv_out, kernel);
    conv_out.iter_mut().for_each(|v| *v = ops::silu(*v));
    let (q, rest) = conv_out.split_at_mut(d.key_dim());
    let (k, v) = rest.split_at_mut(d.key_dim());
    let q_scale = 1.0 / (s as f32).sqrt();
    for (qh, kh) in q.chunks_exact_mut(s).zip(k.chunks_exact_mut(s)) {
        l2_normalize(qh, p.eps);
        l2_normalize(kh, p.eps);
        qh.iter_mut().for_each(|v| *v *= q_scale);
    }
    for j in 0..d.v_heads {
        let kh = j % d.k_heads;
        let (qj, kj) = (&q[kh * s..(kh + 1) * s], &k[kh * s..(kh + 1) * s]);
        let vj = &v[j * s..(j + 1) * s];
        let beta = sigmoid(x.beta[j]);
        let decay = (softplus(x.alpha[j] + p.dt_bias[j]) * p.a[j]).exp();
        let m = &mut mats[j * s * s..(j + 1) * s * s];
        let o = &mut out[j * s..(j + 1) * s];
        let head = HeadStep {
            decay,
            beta,
            k: kj,
            q: qj,
            v: vj,
        };
        match kernel {
            Kernel::Reference => head.rule_reference(m, o),
            Kernel::Fast => head.rule_fast(m, o),
        }
        // The gated norm: RMSNorm(o)·w · SiLU(z).
        ops::rmsnorm_inplace(o, p.norm, p.eps);
        for (ov, &zv) in o.iter_mut().zip(&x.z[j * s..(j + 1) * s]) {
            *ov *= ops::silu(zv);
        }
    }
}

/// One value head's inputs to the gated delta rule for one token.
struct HeadStep<'a> {
    decay: f32,
    beta: f32,
    k: &'a [f32],
    q: &'a [f32],
    v: &'a [f32],
}

impl HeadStep<'_> {
    /// The rule over `m` (S rows: row r is M[·][r]), o = Mᵀq into `o`: two passes over the
    /// matrix, every sum in element order.
    fn rule_reference(&self, m: &mut [f32], o: &mut [f32]) {
        let s = self.k.len();
        let mut sk = vec![0f32; s];
        // M ← e^g·M, and Mᵀk with it.
        for (r, row) in m.chunks_exact_mut(s).enumerate() {
            let mut acc = 0f32;
            for (mv, &ki) in row.iter_mut().zip(self.k) {
                *mv *= self.decay;
                acc += *mv * ki;
            }
            sk[r] = acc;
        }
        // d = β(v − Mᵀk); M += k dᵀ; o = Mᵀq.
        for (r, row) in m.chunks_exact_mut(s).enumerate() {
            let dr = self.beta * (self.v[r] - sk[r]);
            let mut acc = 0f32;
            for ((mv, &ki), &qi) in row.iter_mut().zip(self.k).zip(self.q) {
                *mv += ki * dr;
                acc += *mv * qi;
            }
            o[r] = acc;
        }
    }

    /// The same rule row by row (see the module doc).
    fn rule_fast(&self, m: &mut [f32], o: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if super::matmul::has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (detected above).
            unsafe { self.rule_rows_avx2(m, o) };
            return;
        }
        self.rule_rows(m, o);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rule_rows_avx2(&self, m: &mut [f32], o: &mut [f32]) {
        self.rule_rows(m, o);
    }

    #[inline(always)]
    fn rule_rows(&self, m: &mut [f32], o: &mut [f32]) {
        let s = self.k.len();
        for ((row, &vr), or) in m.chunks_exact_mut(s).zip(self.v).zip(o.iter_mut()) {
            let sk = scale_dot(row, self.decay, self.k);
            let dr = self.beta * (vr - sk);
            *or = add_dot(row, dr, self.k, self.q);
        }
    }
}

/// SIMD lanes of the fast path's dots.
const LANES: usize = 16;

/// `row ← c·row`, then `row·k`.
#[inline(always)]
fn scale_dot(row: &mut [f32], c: f32, k: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut rc = row.chunks_exact_mut(LANES);
    let mut kc = k.chunks_exact(LANES);
    for (r, kk) in (&mut rc).zip(&mut kc) {
        for l in 0..LANES {
            r[l] *= c;
            acc[l] += r[l] * kk[l];
        }
    }
    let mut tail = 0f32;
    for (r, &kk) in rc.into_remainder().iter_mut().zip(kc.remainder()) {
        *r *= c;
        tail += *r * kk;
    }
    lane_sum(acc, tail)
}

/// `row ← row + d·k`, then `row·q`.
#[inline(always)]
fn add_dot(row: &mut [f32], d: f32, k: &[f32], q: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut rc = row.chunks_exact_mut(LANES);
    let mut kc = k.chunks_exact(LANES);
    let mut qc = q.chunks_exact(LANES);
    for ((r, kk), qq) in (&mut rc).zip(&mut kc).zip(&mut qc) {
        for l in 0..LANES {
            r[l] += kk[l] * d;
            acc[l] += r[l] * qq[l];
        }
    }
    let mut tail = 0f32;
    for ((r, &kk), &qq) in rc
        .into_remainder()
        .iter_mut()
        .zip(kc.remainder())
        .zip(qc.remainder())
    {
        *r += kk * d;
        tail += *r * qq;
    }
    lane_sum(acc, tail)
}
