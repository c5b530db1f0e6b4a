//! wasm32 relaxed-SIMD integer kernels (built with `-C target-feature=+simd128,+relaxed-simd`;
//! `limit_isa` level 3 and above): unsigned weight quants × two planes of i8 activations with
//! `i32x4_relaxed_dot_i8x16_i7x16_add` (16 multiply-adds per instruction).
//!
//! The relaxed dot is deterministic (the same on every CPU) only where its second operand's
//! lanes are 0..127, and its intermediate pair sums must fit in i16 (some CPUs saturate them).
//! So the weights go there as their raw unsigned quants (Q4: 0..15, Q5: 0..31, Q6_K: 0..63)
//! and the format's offset (Q4_0: 8, Q5_0: 16, Q6_K: 32) is taken off afterwards with the
//! exact integer sums of the activations; the activations (`|q| ≤ 127`) go first. A pair sum is
//! then at most 2·127·63 = 16 002 (Q6_K), well inside i16. Q8_0's weights are signed 8-bit,
//! which the i7 operand cannot hold: it stays on the i16 kernels (`wasm_i16`).
//!
//! Activations (`quantize`, once per matmul): per group of `G` values (32, or 256 for the
//! K-quants) `d = max|x| / 127`, `q = round(x / d)` and a residual plane
//! `q2 = round((x / d − q)·254)` (both in −127..127), so `x ≈ (q + q2/254)·d`, off by at most
//! `d / 508 = max|x| / 64 516` per value: 1.016× the i16 kernels' `max|x| / 65 534` (one i8
//! plane alone would be 258× coarser, llama.cpp's 8-bit error). Per 16 values the integer sums
//! of `q` and `q2` (|Σ| ≤ 2032, i16), for the offsets; per 32 values the exact f32 sum `s`,
//! for the min terms (`QAct::quantize`'s halving-tree order).
//!
//! Per block and plane, the i32 lanes hold `Σ sc_k·(Σ_{16k} w·q − off·Σ_{16k} q)` (K-quants:
//! times the integer sub-block scales, `i32x4_mul`), exact: a lane adds ≤ 4 products of
//! ≤ 127·63 per 16 weights, times |sc| ≤ 128, over 16 chunks: ≤ 6.6e7 (Q4_K: ≤ 7.7e6). Then
//! `acc += d_w·d_x·(P + P2/254)` in f32 (`f32x4_relaxed_madd`: fused or not, one rounding
//! more or less), and the min terms as in `wasm_i16`. The error bound per output is thus
//! `Σ|w|·max|x|/64 516` over the groups (plus f32 rounding, ~1e-7 of Σ|w·x|); `tests/
//! wasm_kernels.rs` checks it.
//!
//! Speed (Chromium 156, headless, an Intel Xeon with AVX-VNNI, where V8 lowers the relaxed dot
//! to one `vpdpbusd`; one 256 × 2048-class matrix, best of 5, GB/s of weights, relaxed against
//! `wasm_i16`): one token, Q4_K 5.9–6.6 against 3.7–4.3 and Q6_K 4.3–4.6 against 3.0–3.1;
//! 64 tokens, Q4_K 6.9 against 8.2, Q6_K 9.2 against 8.9; Q5_0 2.7 against 3.2 (one token).
//! So which kernel runs is chosen per format and shape by a timing on the user's CPU
//! (`relaxed_is_faster` in `kernels`). What made the K-quants fast:
//! - the sub-block scales multiply pairs of 16-value dot products narrowed to i16
//!   (`scaled_pair`: one `i32x4_dot_i16x8`), not each product's i32 lanes (`i32x4_mul`, two
//!   µops and 10 cycles of latency on x86);
//! - Q6_K's bit fields come out with i16 shifts by one amount whatever the chunk: a `match` on
//!   the chunk's shift, in a loop LLVM left rolled, became a shift by a vector of amounts,
//!   which wasm lacks, so eight extract / shift / replace triples per chunk (Q6_K 2.5 → 4.5
//!   GB/s).
//!
//! Without VNNI (an earlier Zen 4 machine) V8 lowers the relaxed dot to `pmaddubsw` +
//! `pmaddwd` + add, and the two planes double that: there the i16 kernels won everywhere
//! (SmolLM2-135M Q4_K_M prefill / decode 59.1 / 25.9 tok/s against 78.7 / 31.2).

