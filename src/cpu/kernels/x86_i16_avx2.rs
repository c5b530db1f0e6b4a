//! x86_64 AVX2 integer kernels on CPUs without AVX-512 BW: Q5_0, Q8_0, Q4_K and Q6_K, the
//! formats of the usual Q4_K_M files (SmolLM2's Q5_0 projections and Q8_0 output head, the
//! K-quants' Q4_K and Q6_K). A child of `x86`: its `unsafe` is the `Avx2` token's one-line
//! wrappers there.
//!
//! The scheme of `x86_i16` on 256-bit registers: the activations are quantized once per
//! matmul (`super::super::QAct::quantize`, per group of `G` values — 32, or 256 for the
//! K-quants — `d = max|x| / 32767` and `q = round(x / d)` in i16, error at most `d / 2`), a
//! block's weights are widened to 16-lane i16 vectors holding their integer quants (the
//! K-quants' already times their integer sub-block scales, except Q4_K's one-token path, which
//! scales each sub-block's i32 sum instead) with `vpmovzxbw` / `vpmovsxbw`, and `vpmaddwd`
//! multiplies them with the activations into exact i32 lanes; per block (Q6_K:
//! per half block) the lanes are converted to f32 once and FMA'd with the product of the
//! weight and activation scales. Min terms (Q4_K) use the exact f32 sums of every 32
//! activations.
//!
//! Tiles: one token (`DotBlock::one`, decode) decodes each block with its loads shared between
//! the vectors; 2, 4 or 8 tokens × one row (`tile`) decode each weight vector once for the
//! tile's tokens, and multiply it with all of them before the next (`Avx2::kept_all`). Both
//! take the same f32 steps per token, so a token in a tile gets its one-token values bit for
//! bit (tests/cpu_kernels.rs), as on the AVX-512 kernels: a batched step of the batching
//! server gives each sequence its solo values.
//!
//! Zen 3, measured side by side: the integer multiplies (`vpmaddwd`, `vpmullw`, `vpmulld`) run
//! two per cycle and the plain integer operations four; broadcasts and widenings from memory
//! ride along with the loads, while a widening from a register (`vpmovzxbw ymm, xmm`) runs one
//! per 1.25 cycles. Hence widening loads kept widened (`Avx2::u8x16_16`), Q6_K's scales
//! broadcast from memory, and Q4_K's one-token scale applied once per 32 weights in i32.
//!
//! Why: the f32 kernels of `x86` convert every weight to f32 (8 per instruction) and scale it
//! with an FMA before the FMA with the activation; here 16 weights take one widening load or
//! mask, one multiply by the sub-block scale and one `vpmaddwd`. On one matrix (a Zen 3, one
//! thread, against the f32 kernels): one token 1.3–1.9× faster; 8 tokens Q4_K 12%, Q8_0 15%
//! and Q5_0 9% faster, Q6_K level (without VNNI each `vpmaddwd` needs a `vpaddd`, where the f32
//! tiles spend one FMA per 8 weights and token).
//!
//! Overflow: every i32 lane sum stays below 2^31 − 1 (|q| ≤ 32767):
//! - Q5_0 (−16..15), Q8_0 (−128..127): a lane adds 4 products of |w| ≤ 128 per block;
//! - Q4_K: `q·sc` ≤ 15·63 = 945; a lane adds 32 products over the super-block: ≤ 9.9e8;
//! - Q6_K: `(q − 32)·sc` in −4064..4096; a lane adds at most 16 products, so each half of the
//!   super-block (128 weights) has its own lanes: ≤ 16·4096·32767 = 2 147 352 576.
//!
//! Error: as the i16 kernels' without their residual plane, at most `Σ|w|·max|x|/65534` over
//! each group (tests/cpu_kernels.rs checks it, against `Kernel::Reference`).

use super::super::x86_i16::k4_words;
use super::super::QAct;
use super::Avx2;
use crate::model::QMatrix;
use std::arch::x86_64::{__m256, __m256i};

