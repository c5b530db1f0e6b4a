//! Portable fused kernels: every type's blocks are read in place, 32 weights at a time, into a
//! 32-float register tile holding exactly the reference dequantizer's values, which is then
//! multiplied with up to 8 tokens at once. Plain Rust with fixed-size arrays and independent
//! lanes, so LLVM vectorizes it (SSE2 / AVX2 when compiled under `target_feature`, SIMD128 on
//! wasm32 with `+simd128`).
//!
//! Exactness of the weights: as `quant::dequant` explains, `d·sc` and `(d·sc)·q` are exact in
//! f32 for every format, so `q·s + m` (one rounding, with or without FMA) is bit-identical to
//! the reference dequantizer. The only difference from `Kernel::Reference` is the f32 (rather
//! than f64) accumulation of the dot product.

use crate::quant::blocks::{bf16_to_f32, f16_to_f32};
use crate::quant::get_scale_min_k4;

/// Bit-exact per-32-weight decoding of one block format.
pub(crate) trait Dec {
    /// Weights per block (a multiple of 32).
    const BS: usize;
    /// Bytes per block.
    const TS: usize;
    /// Write the 32 weights of group `g` (`0..BS/32`) of block `b` (`TS` bytes) into `w`.
    fn group(b: &[u8], g: usize, w: &mut [f32; 32]);
}