use super::super::{IntRowsFn, QAct};
use super::int::k4_head;
use super::rows::{rows, Accumulator, IntKernel};
use super::{f16_at, high_bits, load16, load_i16, load_i8, loadf};
use crate::quant::GgmlType;
use core::arch::wasm32::*;
use std::marker::PhantomData;

/// One token's activations for these kernels.
#[derive(Clone, Copy)]
struct TokenActs<'a> {
    /// `round(x / d)` and the residual plane (cols each).
    q: &'a [i8],
    q2: &'a [i8],
    /// Per 16 values: `Σ q`, `Σ q2`.
    sum: &'a [i16],
    sum2: &'a [i16],
    /// One per `G`.
    d: &'a [f32],
    /// One per 32.
    s: &'a [f32],
}

/// Quantize `n_tok` rows of `cols` activations into `qa`'s i8 planes (see the module doc):
/// per `g` values `d` (in `qa.d`), per 16 the plane sums, per 32 the f32 sums `qa.s`.
pub(in super::super) fn quantize(qa: &mut QAct, x: &[f32], n_tok: usize, cols: usize, g: usize) {
    // The f32 sums and the buffers' shapes as the i16 quantizer's (its i16 planes unused).
    qa.reset(n_tok, cols, g, false);
    fn zero<T: Copy + Default>(v: &mut Vec<T>, n: usize) {
        v.clear();
        v.resize(n, T::default());
    }
    zero(&mut qa.q8, 2 * n_tok * cols);
    zero(&mut qa.sum16, 2 * n_tok * (cols / 16));
    let ng = cols / g;
    let (q8, q8r) = qa.q8.split_at_mut(n_tok * cols);
    let (sum, sum2) = qa.sum16.split_at_mut(n_tok * (cols / 16));
    for (t, xt) in x.chunks_exact(cols).enumerate().take(n_tok) {
        for (c, sc) in xt.chunks_exact(32).zip(qa.s[t * (cols / 32)..].iter_mut()) {
            *sc = super::super::halving_sum32(c);
        }
        for (gi, xg) in xt.chunks_exact(g).enumerate() {
            let amax = xg.iter().fold(0f32, |m, v| m.max(v.abs()));
            qa.d[t * ng + gi] = amax / 127.0;
            let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            let at = t * cols + gi * g;
            for (j, &xv) in xg.iter().enumerate() {
                let v = xv * inv;
                let r = v.round_ties_even();
                // |v| ≤ 127 (a few ulps over at most, still rounding to 127), |v − r| ≤ 1/2.
                q8[at + j] = r.clamp(-127.0, 127.0) as i8;
                q8r[at + j] = ((v - r) * 254.0).round_ties_even().clamp(-127.0, 127.0) as i8;
            }
        }
        let (q, q2) = (
            &q8[t * cols..(t + 1) * cols],
            &q8r[t * cols..(t + 1) * cols],
        );
        let ns = cols / 16;
        for (k, (a, b)) in q.chunks_exact(16).zip(q2.chunks_exact(16)).enumerate() {
            sum[t * ns + k] = a.iter().map(|&v| i16::from(v)).sum();
            sum2[t * ns + k] = b.iter().map(|&v| i16::from(v)).sum();
        }
    }
}

/// A block format as unsigned quants for the relaxed dot.
trait RelaxedBlock {
    /// Weights per block.
    const BS: usize;
    /// Bytes per block.
    const TS: usize;
    /// Activation values per scale.
    const G: usize;
    /// A block's scales, as `chunk`, `plane` and `finish` need them.
    type Head: Copy;
    fn head(b: &[u8]) -> Self::Head;
    /// Weights `16k..16k + 16` of the block as unsigned quants (0..63), one per byte lane.
    fn chunk(b: &[u8], h: &Self::Head, k: usize) -> v128;
    /// The block's exact i32 lanes for both activation planes (`x`: the block's values of
    /// each, `sums`: their 16-value sums) from its chunks (`w(k)`, each called once).
    fn planes(
        h: &Self::Head,
        w: impl Fn(usize) -> v128,
        x: [&[i8]; 2],
        sums: [&[i16]; 2],
    ) -> [v128; 2];
    /// `acc += block · activations` from `p` (the `q` plane) and `p2` (the residual plane),
    /// converted to f32.
    fn finish(h: &Self::Head, p: v128, p2: v128, x: TokenActs, bi: usize, acc: &mut Accumulator);
}