/// A block format as integer quants for these kernels: a header (its scales, decoded once per
/// row and block) and `BS / 16` vectors of 16 i16 weights.
pub(in super::super) trait DotBlock {
    /// Weights per block.
    const BS: usize;
    /// Bytes per block.
    const TS: usize;
    /// Activation values per scale (32 or 256).
    const G: usize;
    /// Weight vectors per exact i32 chain (the overflow bound): `BS / 16`, or 8 for Q6_K.
    const CHAIN: usize;
    /// Whether the format has a min term (`mins`).
    const MIN: bool = false;
    /// A block's scales.
    type H: Copy;
    fn head(a: Avx2, b: &[u8]) -> Self::H;
    /// Weights `16v..16v + 16` of the block as i16 lanes (K-quants: times their sub-block
    /// scale).
    fn weights(a: Avx2, b: &[u8], h: &Self::H, v: usize) -> __m256i;
    /// The block's scale `d`.
    fn scale(h: &Self::H) -> f32;
    /// With `MIN`: `−dmin·m_j` per 32-weight sub-block.
    fn mins(a: Avx2, _h: &Self::H) -> __m256 {
        a.zero()
    }
    /// One token (decode): `acc += block · activations`, `macc +=` its min term, by the same
    /// f32 steps as `tile` (`q` the block's `BS` quantized activations, `d` their scale, `s`
    /// the f32 sums of every 32). This default is for 32-weight blocks without a min term
    /// (Q5_0, Q8_0): their two vectors inlined, so LLVM shares their loads; the K-quants
    /// decode theirs by hand.
    #[inline(always)]
    fn one(a: Avx2, b: &[u8], q: &[i16], d: f32, _s: &[f32], acc: &mut __m256, _m: &mut __m256) {
        const { assert!(Self::BS == 32 && Self::CHAIN == 2 && !Self::MIN) };
        let h = Self::head(a, b);
        let (w0, w1) = (Self::weights(a, b, &h, 0), Self::weights(a, b, &h, 1));
        let p = a.add32(a.madd(w0, a.load16(q, 0)), a.madd(w1, a.load16(q, 16)));
        *acc = a.fmadd(a.cvt(p), a.splat(Self::scale(&h) * d), *acc);
    }
}

/// Rows `r0..r0 + out.len() / n_tok` of `W·xᵀ` into `out` (row, token), from the activations
/// `x` quantized per `B::G` values: tiles of 8, 4, 2 or 1 tokens × one row, each weight vector
/// decoded once for the tile's tokens.
///
/// Every token takes the same f32 steps whatever the tile (per block and chain `acc[bi % 2] =
/// fma(f32(P), d_w·d_x, acc[bi % 2])`, the min term into its own accumulator, then
/// `(acc0 + acc1) + macc` summed across lanes), from exact i32 sums `P`: a token in a tile gets
/// its one-token values bit for bit (a batched step equals each sequence's own step).
#[inline(always)]
pub(in super::super) fn rows<B: DotBlock>(
    a: Avx2,
    w: &QMatrix,
    x: &QAct,
    n_tok: usize,
    r0: usize,
    out: &mut [f32],
) {
    let n_rows = out.len() / n_tok;
    let mut t0 = 0;
    while t0 < n_tok {
        let tt = super::super::token_tile(n_tok - t0);
        for ri in 0..n_rows {
            let row = w.row(r0 + ri);
            let o = &mut out[ri * n_tok + t0..ri * n_tok + t0 + tt];
            match tt {
                8 => o.copy_from_slice(&tile::<B, 8>(a, row, x, t0)),
                4 => o.copy_from_slice(&tile::<B, 4>(a, row, x, t0)),
                2 => o.copy_from_slice(&tile::<B, 2>(a, row, x, t0)),
                _ => {
                    for (t, y) in (t0..).zip(o.iter_mut()) {
                        *y = one_row::<B>(a, row, x, t);
                    }
                }
            }
        }
        t0 += tt;
    }
}

/// One row × token `t`, block by block with `DotBlock::one` (the same values as `tile`).
#[inline(always)]
fn one_row<B: DotBlock>(a: Avx2, row: &[u8], x: &QAct, t: usize) -> f32 {
    let cols = x.cols;
    let nb = cols / B::BS;
    let (ng, ns) = (cols / B::G, cols / 32);
    let q = &x.q[t * cols..(t + 1) * cols];
    let d = &x.d[t * ng..(t + 1) * ng];
    let s = &x.s[t * ns..(t + 1) * ns];
    // (A macro, not a closure: a closure does not inherit the caller's target features.)
    macro_rules! block {
        ($bi:expr, $b:expr, $acc:expr, $macc:expr) => {{
            let bi = $bi;
            // Block-long slices: the loads at constant offsets in `one` need no bounds checks.
            let qb = &q[bi * B::BS..(bi + 1) * B::BS];
            let sb = &s[bi * B::BS / 32..(bi + 1) * B::BS / 32];
            B::one(a, $b, qb, d[bi * B::BS / B::G], sb, $acc, $macc)
        }};
    }
    let (mut acc0, mut acc1, mut macc) = (a.zero(), a.zero(), a.zero());
    let mut pairs = row[..nb * B::TS].chunks_exact(2 * B::TS);
    for (pi, p) in pairs.by_ref().enumerate() {
        block!(2 * pi, &p[..B::TS], &mut acc0, &mut macc);
        block!(2 * pi + 1, &p[B::TS..], &mut acc1, &mut macc);
    }
    let last = pairs.remainder();
    if !last.is_empty() {
        block!(nb - 1, last, &mut acc0, &mut macc);
    }
    a.hsum(a.add(a.add(acc0, acc1), macc))
}

