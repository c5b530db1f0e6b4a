//! x86_64 AVX-512 BW (+ VNNI) integer kernels: quantized weights × i16 activations.
//!
//! Each matmul call first quantizes every token's activations once (`super::QAct`): per group
//! of `G` values (32 for the 32-weight formats, 256 for the K-quants) one f32 scale
//! `d = max|x| / 32767` and i16 values `q = round(x / d)`, plus the exact f32 sum of every 32
//! values for the formats with a min term. The error of that step is at most `d / 2` per
//! value, ~1.5e-5 of the group's largest magnitude (llama.cpp's 8-bit activations: 4e-3).
//!
//! A weight block is then widened to 32-lane i16 vectors holding its integer quants (for the
//! K-quants already multiplied by their integer sub-block scales, so a whole 256-weight
//! super-block accumulates in one set of i32 lanes), and multiplied with the activations by
//! `vpdpwssd` (VNNI) or `vpmaddwd` + `vpaddd` (BW) into i32 lanes, which are exact. Per block
//! (32 or 256 weights) the i32 lanes are converted to f32 once and FMA'd with the broadcast
//! product of the weight and activation scales into an f32 vector accumulator; each output
//! is reduced horizontally once. Min terms (`Q4_1`, `Q5_1`, `Q4_K`) use the exact activation
//! sums.
//!
//! Overflow: every i32 lane sum is bounded below 2^31 − 1 (|q_x| ≤ 32767):
//! - Q4_0 / Q5_0 / Q4_1 / Q5_1 / Q8_0 (one 32-block per conversion): a lane adds 2 products of
//!   |w| ≤ 128 (Q8_0: −128..127; Q5: −16..31; Q4: −8..15): ≤ 2·128·32767 ≈ 8.4e6;
//! - Q4_K: `q·sc` with q ≤ 15, sc ≤ 63 is ≤ 945; a lane adds 16 products per super-block:
//!   ≤ 16·945·32767 ≈ 4.95e8;
//! - Q6_K: `(q − 32)·sc` with q − 32 ∈ −32..31, sc ∈ −128..127 is in −4064..4096; a lane adds
//!   16 products: ≤ 16·4096·32767 = 2 147 352 576 < 2 147 483 647 (the bound is tight, which
//!   is why the quantizer caps |q_x| at 32767, never 32768).
//!
//! K-quants: activation outliers make a per-256 scale coarse for the other values of the
//! group, so groups where some 32 values are under 1/16 of the group's largest also carry a
//! residual plane `q2` (`x ≈ (q + q2/65534)·d`, see `x86::RESIDUAL_BELOW`), dotted with the
//! same decoded weights by a second `dp` chain. Logits NMSE vs the exact reference: ~1e-7
//! with it, ~2e-6 without.
//!
//! Tiles (measured on Zen 4, 1 thread, CPU time of `chord bench`): decode runs one row at a
//! time (2 or 4 rows per tile spilled the K-quants' decoded blocks and measured slower for
//! every format); prefill runs 2 rows × 8 tokens (better than 1 row, or 4 tokens), each row's
//! block decoded once for the tile. Each output accumulates its blocks in the same order
//! whatever the tile, so batched prefill and token-by-token decode give the same values.
//!
//! Measured against the f32 kernels of `x86` (decode tok/s / prefill tok/s, CPU time):
//! SmolLM2 (Q5_0/Q8_0) 77 / 193–210 vs 57 / 195; pad768 (Q4_K/Q6_K) 69 / 162 vs 57 / 169.
//! i16 prefill gains little on Zen 4: it executes each 512-bit op as two 256-bit halves, so
//! a `vpdpwssd` over 32 weights is only half the cost of the f32 tile's 4 FMAs per token, and
//! the per-block conversion, the scale products and the residual plane eat that margin. The
//! same kernels still serve prefill, so that prefill and decode compute the same values.

use super::x86::Avx512;
use super::QAct;
use crate::model::QMatrix;
use std::arch::x86_64::{__m512, __m512i};

