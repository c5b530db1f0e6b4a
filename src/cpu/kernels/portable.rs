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

/// The little-endian f16 at byte `at` of `b`, as f32 (the blocks' scales).
#[inline(always)]
pub(super) fn f16_at(b: &[u8], at: usize) -> f32 {
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
        let d = f16_at(&b, 0);
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
        let (d, m) = (f16_at(&b, 0), f16_at(&b, 2));
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
        let d = f16_at(&b, 0);
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
        let (d, m) = (f16_at(&b, 0), f16_at(&b, 2));
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
        let d = f16_at(&b, 0);
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
        let (d, dmin) = (f16_at(&b, 80), f16_at(&b, 82));
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
        let d = f16_at(&b, 108);
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
        let (d, dmin) = (f16_at(&b, 0), f16_at(&b, 2));
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
        let (d, dmin) = (f16_at(&b, 0), f16_at(&b, 2));
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
        let d = f16_at(&b, 208);
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

// ---- IQ formats and MXFP4 (see quant::iq_dequant for why every product is exact) ----

use crate::quant::grids::{
    IQ1S_DELTA, IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID,
    KSIGNS_IQ2XS, KVALUES_IQ4NL, KVALUES_MXFP4,
};
use crate::quant::iq_blocks::e8m0_to_f32_half;

/// Weight `j` of grid row `row`, signed by bit `j` of `signs`.
#[inline(always)]
fn signed(row: u64, signs: u8, j: usize) -> f32 {
    let v = ((row >> (8 * j)) & 0xff) as f32;
    if (signs >> j) & 1 == 1 {
        -v
    } else {
        v
    }
}

/// The little-endian `u32` at `b[at..at + 4]` (the IQ formats' packed sign and scale words;
/// every kernel family reads them).
#[inline(always)]
pub(super) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The little-endian `u16` at `b[at..at + 2]` (the SIMD kernels' IQ index and scale words).
#[cfg_attr(
    not(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    )),
    allow(dead_code)
)]
#[inline(always)]
pub(super) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(super) struct Iq4Nl;
impl Dec for Iq4Nl {
    const BS: usize = 32;
    const TS: usize = 18;
    #[inline(always)]
    fn group(b: &[u8], _: usize, w: &mut [f32; 32]) {
        let b = blk::<18>(b);
        let d = f16_at(&b, 0);
        for j in 0..16 {
            let q = b[2 + j];
            w[j] = d * KVALUES_IQ4NL[(q & 15) as usize] as f32;
            w[j + 16] = d * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
        }
    }
}

pub(super) struct Iq4Xs;
impl Dec for Iq4Xs {
    const BS: usize = 256;
    const TS: usize = 136;
    #[inline(always)]
    fn group(b: &[u8], g: usize, w: &mut [f32; 32]) {
        let b = blk::<136>(b);
        let g = g % 8;
        let sh = u16::from_le_bytes([b[2], b[3]]);
        let ls = ((b[4 + g / 2] >> (4 * (g % 2))) & 15) | ((((sh >> (2 * g)) & 3) as u8) << 4);
        let dl = f16_at(&b, 0) * (ls as i32 - 32) as f32;
        for j in 0..16 {
            let q = b[8 + 16 * g + j];
            w[j] = dl * KVALUES_IQ4NL[(q & 15) as usize] as f32;
            w[j + 16] = dl * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
        }
    }
}

pub(super) struct Iq3Xxs;
impl Dec for Iq3Xxs {
    const BS: usize = 256;
    const TS: usize = 98;
    #[inline(always)]
    fn group(b: &[u8], g: usize, w: &mut [f32; 32]) {
        let b = blk::<98>(b);
        let g = g % 8;
        let aux = u32_at(&b, 66 + 4 * g);
        let db = f16_at(&b, 0) * (0.5 + (aux >> 28) as f32) * 0.5;
        for l in 0..4 {
            let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
            let row = IQ3XXS_GRID[b[2 + 8 * g + 2 * l] as usize] as u64
                | (IQ3XXS_GRID[b[2 + 8 * g + 2 * l + 1] as usize] as u64) << 32;
            for j in 0..8 {
                w[8 * l + j] = db * signed(row, signs, j);
            }
        }
    }
}

pub(super) struct Iq3S;
impl Dec for Iq3S {
    const BS: usize = 256;
    const TS: usize = 110;
    #[inline(always)]
    fn group(b: &[u8], g: usize, w: &mut [f32; 32]) {
        let b = blk::<110>(b);
        let g = g % 8;
        let ls = (b[106 + g / 2] >> (4 * (g % 2))) & 15;
        let db = f16_at(&b, 0) * (1 + 2 * ls) as f32;
        let qh = b[66 + g];
        for l in 0..4 {
            // Indices 8g + 2l and 8g + 2l + 1, 4 weights each.
            let i0 = b[2 + 8 * g + 2 * l] as usize | ((((qh >> (2 * l)) & 1) as usize) << 8);
            let i1 =
                b[2 + 8 * g + 2 * l + 1] as usize | ((((qh >> (2 * l + 1)) & 1) as usize) << 8);
            let row = IQ3S_GRID[i0] as u64 | (IQ3S_GRID[i1] as u64) << 32;
            let signs = b[74 + 4 * g + l];
            for j in 0..8 {
                w[8 * l + j] = db * signed(row, signs, j);
            }
        }
    }
}

