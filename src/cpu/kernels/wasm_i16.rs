//! wasm32 SIMD128 integer kernels: quantized weights × i16 activations, the scheme of
//! `x86_i16` on 128-bit vectors (`limit_isa` level 2 and above), for every quantized format:
//! Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, MXFP4 (32-weight blocks) and Q2_K, Q3_K, Q4_K, Q5_K,
//! Q6_K, IQ4_XS, IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M (256-weight
//! super-blocks).
//!
//! Each matmul call first quantizes every token's activations once (`super::QAct`, by the
//! portable `QAct::quantize`, bit for bit what the AVX-512 quantizer computes): per group of
//! `G` values (32 for the 32-weight formats, 256 for the 256-weight ones) one f32 scale
//! `d = max|x| / 32767` and i16 values `q = round(x / d)`, plus the exact f32 sum of every 32
//! values for the formats with a min term, plus for Q6_K the residual plane of groups with
//! outliers (`x ≈ (q + q2/65534)·d`, see `QAct::RESIDUAL_BELOW`). The error of that step is at
//! most `d / 2` per value, `max|x| / 65534` of the group (with the residual plane `d / 131068`
//! for the flagged groups): ~1.5e-5 of the group's largest magnitude.
//!
//! A block's weights are widened to `i16x8` vectors (four per 32-weight group) holding its
//! integer quants (IQ4: the `kvalues_iq4nl` levels −127..113 of its 4-bit indices, looked up
//! with `i8x16_swizzle`; K-quants and IQ4_XS: already multiplied by their integer sub-block
//! scales; MXFP4: its E2M1 levels × 2, the integers −12..12, with the E8M0 scale as the f32
//! half-scale; the IQ2 / IQ3 / IQ1 grids: a grid row's 8 bytes (IQ3: two 4-byte entries) with
//! their sign bits applied as `(v ^ m) − m` in `i8x16`, IQ1 as `8·row ± 1`, their integer
//! sub-block scales multiplied into each group's or 16-weight half's i32 lane sums rather
//! than into the weights, the f32 factor `d/8`, `d/4` exact), and multiplied with the
//! activations by `i32x4_dot_i16x8` (8 multiply-adds per
//! instruction into 4 i32 lanes, exact). The i32 lanes are converted to f32 once per chain
//! (below) and multiplied by the product of the weight and activation scales into an `f32x4`
//! accumulator (mul + add: SIMD128 has no FMA); each output is reduced horizontally once. Min
//! terms (`Q4_1`, `Q5_1`, `Q4_K`, `Q5_K`) use the exact activation sums; Q2_K's, per 16
//! weights where those sums are per 32, is an exact i32 dot of the quantized activations
//! with the splatted mins (a per-16 sum plane in `QAct` would save those 32 dots per block and
//! row, at the cost of a field the other paths do not need: the kernel as it is already runs
//! 2.8–5.8× faster than the portable one it replaced).
//!
//! Overflow: with 4 i32 lanes, a 32-weight group puts 8 products in each lane
//! (|q_x| ≤ 32767), so the chains (`IntBlock::CHAIN` groups summed in i32 before conversion)
//! are sized to stay below 2^31 − 1:
//! - Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 / IQ4_NL (chain of 1 group): 8 products of |w| ≤ 128:
//!   ≤ 8·128·32767 ≈ 3.4e7;
//! - MXFP4 (chain of 1): levels |w| ≤ 12: ≤ 8·12·32767 ≈ 3.1e6;
//! - Q2_K (chain of 8 groups): `q·sc` ≤ 3·15 = 45: ≤ 64·45·32767 ≈ 9.4e7; its min chain
//!   `m·q_x` ≤ 64·15·32767 ≈ 3.1e7;
//! - Q3_K (chain of 8 groups): `q·sc` with quants −4..3 and scales −32..31: |·| ≤ 4·32 = 128;
//!   64 products per lane: ≤ 64·128·32767 ≈ 2.7e8;
//! - IQ2_XXS / IQ2_XS / IQ2_S (chains of 4 groups): grid ≤ 43 times scale `2ls + 1` ≤ 31:
//!   1333; 32 products per lane: ≤ 32·1333·32767 ≈ 1.4e9 (8 groups would be ≈ 2.8e9);
//! - IQ3_XXS (chains of 4 groups): grid ≤ 62 × scale ≤ 31 = 1922: ≤ 32·1922·32767 ≈ 2.02e9;
//! - IQ3_S (chain of 8): grid ≤ 15 × scale ≤ 31 = 465: ≤ 64·465·32767 ≈ 9.8e8;
//! - IQ1_S / IQ1_M (chain of 8): `|8·row ± 1|` ≤ 9 × scale ≤ 15 = 135: ≤ 64·135·32767 ≈ 2.8e8;
//! - Q4_K (chain of 8 groups, the whole super-block): `q·sc` ≤ 15·63 = 945; 64 products per
//!   lane: ≤ 64·945·32767 ≈ 1.98e9;
//! - Q5_K (chains of 4 groups, two per super-block): `q·sc` ≤ 31·63 = 1953; 32 products per
//!   lane: ≤ 32·1953·32767 = 2 047 806 432 (8 groups would be ≈ 4.1e9);
//! - IQ4_XS (chains of 2 groups, four per super-block): `level·(ls − 32)` with levels
//!   −127..113 and scales −32..31: |·| ≤ 127·32 = 4064; 16 products per lane:
//!   ≤ 16·4064·32767 = 2 130 641 408 (4 groups would be ≈ 4.3e9);
//! - Q6_K (chains of 2 groups, four per super-block): `(q − 32)·sc` ∈ −4064..4096; 16 products
//!   per lane: ≤ 16·4096·32767 = 2 147 352 576 < 2 147 483 647 (as in `x86_i16`, tight: why
//!   the quantizer caps |q_x| at 32767). A whole super-block in one chain would overflow.
//!
//! So the result differs from the reference by the activation quantization error (at most
//! `Σ|w|·max|x|/65534` per output, over the 256-value groups) plus f32 rounding of the block
//! sums (relative 2^-24 per conversion and add, ~1e-7 of Σ|w·x|).
//!
//! Tiles: decode (one token) runs 2 rows side by side, each block's groups decoded and
//! multiplied at once; prefill decodes a block of 2 rows (K-quants: 1) once into registers /
//! the stack and multiplies it with a tile of up to 8 tokens. Both take the same i32 sums and the same f32
//! steps per output in the same order, so prefill and decode give identical values.
//!
//! Speed (`scripts/bench-browser cpu 64`, headless Chromium, a shared 2-core machine, medians
//! of 3 interleaved runs, prefill / decode tok/s): SmolLM2-135M Q4_K_M 78.7 / 31.2 against the
//! f32 SIMD128 kernels' 72.5 / 27.1; pad768 69.9 / 25.3 against 59.8 / 22.3. Decode multiplies
//! each group as it is decoded (a decoded-block array first: 40% slower); K-quant prefill
//! tiles are 1 row × 8 tokens (2 rows' 64 decoded vectors spilled: pad768 prefill 15% slower).
//! Matmul alone (a 576 × 1536 random matrix, headless Chromium, the same shared machine, best
//! of 5, `limit_isa` 1 against 2, 1 / 64 tokens): IQ4_NL 1.9× / 1.3× faster than `wasm_iq`'s
//! f32 kernel, IQ4_XS 1.9× / 1.15×; Q3_K 3.1× / 3.7× and Q5_K 5.9× / 4.5× faster than the
//! portable kernels they replace; Q2_K 5.8× / 2.8× (portable); IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
//! IQ3_S, IQ1_S, IQ1_M, MXFP4 1.3–2.9× / 1.3–1.9× (`wasm_iq`; docs/performance.md).

