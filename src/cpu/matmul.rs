//! Products of quantized weight matrices with f32 activations.
//!
//! `Kernel::Reference` dequantizes one row at a time with the reference dequantizer and dots it
//! with f64 accumulation: the oracle. `Kernel::Fast` (`kernels/`) reads the blocks in place with
//! fused per-type kernels (AVX2 intrinsics on x86_64, portable vectorizable code elsewhere),
//! tiles tokens during prefill and splits rows over threads ([`set_threads`]).
//! Activations stay f32, except on x86_64 with AVX-512 BW, where they are quantized to i16
//! (one scale per 32 values, or per 256 for the K-quants, plus a residual plane for Q6_K) for
//! exact integer dot products: unlike llama.cpp's 8 bits, which keeps the logits close to the
//! exact maths (NMSE 1e-8–3e-6 against ~1e-3 and more).

use crate::model::QMatrix;
use crate::Result;

#[path = "kernels/mod.rs"]
mod kernels;

#[cfg(target_arch = "x86_64")]
pub(crate) use kernels::has_avx2_fma;
pub use kernels::{
    amx_in_use, amx_path_in_use, limit_isa, relaxed_dot_products, set_amx, set_threads, threads,
    RelaxedChoice, RELAXED_FORMATS,
};
pub(crate) use kernels::{for_each_part, on_pool};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kernel {
    /// Plain scalar loops, f64 accumulation: the oracle the fast path is tested against.
    Reference,
    /// Fused per-type kernels over the quantized blocks, f32 accumulation (on AVX-512: i16
    /// activations and integer dot products), SIMD and threads.
    #[default]
    Fast,
}

/// Dot product with f64 accumulation.
pub fn dot_reference(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum::<f64>() as f32
}

/// Dot product over 16 independent f32 lanes (vectorizes to AVX/SIMD128), summed pairwise.
/// Always inlined, so that a caller compiled for wider vectors (the attention loop's AVX2
/// build) vectorizes it for them.
#[inline(always)]
pub fn dot_fast(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 16;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; L];
    let mut ca = a.chunks_exact(L);
    let mut cb = b.chunks_exact(L);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..L {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0f32;
    for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    lane_sum(acc, tail)
}

/// 16 SIMD lanes summed pairwise (8 + 8, 4 + 4, ...), then `tail`: the end of every lane-wise
/// dot product ([`dot_fast`], the delta rule's).
#[inline(always)]
pub(crate) fn lane_sum(mut acc: [f32; 16], tail: f32) -> f32 {
    let mut w = acc.len();
    while w > 1 {
        w /= 2;
        for i in 0..w {
            acc[i] += acc[i + w];
        }
    }
    acc[0] + tail
}

/// `ys[i][t] = Wᵢ · x[t]` for matrices that read the same input `x` (a layer's Q, K, V; its
/// gate and up projections): the same numbers as one [`matmul`] each, with the input quantized
/// once where the kernels allow it (the AMX tiles).
pub fn matmul_shared(
    ws: &[&QMatrix],
    x: &[f32],
    ys: &mut [&mut [f32]],
    n_tok: usize,
    kernel: Kernel,
) -> Result<()> {
    if kernel == Kernel::Fast && kernels::matmul_shared(ws, x, ys, n_tok) {
        return Ok(());
    }
    for (w, y) in ws.iter().zip(ys.iter_mut()) {
        matmul(w, x, y, n_tok, kernel)?;
    }
    Ok(())
}

/// `y[t] = W · x[t]` for `n_tok` tokens. `x`: (n_tok, cols), `y`: (n_tok, rows).
pub fn matmul(w: &QMatrix, x: &[f32], y: &mut [f32], n_tok: usize, kernel: Kernel) -> Result<()> {
    // A matrix whose shape does not fit its type falls through to the checked path below,
    // which reports the error.
    if kernel == Kernel::Fast && kernels::matmul(w, x, y, n_tok) {
        return Ok(());
    }
    if x.len() < n_tok * w.cols || y.len() < n_tok * w.rows {
        return Err(crate::Error::InvalidRequest(format!(
            "matmul: {n_tok} tokens need {} input and {} output values for a {}×{} matrix, got \
             {} and {}",
            n_tok * w.cols,
            n_tok * w.rows,
            w.rows,
            w.cols,
            x.len(),
            y.len()
        )));
    }
    let mut row = vec![0f32; w.cols];
    let dot = match kernel {
        Kernel::Reference => dot_reference,
        Kernel::Fast => dot_fast,
    };
    for r in 0..w.rows {
        w.dequantize_row(r, &mut row)?;
        for t in 0..n_tok {
            y[t * w.rows + r] = dot(&row, &x[t * w.cols..(t + 1) * w.cols]);
        }
    }
    Ok(())
}
