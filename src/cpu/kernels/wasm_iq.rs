//! SIMD128 decoders of the IQ formats and MXFP4 (a child of `wasm`, sharing its `Blk` trait and
//! helpers, as `x86_iq` is of `x86`; no `unsafe` of its own: loads go through `wasm::load16`).
//!
//! - IQ4_NL, IQ4_XS, MXFP4: 16 nibbles at a time through `i8x16_swizzle` on the 16-entry level
//!   table, widened `i8x16` → `i16x8` → `i32x4`, converted and scaled with one multiply.
//! - IQ2_*, IQ3_*: a grid row (8 bytes, or two IQ3 rows of 4) zero-extended to two `i32x4`,
//!   converted, scaled by `db`, and signed by XOR-ing the f32 sign bit where the row's sign bit
//!   is set: IEEE negation, identical to the reference's multiplication by ±1.
//! - IQ1_S, IQ1_M: the signed row (sign-extended) plus ±0.125, times `dl`.
//!
//! Every product is exact (see `quant::iq_dequant`), so the weights equal the reference's.
//!
//! These are `limit_isa` level 1; from level 2 (the default) the integer kernels of
//! `wasm_i16` run every one of these formats instead (faster for each, see there).

use super::super::portable::{u16_at, u32_at};
use super::{cvt_i8, f16_at, load16, scale, table, Blk, V8};
use crate::quant::grids::{
    IQ1S_DELTA, IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID,
    KSIGNS_IQ2XS, KVALUES_IQ4NL, KVALUES_MXFP4,
};
use crate::quant::iq_blocks::e8m0_to_f32_half;
use core::arch::wasm32::*;

/// The 32 weights of the 16 nibble bytes `b[at..at + 16]` looked up in `t` and scaled by `d`:
/// low nibbles are weights 0..16, high ones 16..32; `f(k0 + k, w)` for `k` in `0..4`.
#[inline(always)]
fn lut_nibbles(b: &[u8], at: usize, t: v128, d: v128, k0: usize, f: &mut impl FnMut(usize, V8)) {
    let qs = load16(b, at);
    let lo = i8x16_swizzle(t, v128_and(qs, u8x16_splat(15)));
    let hi = i8x16_swizzle(t, u8x16_shr(qs, 4));
    let (a, c) = cvt_i8(lo);
    f(k0, scale(a, d));
    f(k0 + 1, scale(c, d));
    let (a, c) = cvt_i8(hi);
    f(k0 + 2, scale(a, d));
    f(k0 + 3, scale(c, d));
}

/// The 8 bytes of `row` (unsigned) as f32.
#[inline(always)]
fn row_u8(row: u64) -> V8 {
    let h = u16x8_extend_low_u8x16(u64x2_splat(row));
    V8(
        f32x4_convert_i32x4(u32x4_extend_low_u16x8(h)),
        f32x4_convert_i32x4(u32x4_extend_high_u16x8(h)),
    )
}

/// The 8 bytes of `row` (signed) as f32.
#[inline(always)]
fn row_i8(row: u64) -> V8 {
    let h = i16x8_extend_low_i8x16(u64x2_splat(row));
    V8(
        f32x4_convert_i32x4(i32x4_extend_low_i16x8(h)),
        f32x4_convert_i32x4(i32x4_extend_high_i16x8(h)),
    )
}

/// `w` with lane `j` negated (its f32 sign bit flipped) where bit `j` of `signs` is set.
#[inline(always)]
fn apply_signs(w: V8, signs: u8) -> V8 {
    let s = u32x4_splat(signs as u32);
    let sign = u32x4_splat(0x8000_0000);
    let mask = |bits: v128| v128_and(i32x4_eq(v128_and(s, bits), bits), sign);
    V8(
        v128_xor(w.0, mask(u32x4(1, 2, 4, 8))),
        v128_xor(w.1, mask(u32x4(16, 32, 64, 128))),
    )
}

