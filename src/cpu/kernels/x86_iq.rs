//! AVX2 decoders of the IQ formats and MXFP4 (a child of `x86`, sharing its `Avx2` token and
//! `Blk` trait; its `unsafe` follows the same rule: one-line intrinsic wrappers on the token,
//! loads of exactly the bytes of a bounds-checked slice).
//!
//! - IQ4_NL, IQ4_XS, MXFP4: 16 nibbles at a time through `pshufb` on the 16-entry level table,
//!   then sign-extended to i32 lanes (`vpmovsxbd`), converted and scaled with one multiply.
//! - IQ2_*, IQ3_*: a grid row (8 bytes, or two IQ3 rows of 4) zero-extended to 8 i32 lanes
//!   (`vpmovzxbd`), converted, scaled by `db`, and signed by XOR-ing the f32 sign bit from a
//!   256-entry mask table: IEEE negation, identical to the reference's multiplication by ±1.
//! - IQ1_S, IQ1_M: the signed row (`vpmovsxbd`) plus ±0.125, times `dl`.
//!
//! Every product is exact (see `quant::iq_dequant`), so the weights equal the reference's.

use super::super::portable::{u16_at, u32_at};
use super::{portable, Avx2, Blk};
use crate::quant::grids::{
    IQ1S_DELTA, IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID,
    KSIGNS_IQ2XS, KVALUES_IQ4NL, KVALUES_MXFP4,
};
use crate::quant::iq_blocks::e8m0_to_f32_half;
use std::arch::x86_64::*;

/// Lane `j` of entry `byte` is the f32 sign bit when bit `j` of `byte` is set.
#[repr(align(32))]
struct SignMasks([[u32; 8]; 256]);
static SIGN_MASKS: SignMasks = SignMasks({
    let mut t = [[0u32; 8]; 256];
    let mut i = 0;
    while i < 256 {
        let mut j = 0;
        while j < 8 {
            t[i][j] = ((i as u32 >> j) & 1) << 31;
            j += 1;
        }
        i += 1;
    }
    t
});

// SAFETY (every `unsafe` block in this impl): the intrinsics need AVX2 (SSSE3 for `pshufb`,
// SSE4.1 for the extensions, both implied), which an `Avx2` token proves; pointer loads read
// exactly the bytes of a slice or array that was bounds-checked just before.
#[allow(clippy::undocumented_unsafe_blocks)]
impl Avx2 {
    /// The 32 weights' levels of 16 nibble bytes `b[at..at + 16]` looked up in `t`, as i32
    /// lanes: [weights 0..8, 8..16 (low nibbles), 16..24, 24..32 (high nibbles)].
    #[inline(always)]
    fn lut_nibbles(self, b: &[u8], at: usize, t: &[i8; 16]) -> [__m256i; 4] {
        let s = &b[at..at + 16];
        unsafe {
            let qs = _mm_loadu_si128(s.as_ptr().cast());
            let tv = _mm_loadu_si128(t.as_ptr().cast());
            let m15 = _mm_set1_epi8(15);
            let lo = _mm_shuffle_epi8(tv, _mm_and_si128(qs, m15));
            let hi = _mm_shuffle_epi8(tv, _mm_and_si128(_mm_srli_epi16::<4>(qs), m15));
            [
                _mm256_cvtepi8_epi32(lo),
                _mm256_cvtepi8_epi32(_mm_unpackhi_epi64(lo, lo)),
                _mm256_cvtepi8_epi32(hi),
                _mm256_cvtepi8_epi32(_mm_unpackhi_epi64(hi, hi)),
            ]
        }
    }
    /// The 8 unsigned bytes of `row` as i32 lanes.
    #[inline(always)]
    fn row_u8(self, row: u64) -> __m256i {
        unsafe { _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(row as i64)) }
    }
    /// The 8 signed bytes of `row` as i32 lanes.
    #[inline(always)]
    fn row_i8(self, row: u64) -> __m256i {
        unsafe { _mm256_cvtepi8_epi32(_mm_cvtsi64_si128(row as i64)) }
    }
    /// `w` with lane `j` negated where bit `j` of `signs` is set.
    #[inline(always)]
    fn apply_signs(self, w: __m256, signs: u8) -> __m256 {
        let m = self.load_u32x8(&SIGN_MASKS.0[signs as usize]);
        unsafe { _mm256_xor_ps(w, _mm256_castsi256_ps(m)) }
    }
    /// Grid row `row` times `db`, signed by `signs`.
    #[inline(always)]
    fn signed_row(self, row: u64, db: __m256, signs: u8) -> __m256 {
        self.apply_signs(self.mul(self.cvt(self.row_u8(row)), db), signs)
    }
    /// `dl · (row + delta)` for an IQ1 grid row.
    #[inline(always)]
    fn iq1_row(self, row: u64, delta: __m256, dl: __m256) -> __m256 {
        self.mul(self.add(self.cvt(self.row_i8(row)), delta), dl)
    }
}

