//! x86_64: AVX2 + FMA (+ F16C) kernels, detected at run time.
//!
//! All of the CPU kernels' `unsafe` lives in this file, in two places: the [`Avx2`] token's
//! one-line wrappers around `std::arch` intrinsics (sound because a token only exists once the
//! features have been detected, and every load reads a bounds-checked slice of exactly the
//! bytes it loads), and the calls into the `#[target_feature]` entry points.
//!
//! Each format's decoder turns a block into 8-lane f32 vectors holding exactly the reference
//! dequantizer's weights (see `portable`: `q·s + m` with one rounding, FMA or not): nibbles and
//! bytes are widened straight from memory with `vpmovzxbd`/`vpmovsxbd`, converted with
//! `vcvtdq2ps` and scaled with one FMA. The tile loop then FMAs each weight vector with up to 8
//! tokens' activations.

use super::portable::{self, Dec};
use super::{RowsFn, Tiler};
use crate::model::QMatrix;
use crate::quant::GgmlType;
use std::arch::x86_64::*;
use std::sync::atomic::{AtomicU8, Ordering};

/// 0: not yet detected, 1: missing features, 2: AVX2 + FMA + F16C, 3: also AVX-512 F + VL.
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// Whether this CPU has AVX2, FMA and F16C (detected once, then cached).
pub(super) fn available() -> bool {
    token().is_some()
}

/// Proof that the CPU has AVX2, FMA and F16C: only [`token`] makes one, after detection.
#[derive(Clone, Copy)]
pub(super) struct Avx2(());

fn token() -> Option<Avx2> {
    let ok = match LEVEL.load(Ordering::Relaxed) {
        0 => {
            let ok = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            let wide =
                ok && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl");
            LEVEL.store(1 + u8::from(ok) + u8::from(wide), Ordering::Relaxed);
            ok
        }
        l => l >= 2,
    };
    ok.then_some(Avx2(()))
}

// SAFETY (every `unsafe` block in this impl): the intrinsics need AVX2/FMA/F16C, which an
// `Avx2` token proves; pointer loads read exactly the bytes of a slice that was bounds-checked
// just before.
#[allow(clippy::undocumented_unsafe_blocks)]
impl Avx2 {
    #[inline(always)]
    fn zero(self) -> __m256 {
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    fn splat(self, v: f32) -> __m256 {
        unsafe { _mm256_set1_ps(v) }
    }
    #[inline(always)]
    fn fmadd(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_mul_ps(a, b) }
    }
    /// i32 lanes to f32 (exact for the small integers of the formats).
    #[inline(always)]
    fn cvt(self, a: __m256i) -> __m256 {
        unsafe { _mm256_cvtepi32_ps(a) }
    }
    #[inline(always)]
    fn and(self, a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_and_si256(a, b) }
    }
    #[inline(always)]
    fn or(self, a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_or_si256(a, b) }
    }
    #[inline(always)]
    fn splat_i(self, v: i32) -> __m256i {
        unsafe { _mm256_set1_epi32(v) }
    }
    #[inline(always)]
    fn srl4(self, a: __m256i) -> __m256i {
        unsafe { _mm256_srli_epi32::<4>(a) }
    }
    #[inline(always)]
    fn srl<const N: i32>(self, a: __m256i) -> __m256i {
        unsafe { _mm256_srli_epi32::<N>(a) }
    }
    #[inline(always)]
    fn sll<const N: i32>(self, a: __m256i) -> __m256i {
        unsafe { _mm256_slli_epi32::<N>(a) }
    }
    /// 8 f32 at `x[at..at + 8]`.
    #[inline(always)]
    fn load(self, x: &[f32], at: usize) -> __m256 {
        let s = &x[at..at + 8];
        unsafe { _mm256_loadu_ps(s.as_ptr()) }
    }
    /// Store 8 f32 at `s[at..at + 8]`.
    #[inline(always)]
    fn store(self, s: &mut [f32], at: usize, v: __m256) {
        let s = &mut s[at..at + 8];
        unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) }
    }
    /// 8 little-endian f32 from the bytes `b[at..at + 32]`.
    #[inline(always)]
    fn load_f32_bytes(self, b: &[u8], at: usize) -> __m256 {
        let s = &b[at..at + 32];
        unsafe { _mm256_loadu_ps(s.as_ptr().cast()) }
    }
    /// Bytes `b[at..at + 8]` zero-extended to 8 i32 lanes (`vpmovzxbd`).
    #[inline(always)]
    fn u8x8(self, b: &[u8], at: usize) -> __m256i {
        let s = &b[at..at + 8];
        unsafe { _mm256_cvtepu8_epi32(_mm_loadl_epi64(s.as_ptr().cast())) }
    }
    /// Bytes `b[at..at + 8]` as i8, sign-extended to 8 i32 lanes (`vpmovsxbd`).
    #[inline(always)]
    fn i8x8(self, b: &[u8], at: usize) -> __m256i {
        let s = &b[at..at + 8];
        unsafe { _mm256_cvtepi8_epi32(_mm_loadl_epi64(s.as_ptr().cast())) }
    }
    #[inline(always)]
    fn load_u32x8(self, v: &[u32; 8]) -> __m256i {
        unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
    }
    /// f16 bits at `b[at..at + 2]` to f32 (F16C; exact for every non-NaN value).
    #[inline(always)]
    fn f16(self, b: &[u8], at: usize) -> f32 {
        let h = u16::from_le_bytes([b[at], b[at + 1]]);
        unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h)))) }
    }
    #[inline(always)]
    fn hsum(self, a: __m256) -> f32 {
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_movehdup_ps(s));
            _mm_cvtss_f32(s)
        }
    }
}

