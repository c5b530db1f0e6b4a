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
//! `vpdpwssds` (VNNI) or `vpmaddwd` + `vpaddd` (BW) into i32 lanes, which are exact. Per block
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
//! group. For Q6_K (the output head, whose error reaches the logits directly) groups where
//! some 32 values are under 1/16 of the group's largest also carry a residual plane `q2`
//! (`x ≈ (q + q2/65534)·d`, see `QAct::RESIDUAL_BELOW`), dotted with the same decoded weights
//! by a second `dp` chain. Q4_K goes without (`IntBlock::RESID`): with it everywhere, logits NMSE
//! vs the exact reference was 5e-8–4e-7 and pad768 decode/prefill cost 8% / 20% more CPU
//! time; without it for Q4_K, 6e-8–2.2e-6 (llama.cpp: 1e-3 and more).
//!
//! A block is a header (scales, decoded once per row) and groups of 32 weights, decoded in
//! pairs that share their loads (`IntBlock::pair`). Tiles (Zen 4, 1 thread, CPU time of
//! `chord bench`):
//! - decode (`tile1`): `DEC_ROWS` rows side by side (K-quants 2, the 32-blocks 4), each
//!   group decoded and multiplied at once, so the rows' independent chains overlap; plus a
//!   software prefetch of the tile 2 ahead (without it the interleaved rows defeat the
//!   hardware prefetcher: 4 rows ran 40% slower than 1);
//! - prefill of the K-quants off the totals path below (`tile`): 2 rows × 8 tokens, each
//!   row's block decoded once for the tile (better than 1 row × 8 or 16 tokens, or 2 × 4),
//!   on the tile's activations interleaved by block (`PackedActs`: Q6_K 1.13–1.21× of
//!   slices per token);
//! - prefill and batched decode of the 32-weight formats (`tile_packed`): 3 rows × 8 tokens
//!   (5 × 4, 8 × 2) on the tile's activations interleaved by block (`PackedActs`, one pointer
//!   for all its tokens), each row's scale kept in a vector (Zen 5, 1 thread: 8 tokens Q5_0
//!   1.45×, Q8_0 1.35× of `tile`'s 2 × 8 on slices per token; 2 × 8 packed was 1.3× / 1.15×,
//!   4 × 8 no better than 3 × 8; 4 and 2 tokens 1.3–1.8×).
//!
//! Both produce the same exact i32 sums and take the same f32 steps per output in the same
//! block order, so batched prefill and token-by-token decode give the same values.
//!
//! The totals path (`IntBlock::TOTALS`: Q4_K, rows of at most 64 blocks) replaces both tiles
//! for the formats whose whole super-block accumulates in one set of i32 lanes: `tile_totals`
//! (prefill, 2 rows × 8 tokens) keeps one i32 chain per output over the block, decoding each
//! group pair of each row just in time, and at the block's end sums the 16 outputs' lanes
//! together in one transposing tree (`Avx512::quarter_sums`: each 128-bit quarter's 4 lanes
//! exactly in i32, at most 4·4.95e8 ≈ 1.98e9 < 2^31 for Q4_K; then the quarters in f32,
//! `Avx512::fold_quarters`), scaling all 16 by one vector of `d_row·d_x`: one f32
//! accumulator for the tile. The per-output vector accumulators of `tile` did not fit the
//! 32 registers beside 16 decoded weight vectors and spilled on every block (pad768 prefill,
//! 1 thread: +13%). The min terms are kept per row (`RowMins`) and added once at the end.
//! `tile1_totals` (decode) takes the same f32 steps per output, so the two still agree bit
//! for bit (tests/cpu_kernels.rs checks it for every format with i16 kernels).

use super::x86::Avx512;
use super::QAct;
use crate::model::QMatrix;
use std::arch::x86_64::{__m512, __m512i};

/// One token's quantized activations: `q` (cols), `d` (one per `G`), `s` (one per 32).
#[derive(Clone, Copy)]
pub(super) struct TokenActs<'a> {
    q: &'a [i16],
    /// Residual plane and its flags (K-quants only).
    q2: &'a [i16],
    r: &'a [bool],
    d: &'a [f32],
    s: &'a [f32],
}

/// Bytes `b[at..at + N]` as an array (the checks fold away at constant offsets in a block).
#[inline(always)]
pub(super) fn arr<const N: usize>(b: &[u8], at: usize) -> &[u8; N] {
    b[at..at + N].try_into().unwrap_or(&[0; N])
}

/// Values `x[at..at + 32]` as an array.
#[inline(always)]
pub(super) fn x32(x: &[i16], at: usize) -> &[i16; 32] {
    x[at..at + 32].try_into().unwrap_or(&[0; 32])
}

/// One output's running sum: f32 lanes, and a scalar for the per-block min terms.
#[derive(Clone, Copy)]
pub(super) struct Acc {
    v: __m512,
    s: f32,
}

/// A block format as integer quants for the i16 kernels: a block is a header (its scales,
/// decoded once per row and block) and `BS / 32` groups of 32 i16 weights.
pub(super) trait IntBlock {
    /// Weights per block.
    const BS: usize;
    /// Bytes per block.
    const TS: usize;
    /// Activation values per scale.
    const G: usize;
    /// Rows per decode (one token) tile.
    const DEC_ROWS: usize;
    /// Whether the activations carry the residual plane for groups with outliers (`G = 256`).
    const RESID: bool;
    /// The groups `pair(k)` returns, for `k < BS / 64` (32-blocks: `pair(0)`, first only).
    const PG: [[usize; 2]; 4];
    /// A block's scales, as `pair` and `finish` need them.
    type H: Copy;
    fn head<const V: bool>(a: Avx512<V>, b: &[u8]) -> Self::H;
    /// Groups `PG[k]` (weights `32g..32g + 32`) of the block as i16 lanes (K-quants: times
    /// their sub-block scales); in pairs that share their loads.
    fn pair<const V: bool>(a: Avx512<V>, b: &[u8], h: &Self::H, k: usize) -> [__m512i; 2];
    /// Whether an output takes one exact i32 total per block, scaled once (`tile_totals`):
    /// K-quants without the residual plane.
    const TOTALS: bool = false;
    /// Whether the format has a min term (with `TOTALS`: `mins`; 32-weight formats: `dm`).
    const MIN: bool = false;
    /// 32-weight formats: the block's scale `d` and min `m` (`acc += m·s_x` with `MIN`).
    fn dm(_h: &Self::H) -> [f32; 2] {
        [0.0; 2]
    }
    /// With `TOTALS`: the block's scale `d`.
    fn scale(_h: &Self::H) -> f32 {
        0.0
    }
    /// With `MIN`: `−dmin·m` per 32-weight sub-block (lanes 0..8).
    fn mins<const V: bool>(a: Avx512<V>, _h: &Self::H) -> __m512 {
        a.zero()
    }
    /// `acc += block · activations` from the exact i32 lane sums `p` (weights × `x.q`) and, for
    /// groups with a residual plane, `p2` (weights × `x.q2`).
    fn finish<const V: bool>(
        a: Avx512<V>,
        h: &Self::H,
        p: __m512i,
        p2: Option<__m512i>,
        x: TokenActs,
        bi: usize,
        acc: &mut Acc,
    );
}