pub(super) struct Iq2Xxs;
impl Dec for Iq2Xxs {
    const BS: usize = 256;
    const TS: usize = 66;
    #[inline(always)]
    fn group(b: &[u8], g: usize, w: &mut [f32; 32]) {
        let b = blk::<66>(b);
        let g = g % 8;
        let aux = u32_at(&b, 2 + 8 * g + 4);
        let db = f16_at(&b, 0) * (0.5 + (aux >> 28) as f32) * 0.25;
        for l in 0..4 {
            let row = IQ2XXS_GRID[b[2 + 8 * g + l] as usize];
            let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
            for j in 0..8 {
                w[8 * l + j] = db * signed(row, signs, j);
            }
        }
    }
}

/// `d·(0.5 + ls)·0.25` for the scale nibble of 16-weight sub-block `s` in `scales` (IQ2_XS/S).
#[inline(always)]
fn iq2_db(d: f32, scales: &[u8], s: usize) -> f32 {
    d * (0.5 + ((scales[s / 2] >> (4 * (s % 2))) & 15) as f32) * 0.25
}

pub(super) struct Iq2Xs;
impl Dec for Iq2Xs {
    const BS: usize = 256;
    const TS: usize = 74;
    #[inline(always)]
    fn group(b: &[u8], g: usize, w: &mut [f32; 32]) {
        let b = blk::<74>(b);
        let g = g % 8;
        let d = f16_at(&b, 0);
        for l in 0..4 {
            let db = iq2_db(d, &b[66..74], 2 * g + l / 2);
            let gi = 4 * g + l;
            let q = u16::from_le_bytes([b[2 + 2 * gi], b[3 + 2 * gi]]);
            let row = IQ2XS_GRID[(q & 511) as usize];
            let signs = KSIGNS_IQ2XS[(q >> 9) as usize];
            for j in 0..8 {
                w[8 * l + j] = db * signed(row, signs, j);
            }
        }
    }
}

pub(super) struct Iq2S;
impl Dec for Iq2S {
    const BS: usize = 256;
    const TS: usize = 82;
    #[inline(always)]
    fn group(b: &[u8], g: usize, w: &mut [f32; 32]) {
        let b = blk::<82>(b);
        let g = g % 8;
        let d = f16_at(&b, 0);
        let qh = b[66 + g];
        for l in 0..4 {
            let db = iq2_db(d, &b[74..82], 2 * g + l / 2);
            let gi = 4 * g + l;
            let idx = b[2 + gi] as usize | ((((qh >> (2 * l)) & 3) as usize) << 8);
            let row = IQ2S_GRID[idx];
            let signs = b[34 + gi];
            for j in 0..8 {
                w[8 * l + j] = db * signed(row, signs, j);
            }
        }
    }
}

/// Weight `j` of IQ1 grid row `row` (−1, 0 or 1) plus `delta`.
#[inline(always)]
fn iq1(row: u64, delta: f32, j: usize) -> f32 {
    ((row >> (8 * j)) as u8 as i8) as f32 + delta
}

pub(super) struct Iq1S;
impl Dec for Iq1S {
    const BS: usize = 256;
    const TS: usize = 50;
    #[inline(always)]
    fn group(b: &[u8], g: usize, w: &mut [f32; 32]) {
        let b = blk::<50>(b);
        let g = g % 8;
        let qh = u16::from_le_bytes([b[34 + 2 * g], b[35 + 2 * g]]);
        let dl = f16_at(&b, 0) * (2 * ((qh >> 12) & 7) + 1) as f32;
        let delta = if qh & 0x8000 != 0 {
            -IQ1S_DELTA
        } else {
            IQ1S_DELTA
        };
        for l in 0..4 {
            let idx = b[2 + 4 * g + l] as usize | ((((qh >> (3 * l)) & 7) as usize) << 8);
            let row = IQ1S_GRID[idx];
            for j in 0..8 {
                w[8 * l + j] = dl * iq1(row, delta, j);
            }
        }
    }
}

pub(super) struct Iq1M;
impl Dec for Iq1M {
    const BS: usize = 256;
    const TS: usize = 56;
    #[inline(always)]
    fn group(b: &[u8], g: usize, w: &mut [f32; 32]) {
        let b = blk::<56>(b);
        let g = g % 8;
        let word = |k: usize| u16::from_le_bytes([b[48 + 2 * k], b[49 + 2 * k]]);
        let dbits = (word(0) >> 12)
            | ((word(1) >> 8) & 0x00f0)
            | ((word(2) >> 4) & 0x0f00)
            | (word(3) & 0xf000);
        let d = f16_to_f32(dbits);
        // 16-weight sub-blocks 2g and 2g + 1: word g / 2, bits 6(g % 2) and 6(g % 2) + 3.
        let sw = word(g / 2) >> (6 * (g % 2));
        for l in 0..4 {
            let ls = (sw >> (3 * (l / 2))) & 7;
            let dl = d * (2 * ls + 1) as f32;
            let gi = 4 * g + l;
            let nib = (b[32 + gi / 2] >> (4 * (gi % 2))) & 15;
            let idx = b[gi] as usize | (((nib & 7) as usize) << 8);
            let delta = if nib & 8 != 0 {
                -IQ1S_DELTA
            } else {
                IQ1S_DELTA
            };
            let row = IQ1S_GRID[idx];
            for j in 0..8 {
                w[8 * l + j] = dl * iq1(row, delta, j);
            }
        }
    }
}

pub(super) struct Mxfp4;
impl Dec for Mxfp4 {
    const BS: usize = 32;
    const TS: usize = 17;
    #[inline(always)]
    fn group(b: &[u8], _: usize, w: &mut [f32; 32]) {
        let b = blk::<17>(b);
        let d = e8m0_to_f32_half(b[0]);
        for j in 0..16 {
            let q = b[1 + j];
            w[j] = d * KVALUES_MXFP4[(q & 15) as usize] as f32;
            w[j + 16] = d * KVALUES_MXFP4[(q >> 4) as usize] as f32;
        }
    }
}