use super::super::portable::{u16_at, u32_at};
use super::super::{IntRowsFn, QAct};
use super::rows::{Accumulator, IntKernel};
use super::simd::*;
use super::{f16_at, high_bits, int_rows, load16, load_i16, loadf, table};
use crate::quant::grids::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS_IQ2XS,
    KVALUES_IQ4NL, KVALUES_MXFP4,
};
use crate::quant::iq_blocks::e8m0_to_f32_half;
use crate::quant::GgmlType;
use std::marker::PhantomData;

/// One token's quantized activations: `q` (cols), `d` (one per `G`), `s` (one per 32).
#[derive(Clone, Copy)]
struct TokenActs<'a> {
    q: &'a [i16],
    /// Residual plane and its per-group flags (Q6_K only, else empty).
    q2: &'a [i16],
    flagged: &'a [bool],
    d: &'a [f32],
    s: &'a [f32],
}

/// 32 weights as four `i16x8`: weights 0..8, 8..16, 16..24, 24..32 of the group.
type Group = [v128; 4];

/// A block format as integer quants: a header (its scales, decoded once per row and block)
/// and `BS / 32` groups of 32 i16 weights.
trait IntBlock {
    /// Weights per block.
    const BS: usize;
    /// Bytes per block.
    const TS: usize;
    /// Activation values per scale.
    const G: usize;
    /// Whether the activations carry the residual plane for groups with outliers.
    const RESID: bool;
    /// Groups whose i32 lane sums share one chain before conversion to f32 (overflow bound).
    const CHAIN: usize;
    /// A block's scales, as `group` and `finish` need them.
    type Head: BlockHead;
    fn head(b: &[u8]) -> Self::Head;
    /// Group `g` (weights `32g..32g + 32`) as i16 lanes (K-quants: times their sub-block
    /// scales).
    fn group(b: &[u8], h: &Self::Head, g: usize) -> Group;
    /// `acc +` group `g`'s products with `x[at..at + 32]` in i32 lanes: plain `dot_group` (the
    /// default: the weights already carry their sub-block scales), or for the IQ grids, whose
    /// weights are the unscaled signed grid values, the group's (or each 16-weight half's)
    /// lane sums times its integer scale: one `i32x4_mul` per group instead of four `i16x8`.
    #[inline(always)]
    fn group_dot(_h: &Self::Head, _g: usize, acc: v128, w: &Group, x: &[i16], at: usize) -> v128 {
        dot_group(acc, w, x, at)
    }
    /// `acc += block · activations` from the f32 sums of the exact i32 chains `p`
    /// (weights × `x.q`) and, for groups with a residual plane, `p2` (weights × `x.q2`).
    /// The K-quants': `acc += d·d_x·(p + p2/65534)`, then the header's min term.
    #[inline(always)]
    fn finish(
        h: &Self::Head,
        p: v128,
        p2: Option<v128>,
        x: TokenActs,
        bi: usize,
        acc: &mut Accumulator,
    ) {
        let (d, xd) = (h.d(), x.d[bi]);
        acc.v = f32x4_add(acc.v, f32x4_mul(p, f32x4_splat(d * xd)));
        if let Some(p2) = p2 {
            acc.v = f32x4_add(acc.v, f32x4_mul(p2, f32x4_splat(d * xd * (1.0 / 65534.0))));
        }
        h.min(x, bi, acc);
    }
}

/// A block header as `IntBlock::finish` reads it: the block's f32 scale and min term.
trait BlockHead: Copy {
    /// The block's scale `d`.
    fn d(&self) -> f32;
    /// `acc +=` the block's min term for token `x`'s block `bi` (none by default).
    #[inline(always)]
    fn min(&self, _x: TokenActs, _bi: usize, _acc: &mut Accumulator) {}
}

/// The 32-weight formats' `(d, m, fifth bits)` (their `finish` is their own).
impl BlockHead for (f32, f32, u32) {
    #[inline(always)]
    fn d(&self) -> f32 {
        self.0
    }
}

/// Q3_K's, IQ4_XS's and Q6_K's `(signed sub-block scales, d)`.
impl<const N: usize> BlockHead for ([i16; N], f32) {
    #[inline(always)]
    fn d(&self) -> f32 {
        self.1
    }
}

/// Q4_K's and Q5_K's `(sub-block scales, d, −dmin·m per sub-block as two f32x4)`.
impl BlockHead for ([i16; 8], f32, [v128; 2]) {
    #[inline(always)]
    fn d(&self) -> f32 {
        self.1
    }
    /// `acc += −dmin·Σ m·s_x` over the 8 sub-blocks.
    #[inline(always)]
    fn min(&self, x: TokenActs, bi: usize, acc: &mut Accumulator) {
        let m = f32x4_add(
            f32x4_mul(self.2[0], loadf(x.s, 8 * bi)),
            f32x4_mul(self.2[1], loadf(x.s, 8 * bi + 4)),
        );
        acc.v = f32x4_add(acc.v, m);
    }
}

