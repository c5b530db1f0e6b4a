//! The SIMD128 operations of `core::arch::wasm32` that the integer kernels (`wasm_i16`, its
//! row driver `wasm_rows`, the helpers `simd128_ops`) use, on x86_64's 128-bit SSE registers:
//! the same names and the same results lane for lane, so the kernels compile natively
//! unchanged (`x86_simd128`) and give the browser's values bit for bit. Each maps to the one
//! or two instructions V8 itself emits for it: `i32x4_dot_i16x8` is `pmaddwd`,
//! `i8x16_swizzle` `pshufb` (indices of 16 and up saturated into its zeroing range), the byte
//! shifts a 16-bit shift and a mask (SSE has no 8-bit shift).
//!
//! Soundness: a few of these use SSSE3 / SSE4.1 instructions, which x86_64 does not
//! guarantee, behind safe signatures. That holds because the module is private to
//! `x86_simd128`, whose only way in (`int_rows`) runs the kernels inside a
//! `#[target_feature(enable = "avx2,fma,f16c")]` function after the CPU was found to have
//! AVX2 (which implies both); every function here is `#[inline(always)]`, so each is compiled
//! into that function with its features.

#![allow(non_camel_case_types)]
// The kernels use a subset; the names are wasm32's whether used or not.
#![allow(dead_code)]

use std::arch::x86_64::*;

/// wasm's `v128`: 16 bytes, read as whichever lanes the operation names.
pub(super) type v128 = __m128i;

#[inline(always)]
fn ps(a: v128) -> __m128 {
    // SAFETY: a bit cast between two 16-byte vector types (SSE2, baseline on x86_64).
    unsafe { _mm_castsi128_ps(a) }
}

#[inline(always)]
fn si(a: __m128) -> v128 {
    // SAFETY: as in `ps`.
    unsafe { _mm_castps_si128(a) }
}

/// `v128_load`: 16 bytes from `p`, any alignment.
///
/// # Safety
/// `p` must point to 16 readable bytes.
#[inline(always)]
pub(super) unsafe fn v128_load(p: *const v128) -> v128 {
    // SAFETY: the caller's promise; `loadu` has no alignment requirement.
    unsafe { _mm_loadu_si128(p) }
}

/// Wraps one SSE intrinsic call (see the module's soundness note).
macro_rules! sse {
    ($e:expr) => {
        // SAFETY: inlined only into `x86_simd128`'s AVX2 functions (module doc).
        unsafe { $e }
    };
}

#[inline(always)]
pub(super) fn v128_and(a: v128, b: v128) -> v128 {
    sse!(_mm_and_si128(a, b))
}
#[inline(always)]
pub(super) fn v128_or(a: v128, b: v128) -> v128 {
    sse!(_mm_or_si128(a, b))
}
#[inline(always)]
pub(super) fn v128_xor(a: v128, b: v128) -> v128 {
    sse!(_mm_xor_si128(a, b))
}

#[inline(always)]
pub(super) fn u8x16_splat(v: u8) -> v128 {
    sse!(_mm_set1_epi8(v as i8))
}
#[inline(always)]
pub(super) fn i8x16_splat(v: i8) -> v128 {
    sse!(_mm_set1_epi8(v))
}
#[inline(always)]
pub(super) fn i16x8_splat(v: i16) -> v128 {
    sse!(_mm_set1_epi16(v))
}
#[inline(always)]
pub(super) fn i32x4_splat(v: i32) -> v128 {
    sse!(_mm_set1_epi32(v))
}
#[inline(always)]
pub(super) fn u32x4_splat(v: u32) -> v128 {
    sse!(_mm_set1_epi32(v as i32))
}
#[inline(always)]
pub(super) fn u64x2_splat(v: u64) -> v128 {
    sse!(_mm_set1_epi64x(v as i64))
}
#[inline(always)]
pub(super) fn f32x4_splat(v: f32) -> v128 {
    si(sse!(_mm_set1_ps(v)))
}

