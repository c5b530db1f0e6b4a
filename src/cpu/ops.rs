//! Element-wise and row-wise operations of the forward pass, named after the maths.

/// `out = x / sqrt(mean(x²) + eps) * w`, one row. The mean is taken in f64.
pub fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let ss: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64;
    let inv = (1.0 / (ss + f64::from(eps)).sqrt()) as f32;
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * inv * g;
    }
}

/// In-place RMSNorm of one row without weight (Gemma 4's V).
pub fn rmsnorm_plain(x: &mut [f32], eps: f32) {
    let ss: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64;
    let inv = (1.0 / (ss + f64::from(eps)).sqrt()) as f32;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// `cap · tanh(x / cap)` in place (final logit soft-cap).
pub fn softcap(x: &mut [f32], cap: f32) {
    x.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
}

/// In-place RMSNorm of one row.
pub fn rmsnorm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let ss: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64;
    let inv = (1.0 / (ss + f64::from(eps)).sqrt()) as f32;
    for (v, &g) in x.iter_mut().zip(w) {
        *v = *v * inv * g;
    }
}

/// Rotary embedding of one head `x` (head_dim) at position `pos`, over the first `n_rot` dims.
/// `neox`: pairs (i, i + n_rot/2); otherwise adjacent pairs (2i, 2i+1).
/// `inv_freq[i] = base^(-2i/n_rot) · freq_scale / rope_freqs[i]`, precomputed in f64.
pub fn rope(x: &mut [f32], pos: usize, inv_freq: &[f64], neox: bool) {
    let mut sc = Vec::new();
    rope_angles(&mut sc, pos, inv_freq);
    rope_with(x, &sc, neox);
}

/// `(sin, cos)` of `pos · inv_freq[i]` for `rope_with`: computed once per position and shared
/// by every head.
pub fn rope_angles(sc: &mut Vec<(f32, f32)>, pos: usize, inv_freq: &[f64]) {
    rope_angles_scaled(sc, pos, inv_freq, 1.0);
}

/// `rope_angles` with sin and cos multiplied by `mscale` (ggml's `attn_factor`).
pub fn rope_angles_scaled(sc: &mut Vec<(f32, f32)>, pos: usize, inv_freq: &[f64], mscale: f32) {
    sc.clear();
    sc.extend(inv_freq.iter().map(|&f| {
        let theta = pos as f64 * f;
        (theta.sin() as f32 * mscale, theta.cos() as f32 * mscale)
    }));
}

/// `rope` with the angles from `rope_angles`.
pub fn rope_with(x: &mut [f32], sc: &[(f32, f32)], neox: bool) {
    if sc.is_empty() {
        return;
    }
    let half = sc.len();
    for (i, &(sin, cos)) in sc.iter().enumerate() {
        let (a, b) = if neox {
            (i, i + half)
        } else {
            (2 * i, 2 * i + 1)
        };
        let (x0, x1) = (x[a], x[b]);
        x[a] = x0 * cos - x1 * sin;
        x[b] = x0 * sin + x1 * cos;
    }
}

/// Inverse frequencies for `rope`: a model property, in `model::rope`.
pub use crate::model::rope_inv_freq;

/// Numerically stable softmax in place.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// `e^x` for `x <= 0` to about 1 ulp (Cephes' `expf`: `x = n·ln 2 + r`, a degree-6 polynomial
/// in `r`, then `2^n` from the exponent bits), in plain arithmetic that vectorizes, unlike the
/// library call. Below -87 it returns `e^-87` (1.6e-38): against the row's maximum, `e^0`, that
/// is zero in any sum.
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    let x = x.max(-87.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^n from the exponent bits, n in −126..=0: `n + 127 + 1.5·2^23` holds `n + 127` in its
    // low mantissa bits, and the shift drops the rest (`n as i32` would not vectorize: Rust's
    // saturating conversion is a call per lane).
    e * f32::from_bits((n + (127.0 + 12_582_912.0)).to_bits() << 23)
}

/// SiLU, `x·σ(x)`, through [`exp_nonpositive`] so that a loop of it vectorizes (the library
/// `exp` of [`silu`] is a call per value: 3% of a batched decode step): with `t = e^{−|x|}`,
/// `x/(1 + t)` for `x ≥ 0` and `x·t/(1 + t)` below. Within 4 ulp of the exact value for
/// `x ≥ −80`; below, under 1e-33 (from `e^−87` at most): nothing in a sum.
#[inline(always)]
pub fn silu_fast(x: f32) -> f32 {
    let t = exp_nonpositive(-x.abs());
    let r = 1.0 / (1.0 + t);
    x * if x >= 0.0 { r } else { t * r }
}