/// One token's quantized activations: `q` (cols), `d` (one per `G`), `s` (one per 32).
#[derive(Clone, Copy)]
pub(super) struct XTok<'a> {
    q: &'a [i16],
    /// Residual plane and its flags (K-quants only).
    q2: &'a [i16],
    r: &'a [bool],
    d: &'a [f32],
    s: &'a [f32],
}

/// Bytes `b[at..at + N]` as an array (the checks fold away at constant offsets in a block).
#[inline(always)]
fn arr<const N: usize>(b: &[u8], at: usize) -> &[u8; N] {
    b[at..at + N].try_into().unwrap_or(&[0; N])
}

/// Values `x[at..at + 32]` as an array.
#[inline(always)]
fn x32(x: &[i16], at: usize) -> &[i16; 32] {
    x[at..at + 32].try_into().unwrap_or(&[0; 32])
}

/// One output's running sum: f32 lanes, and a scalar for the per-block min terms.
#[derive(Clone, Copy)]
pub(super) struct Acc {
    v: __m512,
    s: f32,
}

/// A block format as integer quants for the i16 kernels.
pub(super) trait IBlk {
    /// Weights per block.
    const BS: usize;
    /// Bytes per block.
    const TS: usize;
    /// Activation values per scale.
    const G: usize;
    /// One block of one row, decoded.
    type W: Copy;
    fn decode<const V: bool>(a: Avx512<V>, b: &[u8]) -> Self::W;
    /// `acc += block · activations` for block `bi` of a row and token `x`.
    fn dot<const V: bool>(a: Avx512<V>, w: &Self::W, x: XTok, bi: usize, acc: &mut Acc);
}

/// Per-lane right shifts that put the low nibbles of 16 bytes in lanes 0..16 and the high
/// nibbles in lanes 16..32 of `u8x16x2`.
#[inline(always)]
fn nibbles<const V: bool>(a: Avx512<V>, b: &[u8; 16]) -> __m512i {
    a.and(a.srl_hi_half4(a.u8x16x2(b)), a.splat16(15))
}

/// 32-weight block with one scale: `acc += d_w·d_x · Σ w·q_x`.
#[inline(always)]
fn dot32<const V: bool>(a: Avx512<V>, w: __m512i, d: f32, x: XTok, bi: usize, acc: &mut Acc) {
    let p = a.madd(w, a.load16(x32(x.q, 32 * bi)));
    acc.v = a.fmadd(a.cvt(p), a.splat(d * x.d[bi]), acc.v);
}

pub(super) struct Q4_0;
impl IBlk for Q4_0 {
    const BS: usize = 32;
    const TS: usize = 18;
    const G: usize = 32;
    type W = (__m512i, f32);
    #[inline(always)]
    fn decode<const V: bool>(a: Avx512<V>, b: &[u8]) -> Self::W {
        let q = a.sub16(nibbles(a, arr(b, 2)), a.splat16(8));
        (q, a.f16(b, 0))
    }
    #[inline(always)]
    fn dot<const V: bool>(a: Avx512<V>, w: &Self::W, x: XTok, bi: usize, acc: &mut Acc) {
        dot32(a, w.0, w.1, x, bi, acc)
    }
}

pub(super) struct Q4_1;
impl IBlk for Q4_1 {
    const BS: usize = 32;
    const TS: usize = 20;
    const G: usize = 32;
    type W = (__m512i, f32, f32);
    #[inline(always)]
    fn decode<const V: bool>(a: Avx512<V>, b: &[u8]) -> Self::W {
        (nibbles(a, arr(b, 4)), a.f16(b, 0), a.f16(b, 2))
    }
    #[inline(always)]
    fn dot<const V: bool>(a: Avx512<V>, w: &Self::W, x: XTok, bi: usize, acc: &mut Acc) {
        dot32(a, w.0, w.1, x, bi, acc);
        acc.s += w.2 * x.s[bi];
    }
}