/// A block format decoded to f32 weight vectors.
trait Blk {
    /// Weights per block (a multiple of 32).
    const BS: usize;
    /// Bytes per block.
    const TS: usize;
    /// The same format's portable decoder.
    type P: Dec;
    /// Call `f(k, w)` for every `k` in `0..BS / 8` (in any order) with weights `8k..8k + 8` of
    /// block `b` (`TS` bytes), exactly as the reference dequantizer computes them.
    fn block(a: Avx2, b: &[u8], f: impl FnMut(usize, __m256));
}

/// Lane `j` of entry `byte` is 16 when bit `j` of `byte` is set: the Q5 fifth bits, in place.
#[repr(align(32))]
struct HighBits([[u32; 8]; 256]);
static Q5_HIGH: HighBits = HighBits({
    let mut t = [[0u32; 8]; 256];
    let mut i = 0;
    while i < 256 {
        let mut j = 0;
        while j < 8 {
            t[i][j] = ((i as u32 >> j) & 1) << 4;
            j += 1;
        }
        i += 1;
    }
    t
});

impl Avx2 {
    #[inline(always)]
    fn q5_high(self, byte: u32) -> __m256i {
        self.load_u32x8(&Q5_HIGH.0[(byte & 0xff) as usize])
    }
}

struct Q4_0;
impl Blk for Q4_0 {
    const BS: usize = 32;
    const TS: usize = 18;
    type P = portable::Q4_0;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let d = a.f16(b, 0);
        let (dv, off) = (a.splat(d), a.splat(-8.0 * d));
        let m15 = a.splat_i(15);
        for i in 0..2 {
            let v = a.u8x8(b, 2 + 8 * i);
            f(i, a.fmadd(a.cvt(a.and(v, m15)), dv, off));
            f(2 + i, a.fmadd(a.cvt(a.srl4(v)), dv, off));
        }
    }
}

struct Q4_1;
impl Blk for Q4_1 {
    const BS: usize = 32;
    const TS: usize = 20;
    type P = portable::Q4_1;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let (dv, mv) = (a.splat(a.f16(b, 0)), a.splat(a.f16(b, 2)));
        let m15 = a.splat_i(15);
        for i in 0..2 {
            let v = a.u8x8(b, 4 + 8 * i);
            f(i, a.fmadd(a.cvt(a.and(v, m15)), dv, mv));
            f(2 + i, a.fmadd(a.cvt(a.srl4(v)), dv, mv));
        }
    }
}