/// Per-lane right shifts that put the low nibbles of 16 bytes in lanes 0..16 and the high
/// nibbles in lanes 16..32 of `u8x16x2`.
#[inline(always)]
fn nibbles<const V: bool>(a: Avx512<V>, b: &[u8; 16]) -> __m512i {
    a.and(a.srl_hi_half4(a.u8x16x2(b)), a.splat16(15))
}

/// The 32-weight formats: `$h` (header from the block bytes `b`) is `(d, m, qh)`, `$q` the
/// group's i16 quants from `b` and the header; with `$min`, `acc.s += m·s_x` per block.
macro_rules! blk32 {
    ($name:ident, $ts:literal, $min:literal, |$a:ident, $b:ident| $h:expr, |$h2:ident| $q:expr) => {
        pub(super) struct $name;
        impl IntBlock for $name {
            const BS: usize = 32;
            const TS: usize = $ts;
            const G: usize = 32;
            const DEC_ROWS: usize = 4;
            const RESID: bool = false;
            const PG: [[usize; 2]; 4] = [[0; 2]; 4];
            const MIN: bool = $min;
            type H = (f32, f32, u32);
            #[inline(always)]
            fn dm(h: &Self::H) -> [f32; 2] {
                [h.0, h.1]
            }
            #[inline(always)]
            fn head<const V: bool>($a: Avx512<V>, $b: &[u8]) -> Self::H {
                $h
            }
            #[inline(always)]
            fn pair<const V: bool>(
                $a: Avx512<V>,
                $b: &[u8],
                $h2: &Self::H,
                _: usize,
            ) -> [__m512i; 2] {
                let q = $q;
                [q, q]
            }
            #[inline(always)]
            fn finish<const V: bool>(
                a: Avx512<V>,
                h: &Self::H,
                p: __m512i,
                _: Option<__m512i>,
                x: TokenActs,
                bi: usize,
                acc: &mut Acc,
            ) {
                acc.v = a.fmadd(a.cvt(p), a.splat(h.0 * x.d[bi]), acc.v);
                if $min {
                    acc.s += h.1 * x.s[bi];
                }
            }
        }
    };
}

blk32!(Q4_0, 18, false, |a, b| (a.f16(b, 0), 0.0, 0), |_h| a
    .sub16(nibbles(a, arr(b, 2)), a.splat16(8)));
blk32!(Q4_1, 20, true, |a, b| (a.f16(b, 0), a.f16(b, 2), 0), |_h| {
    nibbles(a, arr(b, 4))
});
// Bit j of qh is the fifth bit of weight j: q − 16 is the nibble minus 16 where it is clear.
blk32!(
    Q5_0,
    22,
    false,
    |a, b| (a.f16(b, 0), 0.0, u32::from_le_bytes(*arr(b, 2))),
    |h| a.mask_sub16(!h.2, nibbles(a, arr(b, 6)), a.splat16(16))
);
blk32!(
    Q5_1,
    24,
    true,
    |a, b| (a.f16(b, 0), a.f16(b, 2), u32::from_le_bytes(*arr(b, 4))),
    |h| a.mask_add16(h.2, nibbles(a, arr(b, 8)), a.splat16(16))
);
blk32!(Q8_0, 34, false, |a, b| (a.f16(b, 0), 0.0, 0), |_h| a
    .i8x32(arr(b, 2)));

/// K-quant `finish`: `acc += d·d_x·(p + p2/65534)` as two FMAs.
#[inline(always)]
fn finish256<const V: bool>(
    a: Avx512<V>,
    d: f32,
    p: __m512i,
    p2: Option<__m512i>,
    xd: f32,
    acc: &mut Acc,
) {
    acc.v = a.fmadd(a.cvt(p), a.splat(d * xd), acc.v);
    if let Some(p2) = p2 {
        acc.v = a.fmadd(a.cvt(p2), a.splat(d * xd * (1.0 / 65534.0)), acc.v);
    }
}

/// Q4_K and Q5_K (`$ts` bytes a block): Q4_K's header (`k4_head`) and min terms; `$pair` gives
/// group pair `k`'s i16 quants times their sub-block scales (`sc0`, `sc1`) from the block `b`.
macro_rules! k4_block {
    ($name:ident, $ts:literal, |$a:ident, $b:ident, $k:ident, $sc0:ident, $sc1:ident| $pair:expr) => {
        pub(super) struct $name;
        impl IntBlock for $name {
            const BS: usize = 256;
            const TS: usize = $ts;
            const G: usize = 256;
            const DEC_ROWS: usize = 2;
            const RESID: bool = false;
            const PG: [[usize; 2]; 4] = [[0, 1], [2, 3], [4, 5], [6, 7]];
            const TOTALS: bool = true;
            const MIN: bool = true;
            /// The 8 sub-block scales (i16 lanes 0..8); d; −dmin·m per sub-block (lanes 0..8).
            type H = (__m512i, f32, __m512);
            #[inline(always)]
            fn scale(h: &Self::H) -> f32 {
                h.1
            }
            #[inline(always)]
            fn mins<const V: bool>(_: Avx512<V>, h: &Self::H) -> __m512 {
                h.2
            }
            #[inline(always)]
            fn head<const V: bool>(a: Avx512<V>, b: &[u8]) -> Self::H {
                k4_head(a, b)
            }
            #[inline(always)]
            fn pair<const V: bool>(
                $a: Avx512<V>,
                $b: &[u8],
                h: &Self::H,
                $k: usize,
            ) -> [__m512i; 2] {
                let g = 2 * ($k % 4);
                let $sc0 = $a.perm16($a.load16(&SPLAT_IDX.0[g]), h.0);
                let $sc1 = $a.perm16($a.load16(&SPLAT_IDX.0[g + 1]), h.0);
                $pair
            }
            #[inline(always)]
            fn finish<const V: bool>(
                a: Avx512<V>,
                h: &Self::H,
                p: __m512i,
                p2: Option<__m512i>,
                x: TokenActs,
                bi: usize,
                acc: &mut Acc,
            ) {
                finish256(a, h.1, p, p2, x.d[bi], acc);
                let s: &[f32; 8] = x.s[8 * bi..8 * bi + 8].try_into().unwrap_or(&[0.0; 8]);
                acc.v = a.fmadd(h.2, a.f32x8z(s), acc.v);
            }
        }
    };
}

