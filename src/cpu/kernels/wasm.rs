//! wasm32 with SIMD128 (`-C target-feature=+simd128`, as `scripts/build-web` builds): kernels
//! written with `core::arch::wasm32` intrinsics, the same structure as `x86`.
//!
//! Each format's decoder turns a block into 8-weight groups (two `f32x4`, see [`V8`]) holding
//! exactly the reference dequantizer's weights: 16 quant bytes are loaded at once, nibbles
//! split with `v128_and` / `u8x16_shr`, fifth / sixth bits merged in the byte lanes, offsets
//! subtracted as `i8` where the format has one, then widened `u8x16`/`i8x16` → `i16x8` →
//! `i32x4` and converted with `f32x4_convert_i32x4`, and scaled with one multiply (plus one add
//! for formats with a min). `d·sc` and `(d·sc)·q` are exact in f32, so this is bit-identical to
//! the reference (see `portable`). There is no FMA in SIMD128: dot products are mul + add.
//!
//! Decode runs each row's blocks straight from registers into 4 accumulators; prefill tiles
//! are as in `x86` (one block per row decoded into an L1 scratch, then an `R×T` tile of
//! accumulators), with one `f32x4` accumulator per (row, token) so a 2×8 tile needs 16.
//!
//! The crate is compiled with SIMD128 enabled (this module only exists then), so the value
//! intrinsics are safe to call; the only `unsafe` is the unaligned loads, each of which reads
//! exactly the bytes of a slice that was bounds-checked just before.
//!
//! The IQ formats and MXFP4 are in the child module `wasm_iq` (level tables through
//! `i8x16_swizzle`, grid rows with XOR-ed signs), on the same `Blk` trait and tiles.

#[path = "wasm_i16.rs"]
mod int;
#[path = "simd128_ops.rs"]
mod ops;
/// The SIMD128 intrinsics, as `ops`, `int` and `rows` name them (on x86_64 `x86_simd128`
/// gives them the same operations on SSE).
mod simd {
    pub(super) use core::arch::wasm32::*;
}
#[path = "wasm_iq.rs"]
mod iq;
#[path = "wasm_rows.rs"]
mod rows;
use super::portable::f16_at;
use super::{RowsFn, Tiler};
use crate::model::QMatrix;
use crate::quant::GgmlType;
use core::arch::wasm32::*;
pub(super) use int::select as select_int;
use ops::*;
/// The integer kernels' row driver, as `int` hands it out (on x86_64 `x86_simd128` wraps it).
use rows::rows as int_rows;
#[cfg(target_feature = "relaxed-simd")]
#[path = "wasm_relaxed.rs"]
mod relaxed;
#[cfg(target_feature = "relaxed-simd")]
pub(super) use relaxed::{quantize as quantize_relaxed, select as select_relaxed};

/// Eight consecutive f32 weights (or activations): lanes 0..4 and 4..8.
#[derive(Clone, Copy)]
struct V8(v128, v128);

/// Store 4 f32 at `x[at..at + 4]`.
#[inline(always)]
fn storef(x: &mut [f32], at: usize, v: v128) {
    let s: &mut [f32; 4] = match (&mut x[at..at + 4]).try_into() {
        Ok(s) => s,
        Err(_) => unreachable!(),
    };
    // SAFETY: `s` is exactly 16 writable bytes; `v128_store` has no alignment requirement.
    unsafe { v128_store(s.as_mut_ptr().cast(), v) }
}

/// 16 unsigned bytes to 16 f32: (bytes 0..8, bytes 8..16).
#[inline(always)]
fn cvt_u8(v: v128) -> (V8, V8) {
    let lo = u16x8_extend_low_u8x16(v);
    let hi = u16x8_extend_high_u8x16(v);
    let f = |h: v128| {
        V8(
            f32x4_convert_i32x4(u32x4_extend_low_u16x8(h)),
            f32x4_convert_i32x4(u32x4_extend_high_u16x8(h)),
        )
    };
    (f(lo), f(hi))
}

