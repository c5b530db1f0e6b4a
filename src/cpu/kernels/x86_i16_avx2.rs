//! x86_64 AVX2 integer kernels for one token (decode) on CPUs without AVX-512 BW: Q5_0,
//! Q8_0, Q4_K and Q6_K, the formats of the usual Q4_K_M files (SmolLM2's Q5_0 projections and
//! Q8_0 output head, the K-quants' Q4_K and Q6_K). A child of `x86`: its `unsafe` is the
//! `Avx2` token's one-line wrappers there.
//!
//! The scheme of `x86_i16` on 256-bit registers: the token's activations are quantized once
//! per matmul (`super::super::QAct::quantize`, per group of `G` values — 32, or 256 for the
//! K-quants — `d = max|x| / 32767` and `q = round(x / d)` in i16, error at most `d / 2`), a
//! block's weights are widened to 16-lane i16 vectors holding their integer quants (the
//! K-quants' already times their integer sub-block scales) with `vpmovzxbw` / `vpmovsxbw`,
//! and `vpmaddwd` multiplies them with the activations into exact i32 lanes; per block the
//! lanes are converted to f32 once and FMA'd with the product of the weight and activation
//! scales. Min terms (Q4_K) use the exact f32 sums of every 32 activations.
//!
//! Why: the f32 kernels of `x86` convert every weight to f32 (8 per instruction) and scale it
//! with an FMA before the FMA with the activation; here 16 weights take one widening load or
//! mask, one multiply by the sub-block scale and one `vpmaddwd`, so a one-token product costs
//! about half the instructions. Without VNNI a `vpmaddwd` needs a `vpaddd` after it, so for
//! several tokens (where the f32 kernels decode a weight once for up to 8 tokens and each
//! token costs one FMA per 8 weights) the f32 tiles stay: `kernels::select` hands these out
//! for one token only.
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
use std::arch::x86_64::__m256;

/// A block format as integer quants for these kernels.
pub(in super::super) trait DotBlock {
    /// Weights per block.
    const BS: usize;
    /// Bytes per block.
    const TS: usize;
    /// Activation values per scale (32 or 256).
    const G: usize;
    /// `acc += block · activations`, `macc +=` its min term: `b` the block's bytes, `q` its
    /// `BS` quantized activations, `d` their scale, `s` the f32 sums of every 32 of them.
    fn block(a: Avx2, b: &[u8], q: &[i16], d: f32, s: &[f32], acc: &mut __m256, macc: &mut __m256);
}

/// Rows `r0..r0 + out.len() / n_tok` of `W·xᵀ` into `out` (row, token), from the activations
/// `x` quantized per `B::G` values. Rows one at a time; a row's blocks alternate between two
/// f32 accumulators, so that each block's FMA does not wait on the previous one's.
#[inline(always)]
pub(in super::super) fn rows<B: DotBlock>(
    a: Avx2,
    w: &QMatrix,
    x: &QAct,
    n_tok: usize,
    r0: usize,
    out: &mut [f32],
) {
    let cols = w.cols;
    let nb = cols / B::BS;
    let (ng, ns) = (cols / B::G, cols / 32);
    let n_rows = out.len() / n_tok;
    for t in 0..n_tok {
        let q = &x.q[t * cols..(t + 1) * cols];
        let d = &x.d[t * ng..(t + 1) * ng];
        let s = &x.s[t * ns..(t + 1) * ns];
        // (A macro, not a closure: a closure does not inherit the caller's target features.)
        macro_rules! block {
            ($bi:expr, $b:expr, $acc:expr, $macc:expr) => {{
                let bi = $bi;
                let (qb, sb) = (&q[bi * B::BS..], &s[bi * B::BS / 32..]);
                B::block(a, $b, qb, d[bi * B::BS / B::G], sb, $acc, $macc)
            }};
        }
        for ri in 0..n_rows {
            let row = &w.row(r0 + ri)[..nb * B::TS];
            let (mut acc0, mut acc1, mut macc) = (a.zero(), a.zero(), a.zero());
            let mut pairs = row.chunks_exact(2 * B::TS);
            for (pi, p) in pairs.by_ref().enumerate() {
                block!(2 * pi, &p[..B::TS], &mut acc0, &mut macc);
                block!(2 * pi + 1, &p[B::TS..], &mut acc1, &mut macc);
            }
            let last = pairs.remainder();
            if !last.is_empty() {
                block!(nb - 1, last, &mut acc0, &mut macc);
            }
            out[ri * n_tok + t] = a.hsum(a.add(a.add(acc0, acc1), macc));
        }
    }
}