/// `c + x[16k..16k + 16] · w` in i32 lanes (4 products per lane).
#[inline(always)]
fn dot16(c: v128, w: v128, x: &[i8], k: usize) -> v128 {
    i32x4_relaxed_dot_i8x16_i7x16_add(load_i8(x, 16 * k), w, c)
}

/// The 32-weight formats: the header is `(d, m, fifth bits)`, `OFF` the quants' offset;
/// `finish` adds `d·d_x·(p + p2/254)` and, with a min, `m·s_x`.
macro_rules! block32 {
    ($name:ident, $ts:literal, $off:literal, $min:literal, |$b:ident| $head:expr,
     |$b2:ident, $h:ident, $k:ident| $q:block) => {
        pub(super) struct $name;
        impl RelaxedBlock for $name {
            const BS: usize = 32;
            const TS: usize = $ts;
            const G: usize = 32;
            type Head = (f32, f32, u32);
            #[inline(always)]
            fn head($b: &[u8]) -> Self::Head {
                $head
            }
            #[inline(always)]
            fn chunk($b2: &[u8], $h: &Self::Head, $k: usize) -> v128 $q
            #[inline(always)]
            fn planes(
                _: &Self::Head,
                w: impl Fn(usize) -> v128,
                x: [&[i8]; 2],
                sums: [&[i16]; 2],
            ) -> [v128; 2] {
                let (w0, w1) = (w(0), w(1));
                let mut p = [i32x4_splat(0); 2];
                for i in 0..2 {
                    p[i] = dot16(dot16(p[i], w0, x[i], 0), w1, x[i], 1);
                    if $off != 0 {
                        let off = $off * (i32::from(sums[i][0]) + i32::from(sums[i][1]));
                        p[i] = i32x4_sub(p[i], i32x4(off, 0, 0, 0));
                    }
                }
                p
            }
            #[inline(always)]
            fn finish(
                h: &Self::Head,
                p: v128,
                p2: v128,
                x: TokenActs,
                bi: usize,
                acc: &mut Accumulator,
            ) {
                finish_planes(h.0 * x.d[bi], p, p2, acc);
                if $min {
                    acc.s += h.1 * x.s[bi];
                }
            }
        }
    };
}

/// `acc += d·(p + p2/254)` from the two planes' i32 lanes. Each plane's lanes are added in
/// integers first (into lane 0): the 32-block formats take their offset off in lane 0 only, so
/// the lanes may hold large values that cancel; converting them one by one would round before
/// the cancellation (an error relative to Σ|q·w| rather than the result). The total of a
/// block's four lanes stays below 2^31 (the bounds in the module doc, times 4).
#[inline(always)]
fn finish_planes(d: f32, p: v128, p2: v128, acc: &mut Accumulator) {
    let v = f32x4_relaxed_madd(f32x4_convert_i32x4(lane_total(p)), f32x4_splat(d), acc.v);
    acc.v = f32x4_relaxed_madd(
        f32x4_convert_i32x4(lane_total(p2)),
        f32x4_splat(d * (1.0 / 254.0)),
        v,
    );
}

/// The i32 total of `p`'s four lanes in lane 0, zeros in the others.
#[inline(always)]
fn lane_total(p: v128) -> v128 {
    let s = i32x4_add(p, i32x4_shuffle::<2, 3, 0, 1>(p, p));
    let s = i32x4_add(s, i32x4_shuffle::<1, 0, 3, 2>(s, s));
    v128_and(s, i32x4(-1, 0, 0, 0))
}

/// Low (`k` even) or high nibbles of the 16 bytes `qs`, with `hi` OR-ed in: one i16 shift by
/// `4·(k % 2)` and a mask, branch-free where a loop over `k` stays rolled.
#[inline(always)]
fn nibble(qs: v128, k: usize, hi: v128) -> v128 {
    let n = v128_and(u16x8_shr(qs, 4 * (k % 2) as u32), u8x16_splat(15));
    v128_or(n, hi)
}