/// 16 signed bytes to 16 f32: (bytes 0..8, bytes 8..16).
#[inline(always)]
fn cvt_i8(v: v128) -> (V8, V8) {
    let lo = i16x8_extend_low_i8x16(v);
    let hi = i16x8_extend_high_i8x16(v);
    let f = |h: v128| {
        V8(
            f32x4_convert_i32x4(i32x4_extend_low_i16x8(h)),
            f32x4_convert_i32x4(i32x4_extend_high_i16x8(h)),
        )
    };
    (f(lo), f(hi))
}

/// `w · s` lane-wise.
#[inline(always)]
fn scale(w: V8, s: v128) -> V8 {
    V8(f32x4_mul(w.0, s), f32x4_mul(w.1, s))
}

/// `w · s + m` lane-wise (two roundings, the first exact for the formats' values).
#[inline(always)]
fn scale_add(w: V8, s: v128, m: v128) -> V8 {
    V8(
        f32x4_add(f32x4_mul(w.0, s), m),
        f32x4_add(f32x4_mul(w.1, s), m),
    )
}

/// A block format decoded to 8-weight groups.
trait Blk {
    /// Weights per block (a multiple of 32).
    const BS: usize;
    /// Bytes per block.
    const TS: usize;
    /// Call `f(k, w)` for every `k` in `0..BS / 8` (in any order) with weights `8k..8k + 8` of
    /// block `b` (`TS` bytes), exactly as the reference dequantizer computes them.
    fn block(b: &[u8], f: impl FnMut(usize, V8));
}

/// The 32 weights of a 4-bit block with the nibbles of `qs` (16 bytes) offset to signed by
/// `off` (as `i8`) and scaled by `d`: low nibbles are weights 0..16, high ones 16..32. `hi_lo`
/// / `hi_hi` are OR-ed into the low / high nibbles first (the Q5 fifth bits, or 0).
#[inline(always)]
fn nibbles_signed(
    qs: v128,
    hi_lo: v128,
    hi_hi: v128,
    off: i8,
    d: v128,
    mut f: impl FnMut(usize, V8),
) {
    let o = i8x16_splat(off);
    let lo = i8x16_sub(v128_or(v128_and(qs, u8x16_splat(15)), hi_lo), o);
    let hi = i8x16_sub(v128_or(u8x16_shr(qs, 4), hi_hi), o);
    let (a, b) = cvt_i8(lo);
    f(0, scale(a, d));
    f(1, scale(b, d));
    let (a, b) = cvt_i8(hi);
    f(2, scale(a, d));
    f(3, scale(b, d));
}

/// As [`nibbles_signed`] for formats with a min: `d·q + m`.
#[inline(always)]
fn nibbles_min(qs: v128, hi_lo: v128, hi_hi: v128, d: v128, m: v128, mut f: impl FnMut(usize, V8)) {
    let lo = v128_or(v128_and(qs, u8x16_splat(15)), hi_lo);
    let hi = v128_or(u8x16_shr(qs, 4), hi_hi);
    let (a, b) = cvt_u8(lo);
    f(0, scale_add(a, d, m));
    f(1, scale_add(b, d, m));
    let (a, b) = cvt_u8(hi);
    f(2, scale_add(a, d, m));
    f(3, scale_add(b, d, m));
}

struct Q4_0;
impl Blk for Q4_0 {
    const BS: usize = 32;
    const TS: usize = 18;
    #[inline(always)]
    fn block(b: &[u8], f: impl FnMut(usize, V8)) {
        let d = f32x4_splat(f16_at(b, 0));
        let z = u8x16_splat(0);
        nibbles_signed(load16(b, 2), z, z, 8, d, f);
    }
}

struct Q4_1;
impl Blk for Q4_1 {
    const BS: usize = 32;
    const TS: usize = 20;
    #[inline(always)]
    fn block(b: &[u8], f: impl FnMut(usize, V8)) {
        let (d, m) = (f32x4_splat(f16_at(b, 0)), f32x4_splat(f16_at(b, 2)));
        let z = u8x16_splat(0);
        nibbles_min(load16(b, 4), z, z, d, m, f);
    }
}