// Sub-block 2k: low nibbles of bytes 16 + 32k.., 2k + 1: their high nibbles.
k4_block!(Q4K, 144, |a, b, k, sc0, sc1| {
    let v = a.u8x32(arr(b, 16 + 32 * (k % 4)));
    [
        a.mullo16(a.and(v, a.splat16(15)), sc0),
        a.mullo16(a.srli16::<4>(v), sc1),
    ]
});

/// Q4_K / Q5_K header (the first 16 bytes): the 8 sub-block scales (i16 lanes 0..8), `d`, and
/// `−dmin·m` per sub-block (lanes 0..8).
#[inline(always)]
fn k4_head<const V: bool>(a: Avx512<V>, b: &[u8]) -> (__m512i, f32, __m512) {
    let (d, dmin) = (a.f16(b, 0), a.f16(b, 2));
    let (sc, m) = k4_words(b);
    let mv = a.mul(a.u8x8_f32z(&m.to_le_bytes()), a.splat(-dmin));
    (a.u8x8_16(&sc.to_le_bytes()), d, mv)
}

/// Q4_K / Q5_K: the 8 six-bit sub-block scales and the 8 mins of block `b`, a byte each (as
/// `get_scale_min_k4`, all at once).
#[inline(always)]
pub(super) fn k4_words(b: &[u8]) -> (u64, u64) {
    let word = |i: usize| u32::from_le_bytes(*arr(b, 4 + i));
    let (u0, u1, u2) = (word(0), word(4), word(8));
    let (k1, k2, k3) = (0x3f3f_3f3f, 0x0f0f_0f0f, 0x0303_0303);
    let sc = u64::from(u0 & k1) | (u64::from((u2 & k2) | (((u0 >> 6) & k3) << 4)) << 32);
    let m = u64::from(u1 & k1) | (u64::from(((u2 >> 4) & k2) | (((u1 >> 6) & k3) << 4)) << 32);
    (sc, m)
}

// Q5_K, for the AMX twins (`x86_amx_one`; the i16 kernels leave Q5_K to the f32 ones):
// Q4_K's header, then `qh` (32 bytes: bit `j` of byte `l` is the fifth bit of weight
// `32j + l`) and `qs` (128 bytes, as Q4_K's).
k4_block!(Q5K, 176, |a, b, k, sc0, sc1| {
    let g = 2 * (k % 4);
    let v = a.u8x32(arr(b, 48 + 32 * (k % 4)));
    let qh = a.u8x32(arr(b, 16));
    let sixteen = a.splat16(16);
    let lo = a.mask_add16(
        a.test16(qh, a.splat16(1 << g)),
        a.and(v, a.splat16(15)),
        sixteen,
    );
    let hi = a.mask_add16(a.test16(qh, a.splat16(2 << g)), a.srli16::<4>(v), sixteen);
    [a.mullo16(lo, sc0), a.mullo16(hi, sc1)]
});

/// `vpermw` indices: every lane of row `g` takes scale `g`.
static SPLAT_IDX: ScaleIdx = ScaleIdx({
    let mut t = [[0i16; 32]; 8];
    let mut g = 0;
    while g < 8 {
        t[g] = [g as i16; 32];
        g += 1;
    }
    t
});

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
impl IntBlock for Q6K {
    const BS: usize = 256;
    const TS: usize = 210;
    const G: usize = 256;
    const DEC_ROWS: usize = 2;
    const RESID: bool = true;
    const PG: [[usize; 2]; 4] = [[0, 2], [1, 3], [4, 6], [5, 7]];
    /// The 16 scales (i16 lanes 0..16); d.
    type H = (__m512i, f32);
    #[inline(always)]
    fn scale(h: &Self::H) -> f32 {
        h.1
    }
    #[inline(always)]
    fn head<const V: bool>(a: Avx512<V>, b: &[u8]) -> Self::H {
        (a.i8x16(arr(b, 192)), a.f16(b, 208))
    }
    #[inline(always)]
    fn pair<const V: bool>(a: Avx512<V>, b: &[u8], h: &Self::H, k: usize) -> [__m512i; 2] {
        // Weights 128h + 32s + l (group g = 4h + s): ql byte 64h + 32(s%2) + l, nibble s/2;
        // qh byte 32h + l, bits 2s..2s+2. Pair k: groups s = k%2 and s + 2 of half h = k/2.
        let (hh, s) = (k / 2 % 2, k % 2);
        let v = a.u8x32(arr(b, 64 * hh + 32 * s));
        let qh = a.u8x32(arr(b, 128 + 32 * hh));
        let (m15, m48, o32) = (a.splat16(15), a.splat16(48), a.splat16(32));
        let (hb0, hb1) = if s == 0 {
            (a.slli16::<4>(qh), qh)
        } else {
            (a.slli16::<2>(qh), a.srli16::<2>(qh))
        };
        let q0 = a.sub16(a.or(a.and(v, m15), a.and(hb0, m48)), o32);
        let q1 = a.sub16(a.or(a.srli16::<4>(v), a.and(hb1, m48)), o32);
        let g = 4 * hh + s;
        [
            a.mullo16(q0, a.perm16(a.load16(&Q6_IDX.0[g]), h.0)),
            a.mullo16(q1, a.perm16(a.load16(&Q6_IDX.0[g + 2]), h.0)),
        ]
    }
    #[inline(always)]
    fn finish<const V: bool>(
        a: Avx512<V>,
        h: &Self::H,
        p: __m512i,
        p2: Option<__m512i>,
        x: TokenActs,
        bi: usize,
        acc: &mut Acc,
    ) {
        finish256(a, h.1, p, p2, x.d[bi], acc)
    }
}