block32!(
    Q4_0,
    18,
    8,
    false,
    |b| (f16_at(b, 0), 0.0, 0),
    |b, _h, k| { nibble(load16(b, 2), k, u8x16_splat(0)) }
);
block32!(
    Q4_1,
    20,
    0,
    true,
    |b| (f16_at(b, 0), f16_at(b, 2), 0),
    |b, _h, k| { nibble(load16(b, 4), k, u8x16_splat(0)) }
);
block32!(
    Q5_0,
    22,
    16,
    false,
    |b| (
        f16_at(b, 0),
        0.0,
        u32::from_le_bytes([b[2], b[3], b[4], b[5]])
    ),
    |b, h, k| { nibble(load16(b, 6), k, high_bits((h.2 >> (16 * (k % 2))) & 0xffff)) }
);
block32!(
    Q5_1,
    24,
    0,
    true,
    |b| (
        f16_at(b, 0),
        f16_at(b, 2),
        u32::from_le_bytes([b[4], b[5], b[6], b[7]])
    ),
    |b, h, k| { nibble(load16(b, 8), k, high_bits((h.2 >> (16 * (k % 2))) & 0xffff)) }
);

/// `acc + Σ sc·p` for two chunks' i32 lanes `pa`, `pb` that fit in i16 (each lane a sum of at
/// most 8 products `|q| ≤ 127` × `w ≤ 63` with no accumulator: |·| ≤ 32 004 for 4 products of
/// Q6_K, 15 240 for 8 of Q4_K), narrowed into one `i16x8` (exact) and multiplied with their
/// scales `sc` (`(sa ×4, sb ×4)`) by `i32x4_dot_i16x8`: one instruction for what two
/// `i32x4_mul`s and adds did. Lane j then holds a pair of `pa`'s (j < 2) or `pb`'s (j ≥ 2)
/// lanes times its scale; the block's lane total, all `finish_planes` reads, is the same
/// exact integer.
#[inline(always)]
fn scaled_pair(acc: v128, pa: v128, pb: v128, sc: v128) -> v128 {
    i32x4_add(acc, i32x4_dot_i16x8(i16x8_narrow_i32x4(pa, pb), sc))
}

/// The pair vectors of 8 i16 scales `v`: `(v[2m] ×4, v[2m + 1] ×4)` for m = 0..4.
#[inline(always)]
fn scale_pairs(v: v128) -> [v128; 4] {
    [
        i16x8_shuffle::<0, 0, 0, 0, 1, 1, 1, 1>(v, v),
        i16x8_shuffle::<2, 2, 2, 2, 3, 3, 3, 3>(v, v),
        i16x8_shuffle::<4, 4, 4, 4, 5, 5, 5, 5>(v, v),
        i16x8_shuffle::<6, 6, 6, 6, 7, 7, 7, 7>(v, v),
    ]
}

pub(super) struct Q4K;
impl RelaxedBlock for Q4K {
    const BS: usize = 256;
    const TS: usize = 144;
    const G: usize = 256;
    /// The 8 sub-block scales as `scale_pairs`; d; −dmin·m per sub-block (two `f32x4`).
    type Head = ([v128; 4], f32, [v128; 2]);
    #[inline(always)]
    fn head(b: &[u8]) -> Self::Head {
        let (sc, d, m) = k4_head(b);
        let v = u16x8_extend_low_u8x16(u64x2_splat(u64::from_le_bytes(sc)));
        (scale_pairs(v), d, m)
    }
    #[inline(always)]
    fn chunk(b: &[u8], _: &Self::Head, k: usize) -> v128 {
        // Chunk k: half k % 2 of sub-block g = k / 2, the low nibbles of bytes
        // 16 + 32(g / 2).. for even g, the high ones for odd g.
        let g = k / 2;
        let v = load16(b, 16 + 32 * (g / 2) + 16 * (k % 2));
        nibble(v, g, u8x16_splat(0))
    }
    #[inline(always)]
    fn planes(
        h: &Self::Head,
        w: impl Fn(usize) -> v128,
        x: [&[i8]; 2],
        _: [&[i16]; 2],
    ) -> [v128; 2] {
        let mut p = [i32x4_splat(0); 2];
        // Sub-blocks 2m and 2m + 1 (one 32-byte run of nibbles) share a `scaled_pair`.
        for m in 0..4 {
            let mut s = [[i32x4_splat(0); 2]; 2];
            for (half, s) in s.iter_mut().enumerate() {
                let g = 2 * m + half;
                let (w0, w1) = (w(2 * g), w(2 * g + 1));
                for i in 0..2 {
                    s[i] = dot16(dot16(i32x4_splat(0), w0, x[i], 2 * g), w1, x[i], 2 * g + 1);
                }
            }
            for i in 0..2 {
                p[i] = scaled_pair(p[i], s[0][i], s[1][i], h.0[m]);
            }
        }
        p
    }
    #[inline(always)]
    fn finish(h: &Self::Head, p: v128, p2: v128, x: TokenActs, bi: usize, acc: &mut Accumulator) {
        finish_planes(h.1 * x.d[bi], p, p2, acc);
        acc.v = f32x4_relaxed_madd(h.2[0], loadf(x.s, 8 * bi), acc.v);
        acc.v = f32x4_relaxed_madd(h.2[1], loadf(x.s, 8 * bi + 4), acc.v);
    }
}