/// The four `i16x8` of 16 low-nibble bytes `lo` and 16 high-nibble bytes `hi` (signed bytes).
#[inline(always)]
fn widen_i8(lo: v128, hi: v128) -> Group {
    [
        i16x8_extend_low_i8x16(lo),
        i16x8_extend_high_i8x16(lo),
        i16x8_extend_low_i8x16(hi),
        i16x8_extend_high_i8x16(hi),
    ]
}

/// The 32 quants of a 4-bit block from `qs` (16 bytes: low nibbles are weights 0..16, high
/// ones 16..32) with `hi_lo` / `hi_hi` OR-ed in (the Q5 fifth bits, or 0), minus `off`.
#[inline(always)]
fn nibbles(qs: v128, hi_lo: v128, hi_hi: v128, off: i8) -> Group {
    let o = i8x16_splat(off);
    let lo = i8x16_sub(v128_or(v128_and(qs, u8x16_splat(15)), hi_lo), o);
    let hi = i8x16_sub(v128_or(u8x16_shr(qs, 4), hi_hi), o);
    widen_i8(lo, hi)
}

/// The 32-weight formats: the header is `(d, m, fifth bits)`; `finish` adds `d·d_x·p` and,
/// with a min, `m·s_x`.
macro_rules! block32 {
    ($name:ident, $ts:literal, $min:literal, |$b:ident| $head:expr, |$b2:ident, $h:ident| $q:expr) => {
        pub(super) struct $name;
        impl IntBlock for $name {
            const BS: usize = 32;
            const TS: usize = $ts;
            const G: usize = 32;
            const RESID: bool = false;
            const CHAIN: usize = 1;
            type Head = (f32, f32, u32);
            #[inline(always)]
            fn head($b: &[u8]) -> Self::Head {
                $head
            }
            #[inline(always)]
            fn group($b2: &[u8], $h: &Self::Head, _: usize) -> Group {
                $q
            }
            #[inline(always)]
            fn finish(
                h: &Self::Head,
                p: v128,
                _: Option<v128>,
                x: TokenActs,
                bi: usize,
                acc: &mut Accumulator,
            ) {
                acc.v = f32x4_add(acc.v, f32x4_mul(p, f32x4_splat(h.0 * x.d[bi])));
                if $min {
                    acc.s += h.1 * x.s[bi];
                }
            }
        }
    };
}

block32!(Q4_0, 18, false, |b| (f16_at(b, 0), 0.0, 0), |b, _h| {
    let z = u8x16_splat(0);
    nibbles(load16(b, 2), z, z, 8)
});
block32!(
    Q4_1,
    20,
    true,
    |b| (f16_at(b, 0), f16_at(b, 2), 0),
    |b, _h| {
        let z = u8x16_splat(0);
        nibbles(load16(b, 4), z, z, 0)
    }
);
block32!(
    Q5_0,
    22,
    false,
    |b| (
        f16_at(b, 0),
        0.0,
        u32::from_le_bytes([b[2], b[3], b[4], b[5]])
    ),
    |b, h| nibbles(
        load16(b, 6),
        high_bits(h.2 & 0xffff),
        high_bits(h.2 >> 16),
        16
    )
);
block32!(
    Q5_1,
    24,
    true,
    |b| (
        f16_at(b, 0),
        f16_at(b, 2),
        u32::from_le_bytes([b[4], b[5], b[6], b[7]])
    ),
    |b, h| nibbles(
        load16(b, 8),
        high_bits(h.2 & 0xffff),
        high_bits(h.2 >> 16),
        0
    )
);
block32!(Q8_0, 34, false, |b| (f16_at(b, 0), 0.0, 0), |b, _h| {
    widen_i8(load16(b, 2), load16(b, 18))
});
block32!(Iq4Nl, 18, false, |b| (f16_at(b, 0), 0.0, 0), |b, _h| {
    iq4_levels(b, 2)
});
// MXFP4: an E8M0 scale byte (as the f32 half-scale: the table holds the E2M1 values × 2, the
// integers 0..12), then 16 nibble bytes.
block32!(
    Mxfp4,
    17,
    false,
    |b| (e8m0_to_f32_half(b[0]), 0.0, 0),
    |b, _h| nibble_levels(b, 1, &KVALUES_MXFP4)
);

/// A group of 16-weight sub-blocks `2g`, `2g + 1` from their signed quants (`q(0)`, `q(1)`:
/// weights 0..16, 16..32), each widened and times its scale `sc[(2g + half) % 16]`.
#[inline(always)]
fn scaled_halves(sc: &[i16; 16], g: usize, q: impl Fn(usize) -> v128) -> Group {
    let mut w = [i16x8_splat(0); 4];
    for half in 0..2 {
        let q = q(half);
        let sc = i16x8_splat(sc[(2 * g + half) % 16]);
        w[2 * half] = i16x8_mul(i16x8_extend_low_i8x16(q), sc);
        w[2 * half + 1] = i16x8_mul(i16x8_extend_high_i8x16(q), sc);
    }
    w
}

/// Q3_K: 32 bytes of high bits (bit g of byte l: weight l of group g), 64 bytes of 2-bit
/// quants (four planes of 128 weights' halves), 12 bytes of six-bit scales, d. A weight is
/// `lo − 4` where its high bit is clear, else `lo` (−4..3), times its signed scale `sc − 32`
/// (one per 16 weights).
pub(super) struct Q3K;
impl IntBlock for Q3K {
    const BS: usize = 256;
    const TS: usize = 110;
    const G: usize = 256;
    const RESID: bool = false;
    const CHAIN: usize = 8;
    /// The 16 signed scales; d.
    type Head = ([i16; 16], f32);
    #[inline(always)]
    fn head(b: &[u8]) -> Self::Head {
        let sc = &b[96..108];
        let scales = std::array::from_fn(|i| {
            let low = if i < 8 { sc[i] & 15 } else { sc[i - 8] >> 4 };
            let high = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
            i16::from(low | (high << 4)) - 32
        });
        (scales, f16_at(b, 108))
    }
    #[inline(always)]
    fn group(b: &[u8], h: &Self::Head, g: usize) -> Group {
        // Weights 128hh + 32(g % 4) + l: bits 2(g % 4).. of quant byte 32 + 32hh + l, high bit
        // g of byte l; scale 2g + l / 16.
        let (hh, shift) = (g / 4 % 2, 2 * (g % 4) as u32);
        scaled_halves(&h.0, g, |half| {
            let lo = v128_and(
                u8x16_shr(load16(b, 32 + 32 * hh + 16 * half), shift),
                u8x16_splat(3),
            );
            let high = v128_and(u8x16_shr(load16(b, 16 * half), g as u32), u8x16_splat(1));
            i8x16_sub(v128_or(lo, u8x16_shl(high, 2)), i8x16_splat(4))
        })
    }
}