/// One row × tokens `t0..t0 + T`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // index loops over constant bounds: fully unrolled
fn tile<B: DotBlock, const T: usize>(a: Avx2, row: &[u8], x: &QAct, t0: usize) -> [f32; T] {
    let cols = x.cols;
    let nb = cols / B::BS;
    let (ng, ns) = (cols / B::G, cols / 32);
    let q: [&[i16]; T] = std::array::from_fn(|t| &x.q[(t0 + t) * cols..(t0 + t + 1) * cols]);
    let d: [&[f32]; T] = std::array::from_fn(|t| &x.d[(t0 + t) * ng..(t0 + t + 1) * ng]);
    let s: [&[f32]; T] = std::array::from_fn(|t| &x.s[(t0 + t) * ns..(t0 + t + 1) * ns]);
    let mut acc = [[a.zero(); 2]; T];
    let mut macc = [a.zero(); T];
    for (bi, b) in row[..nb * B::TS].chunks_exact(B::TS).enumerate() {
        let h = B::head(a, b);
        let dw = B::scale(&h);
        if B::MIN {
            let mv = B::mins(a, &h);
            for t in 0..T {
                macc[t] = a.fmadd(mv, a.load(s[t], 8 * bi), macc[t]);
            }
        }
        // Block-long slices: the loads at constant offsets need no bounds checks (one per
        // load and token took the branch units' time).
        let qb: [&[i16]; T] = std::array::from_fn(|t| &q[t][bi * B::BS..(bi + 1) * B::BS]);
        let mut p = [a.zero_i(); T];
        // Vector `v` of the block, unrolled by hand, and each vector's products done for all
        // the tile's tokens before the next vector's (`kept_all`). LLVM kept a K-quant's 16
        // vectors a rolled loop, recomputing offsets, scale and chain test at run time (as
        // many instructions again as the products); unrolled but free, it ran the tokens one
        // by one, each widened vector spilled and reloaded per token (two loads per multiply).
        // Both together: 4 tokens 1.3–1.5×, 8 tokens 1.15–1.3× faster on Q4_K and Q6_K.
        macro_rules! vector {
            ($v:expr) => {
                if $v < B::BS / 16 {
                    let v = $v;
                    let wv = B::weights(a, b, &h, v);
                    for t in 0..T {
                        p[t] = a.add32(p[t], a.madd(wv, a.load16(qb[t], 16 * v)));
                    }
                    a.kept_all(&mut p);
                    if (v + 1) % B::CHAIN == 0 {
                        for t in 0..T {
                            let sc = a.splat(dw * d[t][bi * B::BS / B::G]);
                            acc[t][bi % 2] = a.fmadd(a.cvt(p[t]), sc, acc[t][bi % 2]);
                            p[t] = a.zero_i();
                        }
                    }
                }
            };
        }
        vector!(0);
        vector!(1);
        vector!(2);
        vector!(3);
        vector!(4);
        vector!(5);
        vector!(6);
        vector!(7);
        vector!(8);
        vector!(9);
        vector!(10);
        vector!(11);
        vector!(12);
        vector!(13);
        vector!(14);
        vector!(15);
    }
    std::array::from_fn(|t| a.hsum(a.add(a.add(acc[t][0], acc[t][1]), macc[t])))
}

/// f16 `d`, 32 × i8.
pub(in super::super) struct Q8_0;
impl DotBlock for Q8_0 {
    const BS: usize = 32;
    const TS: usize = 34;
    const G: usize = 32;
    const CHAIN: usize = 2;
    type H = f32;
    #[inline(always)]
    fn head(a: Avx2, b: &[u8]) -> f32 {
        a.f16(b, 0)
    }
    #[inline(always)]
    fn weights(a: Avx2, b: &[u8], _h: &f32, v: usize) -> __m256i {
        a.i8x16_16(b, 2 + 16 * v)
    }
    #[inline(always)]
    fn scale(h: &f32) -> f32 {
        *h
    }
}