#[inline(always)]
fn h(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// The first `N` bytes of `b` as an array, so that constant indexing needs no bounds checks.
/// Callers pass exactly one block; a shorter slice (impossible) yields zeros.
#[inline(always)]
fn blk<const N: usize>(b: &[u8]) -> [u8; N] {
    match b.first_chunk::<N>() {
        Some(a) => *a,
        None => [0; N],
    }
}

pub(super) struct Q4_0;
impl Dec for Q4_0 {
    const BS: usize = 32;
    const TS: usize = 18;
    #[inline(always)]
    fn group(b: &[u8], _: usize, w: &mut [f32; 32]) {
        let b = blk::<18>(b);
        let d = h(&b, 0);
        for j in 0..16 {
            let q = b[2 + j];
            w[j] = d * ((q & 15) as i8 - 8) as f32;
            w[j + 16] = d * ((q >> 4) as i8 - 8) as f32;
        }
    }
}

pub(super) struct Q4_1;
impl Dec for Q4_1 {
    const BS: usize = 32;
    const TS: usize = 20;
    #[inline(always)]
    fn group(b: &[u8], _: usize, w: &mut [f32; 32]) {
        let b = blk::<20>(b);
        let (d, m) = (h(&b, 0), h(&b, 2));
        for j in 0..16 {
            let q = b[4 + j];
            w[j] = d * (q & 15) as f32 + m;
            w[j + 16] = d * (q >> 4) as f32 + m;
        }
    }
}

pub(super) struct Q5_0;
impl Dec for Q5_0 {
    const BS: usize = 32;
    const TS: usize = 22;
    #[inline(always)]
    fn group(b: &[u8], _: usize, w: &mut [f32; 32]) {
        let b = blk::<22>(b);
        let d = h(&b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        for j in 0..16 {
            let q = b[6 + j];
            let h0 = ((qh >> j) & 1) as u8;
            let h1 = ((qh >> (j + 16)) & 1) as u8;
            w[j] = d * (((q & 15) | (h0 << 4)) as i8 - 16) as f32;
            w[j + 16] = d * (((q >> 4) | (h1 << 4)) as i8 - 16) as f32;
        }
    }
}

pub(super) struct Q5_1;
impl Dec for Q5_1 {
    const BS: usize = 32;
    const TS: usize = 24;
    #[inline(always)]
    fn group(b: &[u8], _: usize, w: &mut [f32; 32]) {
        let b = blk::<24>(b);
        let (d, m) = (h(&b, 0), h(&b, 2));
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        for j in 0..16 {
            let q = b[8 + j];
            let h0 = ((qh >> j) & 1) as u8;
            let h1 = ((qh >> (j + 16)) & 1) as u8;
            w[j] = d * ((q & 15) | (h0 << 4)) as f32 + m;
            w[j + 16] = d * ((q >> 4) | (h1 << 4)) as f32 + m;
        }
    }
}

pub(super) struct Q8_0;
impl Dec for Q8_0 {
    const BS: usize = 32;
    const TS: usize = 34;
    #[inline(always)]
    fn group(b: &[u8], _: usize, w: &mut [f32; 32]) {
        let b = blk::<34>(b);
        let d = h(&b, 0);
        for j in 0..32 {
            w[j] = (b[2 + j] as i8) as f32 * d;
        }
    }
}

pub(super) struct Q2K;
impl Dec for Q2K {
    const BS: usize = 256;
    const TS: usize = 84;
    #[inline(always)]
    fn group(b: &[u8], g: usize, w: &mut [f32; 32]) {
        let b = blk::<84>(b);
        let (d, dmin) = (h(&b, 80), h(&b, 82));
        // Sub-blocks 2g and 2g+1: half g/4, shift 2·(g%4), bytes 0..16 and 16..32.
        let (hh, s) = ((g / 4) % 2, 2 * (g % 4));
        for k in 0..2 {
            let sc = b[(2 * g + k) % 16];
            let dl = d * (sc & 15) as f32;
            let ml = dmin * (sc >> 4) as f32;
            for l in 0..16 {
                let q = b[16 + hh * 32 + k * 16 + l];
                w[k * 16 + l] = dl * ((q >> s) & 3) as f32 - ml;
            }
        }
    }
}

pub(super) struct Q3K;
impl Dec for Q3K {
    const BS: usize = 256;
    const TS: usize = 110;
    #[inline(always)]
    fn group(b: &[u8], g: usize, w: &mut [f32; 32]) {
        let b = blk::<110>(b);
        let d = h(&b, 108);
        let sc = &b[96..108];
        let (hh, s, bit) = ((g / 4) % 2, 2 * (g % 4), g % 8);
        for k in 0..2 {
            let i = (2 * g + k) % 16;
            let low = if i < 8 { sc[i] & 15 } else { sc[i - 8] >> 4 };
            let high = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
            let dl = d * (((low | (high << 4)) as i8) - 32) as f32;
            for l in 0..16 {
                let ll = k * 16 + l;
                let lo = ((b[32 + hh * 32 + ll] >> s) & 3) as i8;
                let hi = ((b[ll] >> bit) & 1) as i8;
                w[ll] = dl * (lo - ((hi ^ 1) << 2)) as f32;
            }
        }
    }
}

pub(super) struct Q4K;
impl Dec for Q4K {
    const BS: usize = 256;
    const TS: usize = 144;
    #[inline(always)]
    fn group(b: &[u8], g: usize, w: &mut [f32; 32]) {
        let b = blk::<144>(b);
        let (d, dmin) = (h(&b, 0), h(&b, 2));
        let (sc, m) = get_scale_min_k4(g % 8, &blk::<12>(&b[4..]));
        let dl = d * sc as f32;
        let ml = dmin * m as f32;
        let (c, s) = ((g / 2) % 4, 4 * (g % 2));
        for l in 0..32 {
            w[l] = dl * ((b[16 + c * 32 + l] >> s) & 15) as f32 - ml;
        }
    }
}

pub(super) struct Q5K;
impl Dec for Q5K {
    const BS: usize = 256;
    const TS: usize = 176;
    #[inline(always)]
    fn group(b: &[u8], g: usize, w: &mut [f32; 32]) {
        let b = blk::<176>(b);
        let (d, dmin) = (h(&b, 0), h(&b, 2));
        let g = g % 8;
        let (sc, m) = get_scale_min_k4(g, &blk::<12>(&b[4..]));
        let dl = d * sc as f32;
        let ml = dmin * m as f32;
        let (c, s) = (g / 2, 4 * (g % 2));
        for l in 0..32 {
            let q = ((b[48 + c * 32 + l] >> s) & 15) | (((b[16 + l] >> g) & 1) << 4);
            w[l] = dl * q as f32 - ml;
        }
    }
}

pub(super) struct Q6K;
impl Dec for Q6K {
    const BS: usize = 256;
    const TS: usize = 210;
    #[inline(always)]
    fn group(b: &[u8], g: usize, w: &mut [f32; 32]) {
        let b = blk::<210>(b);
        let d = h(&b, 208);
        // Weights 128·hh + r, r = 32·(g%4) + l: ql[64·hh + 32·(g%2) + l] >> 4·((g%4)/2),
        // qh[32·hh + l] >> 2·(g%4); scales of sub-blocks 2g, 2g+1.
        let (hh, q4) = ((g / 4) % 2, g % 4);
        let (lo0, ls, hs) = (64 * hh + 32 * (q4 % 2), 4 * (q4 / 2), 2 * q4);
        for k in 0..2 {
            let dl = d * (b[192 + (2 * g + k) % 16] as i8) as f32;
            for l in 0..16 {
                let ll = k * 16 + l;
                let ql = (b[lo0 + ll] >> ls) & 15;
                let qh = (b[128 + 32 * hh + ll] >> hs) & 3;
                w[ll] = dl * ((ql | (qh << 4)) as i8 - 32) as f32;
            }
        }
    }
}

/// F32 / F16 / BF16 as 32-element "blocks" (a row's tail is handled by the caller).
pub(super) struct F32;
impl Dec for F32 {
    const BS: usize = 32;
    const TS: usize = 128;
    #[inline(always)]
    fn group(b: &[u8], _: usize, w: &mut [f32; 32]) {
        let b = blk::<128>(b);
        for (j, w) in w.iter_mut().enumerate() {
            *w = f32::from_le_bytes([b[4 * j], b[4 * j + 1], b[4 * j + 2], b[4 * j + 3]]);
        }
    }
}

pub(super) struct F16;
impl Dec for F16 {
    const BS: usize = 32;
    const TS: usize = 64;
    #[inline(always)]
    fn group(b: &[u8], _: usize, w: &mut [f32; 32]) {
        let b = blk::<64>(b);
        for (j, w) in w.iter_mut().enumerate() {
            *w = f16_to_f32(u16::from_le_bytes([b[2 * j], b[2 * j + 1]]));
        }
    }
}

pub(super) struct BF16;
impl Dec for BF16 {
    const BS: usize = 32;
    const TS: usize = 64;
    #[inline(always)]
    fn group(b: &[u8], _: usize, w: &mut [f32; 32]) {
        let b = blk::<64>(b);
        for (j, w) in w.iter_mut().enumerate() {
            *w = bf16_to_f32(u16::from_le_bytes([b[2 * j], b[2 * j + 1]]));
        }
    }
}

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Dot products of one row's blocks with `T` tokens' packed activations (see `Tiler`), `L`
/// independent f32 lanes per token.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // index loops over constant bounds: fully unrolled
pub(super) fn tile<D: Dec, const T: usize, const L: usize, const FMA: bool>(
    row: &[u8],
    xp: &[f32],
) -> [f32; T] {
    let mut acc = [[0f32; L]; T];
    let mut w = [0f32; 32];
    let gpb = D::BS / 32;
    for (xg, (gi, b)) in xp.chunks_exact(32 * T).zip(
        row.chunks_exact(D::TS)
            .flat_map(|b| (0..gpb).map(move |g| (g, b))),
    ) {
        D::group(b, gi, &mut w);
        for j in 0..4 {
            for t in 0..T {
                let xv = &xg[(j * T + t) * 8..(j * T + t + 1) * 8];
                let a = &mut acc[t];
                for l in 0..8 {
                    let i = j * 8 + l;
                    a[i % L] = madd::<FMA>(w[i], xv[l], a[i % L]);
                }
            }
        }
    }
    let mut out = [0f32; T];
    for (o, a) in out.iter_mut().zip(&acc) {
        *o = hsum(a);
    }
    out
}

/// The portable tiler of format `D` (`FMA`: use fused multiply-adds).
pub(super) struct Tiles<D, const FMA: bool>(std::marker::PhantomData<D>);
impl<D, const FMA: bool> Tiles<D, FMA> {
    pub(super) fn new() -> Self {
        Tiles(std::marker::PhantomData)
    }
}
impl<D, const FMA: bool> Clone for Tiles<D, FMA> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<D, const FMA: bool> Copy for Tiles<D, FMA> {}

impl<D: Dec, const FMA: bool> super::Tiler for Tiles<D, FMA> {
    const BS: usize = D::BS;
    const TS: usize = D::TS;
    #[inline(always)]
    fn dot(self, row: &[u8], x: &[f32]) -> f32 {
        tile::<D, 1, 32, FMA>(row, x)[0]
    }
    #[inline(always)]
    fn tile<const R: usize, const T: usize>(
        self,
        rows: [&[u8]; R],
        xp: &[f32],
        _: &mut [f32],
    ) -> [[f32; T]; R] {
        let mut out = [[0f32; T]; R];
        for (o, row) in out.iter_mut().zip(rows) {
            *o = tile::<D, T, 8, FMA>(row, xp);
        }
        out
    }
}

/// Pairwise sum of `L` lanes.
#[inline(always)]
pub(super) fn hsum<const L: usize>(a: &[f32; L]) -> f32 {
    let mut a = *a;
    let mut n = L;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            a[i] += a[i + n];
        }
    }
    a[0]
}