/// Group `g` of a Q4_K / Q5_K super-block (quant bytes from `b[qs..]`) with `hi` (weights
/// 0..16, 16..32: the Q5_K fifth bits as 16, or 0) OR-ed in, times the sub-block scale `sc`.
/// Sub-block 2c: low nibbles of bytes `qs + 32c..`, 2c + 1: their high nibbles.
#[inline(always)]
fn k4_group(b: &[u8], qs: usize, hi: [v128; 2], sc: i16, g: usize) -> Group {
    let at = qs + 32 * (g / 2);
    let (v0, v1) = (load16(b, at), load16(b, at + 16));
    let (q0, q1) = if g.is_multiple_of(2) {
        let m15 = u8x16_splat(15);
        (v128_and(v0, m15), v128_and(v1, m15))
    } else {
        (u8x16_shr(v0, 4), u8x16_shr(v1, 4))
    };
    let (q0, q1) = (v128_or(q0, hi[0]), v128_or(q1, hi[1]));
    let sc = i16x8_splat(sc);
    [
        i16x8_mul(u16x8_extend_low_u8x16(q0), sc),
        i16x8_mul(u16x8_extend_high_u8x16(q0), sc),
        i16x8_mul(u16x8_extend_low_u8x16(q1), sc),
        i16x8_mul(u16x8_extend_high_u8x16(q1), sc),
    ]
}

/// A Q4_K / Q5_K header (d, dmin, 12 bytes of six-bit scales and mins) as the 8 sub-block
/// scales, d and −dmin·m per sub-block (two `f32x4`); the relaxed kernels' too.
#[inline(always)]
pub(super) fn k4_head(b: &[u8]) -> ([u8; 8], f32, [v128; 2]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    // The 8 six-bit scales and mins (as `get_scale_min_k4`, all at once).
    let word = |i: usize| u32::from_le_bytes([b[4 + i], b[5 + i], b[6 + i], b[7 + i]]);
    let (u0, u1, u2) = (word(0), word(4), word(8));
    let (k1, k2, k3) = (0x3f3f_3f3f, 0x0f0f_0f0f, 0x0303_0303);
    let sc = u64::from(u0 & k1) | (u64::from((u2 & k2) | (((u0 >> 6) & k3) << 4)) << 32);
    let m = u32x4(u1 & k1, ((u2 >> 4) & k2) | (((u1 >> 6) & k3) << 4), 0, 0);
    let m16 = u16x8_extend_low_u8x16(m);
    let mv = f32x4_splat(-dmin);
    let m0 = f32x4_mul(f32x4_convert_i32x4(u32x4_extend_low_u16x8(m16)), mv);
    let m1 = f32x4_mul(f32x4_convert_i32x4(u32x4_extend_high_u16x8(m16)), mv);
    (sc.to_le_bytes(), d, [m0, m1])
}

pub(super) struct Q4K;
impl IntBlock for Q4K {
    const BS: usize = 256;
    const TS: usize = 144;
    const G: usize = 256;
    const RESID: bool = false;
    const CHAIN: usize = 8;
    /// The 8 sub-block scales; d; −dmin·m per sub-block (two `f32x4`).
    type Head = ([i16; 8], f32, [v128; 2]);
    #[inline(always)]
    fn head(b: &[u8]) -> Self::Head {
        let (sc, d, m) = k4_head(b);
        (sc.map(i16::from), d, m)
    }
    #[inline(always)]
    fn group(b: &[u8], h: &Self::Head, g: usize) -> Group {
        let z = u8x16_splat(0);
        k4_group(b, 16, [z, z], h.0[g % 8], g)
    }
}

/// Q5_K: Q4_K's header (d, dmin, the 12 bytes of six-bit scales and mins: the same `head`
/// and `finish`), then 32 bytes of fifth bits (bit g of byte l: weight l of group g) and the
/// 128 nibble bytes.
pub(super) struct Q5K;
impl IntBlock for Q5K {
    const BS: usize = 256;
    const TS: usize = 176;
    const G: usize = 256;
    const RESID: bool = false;
    const CHAIN: usize = 4;
    type Head = <Q4K as IntBlock>::Head;
    #[inline(always)]
    fn head(b: &[u8]) -> Self::Head {
        Q4K::head(b)
    }
    #[inline(always)]
    fn group(b: &[u8], h: &Self::Head, g: usize) -> Group {
        // Bit g of each of the 32 bytes, moved to bit 4.
        let fifth = |at: usize| {
            let bit = v128_and(u8x16_shr(load16(b, at), g as u32), u8x16_splat(1));
            u8x16_shl(bit, 4)
        };
        k4_group(b, 48, [fifth(16), fifth(32)], h.0[g % 8], g)
    }
}

/// The 32 weights of the 16 IQ4 nibble bytes `b[at..at + 16]` (low nibbles are weights 0..16,
/// high ones 16..32) as `kvalues_iq4nl` levels (−127..113), looked up with `i8x16_swizzle`.
#[inline(always)]
fn iq4_levels(b: &[u8], at: usize) -> Group {
    nibble_levels(b, at, &KVALUES_IQ4NL)
}

/// The 32 weights of the 16 nibble bytes `b[at..at + 16]` as levels of the 16-entry table `t`.
#[inline(always)]
fn nibble_levels(b: &[u8], at: usize, t: &[i8; 16]) -> Group {
    let levels = table(t);
    let qs = load16(b, at);
    widen_i8(
        i8x16_swizzle(levels, v128_and(qs, u8x16_splat(15))),
        i8x16_swizzle(levels, u8x16_shr(qs, 4)),
    )
}