/// Lanes in order, lane 0 first.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn i8x16(
    a0: i8,
    a1: i8,
    a2: i8,
    a3: i8,
    a4: i8,
    a5: i8,
    a6: i8,
    a7: i8,
    a8: i8,
    a9: i8,
    a10: i8,
    a11: i8,
    a12: i8,
    a13: i8,
    a14: i8,
    a15: i8,
) -> v128 {
    sse!(_mm_setr_epi8(
        a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15
    ))
}

/// Lanes in order, lane 0 first.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn u8x16(
    a0: u8,
    a1: u8,
    a2: u8,
    a3: u8,
    a4: u8,
    a5: u8,
    a6: u8,
    a7: u8,
    a8: u8,
    a9: u8,
    a10: u8,
    a11: u8,
    a12: u8,
    a13: u8,
    a14: u8,
    a15: u8,
) -> v128 {
    let b = [
        a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15,
    ];
    // SAFETY: `b` is 16 readable bytes.
    unsafe { v128_load(b.as_ptr().cast()) }
}

/// Lanes in order, lane 0 first.
#[inline(always)]
pub(super) fn u32x4(a0: u32, a1: u32, a2: u32, a3: u32) -> v128 {
    sse!(_mm_setr_epi32(a0 as i32, a1 as i32, a2 as i32, a3 as i32))
}
/// Lanes in order, lane 0 first.
#[inline(always)]
pub(super) fn u64x2(a0: u64, a1: u64) -> v128 {
    sse!(_mm_set_epi64x(a1 as i64, a0 as i64))
}

#[inline(always)]
pub(super) fn i8x16_add(a: v128, b: v128) -> v128 {
    sse!(_mm_add_epi8(a, b))
}
#[inline(always)]
pub(super) fn i8x16_sub(a: v128, b: v128) -> v128 {
    sse!(_mm_sub_epi8(a, b))
}
#[inline(always)]
pub(super) fn i8x16_eq(a: v128, b: v128) -> v128 {
    sse!(_mm_cmpeq_epi8(a, b))
}
#[inline(always)]
pub(super) fn i16x8_mul(a: v128, b: v128) -> v128 {
    sse!(_mm_mullo_epi16(a, b))
}
#[inline(always)]
pub(super) fn i32x4_add(a: v128, b: v128) -> v128 {
    sse!(_mm_add_epi32(a, b))
}
/// SSE4.1 `pmulld`.
#[inline(always)]
pub(super) fn i32x4_mul(a: v128, b: v128) -> v128 {
    sse!(_mm_mullo_epi32(a, b))
}
/// `pmaddwd`: lane `i` is `a[2i]·b[2i] + a[2i+1]·b[2i+1]`, wrapping as wasm's.
#[inline(always)]
pub(super) fn i32x4_dot_i16x8(a: v128, b: v128) -> v128 {
    sse!(_mm_madd_epi16(a, b))
}

/// Byte `i` is `a[s[i]]`, or 0 where `s[i] ≥ 16`: SSSE3 `pshufb` zeroes where the index's top
/// bit is set and reads the low 4 bits otherwise, so a saturating `+ 0x70` maps 0..16 to
/// 0x70..0x80 (same low bits) and 16..256 to 0x80 and up.
#[inline(always)]
pub(super) fn i8x16_swizzle(a: v128, s: v128) -> v128 {
    sse!(_mm_shuffle_epi8(a, _mm_adds_epu8(s, _mm_set1_epi8(0x70))))
}