struct Q5_0;
impl Blk for Q5_0 {
    const BS: usize = 32;
    const TS: usize = 22;
    #[inline(always)]
    fn block(b: &[u8], f: impl FnMut(usize, V8)) {
        let d = f32x4_splat(f16_at(b, 0));
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let (hl, hh) = (high_bits(qh & 0xffff), high_bits(qh >> 16));
        nibbles_signed(load16(b, 6), hl, hh, 16, d, f);
    }
}

struct Q5_1;
impl Blk for Q5_1 {
    const BS: usize = 32;
    const TS: usize = 24;
    #[inline(always)]
    fn block(b: &[u8], f: impl FnMut(usize, V8)) {
        let (d, m) = (f32x4_splat(f16_at(b, 0)), f32x4_splat(f16_at(b, 2)));
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let (hl, hh) = (high_bits(qh & 0xffff), high_bits(qh >> 16));
        nibbles_min(load16(b, 8), hl, hh, d, m, f);
    }
}

struct Q8_0;
impl Blk for Q8_0 {
    const BS: usize = 32;
    const TS: usize = 34;
    #[inline(always)]
    fn block(b: &[u8], mut f: impl FnMut(usize, V8)) {
        let d = f32x4_splat(f16_at(b, 0));
        for h in 0..2 {
            let (x, y) = cvt_i8(load16(b, 2 + 16 * h));
            f(2 * h, scale(x, d));
            f(2 * h + 1, scale(y, d));
        }
    }
}

struct Q4K;
impl Blk for Q4K {
    const BS: usize = 256;
    const TS: usize = 144;
    #[inline(always)]
    fn block(b: &[u8], mut f: impl FnMut(usize, V8)) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        // The 8 six-bit scales and mins (as `get_scale_min_k4`, all at once): bytes 0..8 of
        // `u` are the scales and bytes 8..16 the mins.
        let word = |i: usize| u32::from_le_bytes([b[4 + i], b[5 + i], b[6 + i], b[7 + i]]);
        let (u0, u1, u2) = (word(0), word(4), word(8));
        let (k1, k2, k3) = (0x3f3f_3f3f, 0x0f0f_0f0f, 0x0303_0303);
        let u = u32x4(
            u0 & k1,
            (u2 & k2) | (((u0 >> 6) & k3) << 4),
            u1 & k1,
            ((u2 >> 4) & k2) | (((u1 >> 6) & k3) << 4),
        );
        // d·sc and −dmin·m, each product exact.
        let (s, m) = cvt_u8(u);
        let mut dl = [0f32; 8];
        let mut ml = [0f32; 8];
        let (dv, mv) = (f32x4_splat(d), f32x4_splat(-dmin));
        storef(&mut dl, 0, f32x4_mul(s.0, dv));
        storef(&mut dl, 4, f32x4_mul(s.1, dv));
        storef(&mut ml, 0, f32x4_mul(m.0, mv));
        storef(&mut ml, 4, f32x4_mul(m.1, mv));
        let m15 = u8x16_splat(15);
        for c in 0..4 {
            // Sub-blocks 2c (low nibbles of bytes 32c..32c+32) and 2c+1 (high nibbles).
            let (d0, o0) = (f32x4_splat(dl[2 * c]), f32x4_splat(ml[2 * c]));
            let (d1, o1) = (f32x4_splat(dl[2 * c + 1]), f32x4_splat(ml[2 * c + 1]));
            for i in 0..2 {
                let v = load16(b, 16 + 32 * c + 16 * i);
                let (x, y) = cvt_u8(v128_and(v, m15));
                f(8 * c + 2 * i, scale_add(x, d0, o0));
                f(8 * c + 2 * i + 1, scale_add(y, d0, o0));
                let (x, y) = cvt_u8(u8x16_shr(v, 4));
                f(8 * c + 4 + 2 * i, scale_add(x, d1, o1));
                f(8 * c + 4 + 2 * i + 1, scale_add(y, d1, o1));
            }
        }
    }
}