/// Grid row `row` times `db`, signed by `signs`.
#[inline(always)]
fn signed_row(row: u64, db: v128, signs: u8) -> V8 {
    apply_signs(scale(row_u8(row), db), signs)
}

/// `dl · (row + delta)` for an IQ1 grid row.
#[inline(always)]
fn iq1_row(row: u64, delta: v128, dl: v128) -> V8 {
    let r = row_i8(row);
    V8(
        f32x4_mul(f32x4_add(r.0, delta), dl),
        f32x4_mul(f32x4_add(r.1, delta), dl),
    )
}

pub(super) struct Iq4Nl;
impl Blk for Iq4Nl {
    const BS: usize = 32;
    const TS: usize = 18;
    #[inline(always)]
    fn block(b: &[u8], mut f: impl FnMut(usize, V8)) {
        let d = f32x4_splat(f16_at(b, 0));
        lut_nibbles(b, 2, table(&KVALUES_IQ4NL), d, 0, &mut f);
    }
}

pub(super) struct Mxfp4;
impl Blk for Mxfp4 {
    const BS: usize = 32;
    const TS: usize = 17;
    #[inline(always)]
    fn block(b: &[u8], mut f: impl FnMut(usize, V8)) {
        let d = f32x4_splat(e8m0_to_f32_half(b[0]));
        lut_nibbles(b, 1, table(&KVALUES_MXFP4), d, 0, &mut f);
    }
}

pub(super) struct Iq4Xs;
impl Blk for Iq4Xs {
    const BS: usize = 256;
    const TS: usize = 136;
    #[inline(always)]
    fn block(b: &[u8], mut f: impl FnMut(usize, V8)) {
        let d = f16_at(b, 0);
        let sh = u16_at(b, 2);
        let t = table(&KVALUES_IQ4NL);
        for g in 0..8 {
            let ls = ((b[4 + g / 2] >> (4 * (g % 2))) & 15) | ((((sh >> (2 * g)) & 3) as u8) << 4);
            let dl = f32x4_splat(d * (ls as i32 - 32) as f32);
            lut_nibbles(b, 8 + 16 * g, t, dl, 4 * g, &mut f);
        }
    }
}

pub(super) struct Iq3Xxs;
impl Blk for Iq3Xxs {
    const BS: usize = 256;
    const TS: usize = 98;
    #[inline(always)]
    fn block(b: &[u8], mut f: impl FnMut(usize, V8)) {
        let d = f16_at(b, 0);
        for g in 0..8 {
            let aux = u32_at(b, 66 + 4 * g);
            let db = f32x4_splat(d * (0.5 + (aux >> 28) as f32) * 0.5);
            for l in 0..4 {
                let row = IQ3XXS_GRID[b[2 + 8 * g + 2 * l] as usize] as u64
                    | (IQ3XXS_GRID[b[3 + 8 * g + 2 * l] as usize] as u64) << 32;
                let s = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                f(4 * g + l, signed_row(row, db, s));
            }
        }
    }
}

pub(super) struct Iq3S;
impl Blk for Iq3S {
    const BS: usize = 256;
    const TS: usize = 110;
    #[inline(always)]
    fn block(b: &[u8], mut f: impl FnMut(usize, V8)) {
        let d = f16_at(b, 0);
        for g in 0..8 {
            let ls = (b[106 + g / 2] >> (4 * (g % 2))) & 15;
            let db = f32x4_splat(d * (1 + 2 * ls) as f32);
            let qh = b[66 + g] as usize;
            for l in 0..4 {
                let i0 = b[2 + 8 * g + 2 * l] as usize | (((qh >> (2 * l)) & 1) << 8);
                let i1 = b[3 + 8 * g + 2 * l] as usize | (((qh >> (2 * l + 1)) & 1) << 8);
                let row = IQ3S_GRID[i0] as u64 | (IQ3S_GRID[i1] as u64) << 32;
                f(4 * g + l, signed_row(row, db, b[74 + 4 * g + l]));
            }
        }
    }
}