/// Each byte shifted right by `n % 8`, zeros in: a 16-bit shift, then the bits that came
/// from the byte above masked off.
#[inline(always)]
pub(super) fn u8x16_shr(a: v128, n: u32) -> v128 {
    let n = n % 8;
    sse!(_mm_and_si128(
        _mm_srl_epi16(a, _mm_cvtsi32_si128(n as i32)),
        _mm_set1_epi8((0xffu8 >> n) as i8)
    ))
}
/// Each byte shifted left by `n % 8`.
#[inline(always)]
pub(super) fn u8x16_shl(a: v128, n: u32) -> v128 {
    let n = n % 8;
    sse!(_mm_and_si128(
        _mm_sll_epi16(a, _mm_cvtsi32_si128(n as i32)),
        _mm_set1_epi8((0xffu8 << n) as i8)
    ))
}
#[inline(always)]
pub(super) fn i8x16_shl(a: v128, n: u32) -> v128 {
    u8x16_shl(a, n)
}

/// SSE4.1 `pmovzxbw` of bytes 0..8.
#[inline(always)]
pub(super) fn u16x8_extend_low_u8x16(a: v128) -> v128 {
    sse!(_mm_cvtepu8_epi16(a))
}
#[inline(always)]
pub(super) fn u16x8_extend_high_u8x16(a: v128) -> v128 {
    sse!(_mm_cvtepu8_epi16(_mm_srli_si128::<8>(a)))
}
#[inline(always)]
pub(super) fn i16x8_extend_low_i8x16(a: v128) -> v128 {
    sse!(_mm_cvtepi8_epi16(a))
}
#[inline(always)]
pub(super) fn i16x8_extend_high_i8x16(a: v128) -> v128 {
    sse!(_mm_cvtepi8_epi16(_mm_srli_si128::<8>(a)))
}
#[inline(always)]
pub(super) fn u32x4_extend_low_u16x8(a: v128) -> v128 {
    sse!(_mm_cvtepu16_epi32(a))
}
#[inline(always)]
pub(super) fn u32x4_extend_high_u16x8(a: v128) -> v128 {
    sse!(_mm_cvtepu16_epi32(_mm_srli_si128::<8>(a)))
}

#[inline(always)]
pub(super) fn f32x4_add(a: v128, b: v128) -> v128 {
    si(sse!(_mm_add_ps(ps(a), ps(b))))
}
#[inline(always)]
pub(super) fn f32x4_mul(a: v128, b: v128) -> v128 {
    si(sse!(_mm_mul_ps(ps(a), ps(b))))
}
/// Round to nearest even, as wasm's (the default MXCSR, which Rust code does not change).
#[inline(always)]
pub(super) fn f32x4_convert_i32x4(a: v128) -> v128 {
    si(sse!(_mm_cvtepi32_ps(a)))
}

/// Lane `N` as f32.
#[inline(always)]
pub(super) fn f32x4_extract_lane<const N: usize>(a: v128) -> f32 {
    const { assert!(N < 4) };
    let mut l = [0f32; 4];
    // SAFETY: `l` is 16 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm_storeu_ps(l.as_mut_ptr(), ps(a)) };
    l[N]
}

/// Lanes `I0..I3` of the 8 lanes `a` then `b` (the patterns `hsum` uses are one `pshufd`; any
/// other goes through memory).
#[inline(always)]
pub(super) fn i32x4_shuffle<const I0: usize, const I1: usize, const I2: usize, const I3: usize>(
    a: v128,
    b: v128,
) -> v128 {
    const { assert!(I0 < 8 && I1 < 8 && I2 < 8 && I3 < 8) };
    match (I0, I1, I2, I3) {
        (2, 3, 0, 1) => sse!(_mm_shuffle_epi32::<0b01_00_11_10>(a)),
        (1, 0, 3, 2) => sse!(_mm_shuffle_epi32::<0b10_11_00_01>(a)),
        _ => {
            let mut l = [0i32; 8];
            // SAFETY: `l` is 32 writable bytes; `storeu` has no alignment requirement.
            unsafe {
                _mm_storeu_si128(l.as_mut_ptr().cast(), a);
                _mm_storeu_si128(l.as_mut_ptr().add(4).cast(), b);
            }
            sse!(_mm_setr_epi32(l[I0], l[I1], l[I2], l[I3]))
        }
    }
}