/// f16 `d`, `qh` (bit `j`: weight `j`'s fifth bit), 16 bytes of nibbles (weight `j < 16` the
/// low nibble of byte `j`, weight `j + 16` its high one); weights `d·(q − 16)`.
pub(in super::super) struct Q5_0;
impl DotBlock for Q5_0 {
    const BS: usize = 32;
    const TS: usize = 22;
    const G: usize = 32;
    const CHAIN: usize = 2;
    type H = f32;
    #[inline(always)]
    fn head(a: Avx2, b: &[u8]) -> f32 {
        a.f16(b, 0)
    }
    #[inline(always)]
    fn weights(a: Avx2, b: &[u8], _h: &f32, v: usize) -> __m256i {
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let nib = a.u8x16_16(b, 6);
        let nib = if v == 0 {
            a.and(nib, a.splat16(15))
        } else {
            a.srl16::<4>(nib)
        };
        // Lane j of `high` is all ones where the weight's fifth bit is set; where it is clear
        // the weight is its nibble − 16, else the nibble (+ 16 − 16).
        let bits = a.lane_bits16();
        let hv = a.splat16((qh >> (16 * v)) as u16 as i16);
        let high = a.eq16(a.and(hv, bits), bits);
        a.sub16(nib, a.andnot(high, a.splat16(16)))
    }
    #[inline(always)]
    fn scale(h: &f32) -> f32 {
        *h
    }
}

/// f16 `d`, `dmin`, 12 bytes of six-bit scales and mins, 128 bytes of nibbles (sub-block
/// `2c` the low nibbles of bytes `32c..32c + 32`, `2c + 1` their high ones); weight
/// `d·sc·q − dmin·m`.
pub(in super::super) struct Q4K;
impl DotBlock for Q4K {
    const BS: usize = 256;
    const TS: usize = 144;
    const G: usize = 256;
    const CHAIN: usize = 16;
    const MIN: bool = true;
    /// `d`, `dmin`, the 8 scales, the 8 mins.
    type H = (f32, f32, [u8; 8], [u8; 8]);
    #[inline(always)]
    fn head(a: Avx2, b: &[u8]) -> Self::H {
        let (sc, m) = k4_words(b);
        (a.f16(b, 0), a.f16(b, 2), sc.to_le_bytes(), m.to_le_bytes())
    }
    #[inline(always)]
    fn weights(a: Avx2, b: &[u8], h: &Self::H, v: usize) -> __m256i {
        // Vector v: sub-block 2c + (v % 4) / 2 of chunk c = v / 4, bytes 16·(v % 2).. of it.
        let (c, j) = (v / 4, v % 4);
        let bytes = a.u8x16_16(b, 16 + 32 * c + 16 * (j % 2));
        let nib = if j < 2 {
            a.and(bytes, a.splat16(15))
        } else {
            a.srl16::<4>(bytes)
        };
        a.mullo16(nib, a.splat16(h.2[2 * c + j / 2].into()))
    }
    #[inline(always)]
    fn scale(h: &Self::H) -> f32 {
        h.0
    }
    #[inline(always)]
    fn mins(a: Avx2, h: &Self::H) -> __m256 {
        a.mul(a.cvt(a.u8x8(&h.3, 0)), a.splat(-h.1))
    }
    #[inline(always)]
    fn one(a: Avx2, b: &[u8], q: &[i16], d: f32, s: &[f32], acc: &mut __m256, m: &mut __m256) {
        let (dw, dmin) = (a.f16(b, 0), a.f16(b, 2));
        let (sc, mins) = k4_words(b);
        let sc = sc.to_le_bytes();
        // −dmin·m_j times the sum of sub-block j's activations.
        let mv = a.mul(a.cvt(a.u8x8(&mins.to_le_bytes(), 0)), a.splat(-dmin));
        *m = a.fmadd(mv, a.load(s, 0), *m);
        let m15 = a.splat16(15);
        let mut p = a.zero_i();
        // Each sub-block's nibbles × activations first, then times its scale once in i32
        // (`vpmulld`): one multiply per 32 weights where `weights` takes two `vpmullw`. The
        // same integers as `tile`'s (each term fits: ≤ 4·15·32767·63 per lane).
        for c in 0..4 {
            let (v0, v1) = (a.u8x16_16(b, 16 + 32 * c), a.u8x16_16(b, 32 + 32 * c));
            let at = 64 * c;
            let lo = a.add32(
                a.madd(a.and(v0, m15), a.load16(q, at)),
                a.madd(a.and(v1, m15), a.load16(q, at + 16)),
            );
            let hi = a.add32(
                a.madd(a.srl16::<4>(v0), a.load16(q, at + 32)),
                a.madd(a.srl16::<4>(v1), a.load16(q, at + 48)),
            );
            let lo = a.mullo32(lo, a.splat_i(sc[2 * c].into()));
            let hi = a.mullo32(hi, a.splat_i(sc[2 * c + 1].into()));
            p = a.add32(p, a.add32(lo, hi));
        }
        *acc = a.fmadd(a.cvt(p), a.splat(dw * d), *acc);
    }
}