struct Q6K;
impl Blk for Q6K {
    const BS: usize = 256;
    const TS: usize = 210;
    #[inline(always)]
    fn block(b: &[u8], mut f: impl FnMut(usize, V8)) {
        let d = f32x4_splat(f16_at(b, 208));
        // d·sc per 16-weight sub-block (exact).
        let mut dl = [0f32; 16];
        let (s0, s1) = cvt_i8(load16(b, 192));
        storef(&mut dl, 0, f32x4_mul(s0.0, d));
        storef(&mut dl, 4, f32x4_mul(s0.1, d));
        storef(&mut dl, 8, f32x4_mul(s1.0, d));
        storef(&mut dl, 12, f32x4_mul(s1.1, d));
        let (m15, m48, o32) = (u8x16_splat(15), u8x16_splat(48), i8x16_splat(32));
        for h in 0..2 {
            for lh in 0..2 {
                // Weights 128h + 32s + 16lh + j: ql byte 64h + 32(s%2) + 16lh + j, nibble s/2;
                // qh byte 32h + 16lh + j, bits 2s..2s+2; scale 8h + 2s + lh.
                let qa = load16(b, 64 * h + 16 * lh);
                let qb = load16(b, 64 * h + 32 + 16 * lh);
                let qh = load16(b, 128 + 32 * h + 16 * lh);
                for s in 0..4 {
                    let ql = match s {
                        0 => v128_and(qa, m15),
                        1 => v128_and(qb, m15),
                        2 => u8x16_shr(qa, 4),
                        _ => u8x16_shr(qb, 4),
                    };
                    // (qh >> 2s) & 3, moved to bits 4..6.
                    let hb = match s {
                        0 => i8x16_shl(qh, 4),
                        1 => i8x16_shl(qh, 2),
                        2 => qh,
                        _ => u8x16_shr(qh, 2),
                    };
                    let q = i8x16_sub(v128_or(ql, v128_and(hb, m48)), o32);
                    let dv = f32x4_splat(dl[8 * h + 2 * s + lh]);
                    let (x, y) = cvt_i8(q);
                    let k = 16 * h + 4 * s + 2 * lh;
                    f(k, scale(x, dv));
                    f(k + 1, scale(y, dv));
                }
            }
        }
    }
}

/// F32 rows as 32-element blocks (the row's tail is added by `rows_impl`).
struct F32;
impl Blk for F32 {
    const BS: usize = 32;
    const TS: usize = 128;
    #[inline(always)]
    fn block(b: &[u8], mut f: impl FnMut(usize, V8)) {
        for k in 0..4 {
            f(k, V8(load16(b, 32 * k), load16(b, 32 * k + 16)));
        }
    }
}

/// One row's dot product with one token: weights decoded in registers, 4 accumulators.
#[inline(always)]
fn dot<B: Blk>(row: &[u8], x: &[f32]) -> f32 {
    let z = f32x4_splat(0.0);
    let mut acc = [z; 4];
    for (b, xb) in row.chunks_exact(B::TS).zip(x.chunks_exact(B::BS)) {
        B::block(
            b,
            #[inline(always)]
            |k, w| {
                let i = 2 * (k % 2);
                acc[i] = f32x4_add(acc[i], f32x4_mul(w.0, loadf(xb, 8 * k)));
                acc[i + 1] = f32x4_add(acc[i + 1], f32x4_mul(w.1, loadf(xb, 8 * k + 4)));
            },
        );
    }
    hsum(f32x4_add(
        f32x4_add(acc[0], acc[1]),
        f32x4_add(acc[2], acc[3]),
    ))
}