pub(super) struct Iq4Nl;
impl Blk for Iq4Nl {
    const BS: usize = 32;
    const TS: usize = 18;
    type P = portable::Iq4Nl;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let d = a.splat(a.f16(b, 0));
        for (k, v) in a.lut_nibbles(b, 2, &KVALUES_IQ4NL).into_iter().enumerate() {
            f(k, a.mul(a.cvt(v), d));
        }
    }
}

pub(super) struct Mxfp4;
impl Blk for Mxfp4 {
    const BS: usize = 32;
    const TS: usize = 17;
    type P = portable::Mxfp4;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let d = a.splat(e8m0_to_f32_half(b[0]));
        for (k, v) in a.lut_nibbles(b, 1, &KVALUES_MXFP4).into_iter().enumerate() {
            f(k, a.mul(a.cvt(v), d));
        }
    }
}

pub(super) struct Iq4Xs;
impl Blk for Iq4Xs {
    const BS: usize = 256;
    const TS: usize = 136;
    type P = portable::Iq4Xs;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let d = a.f16(b, 0);
        let sh = u16_at(b, 2);
        for g in 0..8 {
            let ls = ((b[4 + g / 2] >> (4 * (g % 2))) & 15) | ((((sh >> (2 * g)) & 3) as u8) << 4);
            let dl = a.splat(d * (ls as i32 - 32) as f32);
            for (k, v) in a
                .lut_nibbles(b, 8 + 16 * g, &KVALUES_IQ4NL)
                .into_iter()
                .enumerate()
            {
                f(4 * g + k, a.mul(a.cvt(v), dl));
            }
        }
    }
}

pub(super) struct Iq3Xxs;
impl Blk for Iq3Xxs {
    const BS: usize = 256;
    const TS: usize = 98;
    type P = portable::Iq3Xxs;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let d = a.f16(b, 0);
        for g in 0..8 {
            let aux = u32_at(b, 66 + 4 * g);
            let db = a.splat(d * (0.5 + (aux >> 28) as f32) * 0.5);
            for l in 0..4 {
                let row = IQ3XXS_GRID[b[2 + 8 * g + 2 * l] as usize] as u64
                    | (IQ3XXS_GRID[b[3 + 8 * g + 2 * l] as usize] as u64) << 32;
                let s = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                f(4 * g + l, a.signed_row(row, db, s));
            }
        }
    }
}

pub(super) struct Iq3S;
impl Blk for Iq3S {
    const BS: usize = 256;
    const TS: usize = 110;
    type P = portable::Iq3S;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let d = a.f16(b, 0);
        for g in 0..8 {
            let ls = (b[106 + g / 2] >> (4 * (g % 2))) & 15;
            let db = a.splat(d * (1 + 2 * ls) as f32);
            let qh = b[66 + g] as usize;
            for l in 0..4 {
                let i0 = b[2 + 8 * g + 2 * l] as usize | (((qh >> (2 * l)) & 1) << 8);
                let i1 = b[3 + 8 * g + 2 * l] as usize | (((qh >> (2 * l + 1)) & 1) << 8);
                let row = IQ3S_GRID[i0] as u64 | (IQ3S_GRID[i1] as u64) << 32;
                f(4 * g + l, a.signed_row(row, db, b[74 + 4 * g + l]));
            }
        }
    }
}