/// 128 bytes `ql`, 64 bytes `qh`, 16 i8 scales, f16 `d`. Weight `128h + 32s + l` (`h < 2`,
/// `s < 4`, `l < 32`): low 4 bits the nibble `s / 2` of `ql[64h + 32(s % 2) + l]`, high 2 bits
/// bits `2s..2s + 2` of `qh[32h + l]`; value `d·sc[8h + 2s + l / 16]·(q − 32)`. So vector `v
/// = 8h + 2s + l / 16` takes scale `v`.
pub(in super::super) struct Q6K;
impl DotBlock for Q6K {
    const BS: usize = 256;
    const TS: usize = 210;
    const G: usize = 256;
    const CHAIN: usize = 8;
    type H = f32;
    #[inline(always)]
    fn head(a: Avx2, b: &[u8]) -> f32 {
        a.f16(b, 208)
    }
    #[inline(always)]
    fn weights(a: Avx2, b: &[u8], _h: &f32, v: usize) -> __m256i {
        let (h, s, lh) = (v / 8, (v % 8) / 2, v % 2);
        let ql = a.u8x16_16(b, 64 * h + 32 * (s % 2) + 16 * lh);
        let ql = if s < 2 {
            a.and(ql, a.splat16(15))
        } else {
            a.srl16::<4>(ql)
        };
        // qh's bits 2s..2s + 2 moved to bits 4..6.
        let qh = a.u8x16_16(b, 128 + 32 * h + 16 * lh);
        let hb = match s {
            0 => a.sll16::<4>(qh),
            1 => a.sll16::<2>(qh),
            2 => qh,
            _ => a.srl16::<2>(qh),
        };
        let q = a.sub16(a.or(ql, a.and(hb, a.splat16(48))), a.splat16(32));
        a.mullo16(q, a.splat16((b[192 + v] as i8).into()))
    }
    #[inline(always)]
    fn scale(h: &f32) -> f32 {
        *h
    }
    #[inline(always)]
    fn one(a: Avx2, b: &[u8], q: &[i16], d: f32, _s: &[f32], acc: &mut __m256, _m: &mut __m256) {
        let (m15, m48, m32) = (a.splat16(15), a.splat16(48), a.splat16(32));
        // The 16 scales as i16 in memory: each splat a broadcast load, free beside the
        // multiplies, where a splat from a register takes a move and a shuffle (`black_box`
        // keeps LLVM from forwarding the stored vector into shuffles).
        let mut sc = [0i16; 16];
        a.store16(&mut sc, a.i8x16_16(b, 192));
        let sc = std::hint::black_box(&mut sc);
        // One i32 accumulator per half (the overflow bound in the module doc).
        let mut p = [a.zero_i(); 2];
        for (h, p) in p.iter_mut().enumerate() {
            for lh in 0..2 {
                // Weights 128h + 32s + 16lh + 0..16.
                let qa = a.u8x16_16(b, 64 * h + 16 * lh);
                let qb = a.u8x16_16(b, 64 * h + 32 + 16 * lh);
                let qh = a.u8x16_16(b, 128 + 32 * h + 16 * lh);
                // (ql, qh's bits 2s..2s + 2 moved to bits 4..6) for s = 0..4, spelled out: a
                // loop over s with a `match` on the shift may stay rolled.
                let parts = [
                    (a.and(qa, m15), a.and(a.sll16::<4>(qh), m48)),
                    (a.and(qb, m15), a.and(a.sll16::<2>(qh), m48)),
                    (a.srl16::<4>(qa), a.and(qh, m48)),
                    (a.srl16::<4>(qb), a.and(a.srl16::<2>(qh), m48)),
                ];
                for (s, (ql, hb)) in parts.into_iter().enumerate() {
                    let wq = a.sub16(a.or(ql, hb), m32);
                    let wv = a.mullo16(wq, a.splat16(sc[8 * h + 2 * s + lh]));
                    let at = 128 * h + 32 * s + 16 * lh;
                    *p = a.add32(*p, a.madd(wv, a.load16(q, at)));
                }
            }
        }
        let dd = a.splat(a.f16(b, 208) * d);
        *acc = a.fmadd(a.cvt(p[0]), dd, *acc);
        *acc = a.fmadd(a.cvt(p[1]), dd, *acc);
    }
}