/// `R` rows × `T` tokens (`xp` packed by 8 columns as `Tiler` says). Block by block, each
/// row's block is decoded once into the scratch, then for each 4-column half of each 8-column
/// group the tile takes `R` weight vectors and `T` activation vectors: `R·T` accumulators.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // index loops over constant bounds: fully unrolled
fn tile<B: Blk, const R: usize, const T: usize>(
    rows: [&[u8]; R],
    xp: &[f32],
    scratch: &mut [f32],
) -> [[f32; T]; R] {
    let mut acc = [[f32x4_splat(0.0); T]; R];
    // One decoded block per row (`Tiler::SCRATCH`).
    let mut parts = scratch.chunks_exact_mut(B::BS);
    let scratch: [&mut [f32]; R] = std::array::from_fn(|_| parts.next().unwrap_or_default());
    let nb = rows[0].len() / B::TS;
    for (bi, xb) in xp.chunks_exact(B::BS * T).enumerate().take(nb) {
        for (r, row) in rows.iter().enumerate() {
            let sr = &mut *scratch[r];
            B::block(
                &row[bi * B::TS..(bi + 1) * B::TS],
                #[inline(always)]
                |k, w| {
                    storef(sr, 8 * k, w.0);
                    storef(sr, 8 * k + 4, w.1);
                },
            );
        }
        for k in 0..B::BS / 8 {
            for half in 0..2 {
                let mut w = [f32x4_splat(0.0); R];
                for r in 0..R {
                    w[r] = loadf(scratch[r], 8 * k + 4 * half);
                }
                for t in 0..T {
                    let xv = loadf(xb, (k * T + t) * 8 + 4 * half);
                    for r in 0..R {
                        acc[r][t] = f32x4_add(acc[r][t], f32x4_mul(w[r], xv));
                    }
                }
            }
        }
    }
    let mut out = [[0f32; T]; R];
    for (o, v) in out.iter_mut().zip(&acc) {
        for (o, v) in o.iter_mut().zip(v) {
            *o = hsum(*v);
        }
    }
    out
}

/// The SIMD128 tiler of format `B`.
struct Tiles<B>(std::marker::PhantomData<B>);
impl<B> Clone for Tiles<B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B> Copy for Tiles<B> {}

impl<B: Blk> Tiler for Tiles<B> {
    const BS: usize = B::BS;
    const TS: usize = B::TS;
    /// One decoded block per row.
    const SCRATCH: usize = B::BS;
    #[inline(always)]
    fn dot(self, row: &[u8], x: &[f32]) -> f32 {
        dot::<B>(row, x)
    }
    #[inline(always)]
    fn tile<const R: usize, const T: usize>(
        self,
        rows: [&[u8]; R],
        xp: &[f32],
        scratch: &mut [f32],
    ) -> [[f32; T]; R] {
        tile::<B, R, T>(rows, xp, scratch)
    }
}

/// Hand-written kernels for `ty`, if there are any.
pub(super) fn select(ty: GgmlType) -> Option<RowsFn> {
    use GgmlType as G;
    Some(match ty {
        G::F32 => rows::<F32>,
        G::Q4_0 => rows::<Q4_0>,
        G::Q4_1 => rows::<Q4_1>,
        G::Q5_0 => rows::<Q5_0>,
        G::Q5_1 => rows::<Q5_1>,
        G::Q8_0 => rows::<Q8_0>,
        G::Q4_K => rows::<Q4K>,
        G::Q6_K => rows::<Q6K>,
        G::IQ4_NL => rows::<iq::Iq4Nl>,
        G::IQ4_XS => rows::<iq::Iq4Xs>,
        G::MXFP4 => rows::<iq::Mxfp4>,
        G::IQ3_XXS => rows::<iq::Iq3Xxs>,
        G::IQ3_S => rows::<iq::Iq3S>,
        G::IQ2_XXS => rows::<iq::Iq2Xxs>,
        G::IQ2_XS => rows::<iq::Iq2Xs>,
        G::IQ2_S => rows::<iq::Iq2S>,
        G::IQ1_S => rows::<iq::Iq1S>,
        G::IQ1_M => rows::<iq::Iq1M>,
        _ => return None,
    })
}

fn rows<B: Blk>(w: &QMatrix, x: &[f32], n_tok: usize, r0: usize, out: &mut [f32]) {
    super::rows_impl(Tiles::<B>(std::marker::PhantomData), w, x, n_tok, r0, out)
}