pub(super) struct Q5_0;
impl IBlk for Q5_0 {
    const BS: usize = 32;
    const TS: usize = 22;
    const G: usize = 32;
    type W = (__m512i, f32);
    #[inline(always)]
    fn decode<const V: bool>(a: Avx512<V>, b: &[u8]) -> Self::W {
        // Bit j of qh is the fifth bit of weight j: q − 16 is the nibble minus 16 where the
        // bit is clear.
        let qh = u32::from_le_bytes(*arr(b, 2));
        let q = a.mask_sub16(!qh, nibbles(a, arr(b, 6)), a.splat16(16));
        (q, a.f16(b, 0))
    }
    #[inline(always)]
    fn dot<const V: bool>(a: Avx512<V>, w: &Self::W, x: XTok, bi: usize, acc: &mut Acc) {
        dot32(a, w.0, w.1, x, bi, acc)
    }
}

pub(super) struct Q5_1;
impl IBlk for Q5_1 {
    const BS: usize = 32;
    const TS: usize = 24;
    const G: usize = 32;
    type W = (__m512i, f32, f32);
    #[inline(always)]
    fn decode<const V: bool>(a: Avx512<V>, b: &[u8]) -> Self::W {
        let qh = u32::from_le_bytes(*arr(b, 4));
        let q = a.mask_add16(qh, nibbles(a, arr(b, 8)), a.splat16(16));
        (q, a.f16(b, 0), a.f16(b, 2))
    }
    #[inline(always)]
    fn dot<const V: bool>(a: Avx512<V>, w: &Self::W, x: XTok, bi: usize, acc: &mut Acc) {
        dot32(a, w.0, w.1, x, bi, acc);
        acc.s += w.2 * x.s[bi];
    }
}

pub(super) struct Q8_0;
impl IBlk for Q8_0 {
    const BS: usize = 32;
    const TS: usize = 34;
    const G: usize = 32;
    type W = (__m512i, f32);
    #[inline(always)]
    fn decode<const V: bool>(a: Avx512<V>, b: &[u8]) -> Self::W {
        (a.i8x32(arr(b, 2)), a.f16(b, 0))
    }
    #[inline(always)]
    fn dot<const V: bool>(a: Avx512<V>, w: &Self::W, x: XTok, bi: usize, acc: &mut Acc) {
        dot32(a, w.0, w.1, x, bi, acc)
    }
}

/// A super-block's 8 groups of 32 (already scaled) i16 weights against the token's 256
/// activations: two chains of `dp` into i32 lanes, then one conversion and FMA.
#[inline(always)]
fn dot256<const V: bool>(a: Avx512<V>, w: &[__m512i; 8], xq: &[i16], bi: usize) -> __m512 {
    let xq = &xq[256 * bi..256 * bi + 256];
    let mut i0 = a.madd(w[0], a.load16(x32(xq, 0)));
    let mut i1 = a.madd(w[1], a.load16(x32(xq, 32)));
    for g in 1..4 {
        i0 = a.dp(i0, w[2 * g], a.load16(x32(xq, 64 * g)));
        i1 = a.dp(i1, w[2 * g + 1], a.load16(x32(xq, 64 * g + 32)));
    }
    a.cvt(a.add32(i0, i1))
}