/// A block of one row, decoded: header and groups (the first `BS / 32` used).
#[derive(Clone, Copy)]
struct Dec<H: Copy> {
    h: H,
    w: [__m512i; 8],
}

#[inline(always)]
fn decode<B: IntBlock, const V: bool>(a: Avx512<V>, b: &[u8]) -> Dec<B::H> {
    let h = B::head(a, b);
    let mut w = [a.splat16(0); 8];
    macro_rules! pair {
        ($($k:literal)*) => {$(
            if 2 * $k < B::BS / 32 {
                let [w0, w1] = B::pair(a, b, &h, $k);
                w[B::PG[$k][0]] = w0;
                w[B::PG[$k][1]] = w1;
            }
        )*};
    }
    pair!(0 1 2 3);
    Dec { h, w }
}

/// Exact i32 lanes of a decoded block's weights · `xq` (block `bi`): two chains of `dp`.
#[inline(always)]
fn idot<B: IntBlock, const V: bool>(
    a: Avx512<V>,
    w: &[__m512i; 8],
    xq: &[i16],
    bi: usize,
) -> __m512i {
    let n = B::BS / 32;
    let xq = &xq[B::BS * bi..B::BS * bi + B::BS];
    let mut i0 = a.madd(w[0], a.load16(x32(xq, 0)));
    if n == 1 {
        return i0;
    }
    let mut i1 = a.madd(w[1], a.load16(x32(xq, 32)));
    for g in 1..n / 2 {
        i0 = a.dp(i0, w[2 * g], a.load16(x32(xq, 64 * g)));
        i1 = a.dp(i1, w[2 * g + 1], a.load16(x32(xq, 64 * g + 32)));
    }
    a.add32(i0, i1)
}

/// Whether token `x`'s activation group `bi` has a residual plane.
#[inline(always)]
fn resid<B: IntBlock>(x: TokenActs, bi: usize) -> bool {
    B::RESID && x.r.get(bi) == Some(&true) && x.q2.len() >= B::BS * (bi + 1)
}

/// `acc += block · activations` for block `bi` of a row and token `x`.
#[inline(always)]
fn dot<B: IntBlock, const V: bool>(
    a: Avx512<V>,
    w: &Dec<B::H>,
    x: TokenActs,
    bi: usize,
    acc: &mut Acc,
) {
    let p = idot::<B, V>(a, &w.w, x.q, bi);
    let p2 = if resid::<B>(x, bi) {
        Some(idot::<B, V>(a, &w.w, x.q2, bi))
    } else {
        None
    };
    B::finish(a, &w.h, p, p2, x, bi, acc);
}

/// Prefetch the `bi`-th of `nb` equal parts of `pf`.
#[inline(always)]
pub(super) fn ahead<const V: bool>(a: Avx512<V>, pf: &[u8], bi: usize, nb: usize) {
    if !pf.is_empty() {
        let step = pf.len().div_ceil(nb);
        let mut o = bi * step;
        while o < (bi + 1) * step {
            a.prefetch(pf, o);
            o += 64;
        }
    }
}