pub(super) struct Iq2Xxs;
impl Blk for Iq2Xxs {
    const BS: usize = 256;
    const TS: usize = 66;
    #[inline(always)]
    fn block(b: &[u8], mut f: impl FnMut(usize, V8)) {
        let d = f16_at(b, 0);
        for g in 0..8 {
            let aux = u32_at(b, 6 + 8 * g);
            let db = f32x4_splat(d * (0.5 + (aux >> 28) as f32) * 0.25);
            for l in 0..4 {
                let row = IQ2XXS_GRID[b[2 + 8 * g + l] as usize];
                let s = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                f(4 * g + l, signed_row(row, db, s));
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
    #[inline(always)]
    fn block(b: &[u8], mut f: impl FnMut(usize, V8)) {
        let d = f16_at(b, 0);
        for s in 0..16 {
            let db = f32x4_splat(iq2_db(d, b, 66, s));
            for gi in 2 * s..2 * s + 2 {
                let q = u16_at(b, 2 + 2 * gi);
                let row = IQ2XS_GRID[(q & 511) as usize];
                f(gi, signed_row(row, db, KSIGNS_IQ2XS[(q >> 9) as usize]));
            }
        }
    }
}

pub(super) struct Iq2S;
impl Blk for Iq2S {
    const BS: usize = 256;
    const TS: usize = 82;
    #[inline(always)]
    fn block(b: &[u8], mut f: impl FnMut(usize, V8)) {
        let d = f16_at(b, 0);
        for s in 0..16 {
            let db = f32x4_splat(iq2_db(d, b, 74, s));
            for gi in 2 * s..2 * s + 2 {
                let hi = ((b[66 + gi / 4] >> (2 * (gi % 4))) & 3) as usize;
                let row = IQ2S_GRID[b[2 + gi] as usize | (hi << 8)];
                f(gi, signed_row(row, db, b[34 + gi]));
            }
        }
    }
}

pub(super) struct Iq1S;
impl Blk for Iq1S {
    const BS: usize = 256;
    const TS: usize = 50;
    #[inline(always)]
    fn block(b: &[u8], mut f: impl FnMut(usize, V8)) {
        let d = f16_at(b, 0);
        for g in 0..8 {
            let qh = u16_at(b, 34 + 2 * g);
            let dl = f32x4_splat(d * (2 * ((qh >> 12) & 7) + 1) as f32);
            let delta = f32x4_splat(if qh & 0x8000 != 0 {
                -IQ1S_DELTA
            } else {
                IQ1S_DELTA
            });
            for l in 0..4 {
                let idx = b[2 + 4 * g + l] as usize | ((((qh >> (3 * l)) & 7) as usize) << 8);
                f(4 * g + l, iq1_row(IQ1S_GRID[idx], delta, dl));
            }
        }
    }
}

pub(super) struct Iq1M;
impl Blk for Iq1M {
    const BS: usize = 256;
    const TS: usize = 56;
    #[inline(always)]
    fn block(b: &[u8], mut f: impl FnMut(usize, V8)) {
        let word = |k: usize| u16_at(b, 48 + 2 * k);
        let dbits = (word(0) >> 12)
            | ((word(1) >> 8) & 0x00f0)
            | ((word(2) >> 4) & 0x0f00)
            | (word(3) & 0xf000);
        let d = crate::quant::f16_to_f32(dbits);
        for s in 0..16 {
            let ls = (word(s / 4) >> (3 * (s % 4))) & 7;
            let dl = f32x4_splat(d * (2 * ls + 1) as f32);
            for gi in 2 * s..2 * s + 2 {
                let nib = (b[32 + gi / 2] >> (4 * (gi % 2))) & 15;
                let idx = b[gi] as usize | (((nib & 7) as usize) << 8);
                let delta = f32x4_splat(if nib & 8 != 0 {
                    -IQ1S_DELTA
                } else {
                    IQ1S_DELTA
                });
                f(gi, iq1_row(IQ1S_GRID[idx], delta, dl));
            }
        }
    }
}