/// IQ4_XS: d, 16 bits of scale high bits, 4 bytes of scale low nibbles, then 16 nibble bytes
/// per group; the group's scale is `ls − 32` (six bits: −32..31).
pub(super) struct Iq4Xs;
impl IntBlock for Iq4Xs {
    const BS: usize = 256;
    const TS: usize = 136;
    const G: usize = 256;
    const RESID: bool = false;
    const CHAIN: usize = 2;
    /// The 8 signed sub-block scales; d.
    type Head = ([i16; 8], f32);
    #[inline(always)]
    fn head(b: &[u8]) -> Self::Head {
        let high = u16::from_le_bytes([b[2], b[3]]);
        let sc = std::array::from_fn(|g| {
            let low = (b[4 + g / 2] >> (4 * (g % 2))) & 15;
            i16::from(low | ((((high >> (2 * g)) & 3) as u8) << 4)) - 32
        });
        (sc, f16_at(b, 0))
    }
    #[inline(always)]
    fn group(b: &[u8], h: &Self::Head, g: usize) -> Group {
        let sc = i16x8_splat(h.0[g % 8]);
        iq4_levels(b, 8 + 16 * g).map(|w| i16x8_mul(w, sc))
    }
}

pub(super) struct Q6K;
impl IntBlock for Q6K {
    const BS: usize = 256;
    const TS: usize = 210;
    const G: usize = 256;
    const RESID: bool = true;
    const CHAIN: usize = 2;
    /// The 16 scales; d.
    type Head = ([i16; 16], f32);
    #[inline(always)]
    fn head(b: &[u8]) -> Self::Head {
        let mut sc = [0i16; 16];
        for (s, &v) in sc.iter_mut().zip(&b[192..208]) {
            *s = i16::from(v as i8);
        }
        (sc, f16_at(b, 208))
    }
    #[inline(always)]
    fn group(b: &[u8], h: &Self::Head, g: usize) -> Group {
        // Weights 128h + 32s + l (group g = 4h + s): ql byte 64h + 32(s%2) + l, nibble s/2;
        // qh byte 32h + l, bits 2s..2s+2; scale 2g + l/16.
        let (hh, s) = (g / 4 % 2, g % 4);
        scaled_halves(&h.0, g, |half| {
            let ql = load16(b, 64 * hh + 32 * (s % 2) + 16 * half);
            let qh = load16(b, 128 + 32 * hh + 16 * half);
            let nib = if s < 2 {
                v128_and(ql, u8x16_splat(15))
            } else {
                u8x16_shr(ql, 4)
            };
            let hb = u8x16_shl(v128_and(u8x16_shr(qh, 2 * s as u32), u8x16_splat(3)), 4);
            i8x16_sub(v128_or(nib, hb), i8x16_splat(32))
        })
    }
}

/// Q2_K's header: the 16 sub-block scales and mins (4 bits each), d and dmin.
#[derive(Clone, Copy)]
pub(super) struct Q2Head {
    sc: [i16; 16],
    m: [i16; 16],
    d: f32,
    dmin: f32,
}

impl BlockHead for Q2Head {
    #[inline(always)]
    fn d(&self) -> f32 {
        self.d
    }
    /// `acc += −dmin·d_x·Σ m·q_x`: the min term from the quantized activations (QAct's exact
    /// f32 sums are per 32 values, Q2_K's mins per 16), each 16-value half times its min by
    /// `i32x4_dot_i16x8` with the min splatted, in one exact i32 chain per block (64 products
    /// per lane ≤ 15·32767: ≤ 3.2e7). It depends on the token alone, so a batch gives each
    /// token's value bit for bit.
    #[inline(always)]
    fn min(&self, x: TokenActs, bi: usize, acc: &mut Accumulator) {
        let xq = &x.q[256 * bi..256 * (bi + 1)];
        let mut p = i32x4_splat(0);
        for (s, &m) in self.m.iter().enumerate() {
            let m = i16x8_splat(m);
            let a = i32x4_dot_i16x8(load_i16(xq, 16 * s), m);
            p = i32x4_add(
                p,
                i32x4_add(a, i32x4_dot_i16x8(load_i16(xq, 16 * s + 8), m)),
            );
        }
        let k = f32x4_splat(-self.dmin * x.d[bi]);
        acc.v = f32x4_add(acc.v, f32x4_mul(f32x4_convert_i32x4(p), k));
    }
}

/// Q2_K: 16 bytes of scales (low nibble) and mins (high nibble) per 16 weights, 64 bytes of
/// 2-bit quants (Q3_K's planes: weight 128h + 32s + l is bits 2s.. of byte 16 + 32h + l), d,
/// dmin. A weight is `d·sc·q − dmin·m`; the groups carry `sc·q` (≤ 45: a chain of the whole
/// super-block, 64 products per lane ≤ 64·45·32767 ≈ 9.4e7), the min is `Q2Head::min`.
pub(super) struct Q2K;
impl IntBlock for Q2K {
    const BS: usize = 256;
    const TS: usize = 84;
    const G: usize = 256;
    const RESID: bool = false;
    const CHAIN: usize = 8;
    type Head = Q2Head;
    #[inline(always)]
    fn head(b: &[u8]) -> Q2Head {
        Q2Head {
            sc: std::array::from_fn(|i| i16::from(b[i] & 15)),
            m: std::array::from_fn(|i| i16::from(b[i] >> 4)),
            d: f16_at(b, 80),
            dmin: f16_at(b, 82),
        }
    }
    #[inline(always)]
    fn group(b: &[u8], h: &Q2Head, g: usize) -> Group {
        let (hh, shift) = (g / 4 % 2, 2 * (g % 4) as u32);
        scaled_halves(&h.sc, g, |half| {
            v128_and(
                u8x16_shr(load16(b, 16 + 32 * hh + 16 * half), shift),
                u8x16_splat(3),
            )
        })
    }
}

/// Two 8-weight grid rows `r0`, `r1` (bytes of either sign, |·| < 128) as one `i8x16`, lane `j`
/// of row `r` negated where bit `j` of its sign byte `s[r]` is set: `(v ^ m) − m` with `m` all
/// ones in those lanes.
#[inline(always)]
fn signed_rows(r0: u64, r1: u64, s0: u8, s1: u8) -> v128 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let bits = u64x2_splat(0x8040_2010_0804_0201);
    let s = u64x2(u64::from(s0) * ONES, u64::from(s1) * ONES);
    let neg = i8x16_eq(v128_and(s, bits), bits);
    i8x16_sub(v128_xor(u64x2(r0, r1), neg), neg)
}