struct Q5_0;
impl Blk for Q5_0 {
    const BS: usize = 32;
    const TS: usize = 22;
    type P = portable::Q5_0;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let d = a.f16(b, 0);
        let (dv, off) = (a.splat(d), a.splat(-16.0 * d));
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let m15 = a.splat_i(15);
        for i in 0..2 {
            let v = a.u8x8(b, 6 + 8 * i);
            let lo = a.or(a.and(v, m15), a.q5_high(qh >> (8 * i)));
            let hi = a.or(a.srl4(v), a.q5_high(qh >> (16 + 8 * i)));
            f(i, a.fmadd(a.cvt(lo), dv, off));
            f(2 + i, a.fmadd(a.cvt(hi), dv, off));
        }
    }
}

struct Q5_1;
impl Blk for Q5_1 {
    const BS: usize = 32;
    const TS: usize = 24;
    type P = portable::Q5_1;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let (dv, mv) = (a.splat(a.f16(b, 0)), a.splat(a.f16(b, 2)));
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let m15 = a.splat_i(15);
        for i in 0..2 {
            let v = a.u8x8(b, 8 + 8 * i);
            let lo = a.or(a.and(v, m15), a.q5_high(qh >> (8 * i)));
            let hi = a.or(a.srl4(v), a.q5_high(qh >> (16 + 8 * i)));
            f(i, a.fmadd(a.cvt(lo), dv, mv));
            f(2 + i, a.fmadd(a.cvt(hi), dv, mv));
        }
    }
}

struct Q8_0;
impl Blk for Q8_0 {
    const BS: usize = 32;
    const TS: usize = 34;
    type P = portable::Q8_0;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let dv = a.splat(a.f16(b, 0));
        for k in 0..4 {
            f(k, a.mul(a.cvt(a.i8x8(b, 2 + 8 * k)), dv));
        }
    }
}

struct Q4K;
impl Blk for Q4K {
    const BS: usize = 256;
    const TS: usize = 144;
    type P = portable::Q4K;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let (d, dmin) = (a.f16(b, 0), a.f16(b, 2));
        // The 8 six-bit scales and mins (as `get_scale_min_k4`, all at once): after this,
        // bytes 0..8 of `u` are the scales and bytes 8..16 the mins.
        let word = |i: usize| u32::from_le_bytes([b[4 + i], b[5 + i], b[6 + i], b[7 + i]]);
        let (u0, u1, u2) = (word(0), word(4), word(8));
        let (k1, k2, k3) = (0x3f3f_3f3f, 0x0f0f_0f0f, 0x0303_0303);
        let u: [u32; 4] = [
            u0 & k1,
            (u2 & k2) | (((u0 >> 6) & k3) << 4),
            u1 & k1,
            ((u2 >> 4) & k2) | (((u1 >> 6) & k3) << 4),
        ];
        let mut ub = [0u8; 16];
        for (o, w) in ub.chunks_exact_mut(4).zip(u) {
            o.copy_from_slice(&w.to_le_bytes());
        }
        // d·sc and −dmin·m, each product exact.
        let mut dl = [0f32; 8];
        let mut ml = [0f32; 8];
        a.store(&mut dl, 0, a.mul(a.cvt(a.u8x8(&ub, 0)), a.splat(d)));
        a.store(&mut ml, 0, a.mul(a.cvt(a.u8x8(&ub, 8)), a.splat(-dmin)));
        let m15 = a.splat_i(15);
        for c in 0..4 {
            // Sub-blocks 2c (low nibbles of bytes 32c..32c+32) and 2c+1 (high nibbles).
            let (d0, o0) = (a.splat(dl[2 * c]), a.splat(ml[2 * c]));
            let (d1, o1) = (a.splat(dl[2 * c + 1]), a.splat(ml[2 * c + 1]));
            for i in 0..4 {
                let v = a.u8x8(b, 16 + 32 * c + 8 * i);
                f(8 * c + i, a.fmadd(a.cvt(a.and(v, m15)), d0, o0));
                f(8 * c + 4 + i, a.fmadd(a.cvt(a.srl4(v)), d1, o1));
            }
        }
    }
}

