//! The browser's integer kernels on x86_64, for the formats that `x86` has no f32 kernel of its
//! own for (Q2_K, Q3_K, Q5_K, which ran the generic decoder): `wasm_i16` and its row driver
//! `wasm_rows`, compiled natively over `simd128_sse` (the SIMD128 operations they use, on SSE
//! registers). `kernels::select` takes them after `x86_i16` (AVX-512 BW, seven formats), on
//! any CPU with AVX2.
//!
//! Why these formats only: measured on an AMD EPYC Zen 3 (AVX2, no AVX-512; `chord bench
//! --isa 1` against `--isa 2`, docs/performance.md), the 128-bit integer kernels run 3.0–3.4×
//! faster than the generic f32 path on a Q5_K_M model (prefill and decode), but where `x86`
//! has its own 256-bit f32 kernels those stay ahead (SmolLM2 Q4_K_M prefill 10–35%, decode
//! 2–15%; Q4_1 and IQ4_XS prefill 25–50%).
//!
//! Why the wasm kernels rather than new ones: the same scheme as `x86_i16` (i16 activations
//! quantized once per matmul, weights widened to i16 with the block scales folded in, exact
//! i32 sums per chain), already written for these formats, and their results equal the
//! browser's bit for bit (same quantizer, same i32 chains, same f32 steps). As there, a token
//! in a prefill tile gets exactly its one-token values, which the batching server's promise
//! (a sequence's output equals its solo output) rests on.
//!
//! The kernels run inside one `#[target_feature(enable = "avx2,fma,f16c")]` function per
//! format (`rows_avx2`), into which everything else is inlined, so LLVM emits VEX-encoded
//! SSE4.1 for them.

#[path = "wasm_i16.rs"]
mod int;
#[path = "simd128_ops.rs"]
mod ops;
#[path = "wasm_rows.rs"]
mod rows;
#[path = "simd128_sse.rs"]
mod simd;

use super::portable::f16_at;
use super::QAct;
use crate::model::QMatrix;
pub(super) use int::select;
use ops::*;

/// Rows `r0..` of `W·xᵀ` into `out` (row, token), as `wasm_rows::rows`: the kernels `select`
/// hands out. Without AVX2 (unreachable: `kernels::select` asks only after `x86::available`)
/// the outputs are NaN.
fn int_rows<K: rows::IntKernel>(w: &QMatrix, x: &QAct, n_tok: usize, r0: usize, out: &mut [f32]) {
    if super::x86::available() {
        // SAFETY: the CPU has AVX2, FMA and F16C (just checked).
        unsafe { rows_avx2::<K>(w, x, n_tok, r0, out) }
    } else {
        out.fill(f32::NAN);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn rows_avx2<K: rows::IntKernel>(w: &QMatrix, x: &QAct, n_tok: usize, r0: usize, out: &mut [f32]) {
    rows::rows::<K>(w, x, n_tok, r0, out)
}