pub(super) struct Q6K;
impl RelaxedBlock for Q6K {
    const BS: usize = 256;
    const TS: usize = 210;
    const G: usize = 256;
    /// The 16 scales as `scale_pairs` (8); the same times −32 as two `i16x8` (the offset's
    /// weights); d.
    type Head = ([v128; 8], [v128; 2], f32);
    #[inline(always)]
    fn head(b: &[u8]) -> Self::Head {
        let raw = load16(b, 192);
        let sc = [i16x8_extend_low_i8x16(raw), i16x8_extend_high_i8x16(raw)];
        let [a, b2, c, d] = scale_pairs(sc[0]);
        let [e, f, g, h] = scale_pairs(sc[1]);
        let m32 = i16x8_splat(-32);
        let off = [i16x8_mul(sc[0], m32), i16x8_mul(sc[1], m32)];
        ([a, b2, c, d, e, f, g, h], off, f16_at(b, 208))
    }
    #[inline(always)]
    fn chunk(b: &[u8], _: &Self::Head, k: usize) -> v128 {
        // Weights 128h + 32s + l (sub-block 16k = 128h + 32s + 16j): ql byte
        // 64h + 32(s%2) + l, nibble s/2; qh byte 32h + l, bits 2s..2s+2. The shifts are i16
        // ones by one amount whatever `s` (where LLVM leaves this loop rolled, a `match` on
        // `s` became a shift by a vector of amounts, which wasm lacks: eight scalar shifts);
        // the bits they carry across bytes land outside the masks.
        let (hh, s, j) = (k / 8 % 2, k / 2 % 4, k % 2);
        let ql = load16(b, 64 * hh + 32 * (s % 2) + 16 * j);
        let qh = load16(b, 128 + 32 * hh + 16 * j);
        let nib = v128_and(u16x8_shr(ql, 4 * (s / 2) as u32), u8x16_splat(15));
        let hb = v128_and(u16x8_shr(qh, 2 * s as u32), u8x16_splat(3));
        v128_or(nib, u16x8_shl(hb, 4))
    }
    #[inline(always)]
    fn planes(
        h: &Self::Head,
        w: impl Fn(usize) -> v128,
        x: [&[i8]; 2],
        sums: [&[i16]; 2],
    ) -> [v128; 2] {
        let mut p = [i32x4_splat(0); 2];
        // Chunks 2m and 2m + 1 (scales 2m, 2m + 1) share a `scaled_pair`.
        for m in 0..8 {
            let (wa, wb) = (w(2 * m), w(2 * m + 1));
            for i in 0..2 {
                let pa = dot16(i32x4_splat(0), wa, x[i], 2 * m);
                let pb = dot16(i32x4_splat(0), wb, x[i], 2 * m + 1);
                p[i] = scaled_pair(p[i], pa, pb, h.0[m]);
            }
        }
        // − 32·Σ_k sc_k·Σ_{16k} q: |32·sc| ≤ 4096 and |Σ| ≤ 2032 in i16 lanes, exact in i32.
        for i in 0..2 {
            let off = i32x4_add(
                i32x4_dot_i16x8(h.1[0], load_i16(sums[i], 0)),
                i32x4_dot_i16x8(h.1[1], load_i16(sums[i], 8)),
            );
            p[i] = i32x4_add(p[i], off);
        }
        p
    }
    #[inline(always)]
    fn finish(h: &Self::Head, p: v128, p2: v128, x: TokenActs, bi: usize, acc: &mut Accumulator) {
        finish_planes(h.2 * x.d[bi], p, p2, acc)
    }
}