/// `R` rows × `T` tokens: each row's block is decoded once for the tile's tokens.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // index loops over constant bounds: fully unrolled
fn tile<B: IntBlock, const V: bool, const R: usize, const T: usize>(
    a: Avx512<V>,
    rows: [&[u8]; R],
    x: &PackedActs,
    pf: &[u8],
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
        ahead(a, pf, bi, nb);
        let mut w = [decode::<B, V>(a, blk(0)); R];
        for r in 1..R {
            w[r] = decode::<B, V>(a, blk(r));
        }
        for t in 0..T {
            let x = x.token::<T>(B::BS, bi, t);
            for r in 0..R {
                dot::<B, V>(a, &w[r], x, 0, &mut acc[r][t]);
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

/// The activations of one tile of `T` tokens (prefill, or a batched decode step), interleaved
/// by block: `q` and `q2` (nb, T, BS), `r` and `d` (nb, T), `s` (nb, T, BS / 32). The tile then
/// reaches every token's values from one pointer at constant offsets; with a slice per token
/// (`TokenActs`) the 8 tokens' pointers and lengths did not fit the 16 general registers and
/// were reloaded from the stack on every block, beside a bounds check each.
#[derive(Default)]
struct PackedActs {
    q: Vec<i16>,
    /// Empty when no token of the tile has the residual plane.
    q2: Vec<i16>,
    /// Empty with `q2`.
    r: Vec<bool>,
    d: Vec<f32>,
    /// Empty without a min term (`B::MIN`).
    s: Vec<f32>,
}

impl PackedActs {
    /// Tokens `xs` (all of `nb` blocks of `B`; a scale `d` per block, `B::G == B::BS`).
    fn pack<B: IntBlock>(&mut self, xs: &[TokenActs], nb: usize) {
        debug_assert_eq!(B::G, B::BS);
        let (bs, n) = (B::BS, nb * xs.len());
        let wide = B::RESID && xs.iter().any(|x| !x.q2.is_empty());
        self.q.clear();
        self.q2.clear();
        self.r.clear();
        self.d.clear();
        self.s.clear();
        self.q.reserve(n * bs);
        self.d.reserve(n);
        for bi in 0..nb {
            for x in xs {
                let at = bs * bi..bs * (bi + 1);
                self.q.extend_from_slice(&x.q[at.clone()]);
                if wide {
                    match x.q2.get(at) {
                        Some(v) => self.q2.extend_from_slice(v),
                        None => self.q2.resize(self.q2.len() + bs, 0),
                    }
                    self.r.push(x.r.get(bi) == Some(&true));
                }
                self.d.push(x.d[bi]);
                if B::MIN {
                    self.s
                        .extend_from_slice(&x.s[bs / 32 * bi..bs / 32 * (bi + 1)]);
                }
            }
        }
    }

    /// Token `t` of the tile's block `bi`, as one block of a `TokenActs` (block index 0).
    #[inline(always)]
    fn token<const T: usize>(&self, bs: usize, bi: usize, t: usize) -> TokenActs<'_> {
        let i = bi * T + t;
        TokenActs {
            q: &self.q[i * bs..(i + 1) * bs],
            q2: self.q2.get(i * bs..(i + 1) * bs).unwrap_or_default(),
            r: self.r.get(i..i + 1).unwrap_or_default(),
            d: &self.d[i..i + 1],
            s: self
                .s
                .get(i * bs / 32..(i + 1) * bs / 32)
                .unwrap_or_default(),
        }
    }
}

/// `R` rows × `T` tokens of a 32-weight format (`B::BS == 32`) on packed activations: the
/// values of `tile` (the same i32 sums, the same f32 product `d·d_x` and FMA per block), with
/// each row's scale held in a vector and multiplied by the token's scale from memory.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // index loops over constant bounds: fully unrolled
fn tile_packed<B: IntBlock, const V: bool, const R: usize, const T: usize>(
    a: Avx512<V>,
    rows: [&[u8]; R],
    x: &PackedActs,
    pf: &[u8],
) -> [[f32; T]; R] {
    let mut acc = [[a.zero(); T]; R];
    let mut mins = [[0f32; T]; R];
    let nb = rows[0].len() / B::TS;
    let xq = x.q.chunks_exact(32 * T);
    let xd = x.d.chunks_exact(T);
    for (bi, (xq, xd)) in xq.zip(xd).enumerate().take(nb) {
        let blk = |r: usize| &rows[r][bi * B::TS..(bi + 1) * B::TS];
        ahead(a, pf, bi, nb);
        let mut w = [decode::<B, V>(a, blk(0)); R];
        for r in 1..R {
            w[r] = decode::<B, V>(a, blk(r));
        }
        let mut dw = [a.zero(); R];
        for r in 0..R {
            dw[r] = a.opaque(a.splat(B::dm(&w[r].h)[0]));
        }
        for t in 0..T {
            let xt = a.load16(x32(xq, 32 * t));
            let dx = a.splat(xd[t]);
            for r in 0..R {
                let p = a.madd(w[r].w[0], xt);
                acc[r][t] = a.fmadd(a.cvt(p), a.mul(dw[r], dx), acc[r][t]);
            }
        }
        if B::MIN {
            let xs = x.s.get(bi * T..(bi + 1) * T).unwrap_or_default();
            for r in 0..R {
                let m = B::dm(&w[r].h)[1];
                for (t, sx) in xs.iter().enumerate() {
                    mins[r][t] += m * sx;
                }
            }
        }
    }
    let mut out = [[0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            out[r][t] = a.hsum(acc[r][t]) + mins[r][t];
        }
    }
    out
}

/// One token, `R` rows: each group is decoded and multiplied at once (nothing held per row
/// but the i32 sums), so `R` rows' independent chains overlap. Same i32 sums, and the same
/// f32 steps per output, as `tile`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // index loops over constant bounds: fully unrolled
fn tile1<B: IntBlock, const V: bool, const R: usize>(
    a: Avx512<V>,
    rows: [&[u8]; R],
    x: TokenActs,
    pf: &[u8],
) -> [f32; R] {
    let z = Acc {
        v: a.zero(),
        s: 0.0,
    };
    let mut acc = [z; R];
    let nb = rows[0].len() / B::TS;
    for bi in 0..nb {
        let blk = |r: usize| &rows[r][bi * B::TS..(bi + 1) * B::TS];
        ahead(a, pf, bi, nb);
        let mut b = [blk(0); R];
        let mut h = [B::head(a, b[0]); R];
        for r in 1..R {
            b[r] = blk(r);
            h[r] = B::head(a, b[r]);
        }
        if resid::<B>(x, bi) {
            stream::<B, V, R, true>(a, &b, &h, x, bi, &mut acc);
        } else {
            stream::<B, V, R, false>(a, &b, &h, x, bi, &mut acc);
        }
    }
    let mut out = [0f32; R];
    for r in 0..R {
        out[r] = a.hsum(acc[r].v) + acc[r].s;
    }
    out
}

/// Block `bi` of `R` rows for one token, with (`RES`) or without the residual plane.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // index loops over constant bounds: fully unrolled
fn stream<B: IntBlock, const V: bool, const R: usize, const RES: bool>(
    a: Avx512<V>,
    b: &[&[u8]; R],
    h: &[B::H; R],
    x: TokenActs,
    bi: usize,
    acc: &mut [Acc; R],
) {
    let n = B::BS / 32;
    let xq = &x.q[B::BS * bi..B::BS * bi + B::BS];
    let xq2 = if RES {
        &x.q2[B::BS * bi..B::BS * bi + B::BS]
    } else {
        &[]
    };
    let zero = a.splat16(0);
    let mut p = [[zero; 2]; R];
    let mut p2 = [[zero; 2]; R];
    // Unrolled by hand (`n` is a constant): a loop of this size stays rolled, and its
    // `match`es become jump tables.
    macro_rules! pair {
        ($($k:literal)*) => {$(
            if 2 * $k < n {
                let [g0, g1] = B::PG[$k];
                let x0 = a.load16(x32(xq, 32 * g0));
                let x1 = a.load16(x32(xq, 32 * g1));
                let (y0, y1) = if RES {
                    (a.load16(x32(xq2, 32 * g0)), a.load16(x32(xq2, 32 * g1)))
                } else {
                    (zero, zero)
                };
                for r in 0..R {
                    let [w0, w1] = B::pair(a, b[r], &h[r], $k);
                    p[r][0] = if $k == 0 { a.madd(w0, x0) } else { a.dp(p[r][0], w0, x0) };
                    if n > 1 {
                        p[r][1] = if $k == 0 { a.madd(w1, x1) } else { a.dp(p[r][1], w1, x1) };
                    }
                    if RES {
                        p2[r][0] = if $k == 0 { a.madd(w0, y0) } else { a.dp(p2[r][0], w0, y0) };
                        p2[r][1] = if $k == 0 { a.madd(w1, y1) } else { a.dp(p2[r][1], w1, y1) };
                    }
                }
            }
        )*};
    }
    pair!(0 1 2 3);
    for r in 0..R {
        // (No closures here: they would not inherit the target features.)
        let (s, s2) = if n == 1 {
            (p[r][0], p2[r][0])
        } else {
            (a.add32(p[r][0], p[r][1]), a.add32(p2[r][0], p2[r][1]))
        };
        let s2 = if RES { Some(s2) } else { None };
        B::finish(a, &h[r], s, s2, x, bi, &mut acc[r]);
    }
}

/// Most blocks in a row for the totals path (16384 weights): its per-row and per-tile
/// buffers live on the stack. Longer rows take `tile` and `tile1`, prefill and decode alike, so
/// both still give the same values.
const TOTALS_MAX_BLOCKS: usize = 64;

/// One row's `−dmin·m` per 32-weight sub-block, 8 per block (totals path).
type RowMins = [f32; 8 * TOTALS_MAX_BLOCKS];

/// Whether rows of `nb` blocks of `B` take the totals path.
#[inline(always)]
fn totals_path<B: IntBlock>(nb: usize) -> bool {
    B::TOTALS && nb <= TOTALS_MAX_BLOCKS
}

/// `d[r]` in lanes `r·T..(r + 1)·T` (output lane `n = r·T + t`).
#[inline(always)]
pub(super) fn row_lanes<const V: bool, const R: usize, const T: usize>(
    a: Avx512<V>,
    d: [f32; R],
) -> __m512 {
    let mut v = a.splat(d[0]);
    for (r, &dr) in d.iter().enumerate().skip(1) {
        v = a.blend((((1u32 << T) - 1) << (r * T)) as u16, v, a.splat(dr));
    }
    v
}

/// A row's min terms (`mins`, 8 per block) times a token's exact sums of every 32 values (`s`)
/// over `nb` blocks, as 16 f32 lanes whose total is the output's min term.
#[inline(always)]
fn min_lanes<const V: bool>(a: Avx512<V>, mins: &RowMins, s: &[f32], nb: usize) -> __m512 {
    let n = (8 * nb).min(s.len());
    let mut acc = a.zero();
    let mut i = 0;
    while i + 16 <= n {
        let (m, x): (&[f32; 16], &[f32; 16]) =
            match (mins[i..i + 16].try_into(), s[i..i + 16].try_into()) {
                (Ok(m), Ok(x)) => (m, x),
                _ => break,
            };
        acc = a.fmadd(a.loadf(m), a.loadf(x), acc);
        i += 16;
    }
    if i + 8 <= n {
        if let (Ok(m), Ok(x)) = (mins[i..i + 8].try_into(), s[i..i + 8].try_into()) {
            acc = a.fmadd(a.f32x8z(m), a.f32x8z(x), acc);
        }
    }
    acc
}

/// Block `bi`'s scale `d` of each row, and with `B::MIN` its min terms into `mins`.
#[inline(always)]
fn block_scales<B: IntBlock, const V: bool, const R: usize>(
    a: Avx512<V>,
    h: &[B::H; R],
    mins: &mut [RowMins; 2],
    bi: usize,
) -> [f32; R] {
    const { assert!(R <= 2) };
    let mut d = [0f32; R];
    for (r, (d, h)) in d.iter_mut().zip(h).enumerate() {
        *d = B::scale(h);
        if B::MIN {
            if let Some(o) = mins[r].get_mut(8 * bi..8 * bi + 8) {
                if let Ok(o) = o.try_into() {
                    a.store8(B::mins(a, h), o);
                }
            }
        }
    }
    d
}

/// The min terms of `R` rows × `T` tokens (token sums `s[t]`) over `nb` blocks, output lane
/// `r·T + t` (`N = R·T`), for the totals tiles to add once at the end.
#[inline(always)]
fn min_terms<const V: bool, const R: usize, const T: usize, const N: usize>(
    a: Avx512<V>,
    mins: &[RowMins; 2],
    s: [&[f32]; T],
    nb: usize,
) -> __m512 {
    const { assert!(R <= 2 && R * T <= N && N <= 16) };
    let mut ml = [a.zero(); N];
    for r in 0..R {
        for (t, s) in s.iter().enumerate() {
            ml[r * T + t] = min_lanes(a, &mins[r], s, nb);
        }
    }
    a.totals_f32::<N>(&ml)
}

/// The totals path (`IntBlock::TOTALS`), prefill: `R` rows × `T` tokens (`R·T ≤ 16`), output
/// lane `n = r·T + t`. Per block, group pairs are decoded row by row just in time and each
/// output keeps one i32 chain over the whole block (the K-quants' scales are folded into the
/// weights); the 16 chains are then summed by one transposing tree (`Avx512::quarter_sums`,
/// `Avx512::fold_quarters`) and scaled together (`d_r·d_x,t` per lane) into one f32
/// vector: one accumulator for the tile instead of a vector per output (which spilled).
/// Min terms go to `mins` and are added once at the end. Per output this takes exactly the
/// f32 steps of `tile1_totals`, so prefill and decode give the same values.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // index loops over constant bounds: fully unrolled
fn tile_totals<B: IntBlock, const V: bool, const R: usize, const T: usize>(
    a: Avx512<V>,
    rows: [&[u8]; R],
    xs: [TokenActs; T],
    xd: &[[f32; 16]; TOTALS_MAX_BLOCKS],
    mins: &mut [RowMins; 2],
    pf: &[u8],
) -> [[f32; T]; R] {
    const { assert!(R <= 2 && R * T <= 16) };
    let nb = rows[0].len() / B::TS;
    let z = a.splat16(0);
    let mut acc = a.zero();
    for bi in 0..nb.min(TOTALS_MAX_BLOCKS) {
        let blk = |r: usize| &rows[r][bi * B::TS..(bi + 1) * B::TS];
        ahead(a, pf, bi, nb);
        let mut h = [B::head(a, blk(0)); R];
        for r in 1..R {
            h[r] = B::head(a, blk(r));
        }
        let mut p = [[z; T]; R];
        // Unrolled by hand (`k` constant): group pair `k` of every row, times every token.
        macro_rules! pair {
            ($($k:literal)*) => {$(
                if 2 * $k < B::BS / 32 {
                    let [g0, g1] = B::PG[$k];
                    let mut w = [[z; 2]; R];
                    for r in 0..R {
                        w[r] = B::pair(a, blk(r), &h[r], $k);
                    }
                    for t in 0..T {
                        let xq = &xs[t].q[B::BS * bi..B::BS * bi + B::BS];
                        let x0 = a.load16(x32(xq, 32 * g0));
                        let x1 = a.load16(x32(xq, 32 * g1));
                        for r in 0..R {
                            let q = if $k == 0 { a.madd(w[r][0], x0) } else { a.dp(p[r][t], w[r][0], x0) };
                            p[r][t] = a.dp(q, w[r][1], x1);
                        }
                    }
                }
            )*};
        }
        pair!(0 1 2 3);
        let mut flat = [z; 16];
        for r in 0..R {
            for t in 0..T {
                flat[r * T + t] = p[r][t];
            }
        }
        let d = block_scales::<B, V, R>(a, &h, mins, bi);
        let sv = a.mul(row_lanes::<V, R, T>(a, d), a.loadf(&xd[bi]));
        let total = a.fold_quarters::<16>(a.quarter_sums::<16>(&flat));
        acc = a.fmadd(total, sv, acc);
    }
    if B::MIN {
        let s = std::array::from_fn(|t| xs[t].s);
        acc = a.add(acc, min_terms::<V, R, T, 16>(a, mins, s, nb));
    }
    let v = a.store(acc);
    let mut out = [[0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            out[r][t] = v[r * T + t];
        }
    }
    out
}

/// The totals path, decode: one token, `R` rows side by side (each group pair decoded and
/// multiplied at once, two i32 chains per row), output lane `r`. The same f32 steps per
/// output as `tile_totals`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // index loops over constant bounds: fully unrolled
fn tile1_totals<B: IntBlock, const V: bool, const R: usize>(
    a: Avx512<V>,
    rows: [&[u8]; R],
    x: TokenActs,
    mins: &mut [RowMins; 2],
    pf: &[u8],
) -> [f32; R] {
    const { assert!(R <= 2) };
    let nb = rows[0].len() / B::TS;
    let z = a.splat16(0);
    let mut acc = a.zero();
    for bi in 0..nb.min(TOTALS_MAX_BLOCKS) {
        let blk = |r: usize| &rows[r][bi * B::TS..(bi + 1) * B::TS];
        ahead(a, pf, bi, nb);
        let mut h = [B::head(a, blk(0)); R];
        for r in 1..R {
            h[r] = B::head(a, blk(r));
        }
        let xq = &x.q[B::BS * bi..B::BS * bi + B::BS];
        let mut p = [[z; 2]; R];
        macro_rules! pair {
            ($($k:literal)*) => {$(
                if 2 * $k < B::BS / 32 {
                    let [g0, g1] = B::PG[$k];
                    let x0 = a.load16(x32(xq, 32 * g0));
                    let x1 = a.load16(x32(xq, 32 * g1));
                    for r in 0..R {
                        let [w0, w1] = B::pair(a, blk(r), &h[r], $k);
                        p[r][0] = if $k == 0 { a.madd(w0, x0) } else { a.dp(p[r][0], w0, x0) };
                        p[r][1] = if $k == 0 { a.madd(w1, x1) } else { a.dp(p[r][1], w1, x1) };
                    }
                }
            )*};
        }
        pair!(0 1 2 3);
        let mut flat = [z; R];
        for r in 0..R {
            flat[r] = a.add32(p[r][0], p[r][1]);
        }
        let d = block_scales::<B, V, R>(a, &h, mins, bi);
        let sv = a.mul(row_lanes::<V, R, 1>(a, d), a.splat(x.d[bi]));
        let total = a.fold_quarters::<R>(a.quarter_sums::<R>(&flat));
        acc = a.fmadd(total, sv, acc);
    }
    if B::MIN {
        acc = a.add(acc, min_terms::<V, R, 1, R>(a, mins, [x.s], nb));
    }
    let v = a.store(acc);
    let mut out = [0f32; R];
    out.copy_from_slice(&v[..R]);
    out
}

/// Software prefetch distance, in tiles (of `R` rows) ahead. Decode streams each weight
/// once from DRAM; with `R` rows read side by side the hardware prefetcher falls behind, and
/// prefetching 2 tiles ahead measured best (1, 4, or fixed 2–16 KiB: slower).
const PREFETCH_TILES: usize = 2;

/// Rows `r0..` of `W·xᵀ` into `out` (row, token).
#[inline(always)]
pub(super) fn rows<B: IntBlock, const V: bool>(
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
    let tok = |t: usize| TokenActs {
        q: &x.q[t * cols..(t + 1) * cols],
        q2: q2.get(t * cols..(t + 1) * cols).unwrap_or_default(),
        r: r.get(t * ng..(t + 1) * ng).unwrap_or_default(),
        d: &x.d[t * ng..(t + 1) * ng],
        s: &x.s[t * ns..(t + 1) * ns],
    };
    // The bytes of the tile `PREFETCH_TILES` ahead of the `r` rows from `ri`.
    let ahead_of = |ri: usize, r: usize| {
        let span = r * w.row_bytes;
        let at = (r0 + ri + PREFETCH_TILES * r) * w.row_bytes;
        w.data.get(at..at + span).unwrap_or_default()
    };
    if totals_path::<B>(nb) {
        return rows_totals::<B, V>(a, tok, row, ahead_of, n_tok, n_rows, nb, out);
    }
    let mut packed = PackedActs::default();
    let mut t0 = 0;
    while t0 < n_tok {
        let tt = super::token_tile(n_tok - t0);
        let mut ri = 0;
        if tt == 1 {
            let x = tok(t0);
            macro_rules! run1 {
                ($r:literal) => {{
                    let rs = std::array::from_fn(|i| row(ri + i));
                    let v = tile1::<B, V, $r>(a, rs, x, ahead_of(ri, $r));
                    for (i, v) in v.iter().enumerate() {
                        out[(ri + i) * n_tok + t0] = *v;
                    }
                    ri += $r;
                }};
            }
            while B::DEC_ROWS >= 4 && ri + 4 <= n_rows {
                run1!(4);
            }
            while B::DEC_ROWS >= 2 && ri + 2 <= n_rows {
                run1!(2);
            }
            while ri < n_rows {
                run1!(1);
            }
        } else {
            // The tile's tokens, interleaved once for all its rows.
            let mut xs = [tok(t0); 8];
            for (i, x) in xs.iter_mut().enumerate().take(tt).skip(1) {
                *x = tok(t0 + i);
            }
            packed.pack::<B>(&xs[..tt], nb);
            macro_rules! rows_of {
                ($tile:ident, $r:literal, $t:literal) => {
                    while n_rows - ri >= $r {
                        let rs = std::array::from_fn(|i| row(ri + i));
                        let v = $tile::<B, V, $r, $t>(a, rs, &packed, ahead_of(ri, $r));
                        super::put(&mut out[ri * n_tok..], n_tok, t0, v);
                        ri += $r;
                    }
                };
            }
            if B::BS == 32 {
                // Rows per tile by token count: the most that keep the tile's accumulators,
                // weights and row scales in the 32 registers (Zen 5, 1 thread: 4 × 4 tokens
                // 1.15–1.3× of 2 × 4, 5 × 4 1.04–1.1× of 4 × 4; 8 × 2 1.0–1.1× of 6 × 2).
                match tt {
                    8 => {
                        rows_of!(tile_packed, 3, 8);
                        rows_of!(tile_packed, 2, 8);
                        rows_of!(tile_packed, 1, 8);
                    }
                    4 => {
                        rows_of!(tile_packed, 5, 4);
                        rows_of!(tile_packed, 4, 4);
                        rows_of!(tile_packed, 2, 4);
                        rows_of!(tile_packed, 1, 4);
                    }
                    _ => {
                        rows_of!(tile_packed, 8, 2);
                        rows_of!(tile_packed, 4, 2);
                        rows_of!(tile_packed, 2, 2);
                        rows_of!(tile_packed, 1, 2);
                    }
                }
            } else {
                match tt {
                    8 => {
                        rows_of!(tile, 2, 8);
                        rows_of!(tile, 1, 8);
                    }
                    4 => {
                        rows_of!(tile, 2, 4);
                        rows_of!(tile, 1, 4);
                    }
                    _ => {
                        rows_of!(tile, 2, 2);
                        rows_of!(tile, 1, 2);
                    }
                }
            }
        }
        t0 += tt;
    }
}

/// `rows` on the totals path (`totals_path`): decode 2 rows at a time (`tile1_totals`),
/// prefill tiles of 2 rows × 8, 4 or 2 tokens (`tile_totals`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rows_totals<'x, 'w, B: IntBlock, const V: bool>(
    a: Avx512<V>,
    tok: impl Fn(usize) -> TokenActs<'x>,
    row: impl Fn(usize) -> &'w [u8],
    ahead_of: impl Fn(usize, usize) -> &'w [u8],
    n_tok: usize,
    n_rows: usize,
    nb: usize,
    out: &mut [f32],
) {
    let mut mins = [[0f32; 8 * TOTALS_MAX_BLOCKS]; 2];
    let mut t0 = 0;
    while t0 < n_tok {
        let tt = super::token_tile(n_tok - t0);
        let mut ri = 0;
        if tt == 1 {
            let x = tok(t0);
            while ri < n_rows {
                if ri + 2 <= n_rows {
                    let v = tile1_totals::<B, V, 2>(
                        a,
                        [row(ri), row(ri + 1)],
                        x,
                        &mut mins,
                        ahead_of(ri, 2),
                    );
                    out[ri * n_tok + t0] = v[0];
                    out[(ri + 1) * n_tok + t0] = v[1];
                    ri += 2;
                } else {
                    let v = tile1_totals::<B, V, 1>(a, [row(ri)], x, &mut mins, ahead_of(ri, 1));
                    out[ri * n_tok + t0] = v[0];
                    ri += 1;
                }
            }
        } else {
            // The tile's tokens, and lane `r·T + t` of `xd[b]`: token `t`'s scale of block `b`.
            let mut xs = [tok(t0); 8];
            for (i, x) in xs.iter_mut().enumerate().take(tt).skip(1) {
                *x = tok(t0 + i);
            }
            let mut xd = [[0f32; 16]; TOTALS_MAX_BLOCKS];
            for (b, lanes) in xd.iter_mut().enumerate().take(nb) {
                for (n, l) in lanes.iter_mut().enumerate() {
                    *l = xs[n % tt].d.get(b).copied().unwrap_or(0.0);
                }
            }
            macro_rules! run {
                ($r:literal, $t:literal) => {{
                    let x: &[TokenActs; $t] = match xs[..$t].try_into() {
                        Ok(x) => x,
                        Err(_) => return,
                    };
                    let v = tile_totals::<B, V, $r, $t>(
                        a,
                        std::array::from_fn(|i| row(ri + i)),
                        *x,
                        &xd,
                        &mut mins,
                        ahead_of(ri, $r),
                    );
                    for (i, v) in v.iter().enumerate() {
                        let o = (ri + i) * n_tok + t0;
                        out[o..o + $t].copy_from_slice(v);
                    }
                    ri += $r;
                }};
            }
            while ri < n_rows {
                match (n_rows - ri >= 2, tt) {
                    (true, 8) => run!(2, 8),
                    (true, 4) => run!(2, 4),
                    (true, _) => run!(2, 2),
                    (false, 8) => run!(1, 8),
                    (false, 4) => run!(1, 4),
                    (false, _) => run!(1, 2),
                }
            }
        }
        t0 += tt;
    }
}

#[cfg(test)]
mod tests {
    use super::QAct;

    /// `x86::quantize` (hand-written with AVX-512 BW; else the portable code compiled for
    /// AVX2) and the portable one (`QAct::quantize`, which the wasm32 integer kernels use) give
    /// bit-identical activations: random values, zero groups, outliers.
    #[test]
    fn x86_quantizer_equals_the_portable_one() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        let (n_tok, cols) = (3, 1024);
        let mut x: Vec<f32> = (0..n_tok * cols).map(|_| next() * 3.0).collect();
        x[..256].fill(0.0); // a zero group
        for (i, v) in x.iter_mut().enumerate().skip(300).take(200) {
            *v *= if i % 37 == 0 { 400.0 } else { 1e-3 }; // outliers over small values
        }
        x[cols + 700] = 1e4;
        for (g, resid) in [(32, false), (256, false), (256, true)] {
            let (mut fast, mut portable) = (QAct::default(), QAct::default());
            if !super::super::x86::quantize(&mut fast, &x, n_tok, cols, g, resid) {
                return; // no AVX2 here: nothing but the portable quantizer
            }
            portable.quantize(&x, n_tok, cols, g, resid);
            assert_eq!(fast.q, portable.q, "q, g {g}");
            assert_eq!(fast.q2, portable.q2, "q2, g {g}");
            assert_eq!(fast.r, portable.r, "r, g {g}");
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast.d), bits(&portable.d), "d, g {g}");
            assert_eq!(bits(&fast.s), bits(&portable.s), "s, g {g}");
            if resid {
                assert!(
                    portable.r.iter().any(|&r| r),
                    "no group got a residual plane"
                );
            }
        }
    }
}