/// The gated feed-forward's `gate[i] = silu(gate[i])·up[i]` ([`silu_fast`]), vectorized: with
/// AVX2 where the CPU has it (detected at run time, as for the matrix kernels), SIMD128 on the
/// web.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::matmul::has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (detected above).
        unsafe { swiglu_avx2(gate, up) };
        return;
    }
    swiglu_lanes(gate, up);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn swiglu_avx2(gate: &mut [f32], up: &[f32]) {
    swiglu_lanes(gate, up);
}

#[inline(always)]
fn swiglu_lanes(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = silu_fast(*g) * u;
    }
}

/// `f(out_rows, in_rows)` over chunks of whole rows (`width` values each) of `out` and `inp`,
/// split over the matmul threads when a prefill's rows repay a fork (the per-token steps
/// between matmuls, which one thread would otherwise do while the others wait).
pub fn by_rows(out: &mut [f32], inp: &[f32], width: usize, f: impl Fn(&mut [f32], &[f32]) + Sync) {
    let n = out.len() / width.max(1);
    let threads = super::matmul::threads();
    // Below ~64k values (tens of µs) a fork costs more than it saves.
    if threads < 2 || n < 2 * threads || out.len() < 1 << 16 {
        f(out, inp);
        return;
    }
    let per = n.div_ceil(2 * threads) * width;
    let mut parts: Vec<(&mut [f32], &[f32])> = out.chunks_mut(per).zip(inp.chunks(per)).collect();
    super::matmul::for_each_part(&mut parts, |_, (o, i)| f(o, i));
}

/// GELU, tanh approximation (as ggml and Gemma use).
pub fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2/pi)
    0.5 * x * (1.0 + (C * (x + 0.044_715 * x * x * x)).tanh())
}

pub fn add_inplace(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vectorized_exp_is_within_two_ulp() {
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let (got, want) = (exp_nonpositive(x), x.exp());
            assert!(
                (got - want).abs() <= 2.5e-7 * want,
                "e^{x}: {got} vs {want}"
            );
        }
        assert!(exp_nonpositive(-1e9) < 2e-38 && exp_nonpositive(f32::NEG_INFINITY) < 2e-38);
    }

    #[test]
    fn the_vectorized_silu_is_within_four_ulp() {
        for i in -400_000..=400_000 {
            let x = i as f32 / 4_000.0;
            let (got, want) = (silu_fast(x), f64::from(x) / (1.0 + (-f64::from(x)).exp()));
            let ulp = f64::from(f32::EPSILON) * want.abs().max(f64::from(f32::MIN_POSITIVE));
            // Below −80 the value (under 1e-33) comes from e^−87 at most: nothing in a sum.
            let bound = if x >= -80.0 { 4.0 * ulp } else { 1e-33 };
            assert!(
                (f64::from(got) - want).abs() <= bound,
                "silu({x}): {got} vs {want}"
            );
        }
        let (mut g, u) = ([-3.0f32, 0.0, 2.5, 40.0, -200.0], [2.0f32; 5]);
        swiglu(&mut g, &u);
        assert_eq!(
            g.map(|v| v.to_bits()),
            [-3.0f32, 0.0, 2.5, 40.0, -200.0].map(|v| (silu_fast(v) * 2.0).to_bits())
        );
        assert!(silu_fast(f32::NAN).is_nan() && silu_fast(f32::INFINITY) == f32::INFINITY);
    }

    #[test]
    fn rope_rotates_pairs_by_position() {
        let inv = rope_inv_freq(4, 10000.0, 1.0, None);
        let mut x = [1.0, 0.0, 1.0, 0.0];
        rope(&mut x, 1, &inv, false);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
        let mut y = [1.0, 1.0, 0.0, 0.0];
        rope(&mut y, 1, &inv, true);
        assert!((y[0] - 1f32.cos()).abs() < 1e-6 && (y[2] - 1f32.sin()).abs() < 1e-6);
        let mut z = [3.0, 4.0];
        rope(&mut z, 0, &rope_inv_freq(2, 10000.0, 1.0, None), false);
        assert_eq!(z, [3.0, 4.0]);
    }

    #[test]
    fn softmax_and_norm() {
        let mut s = [1.0, 2.0, 3.0];
        softmax(&mut s);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6 && s[2] > s[1]);
        let mut o = [0.0; 2];
        rmsnorm(&mut o, &[3.0, 4.0], &[1.0, 2.0], 0.0);
        let r = (12.5f32).sqrt();
        assert!((o[0] - 3.0 / r).abs() < 1e-6 && (o[1] - 8.0 / r).abs() < 1e-6);
    }
}