pub(super) struct Q4K;
impl IBlk for Q4K {
    const BS: usize = 256;
    const TS: usize = 144;
    const G: usize = 256;
    /// Sub-block quants times their 6-bit scales; d; −dmin·m per sub-block (lanes 0..8).
    type W = ([__m512i; 8], f32, __m512);
    #[inline(always)]
    fn decode<const V: bool>(a: Avx512<V>, b: &[u8]) -> Self::W {
        let b: &[u8; 144] = arr(b, 0);
        let (d, dmin) = (a.f16(b, 0), a.f16(b, 2));
        // The 8 six-bit scales and mins (as `get_scale_min_k4`, all at once): bytes 0..8 of
        // `u` are the scales and bytes 8..16 the mins.
        let word = |i: usize| u32::from_le_bytes(*arr(b, 4 + i));
        let (u0, u1, u2) = (word(0), word(4), word(8));
        let (k1, k2, k3) = (0x3f3f_3f3f, 0x0f0f_0f0f, 0x0303_0303);
        let sc = u64::from(u0 & k1) | (u64::from((u2 & k2) | (((u0 >> 6) & k3) << 4)) << 32);
        let m = u64::from(u1 & k1) | (u64::from(((u2 >> 4) & k2) | (((u1 >> 6) & k3) << 4)) << 32);
        let scb = sc.to_le_bytes();
        let mv = a.mul(a.u8x8_f32z(&m.to_le_bytes()), a.splat(-dmin));
        let m15 = a.splat16(15);
        let mut w = [m15; 8];
        for c in 0..4 {
            // Sub-blocks 2c (low nibbles of bytes 32c..32c+32) and 2c+1 (high nibbles).
            let v = a.u8x32(arr(b, 16 + 32 * c));
            w[2 * c] = a.mullo16(a.and(v, m15), a.splat16(i16::from(scb[2 * c])));
            w[2 * c + 1] = a.mullo16(a.srli16::<4>(v), a.splat16(i16::from(scb[2 * c + 1])));
        }
        (w, d, mv)
    }
    #[inline(always)]
    fn dot<const V: bool>(a: Avx512<V>, w: &Self::W, x: XTok, bi: usize, acc: &mut Acc) {
        let p = dot256(a, &w.0, x.q, bi);
        acc.v = a.fmadd(p, a.splat(w.1 * x.d[bi]), acc.v);
        if x.r[bi] {
            let p = dot256(a, &w.0, x.q2, bi);
            acc.v = a.fmadd(p, a.splat(w.1 * x.d[bi] * (1.0 / 65534.0)), acc.v);
        }
        let s: &[f32; 8] = x.s[8 * bi..8 * bi + 8].try_into().unwrap_or(&[0.0; 8]);
        acc.v = a.fmadd(w.2, a.f32x8z(s), acc.v);
    }
}

/// `vpermw` indices: for group `g`, lanes 0..16 take scale `2g` and lanes 16..32 scale `2g+1`.
#[repr(align(64))]
struct ScaleIdx([[i16; 32]; 8]);
static Q6_IDX: ScaleIdx = ScaleIdx({
    let mut t = [[0i16; 32]; 8];
    let mut g = 0;
    while g < 8 {
        let mut l = 0;
        while l < 32 {
            t[g][l] = (2 * g + l / 16) as i16;
            l += 1;
        }
        g += 1;
    }
    t
});

pub(super) struct Q6K;
impl IBlk for Q6K {
    const BS: usize = 256;
    const TS: usize = 210;
    const G: usize = 256;
    /// `(q − 32)·sc` per group of 32; d.
    type W = ([__m512i; 8], f32);
    #[inline(always)]
    fn decode<const V: bool>(a: Avx512<V>, b: &[u8]) -> Self::W {
        let b: &[u8; 210] = arr(b, 0);
        let d = a.f16(b, 208);
        let sc = a.i8x16(arr(b, 192));
        let (m15, m48, o32) = (a.splat16(15), a.splat16(48), a.splat16(32));
        let mut w = [m15; 8];
        for h in 0..2 {
            // Weights 128h + 32s + l: ql byte 64h + 32(s%2) + l, nibble s/2; qh byte
            // 32h + l, bits 2s..2s+2.
            let qa = a.u8x32(arr(b, 64 * h));
            let qb = a.u8x32(arr(b, 64 * h + 32));
            let qh = a.u8x32(arr(b, 128 + 32 * h));
            for s in 0..4 {
                let ql = match s {
                    0 => a.and(qa, m15),
                    1 => a.and(qb, m15),
                    2 => a.srli16::<4>(qa),
                    _ => a.srli16::<4>(qb),
                };
                let hb = match s {
                    0 => a.slli16::<4>(qh),
                    1 => a.slli16::<2>(qh),
                    2 => qh,
                    _ => a.srli16::<2>(qh),
                };
                let q = a.sub16(a.or(ql, a.and(hb, m48)), o32);
                let g = 4 * h + s;
                w[g] = a.mullo16(q, a.perm16(a.load16(&Q6_IDX.0[g]), sc));
            }
        }
        (w, d)
    }
    #[inline(always)]
    fn dot<const V: bool>(a: Avx512<V>, w: &Self::W, x: XTok, bi: usize, acc: &mut Acc) {
        let p = dot256(a, &w.0, x.q, bi);
        acc.v = a.fmadd(p, a.splat(w.1 * x.d[bi]), acc.v);
        if x.r[bi] {
            let p = dot256(a, &w.0, x.q2, bi);
            acc.v = a.fmadd(p, a.splat(w.1 * x.d[bi] * (1.0 / 65534.0)), acc.v);
        }
    }
}