/// `acc += block · activations` for block `bi` (chunks `w(k)`) and token `x`.
#[inline(always)]
fn dot<B: RelaxedBlock>(
    h: &B::Head,
    w: impl Fn(usize) -> v128,
    x: TokenActs,
    bi: usize,
    acc: &mut Accumulator,
) {
    let (xs, ss) = (
        B::BS * bi..B::BS * (bi + 1),
        B::BS / 16 * bi..B::BS / 16 * (bi + 1),
    );
    let [p, p2] = B::planes(
        h,
        w,
        [&x.q[xs.clone()], &x.q2[xs]],
        [&x.sum[ss.clone()], &x.sum2[ss]],
    );
    B::finish(h, p, p2, x, bi, acc);
}

/// The relaxed-SIMD kernel of `B` for `rows`.
struct Kernel<B>(PhantomData<B>);

impl<B: RelaxedBlock> IntKernel for Kernel<B> {
    const BS: usize = B::BS;
    const TS: usize = B::TS;
    const PAIRS: bool = true;
    type Tok<'a> = TokenActs<'a>;
    type Head = B::Head;
    type Weights = [v128; 16];

    #[inline(always)]
    fn tok(x: &QAct, cols: usize, t: usize) -> TokenActs<'_> {
        let (ng, ns, n16) = (cols / x.g, cols / 32, cols / 16);
        let (q, q2) = x.q8.split_at(x.n_tok * cols);
        let (sum, sum2) = x.sum16.split_at(x.n_tok * n16);
        TokenActs {
            q: &q[t * cols..(t + 1) * cols],
            q2: &q2[t * cols..(t + 1) * cols],
            sum: &sum[t * n16..(t + 1) * n16],
            sum2: &sum2[t * n16..(t + 1) * n16],
            d: &x.d[t * ng..(t + 1) * ng],
            s: &x.s[t * ns..(t + 1) * ns],
        }
    }

    #[inline(always)]
    fn blank() -> [v128; 16] {
        [u8x16_splat(0); 16]
    }

    #[inline(always)]
    fn head(b: &[u8]) -> B::Head {
        B::head(b)
    }

    /// The `BS / 16` chunks.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // a constant bound: fully unrolled
    fn weights(b: &[u8], h: &B::Head, w: &mut [v128; 16]) {
        for k in 0..B::BS / 16 {
            w[k] = B::chunk(b, h, k);
        }
    }

    #[inline(always)]
    fn dot(h: &B::Head, w: &[v128; 16], x: TokenActs, bi: usize, acc: &mut Accumulator) {
        dot::<B>(h, |k| w[k % 16], x, bi, acc);
    }

    /// Each chunk decoded and multiplied at once.
    #[inline(always)]
    fn dot_bytes(b: &[u8], x: TokenActs, bi: usize, acc: &mut Accumulator) {
        let h = B::head(b);
        dot::<B>(&h, |k| B::chunk(b, &h, k), x, bi, acc);
    }
}

/// The relaxed-SIMD kernel for `ty` and its activation group size (Q8_0 and the formats
/// without one: `None`).
pub(in super::super) fn select(ty: GgmlType) -> Option<(IntRowsFn, usize)> {
    macro_rules! pick {
        ($b:ty) => {
            (rows::<Kernel<$b>> as IntRowsFn, <$b>::G)
        };
    }
    use GgmlType as G;
    Some(match ty {
        G::Q4_0 => pick!(Q4_0),
        G::Q4_1 => pick!(Q4_1),
        G::Q5_0 => pick!(Q5_0),
        G::Q5_1 => pick!(Q5_1),
        G::Q4_K => pick!(Q4K),
        G::Q6_K => pick!(Q6K),
        _ => return None,
    })
}
