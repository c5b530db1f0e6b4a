//! The helpers the SIMD128 kernels share (loads, `high_bits`, `hsum`, `table`), in SIMD128
//! intrinsics from the parent's `simd` module: `core::arch::wasm32` in the wasm build
//! (`wasm`), the same operations on SSE where `x86_simd128` compiles the integer kernels for
//! x86_64.

use super::simd::*;

/// The vector at `x[at..at + N]`, for element types of `16 / N` bytes (u8, i8, i16, f32): the
/// one `unsafe` load the SIMD128 kernels and their integer siblings share.
#[inline(always)]
fn load_v128<T: Copy, const N: usize>(x: &[T], at: usize) -> v128 {
    const { assert!(N * size_of::<T>() == 16) };
    let s: &[T; N] = match x[at..at + N].try_into() {
        Ok(s) => s,
        Err(_) => unreachable!(),
    };
    // SAFETY: `s` is exactly 16 readable bytes; `v128_load` has no alignment requirement.
    unsafe { v128_load(s.as_ptr().cast()) }
}

/// 16 bytes at `b[at..at + 16]`.
#[inline(always)]
pub(super) fn load16(b: &[u8], at: usize) -> v128 {
    load_v128::<u8, 16>(b, at)
}

/// 16 i8 at `x[at..at + 16]`.
#[cfg_attr(not(target_feature = "relaxed-simd"), allow(dead_code))] // (the relaxed kernels')
#[inline(always)]
pub(super) fn load_i8(x: &[i8], at: usize) -> v128 {
    load_v128::<i8, 16>(x, at)
}

/// 8 i16 at `x[at..at + 8]`.
#[inline(always)]
pub(super) fn load_i16(x: &[i16], at: usize) -> v128 {
    load_v128::<i16, 8>(x, at)
}

/// 4 f32 at `x[at..at + 4]`.
#[inline(always)]
pub(super) fn loadf(x: &[f32], at: usize) -> v128 {
    load_v128::<f32, 4>(x, at)
}

/// Byte `j` of the result is 16 when bit `j` of the 16-bit `bits` is set, else 0.
#[inline(always)]
pub(super) fn high_bits(bits: u32) -> v128 {
    let sel = i8x16_swizzle(
        u32x4_splat(bits),
        i8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
    );
    let mask = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
    v128_and(i8x16_eq(v128_and(sel, mask), mask), u8x16_splat(16))
}

/// The sum of the 4 lanes, as `(a0 + a2) + (a1 + a3)`.
#[inline(always)]
pub(super) fn hsum(a: v128) -> f32 {
    let s = f32x4_add(a, i32x4_shuffle::<2, 3, 0, 1>(a, a));
    let s = f32x4_add(s, i32x4_shuffle::<1, 0, 3, 2>(s, s));
    f32x4_extract_lane::<0>(s)
}

/// A 16-entry `i8` level table as one vector.
#[inline(always)]
pub(super) fn table(t: &[i8; 16]) -> v128 {
    i8x16(
        t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], t[10], t[11], t[12], t[13],
        t[14], t[15],
    )
}