/// A group of 4 grid rows with their sign bytes as i16 lanes.
#[inline(always)]
fn grid_group(r: [u64; 4], s: [u8; 4]) -> Group {
    widen_i8(
        signed_rows(r[0], r[1], s[0], s[1]),
        signed_rows(r[2], r[3], s[2], s[3]),
    )
}

/// A group of 4 IQ1 grid rows (bytes −1, 0, 1) as `8·row + delta` (delta ±1 per row: the
/// format's ±0.125 times 8), i16 lanes in −9..9.
#[inline(always)]
fn iq1_group(r: [u64; 4], delta: [i8; 4]) -> Group {
    let rows = |a: usize| {
        let d = u64x2(
            u64::from(delta[a] as u8) * 0x0101_0101_0101_0101,
            u64::from(delta[a + 1] as u8) * 0x0101_0101_0101_0101,
        );
        i8x16_add(i8x16_shl(u64x2(r[a], r[a + 1]), 3), d)
    };
    widen_i8(rows(0), rows(2))
}

/// `acc +` group `w` · `x[at..at + 32]` with the lane sums of weights 0..16 times `s0` and of
/// 16..32 times `s1` (i32, exact within the chain bounds).
#[inline(always)]
fn dot_halves(acc: v128, w: &Group, x: &[i16], at: usize, s0: i16, s1: i16) -> v128 {
    let a = i32x4_add(
        i32x4_dot_i16x8(w[0], load_i16(x, at)),
        i32x4_dot_i16x8(w[1], load_i16(x, at + 8)),
    );
    let b = i32x4_add(
        i32x4_dot_i16x8(w[2], load_i16(x, at + 16)),
        i32x4_dot_i16x8(w[3], load_i16(x, at + 24)),
    );
    let a = i32x4_mul(a, i32x4_splat(i32::from(s0)));
    i32x4_add(acc, i32x4_add(a, i32x4_mul(b, i32x4_splat(i32::from(s1)))))
}

/// `acc +` group `w` · `x[at..at + 32]` times the group's scale `s`.
#[inline(always)]
fn dot_scaled(acc: v128, w: &Group, x: &[i16], at: usize, s: i16) -> v128 {
    let p = dot_group(i32x4_splat(0), w, x, at);
    i32x4_add(acc, i32x4_mul(p, i32x4_splat(i32::from(s))))
}

/// The IQ grid formats (256-weight super-blocks): the header is the integer sub-block scales
/// (`$per16`: one per 16 weights, else one per 32 group in `[..8]`) and the f32 factor `d·k`
/// that makes them the reference's (`k` a power of two: exact); the groups are the unscaled
/// signed grid values (IQ1: ×8), scaled on their i32 sums (`group_dot`).
macro_rules! iq_block {
    ($name:ident, $ts:literal, $chain:literal, $per16:literal,
     |$b:ident| $head:expr, |$b2:ident, $g:ident| $group:expr) => {
        pub(super) struct $name;
        impl IntBlock for $name {
            const BS: usize = 256;
            const TS: usize = $ts;
            const G: usize = 256;
            const RESID: bool = false;
            const CHAIN: usize = $chain;
            type Head = ([i16; 16], f32);
            #[inline(always)]
            fn head($b: &[u8]) -> Self::Head {
                $head
            }
            #[inline(always)]
            fn group($b2: &[u8], _: &Self::Head, $g: usize) -> Group {
                $group
            }
            #[inline(always)]
            fn group_dot(
                h: &Self::Head,
                g: usize,
                acc: v128,
                w: &Group,
                x: &[i16],
                at: usize,
            ) -> v128 {
                if $per16 {
                    dot_halves(acc, w, x, at, h.0[2 * g % 16], h.0[(2 * g + 1) % 16])
                } else {
                    dot_scaled(acc, w, x, at, h.0[g % 16])
                }
            }
        }
    };
}

// IQ2_XXS: d, then per group 4 grid indices and a word of 4 × 7 sign bits and a 4-bit scale
// `ls`: weights `d·(2ls + 1)/8 · ±grid`. Bound: grid ≤ 43, scale ≤ 31: 1333; chains of 4
// groups, 32 products per lane ≤ 32·1333·32767 ≈ 1.4e9 (8 groups would be ≈ 2.8e9).
iq_block!(
    Iq2Xxs,
    66,
    4,
    false,
    |b| (
        std::array::from_fn(|g| 2 * (u32_at(b, 6 + 8 * (g % 8)) >> 28) as i16 + 1),
        f16_at(b, 0) * 0.125
    ),
    |b, g| {
        let aux = u32_at(b, 6 + 8 * g);
        grid_group(
            std::array::from_fn(|l| IQ2XXS_GRID[b[2 + 8 * g + l] as usize]),
            std::array::from_fn(|l| KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize]),
        )
    }
);

/// IQ2_XS / IQ2_S's scale of 16-weight sub-block `s`: `2ls + 1` from the nibbles at `b[at..]`.
#[inline(always)]
fn iq2_scale(b: &[u8], at: usize, s: usize) -> i16 {
    2 * i16::from((b[at + s / 2] >> (4 * (s % 2))) & 15) + 1
}

// IQ2_XS: d, 32 words of a 9-bit grid index and a 7-bit sign index, 8 bytes of 4-bit scales
// (one per 16 weights): `d·(2ls + 1)/8 · ±grid`. Bound as IQ2_XXS: chains of 4.
iq_block!(
    Iq2Xs,
    74,
    4,
    true,
    |b| (
        std::array::from_fn(|s| iq2_scale(b, 66, s)),
        f16_at(b, 0) * 0.125
    ),
    |b, g| {
        let q = |l: usize| u16_at(b, 2 + 2 * (4 * g + l));
        grid_group(
            std::array::from_fn(|l| IQ2XS_GRID[(q(l) & 511) as usize]),
            std::array::from_fn(|l| KSIGNS_IQ2XS[(q(l) >> 9) as usize]),
        )
    }
);