pub(super) struct Iq2Xxs;
impl Blk for Iq2Xxs {
    const BS: usize = 256;
    const TS: usize = 66;
    type P = portable::Iq2Xxs;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let d = a.f16(b, 0);
        for g in 0..8 {
            let aux = u32_at(b, 6 + 8 * g);
            let db = a.splat(d * (0.5 + (aux >> 28) as f32) * 0.25);
            for l in 0..4 {
                let row = IQ2XXS_GRID[b[2 + 8 * g + l] as usize];
                let s = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                f(4 * g + l, a.signed_row(row, db, s));
            }
        }
    }
}

/// `d·(0.5 + ls)·0.25` for 16-weight sub-block `s` of the scale nibbles at `b[at..at + 8]`.
#[inline(always)]
fn iq2_db(d: f32, b: &[u8], at: usize, s: usize) -> f32 {
    d * (0.5 + ((b[at + s / 2] >> (4 * (s % 2))) & 15) as f32) * 0.25
}

pub(super) struct Iq2Xs;
impl Blk for Iq2Xs {
    const BS: usize = 256;
    const TS: usize = 74;
    type P = portable::Iq2Xs;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let d = a.f16(b, 0);
        for s in 0..16 {
            let db = a.splat(iq2_db(d, b, 66, s));
            for gi in 2 * s..2 * s + 2 {
                let q = u16_at(b, 2 + 2 * gi);
                let row = IQ2XS_GRID[(q & 511) as usize];
                f(gi, a.signed_row(row, db, KSIGNS_IQ2XS[(q >> 9) as usize]));
            }
        }
    }
}

pub(super) struct Iq2S;
impl Blk for Iq2S {
    const BS: usize = 256;
    const TS: usize = 82;
    type P = portable::Iq2S;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let d = a.f16(b, 0);
        for s in 0..16 {
            let db = a.splat(iq2_db(d, b, 74, s));
            for gi in 2 * s..2 * s + 2 {
                let hi = ((b[66 + gi / 4] >> (2 * (gi % 4))) & 3) as usize;
                let row = IQ2S_GRID[b[2 + gi] as usize | (hi << 8)];
                f(gi, a.signed_row(row, db, b[34 + gi]));
            }
        }
    }
}

pub(super) struct Iq1S;
impl Blk for Iq1S {
    const BS: usize = 256;
    const TS: usize = 50;
    type P = portable::Iq1S;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let d = a.f16(b, 0);
        for g in 0..8 {
            let qh = u16_at(b, 34 + 2 * g);
            let dl = a.splat(d * (2 * ((qh >> 12) & 7) + 1) as f32);
            let delta = a.splat(if qh & 0x8000 != 0 {
                -IQ1S_DELTA
            } else {
                IQ1S_DELTA
            });
            for l in 0..4 {
                let idx = b[2 + 4 * g + l] as usize | ((((qh >> (3 * l)) & 7) as usize) << 8);
                f(4 * g + l, a.iq1_row(IQ1S_GRID[idx], delta, dl));
            }
        }
    }
}

pub(super) struct Iq1M;
impl Blk for Iq1M {
    const BS: usize = 256;
    const TS: usize = 56;
    type P = portable::Iq1M;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let word = |k: usize| u16_at(b, 48 + 2 * k);
        let dbits = (word(0) >> 12)
            | ((word(1) >> 8) & 0x00f0)
            | ((word(2) >> 4) & 0x0f00)
            | (word(3) & 0xf000);
        let d = crate::quant::f16_to_f32(dbits);
        for s in 0..16 {
            let ls = (word(s / 4) >> (3 * (s % 4))) & 7;
            let dl = a.splat(d * (2 * ls + 1) as f32);
            for gi in 2 * s..2 * s + 2 {
                let nib = (b[32 + gi / 2] >> (4 * (gi % 2))) & 15;
                let idx = b[gi] as usize | (((nib & 7) as usize) << 8);
                let delta = a.splat(if nib & 8 != 0 {
                    -IQ1S_DELTA
                } else {
                    IQ1S_DELTA
                });
                f(gi, a.iq1_row(IQ1S_GRID[idx], delta, dl));
            }
        }
    }
}
