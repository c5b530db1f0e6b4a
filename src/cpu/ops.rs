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