// IQ2_S: d, 32 grid index bytes, 32 sign bytes, 8 bytes of index high bits (2 per row), 8 of
// 4-bit scales: as IQ2_XS.
iq_block!(
    Iq2S,
    82,
    4,
    true,
    |b| (
        std::array::from_fn(|s| iq2_scale(b, 74, s)),
        f16_at(b, 0) * 0.125
    ),
    |b, g| {
        let row = |l: usize| {
            let hi = ((b[66 + g] >> (2 * l)) & 3) as usize;
            IQ2S_GRID[b[2 + 4 * g + l] as usize | (hi << 8)]
        };
        grid_group(
            std::array::from_fn(row),
            std::array::from_fn(|l| b[34 + 4 * g + l]),
        )
    }
);

// IQ3_XXS: d, 64 grid index bytes (rows of two 4-weight grid entries), per group a word of
// 4 × 7 sign bits and a 4-bit scale: `d·(2ls + 1)/4 · ±grid`. Bound: grid ≤ 62, scale ≤ 31:
// 1922; chains of 4, 32 products per lane ≤ 32·1922·32767 ≈ 2.02e9 (< 2^31 − 1).
iq_block!(
    Iq3Xxs,
    98,
    4,
    false,
    |b| (
        std::array::from_fn(|g| 2 * (u32_at(b, 66 + 4 * (g % 8)) >> 28) as i16 + 1),
        f16_at(b, 0) * 0.25
    ),
    |b, g| {
        let aux = u32_at(b, 66 + 4 * g);
        let at = |l: usize, k: usize| u64::from(IQ3XXS_GRID[b[2 + 8 * g + 2 * l + k] as usize]);
        grid_group(
            std::array::from_fn(|l| at(l, 0) | at(l, 1) << 32),
            std::array::from_fn(|l| KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize]),
        )
    }
);

// IQ3_S: d, 64 grid index bytes, 8 bytes of index ninth bits, 32 sign bytes, 4 bytes of 4-bit
// scales: `d·(2ls + 1) · ±grid`. Bound: grid ≤ 15, scale ≤ 31: 465; the whole super-block in
// one chain, 64 products per lane ≤ 64·465·32767 ≈ 9.8e8.
iq_block!(
    Iq3S,
    110,
    8,
    false,
    |b| (
        std::array::from_fn(|g| 2 * i16::from((b[106 + g % 8 / 2] >> (4 * (g % 2))) & 15) + 1),
        f16_at(b, 0)
    ),
    |b, g| {
        let qh = b[66 + g] as usize;
        let at = |l: usize, k: usize| {
            let i = b[2 + 8 * g + 2 * l + k] as usize | (((qh >> (2 * l + k)) & 1) << 8);
            u64::from(IQ3S_GRID[i])
        };
        grid_group(
            std::array::from_fn(|l| at(l, 0) | at(l, 1) << 32),
            std::array::from_fn(|l| b[74 + 4 * g + l]),
        )
    }
);

// IQ1_S: d, 32 grid index bytes, per group a word of 4 × 3 index high bits, a 3-bit scale and
// the delta's sign: `d·(2ls + 1)·(row ± 1/8)` = `d/8·(2ls + 1)·(8·row ± 1)`. Bound: |8·row ± 1|
// ≤ 9, scale ≤ 15: 135; one chain, 64 products per lane ≤ 64·135·32767 ≈ 2.8e8.
iq_block!(
    Iq1S,
    50,
    8,
    false,
    |b| (
        std::array::from_fn(|g| 2 * ((u16_at(b, 34 + 2 * (g % 8)) >> 12) & 7) as i16 + 1),
        f16_at(b, 0) * 0.125
    ),
    |b, g| {
        let qh = u16_at(b, 34 + 2 * g);
        let delta = if qh & 0x8000 != 0 { -1 } else { 1 };
        iq1_group(
            std::array::from_fn(|l| {
                IQ1S_GRID[b[2 + 4 * g + l] as usize | ((((qh >> (3 * l)) & 7) as usize) << 8)]
            }),
            [delta; 4],
        )
    }
);

// IQ1_M: 32 grid index bytes, 16 bytes of index high bits and delta signs (a nibble per row),
// 8 bytes of 3-bit scales (one per 16 weights) with the f16 d spread over their top nibbles:
// as IQ1_S with a delta per row and a scale per 16 weights.
iq_block!(
    Iq1M,
    56,
    8,
    true,
    |b| {
        let word = |k: usize| u16_at(b, 48 + 2 * k);
        let dbits = (word(0) >> 12)
            | ((word(1) >> 8) & 0x00f0)
            | ((word(2) >> 4) & 0x0f00)
            | (word(3) & 0xf000);
        (
            std::array::from_fn(|s| 2 * ((word(s / 4) >> (3 * (s % 4))) & 7) as i16 + 1),
            crate::quant::f16_to_f32(dbits) * 0.125,
        )
    },
    |b, g| {
        let nib = |l: usize| (b[32 + 2 * g + l / 2] >> (4 * (l % 2))) & 15;
        iq1_group(
            std::array::from_fn(|l| {
                IQ1S_GRID[b[4 * g + l] as usize | (((nib(l) & 7) as usize) << 8)]
            }),
            std::array::from_fn(|l| if nib(l) & 8 != 0 { -1 } else { 1 }),
        )
    }
);

/// `acc + w · x[at..at + 32]` in i32 lanes (exact within the chain bounds).
#[inline(always)]
fn dot_group(acc: v128, w: &Group, x: &[i16], at: usize) -> v128 {
    let a = i32x4_add(
        i32x4_dot_i16x8(w[0], load_i16(x, at)),
        i32x4_dot_i16x8(w[1], load_i16(x, at + 8)),
    );
    let b = i32x4_add(
        i32x4_dot_i16x8(w[2], load_i16(x, at + 16)),
        i32x4_dot_i16x8(w[3], load_i16(x, at + 24)),
    );
    i32x4_add(acc, i32x4_add(a, b))
}