struct Q6K;
impl Blk for Q6K {
    const BS: usize = 256;
    const TS: usize = 210;
    type P = portable::Q6K;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let d = a.splat(a.f16(b, 208));
        // d·sc per 16-weight sub-block and −32·d·sc (both exact).
        let mut dl = [0f32; 16];
        let mut ml = [0f32; 16];
        for h in 0..2 {
            let v = a.mul(a.cvt(a.i8x8(b, 192 + 8 * h)), d);
            a.store(&mut dl, 8 * h, v);
            a.store(&mut ml, 8 * h, a.mul(v, a.splat(-32.0)));
        }
        let m15 = a.splat_i(15);
        let m48 = a.splat_i(48);
        for h in 0..2 {
            for i in 0..4 {
                // Weights 128h + 32s + 8i + j: ql byte 64h + 32(s%2) + 8i + j, nibble s/2;
                // qh byte 32h + 8i + j, bits 2s..2s+2.
                let qa = a.u8x8(b, 64 * h + 8 * i);
                let qb = a.u8x8(b, 64 * h + 32 + 8 * i);
                let qh = a.u8x8(b, 128 + 32 * h + 8 * i);
                for s in 0..4 {
                    let ql = match s {
                        0 => a.and(qa, m15),
                        1 => a.and(qb, m15),
                        2 => a.srl4(qa),
                        _ => a.srl4(qb),
                    };
                    // (qh >> 2s) & 3, moved to bits 4..6.
                    let hb = match s {
                        0 => a.sll::<4>(qh),
                        1 => a.sll::<2>(qh),
                        2 => qh,
                        _ => a.srl::<2>(qh),
                    };
                    let hb = a.and(hb, m48);
                    let j = 8 * h + 2 * s + i / 2;
                    let w = a.fmadd(a.cvt(a.or(ql, hb)), a.splat(dl[j]), a.splat(ml[j]));
                    f(16 * h + 4 * s + i, w);
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
    type P = portable::F32;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        for k in 0..4 {
            f(k, a.load_f32_bytes(b, 32 * k));
        }
    }
}

/// One row's dot product with one token: weights decoded in registers, 4 accumulators.
#[inline(always)]
fn dot<B: Blk>(a: Avx2, row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [a.zero(); 4];
    for (b, xb) in row.chunks_exact(B::TS).zip(x.chunks_exact(B::BS)) {
        B::block(
            a,
            b,
            #[inline(always)]
            |k, w| acc[k % 4] = a.fmadd(w, a.load(xb, 8 * k), acc[k % 4]),
        );
    }
    a.hsum(a.add(a.add(acc[0], acc[1]), a.add(acc[2], acc[3])))
}

/// `R` rows × `T` tokens (`xp` packed as `Tiler` says). Block by block, each row's block is
/// decoded once into a small L1 scratch (one block, not a row), then an `R×T` register tile of
/// accumulators takes `R` weight vectors and `T` activation vectors per 8 columns, so every
/// load feeds several FMAs.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // index loops over constant bounds: fully unrolled
fn tile<B: Blk, const R: usize, const T: usize>(
    a: Avx2,
    rows: [&[u8]; R],
    xp: &[f32],
    scratch: &mut [f32],
) -> [[f32; T]; R] {
    let mut acc = [[a.zero(); T]; R];
    // One decoded block per row (`B::BS ≤ SCRATCH`).
    let mut parts = scratch.chunks_exact_mut(B::BS);
    let scratch: [&mut [f32]; R] = std::array::from_fn(|_| parts.next().unwrap_or_default());
    let nb = rows[0].len() / B::TS;
    for (bi, xb) in xp.chunks_exact(B::BS * T).enumerate().take(nb) {
        for (r, row) in rows.iter().enumerate() {
            let sr = &mut *scratch[r];
            B::block(
                a,
                &row[bi * B::TS..(bi + 1) * B::TS],
                #[inline(always)]
                |k, w| a.store(sr, 8 * k, w),
            );
        }
        for k in 0..B::BS / 8 {
            let mut w = [a.zero(); R];
            for r in 0..R {
                w[r] = a.load(scratch[r], 8 * k);
            }
            for t in 0..T {
                let xv = a.load(xb, (k * T + t) * 8);
                for r in 0..R {
                    acc[r][t] = a.fmadd(w[r], xv, acc[r][t]);
                }
            }
        }
    }
    let mut out = [[0f32; T]; R];
    for (o, v) in out.iter_mut().zip(&acc) {
        for (o, v) in o.iter_mut().zip(v) {
            *o = a.hsum(*v);
        }
    }
    out
}

/// The AVX2 tiler of format `B`.
struct Tiles<B>(Avx2, std::marker::PhantomData<B>);
impl<B> Clone for Tiles<B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B> Copy for Tiles<B> {}

impl<B: Blk> Tiler for Tiles<B> {
    const BS: usize = B::BS;
    const TS: usize = B::TS;
    #[inline(always)]
    fn dot(self, row: &[u8], x: &[f32]) -> f32 {
        dot::<B>(self.0, row, x)
    }
    #[inline(always)]
    fn tile<const R: usize, const T: usize>(
        self,
        rows: [&[u8]; R],
        xp: &[f32],
        scratch: &mut [f32],
    ) -> [[f32; T]; R] {
        tile::<B, R, T>(self.0, rows, xp, scratch)
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
        _ => return None,
    })
}

fn rows<B: Blk>(w: &QMatrix, x: &[f32], n_tok: usize, r0: usize, out: &mut [f32]) {
    match token() {
        // SAFETY: level 3 was detected: AVX-512 F + VL on top of the token's features.
        Some(a) if LEVEL.load(Ordering::Relaxed) == 3 => unsafe {
            rows_avx512::<B>(a, w, x, n_tok, r0, out)
        },
        // SAFETY: the token proves the CPU has the features `rows_avx2` is compiled for.
        Some(a) => unsafe { rows_avx2::<B>(a, w, x, n_tok, r0, out) },
        None => portable_avx2::<B::P>(w, x, n_tok, r0, out),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn rows_avx2<B: Blk>(a: Avx2, w: &QMatrix, x: &[f32], n_tok: usize, r0: usize, out: &mut [f32]) {
    super::rows_impl(
        Tiles::<B>(a, std::marker::PhantomData),
        w,
        x,
        n_tok,
        r0,
        out,
    )
}

/// The same code with AVX-512 VL enabled: still 256-bit vectors, but 32 registers, which the
/// 8-token tiles need to keep their accumulators and decoded weights without spilling.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
fn rows_avx512<B: Blk>(a: Avx2, w: &QMatrix, x: &[f32], n_tok: usize, r0: usize, out: &mut [f32]) {
    super::rows_impl(
        Tiles::<B>(a, std::marker::PhantomData),
        w,
        x,
        n_tok,
        r0,
        out,
    )
}

/// The portable kernels compiled for AVX2 + FMA (formats without hand-written kernels). Only
/// handed out by `super::select` after `available()` returned true.
pub(super) fn portable_avx2<D: Dec>(
    w: &QMatrix,
    x: &[f32],
    n_tok: usize,
    r0: usize,
    out: &mut [f32],
) {
    match token() {
        // SAFETY: the token proves the CPU has the features `portable_avx2_impl` needs.
        Some(_) => unsafe { portable_avx2_impl::<D>(w, x, n_tok, r0, out) },
        None => super::rows_impl(portable::Tiles::<D, false>::new(), w, x, n_tok, r0, out),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn portable_avx2_impl<D: Dec>(w: &QMatrix, x: &[f32], n_tok: usize, r0: usize, out: &mut [f32]) {
    super::rows_impl(portable::Tiles::<D, true>::new(), w, x, n_tok, r0, out)
}