/// `R` rows × `T` tokens: each row's block is decoded once for the tile's tokens.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // index loops over constant bounds: fully unrolled
fn tile<B: IBlk, const V: bool, const R: usize, const T: usize>(
    a: Avx512<V>,
    rows: [&[u8]; R],
    xs: [XTok; T],
) -> [[f32; T]; R] {
    let z = Acc {
        v: a.zero(),
        s: 0.0,
    };
    let mut acc = [[z; T]; R];
    let nb = rows[0].len() / B::TS;
    for bi in 0..nb {
        // (A loop, not `array::from_fn`: its closure would not inherit the target features,
        // and the intrinsics in it would become calls.)
        let blk = |r: usize| &rows[r][bi * B::TS..(bi + 1) * B::TS];
        let mut w = [B::decode(a, blk(0)); R];
        for r in 1..R {
            w[r] = B::decode(a, blk(r));
        }
        for t in 0..T {
            for r in 0..R {
                B::dot(a, &w[r], xs[t], bi, &mut acc[r][t]);
            }
        }
    }
    let mut out = [[0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            out[r][t] = a.hsum(acc[r][t].v) + acc[r][t].s;
        }
    }
    out
}

/// Rows `r0..` of `W·xᵀ` into `out` (row, token).
#[inline(always)]
pub(super) fn rows<B: IBlk, const V: bool>(
    a: Avx512<V>,
    w: &QMatrix,
    x: &QAct,
    n_tok: usize,
    r0: usize,
    out: &mut [f32],
) {
    let cols = w.cols;
    let nb = cols / B::BS;
    let n_rows = out.len() / n_tok;
    let row = |ri: usize| &w.row(r0 + ri)[..nb * B::TS];
    let (ng, ns) = (cols / x.g, cols / 32);
    let (q2, r) = if x.g > 32 {
        (&x.q2[..], &x.r[..])
    } else {
        (&[][..], &[][..])
    };
    let tok = |t: usize| XTok {
        q: &x.q[t * cols..(t + 1) * cols],
        q2: q2.get(t * cols..(t + 1) * cols).unwrap_or_default(),
        r: r.get(t * ng..(t + 1) * ng).unwrap_or_default(),
        d: &x.d[t * ng..(t + 1) * ng],
        s: &x.s[t * ns..(t + 1) * ns],
    };
    macro_rules! run {
        ($r:literal, $t:literal, $ri:expr, $t0:expr) => {{
            let v = tile::<B, V, $r, $t>(
                a,
                std::array::from_fn(|i| row($ri + i)),
                std::array::from_fn(|i| tok($t0 + i)),
            );
            for (i, v) in v.iter().enumerate() {
                let o = ($ri + i) * n_tok + $t0;
                out[o..o + $t].copy_from_slice(v);
            }
        }};
    }
    let mut t0 = 0;
    while t0 < n_tok {
        let tt = match n_tok - t0 {
            8.. => 8,
            4..=7 => 4,
            2..=3 => 2,
            _ => 1,
        };
        let mut ri = 0;
        if tt == 1 {
            while ri < n_rows {
                run!(1, 1, ri, t0);
                ri += 1;
            }
        } else {
            while ri + 2 <= n_rows {
                match tt {
                    8 => run!(2, 8, ri, t0),
                    4 => run!(2, 4, ri, t0),
                    _ => run!(2, 2, ri, t0),
                }
                ri += 2;
            }
            if ri < n_rows {
                match tt {
                    8 => run!(1, 8, ri, t0),
                    4 => run!(1, 4, ri, t0),
                    _ => run!(1, 2, ri, t0),
                }
            }
        }
        t0 += tt;
    }
}