/// The f32 lanes of a block's weights (group `g` from `group(g)`) · `xq` (block `bi`): exact
/// i32 chains of `CHAIN` groups, each converted to f32 and added.
#[inline(always)]
fn block_dot<B: IntBlock>(
    h: &B::Head,
    group: impl Fn(usize) -> Group,
    xq: &[i16],
    bi: usize,
) -> v128 {
    let n = B::BS / 32;
    let xq = &xq[B::BS * bi..B::BS * (bi + 1)];
    let mut sum = f32x4_splat(0.0);
    let mut c = 0;
    while c < n {
        let mut p = i32x4_splat(0);
        for g in c..c + B::CHAIN {
            p = B::group_dot(h, g, p, &group(g), xq, 32 * g);
        }
        let f = f32x4_convert_i32x4(p);
        sum = if c == 0 { f } else { f32x4_add(sum, f) };
        c += B::CHAIN;
    }
    sum
}

/// As `block_dot` for the `q` plane and (where `x`'s group `bi` has one) the residual plane
/// at once, each group decoded once for both: decode's path, straight from the block bytes.
#[inline(always)]
fn block_dot2<B: IntBlock>(b: &[u8], h: &B::Head, x: TokenActs, bi: usize) -> (v128, Option<v128>) {
    if !residual::<B>(x, bi) {
        return (block_dot::<B>(h, |g| B::group(b, h, g), x.q, bi), None);
    }
    let n = B::BS / 32;
    let xq = &x.q[B::BS * bi..B::BS * (bi + 1)];
    let xq2 = &x.q2[B::BS * bi..B::BS * (bi + 1)];
    let (mut sum, mut sum2) = (f32x4_splat(0.0), f32x4_splat(0.0));
    let mut c = 0;
    while c < n {
        let (mut p, mut p2) = (i32x4_splat(0), i32x4_splat(0));
        for g in c..c + B::CHAIN {
            let w = B::group(b, h, g);
            p = B::group_dot(h, g, p, &w, xq, 32 * g);
            p2 = B::group_dot(h, g, p2, &w, xq2, 32 * g);
        }
        let (f, f2) = (f32x4_convert_i32x4(p), f32x4_convert_i32x4(p2));
        (sum, sum2) = if c == 0 {
            (f, f2)
        } else {
            (f32x4_add(sum, f), f32x4_add(sum2, f2))
        };
        c += B::CHAIN;
    }
    (sum, Some(sum2))
}

/// Whether token `x`'s activation group `bi` has a residual plane.
#[inline(always)]
fn residual<B: IntBlock>(x: TokenActs, bi: usize) -> bool {
    B::RESID && x.flagged.get(bi) == Some(&true) && x.q2.len() >= B::BS * (bi + 1)
}

/// The integer kernel of `B` for `rows`.
struct Kernel<B>(PhantomData<B>);

impl<B: IntBlock> IntKernel for Kernel<B> {
    const BS: usize = B::BS;
    const TS: usize = B::TS;
    // Row pairs for the 32-blocks; a K-quant block of one row is already 32 vectors.
    const PAIRS: bool = B::BS == 32;
    type Tok<'a> = TokenActs<'a>;
    type Head = B::Head;
    type Weights = [Group; 8];

    #[inline(always)]
    fn tok(x: &QAct, cols: usize, t: usize) -> TokenActs<'_> {
        let (ng, ns) = (cols / x.g, cols / 32);
        TokenActs {
            q: &x.q[t * cols..(t + 1) * cols],
            q2: x.q2.get(t * cols..(t + 1) * cols).unwrap_or_default(),
            flagged: x.r.get(t * ng..(t + 1) * ng).unwrap_or_default(),
            d: &x.d[t * ng..(t + 1) * ng],
            s: &x.s[t * ns..(t + 1) * ns],
        }
    }

    #[inline(always)]
    fn blank() -> [Group; 8] {
        [[i16x8_splat(0); 4]; 8]
    }

    #[inline(always)]
    fn head(b: &[u8]) -> B::Head {
        B::head(b)
    }

    /// The `BS / 32` groups.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // a constant bound: fully unrolled
    fn weights(b: &[u8], h: &B::Head, w: &mut [Group; 8]) {
        for g in 0..B::BS / 32 {
            w[g] = B::group(b, h, g);
        }
    }

    #[inline(always)]
    fn dot(h: &B::Head, w: &[Group; 8], x: TokenActs, bi: usize, acc: &mut Accumulator) {
        let p = block_dot::<B>(h, |g| w[g % 8], x.q, bi);
        let p2 = if residual::<B>(x, bi) {
            Some(block_dot::<B>(h, |g| w[g % 8], x.q2, bi))
        } else {
            None
        };
        B::finish(h, p, p2, x, bi, acc);
    }

    /// Each group decoded and multiplied at once.
    #[inline(always)]
    fn dot_bytes(b: &[u8], x: TokenActs, bi: usize, acc: &mut Accumulator) {
        let h = B::head(b);
        let (p, p2) = block_dot2::<B>(b, &h, x, bi);
        B::finish(&h, p, p2, x, bi, acc);
    }
}

/// The integer kernel for `ty`, with its activation group size and whether it wants the
/// residual plane.
pub(in super::super) fn select(ty: GgmlType) -> Option<(IntRowsFn, usize, bool)> {
    macro_rules! pick {
        ($b:ty) => {
            (int_rows::<Kernel<$b>> as IntRowsFn, <$b>::G, <$b>::RESID)
        };
    }
    use GgmlType as G;
    Some(match ty {
        G::Q4_0 => pick!(Q4_0),
        G::Q4_1 => pick!(Q4_1),
        G::Q5_0 => pick!(Q5_0),
        G::Q5_1 => pick!(Q5_1),
        G::Q8_0 => pick!(Q8_0),
        G::Q3_K => pick!(Q3K),
        G::Q4_K => pick!(Q4K),
        G::Q5_K => pick!(Q5K),
        G::Q6_K => pick!(Q6K),
        G::IQ4_NL => pick!(Iq4Nl),
        G::IQ4_XS => pick!(Iq4Xs),
        G::Q2_K => pick!(Q2K),
        G::IQ2_XXS => pick!(Iq2Xxs),
        G::IQ2_XS => pick!(Iq2Xs),
        G::IQ2_S => pick!(Iq2S),
        G::IQ3_XXS => pick!(Iq3Xxs),
        G::IQ3_S => pick!(Iq3S),
        G::IQ1_S => pick!(Iq1S),
        G::IQ1_M => pick!(Iq1M),
        G::MXFP4 => pick!(Mxfp4),
        _ => return None,
    })
}
