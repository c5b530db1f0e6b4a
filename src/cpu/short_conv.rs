//! Depthwise causal convolutions, one token at a time: ggml's `ssm_conv` (the convolution of
//! Qwen3.5's delta-net layers, before their SiLU) and LFM2's gated short convolution around it
//! (`src/models/lfm2.cpp` in llama.cpp, `build_shortconv_block`: in_proj → B, C, x; B·x through
//! the convolution; C·(…); out_proj).
//!
//! Per channel i of n, over its L taps `w = kernel[i·L..(i + 1)·L]` (the first meeting the
//! oldest input): `y = Σ_j state[j]·w[j] + x·w[L−1]`, summed in that order; then the state (the
//! last L−1 inputs, oldest row first, n values per row) moves on by one.
//!
//! [`causal_conv_step_reference`] goes channel by channel. The fast path walks the state by
//! whole rows, so the channels run in SIMD lanes (AVX2 on x86_64, SIMD128 in the web build) and
//! the state moves with one `memmove`; each channel's sum keeps the reference's order, so both
//! give the same bits.

use super::matmul::Kernel;

/// One token through the convolution (see the module doc): `state` (L−1, n), `kernel` (n, L),
/// `x` and `y` (n).
pub fn causal_conv_step(state: &mut [f32], kernel: &[f32], x: &[f32], y: &mut [f32], k: Kernel) {
    match k {
        Kernel::Reference => causal_conv_step_reference(state, kernel, x, y),
        Kernel::Fast => {
            #[cfg(target_arch = "x86_64")]
            if super::matmul::has_avx2_fma() {
                // SAFETY: the CPU has AVX2 and FMA (detected above).
                unsafe { causal_conv_rows_avx2(state, kernel, x, y) };
                return;
            }
            causal_conv_rows(state, kernel, x, y);
        }
    }
}

/// The reference: channel by channel.
pub fn causal_conv_step_reference(state: &mut [f32], kernel: &[f32], x: &[f32], y: &mut [f32]) {
    let n = x.len();
    let rows = state.len() / n;
    let taps = rows + 1;
    for i in 0..n {
        let w = &kernel[i * taps..(i + 1) * taps];
        let mut acc = 0f32;
        for (j, &wj) in w[..rows].iter().enumerate() {
            acc += state[j * n + i] * wj;
        }
        acc += x[i] * w[rows];
        y[i] = acc;
        if rows > 0 {
            for j in 0..rows - 1 {
                state[j * n + i] = state[(j + 1) * n + i];
            }
            state[(rows - 1) * n + i] = x[i];
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn causal_conv_rows_avx2(state: &mut [f32], kernel: &[f32], x: &[f32], y: &mut [f32]) {
    causal_conv_rows(state, kernel, x, y);
}

/// The fast path: the state row by row (channels in lanes), then the rows moved up at once.
#[inline(always)]
fn causal_conv_rows(state: &mut [f32], kernel: &[f32], x: &[f32], y: &mut [f32]) {
    let n = x.len();
    let rows = state.len() / n;
    let taps = rows + 1;
    let (y, kernel) = (&mut y[..n], &kernel[..n * taps]);
    y.fill(0.0);
    for (j, row) in state.chunks_exact(n).enumerate() {
        for ((yi, &s), w) in y.iter_mut().zip(row).zip(kernel.chunks_exact(taps)) {
            *yi += s * w[j];
        }
    }
    for ((yi, &xi), w) in y.iter_mut().zip(x).zip(kernel.chunks_exact(taps)) {
        *yi += xi * w[rows];
    }
    if rows > 0 {
        state.copy_within(n.., 0);
        state[(rows - 1) * n..].copy_from_slice(x);
    }
}

/// One token through LFM2's short convolution: `bx = b·x` through [`causal_conv_step`], the
/// result times `c`. `bx` is scratch (n).
pub fn short_conv_step(
    state: &mut [f32],
    kernel: &[f32],
    (b, c, x): (&[f32], &[f32], &[f32]),
    bx: &mut [f32],
    y: &mut [f32],
    k: Kernel,
) {
    for ((o, &bi), &xi) in bx.iter_mut().zip(b).zip(x) {
        *o = bi * xi;
    }
    causal_conv_step(state, kernel, bx, y, k);
    for (yi, &ci) in y.iter_mut().zip(c) {
        *yi *= ci;
    }
}