/// `d·32` weights: f16 `d`, 32 × i8.
pub(in super::super) struct Q8_0;
impl DotBlock for Q8_0 {
    const BS: usize = 32;
    const TS: usize = 34;
    const G: usize = 32;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], q: &[i16], d: f32, _s: &[f32], acc: &mut __m256, _m: &mut __m256) {
        let (w0, w1) = (a.i8x16_16(b, 2), a.i8x16_16(b, 18));
        let p = a.add32(a.madd(w0, a.load16(q, 0)), a.madd(w1, a.load16(q, 16)));
        *acc = a.fmadd(a.cvt(p), a.splat(a.f16(b, 0) * d), *acc);
    }
}

/// f16 `d`, `qh` (bit `j`: weight `j`'s fifth bit), 16 bytes of nibbles (weight `j < 16` the
/// low nibble of byte `j`, weight `j + 16` its high one); weights `d·(q − 16)`.
pub(in super::super) struct Q5_0;
impl DotBlock for Q5_0 {
    const BS: usize = 32;
    const TS: usize = 22;
    const G: usize = 32;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], q: &[i16], d: f32, _s: &[f32], acc: &mut __m256, _m: &mut __m256) {
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let v = a.u8x16_16(b, 6);
        // Lane j of `h` is all ones where weight j's fifth bit is set; where it is clear the
        // weight is its nibble − 16, else the nibble (+ 16 − 16).
        let bits = a.lane_bits16();
        let h0 = a.eq16(a.and(a.splat16(qh as u16 as i16), bits), bits);
        let h1 = a.eq16(a.and(a.splat16((qh >> 16) as u16 as i16), bits), bits);
        let sixteen = a.splat16(16);
        let w0 = a.sub16(a.and(v, a.splat16(15)), a.andnot(h0, sixteen));
        let w1 = a.sub16(a.srl16::<4>(v), a.andnot(h1, sixteen));
        let p = a.add32(a.madd(w0, a.load16(q, 0)), a.madd(w1, a.load16(q, 16)));
        *acc = a.fmadd(a.cvt(p), a.splat(a.f16(b, 0) * d), *acc);
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
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], q: &[i16], d: f32, s: &[f32], acc: &mut __m256, m: &mut __m256) {
        let (dw, dmin) = (a.f16(b, 0), a.f16(b, 2));
        let (sc, mins) = k4_words(b);
        let sc = sc.to_le_bytes();
        // −dmin·m_j times the sum of sub-block j's activations.
        let mv = a.mul(a.cvt(a.u8x8(&mins.to_le_bytes(), 0)), a.splat(-dmin));
        *m = a.fmadd(mv, a.load(s, 0), *m);
        let m15 = a.splat16(15);
        let mut p = a.zero_i();
        for c in 0..4 {
            let (v0, v1) = (a.u8x16_16(b, 16 + 32 * c), a.u8x16_16(b, 32 + 32 * c));
            let (s0, s1) = (a.splat16(sc[2 * c].into()), a.splat16(sc[2 * c + 1].into()));
            let lo0 = a.mullo16(a.and(v0, m15), s0);
            let lo1 = a.mullo16(a.and(v1, m15), s0);
            let hi0 = a.mullo16(a.srl16::<4>(v0), s1);
            let hi1 = a.mullo16(a.srl16::<4>(v1), s1);
            let at = 64 * c;
            let lo = a.add32(
                a.madd(lo0, a.load16(q, at)),
                a.madd(lo1, a.load16(q, at + 16)),
            );
            let hi = a.add32(
                a.madd(hi0, a.load16(q, at + 32)),
                a.madd(hi1, a.load16(q, at + 48)),
            );
            p = a.add32(p, a.add32(lo, hi));
        }
        *acc = a.fmadd(a.cvt(p), a.splat(dw * d), *acc);
    }
}

/// 128 bytes `ql`, 64 bytes `qh`, 16 i8 scales, f16 `d`. Weight `128h + 32s + l` (`h < 2`,
/// `s < 4`, `l < 32`): low 4 bits the nibble `s / 2` of `ql[64h + 32(s % 2) + l]`, high 2 bits
/// bits `2s..2s + 2` of `qh[32h + l]`; value `d·sc[8h + 2s + l / 16]·(q − 32)`.
pub(in super::super) struct Q6K;
impl DotBlock for Q6K {
    const BS: usize = 256;
    const TS: usize = 210;
    const G: usize = 256;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], q: &[i16], d: f32, _s: &[f32], acc: &mut __m256, _m: &mut __m256) {
        let (m15, m48, m32) = (a.splat16(15), a.splat16(48), a.splat16(32));
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
                    let wv = a.mullo16(wq, a.splat16((b[192 + 8 * h + 2 * s + lh] as i8).into()));
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
