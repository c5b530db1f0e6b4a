//! Reference dequantizers of the IQ formats and MXFP4: plain scalar code, the oracle of every
//! fast path, bit-exact with the `gguf` PyPI package 0.19.0 (`gguf/quants.py`), which matches
//! ggml's `dequantize_row_iq*` / `dequantize_row_mxfp4`.
//!
//! | type    | per-weight arithmetic (all f32)                      |
//! | ------- | ---------------------------------------------------- |
//! | IQ4_NL  | `d * kv[q]`                                          |
//! | IQ4_XS  | `(d * (ls - 32)) * kv[q]`                            |
//! | IQ3_XXS | `((d * (0.5 + ls)) * 0.5) * grid * ±1`               |
//! | IQ3_S   | `(d * (1 + 2·ls)) * grid * ±1`                       |
//! | IQ2_XXS | `((d * (0.5 + ls)) * 0.25) * grid * ±1` (also XS, S) |
//! | IQ1_S   | `(d * (2·ls + 1)) * (grid + delta)` (also IQ1_M)     |
//! | MXFP4   | `e8m0_half(e) * kv[q]`                               |
//!
//! Every one of these is exact in f32, whatever the order: `d` has 11 significant bits, the
//! scale factors at most 5 (0.5 + ls, 1 + 2·ls ≤ 31) and the levels at most 7 (|kv| ≤ 127,
//! grid ≤ 62, grid ± 0.125 in eighths of ≤ 9), so each product has at most 23 significant
//! bits; the powers of two (0.5, 0.25, MXFP4's scale) only move the exponent (f16's smallest
//! subnormal times 0.25 is still a normal f32; MXFP4 can overflow to ±inf or be subnormal, and
//! both are exact too). So any fast path that computes the same factors is bit-exact, and
//! applying a sign by negation equals ggml's multiplication by ±1.

use super::blocks::QK;
use super::dequant::check_len;
use super::grids::*;
use super::iq_blocks::*;
use super::types::{GgmlType, QK_K};
use super::QuantError;

/// The `k`-th byte (weight) of a grid row.
#[inline]
fn byte(row: u64, k: usize) -> u8 {
    (row >> (8 * k)) as u8
}

/// ±1.0 for sign bit `bit` of `signs`.
#[inline]
fn sign(signs: u8, bit: usize) -> f32 {
    if (signs >> bit) & 1 == 1 {
        -1.0
    } else {
        1.0
    }
}

pub fn dequantize_block_iq4_nl(b: &BlockIq4Nl, y: &mut [f32; QK]) {
    let d = b.d();
    for (j, &q) in b.qs.iter().enumerate() {
        y[j] = d * KVALUES_IQ4NL[(q & 15) as usize] as f32;
        y[j + QK / 2] = d * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
    }
}

pub fn dequantize_block_iq4_xs(b: &BlockIq4Xs, y: &mut [f32; QK_K]) {
    let d = b.d();
    for (i, y) in y.chunks_exact_mut(32).enumerate() {
        let dl = d * b.scale(i) as f32;
        for (j, &q) in b.qs[16 * i..16 * i + 16].iter().enumerate() {
            y[j] = dl * KVALUES_IQ4NL[(q & 15) as usize] as f32;
            y[j + 16] = dl * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
        }
    }
}

pub fn dequantize_block_iq3_xxs(b: &BlockIq3Xxs, y: &mut [f32; QK_K]) {
    let d = b.d();
    for (i, y) in y.chunks_exact_mut(32).enumerate() {
        let aux = u32::from_le_bytes([
            b.sas[4 * i],
            b.sas[4 * i + 1],
            b.sas[4 * i + 2],
            b.sas[4 * i + 3],
        ]);
        let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
        for (l, y) in y.chunks_exact_mut(8).enumerate() {
            let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
            let g1 = IQ3XXS_GRID[b.qs[8 * i + 2 * l] as usize] as u64;
            let g2 = IQ3XXS_GRID[b.qs[8 * i + 2 * l + 1] as usize] as u64;
            let row = g1 | (g2 << 32);
            for (j, y) in y.iter_mut().enumerate() {
                *y = db * byte(row, j) as f32 * sign(signs, j);
            }
        }
    }
}

pub fn dequantize_block_iq3_s(b: &BlockIq3S, y: &mut [f32; QK_K]) {
    let d = b.d();
    for (i, y) in y.chunks_exact_mut(32).enumerate() {
        let ls = (b.scales[i / 2] >> (4 * (i % 2))) & 15;
        let db = d * (1 + 2 * ls) as f32;
        for (j, y) in y.iter_mut().enumerate() {
            let e = 32 * i + j;
            let k = e / 4;
            let idx = b.qs[k] as usize | ((((b.qh[k / 8] >> (k % 8)) & 1) as usize) << 8);
            let g = byte(IQ3S_GRID[idx] as u64, e % 4);
            *y = db * g as f32 * sign(b.signs[e / 8], e % 8);
        }
    }
}

pub fn dequantize_block_iq2_xxs(b: &BlockIq2Xxs, y: &mut [f32; QK_K]) {
    let d = b.d();
    for (i, y) in y.chunks_exact_mut(32).enumerate() {
        let q = &b.qs[8 * i..8 * i + 8];
        let aux = u32::from_le_bytes([q[4], q[5], q[6], q[7]]);
        let db = d * (0.5 + (aux >> 28) as f32) * 0.25;
        for (l, y) in y.chunks_exact_mut(8).enumerate() {
            let row = IQ2XXS_GRID[q[l] as usize];
            let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
            for (j, y) in y.iter_mut().enumerate() {
                *y = db * byte(row, j) as f32 * sign(signs, j);
            }
        }
    }
}

/// `d·(0.5 + ls)·0.25` for the 4-bit scale of weights `16s..16s+16` (IQ2_XS, IQ2_S).
#[inline]
fn iq2_db(d: f32, scales: &[u8; 8], s: usize) -> f32 {
    d * (0.5 + ((scales[s / 2] >> (4 * (s % 2))) & 15) as f32) * 0.25
}

pub fn dequantize_block_iq2_xs(b: &BlockIq2Xs, y: &mut [f32; QK_K]) {
    let d = b.d();
    for (g, y) in y.chunks_exact_mut(8).enumerate() {
        let db = iq2_db(d, &b.scales, g / 2);
        let q = u16::from_le_bytes([b.qs[2 * g], b.qs[2 * g + 1]]);
        let row = IQ2XS_GRID[(q & 511) as usize];
        let signs = KSIGNS_IQ2XS[(q >> 9) as usize];
        for (j, y) in y.iter_mut().enumerate() {
            *y = db * byte(row, j) as f32 * sign(signs, j);
        }
    }
}

pub fn dequantize_block_iq2_s(b: &BlockIq2S, y: &mut [f32; QK_K]) {
    let d = b.d();
    for (g, y) in y.chunks_exact_mut(8).enumerate() {
        let db = iq2_db(d, &b.scales, g / 2);
        let idx = b.qs[g] as usize | ((((b.qh[g / 4] >> (2 * (g % 4))) & 3) as usize) << 8);
        let row = IQ2S_GRID[idx];
        for (j, y) in y.iter_mut().enumerate() {
            *y = db * byte(row, j) as f32 * sign(b.signs[g], j);
        }
    }
}

pub fn dequantize_block_iq1_s(b: &BlockIq1S, y: &mut [f32; QK_K]) {
    let d = b.d();
    for (i, y) in y.chunks_exact_mut(32).enumerate() {
        let qh = u16::from_le_bytes([b.qh[2 * i], b.qh[2 * i + 1]]);
        let dl = d * (2 * ((qh >> 12) & 7) + 1) as f32;
        let delta = if qh & 0x8000 != 0 {
            -IQ1S_DELTA
        } else {
            IQ1S_DELTA
        };
        for (l, y) in y.chunks_exact_mut(8).enumerate() {
            let idx = b.qs[4 * i + l] as usize | ((((qh >> (3 * l)) & 7) as usize) << 8);
            let row = IQ1S_GRID[idx];
            for (j, y) in y.iter_mut().enumerate() {
                *y = dl * (byte(row, j) as i8 as f32 + delta);
            }
        }
    }
}

pub fn dequantize_block_iq1_m(b: &BlockIq1M, y: &mut [f32; QK_K]) {
    let d = b.d();
    for (g, y) in y.chunks_exact_mut(8).enumerate() {
        let s = g / 2; // 16-weight sub-block
        let ls = (b.word(s / 4) >> (3 * (s % 4))) & 7;
        let dl = d * (2 * ls + 1) as f32;
        let nib = (b.qh[g / 2] >> (4 * (g % 2))) & 15;
        let idx = b.qs[g] as usize | (((nib & 7) as usize) << 8);
        let delta = if nib & 8 != 0 {
            -IQ1S_DELTA
        } else {
            IQ1S_DELTA
        };
        let row = IQ1S_GRID[idx];
        for (j, y) in y.iter_mut().enumerate() {
            *y = dl * (byte(row, j) as i8 as f32 + delta);
        }
    }
}

pub fn dequantize_block_mxfp4(b: &BlockMxfp4, y: &mut [f32; QK]) {
    let d = b.d();
    for (j, &q) in b.qs.iter().enumerate() {
        y[j] = d * KVALUES_MXFP4[(q & 15) as usize] as f32;
        y[j + QK / 2] = d * KVALUES_MXFP4[(q >> 4) as usize] as f32;
    }
}

/// Check lengths, then call `f` on each `TS`-byte block and its `BS` outputs.
#[inline]
fn for_each_block<const TS: usize, const BS: usize>(
    ty: GgmlType,
    data: &[u8],
    out: &mut [f32],
    mut f: impl FnMut(&[u8; TS], &mut [f32; BS]),
) -> Result<(), QuantError> {
    debug_assert_eq!(ty.block_geometry(), (BS, TS));
    check_len(ty, data.len(), out.len())?;
    for (b, y) in data.chunks_exact(TS).zip(out.chunks_exact_mut(BS)) {
        if let (Ok(b), Ok(y)) = (b.try_into(), y.try_into()) {
            f(b, y);
        }
    }
    Ok(())
}

macro_rules! row_fn {
    ($name:ident, $ty:ident, $block:ident, $deq:ident) => {
        pub fn $name(data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
            for_each_block(GgmlType::$ty, data, out, |b, y| {
                $deq(&$block::from_bytes(b), y)
            })
        }
    };
}

row_fn!(
    dequantize_row_iq4_nl,
    IQ4_NL,
    BlockIq4Nl,
    dequantize_block_iq4_nl
);
row_fn!(
    dequantize_row_iq4_xs,
    IQ4_XS,
    BlockIq4Xs,
    dequantize_block_iq4_xs
);
row_fn!(
    dequantize_row_iq3_xxs,
    IQ3_XXS,
    BlockIq3Xxs,
    dequantize_block_iq3_xxs
);
row_fn!(
    dequantize_row_iq3_s,
    IQ3_S,
    BlockIq3S,
    dequantize_block_iq3_s
);
row_fn!(
    dequantize_row_iq2_xxs,
    IQ2_XXS,
    BlockIq2Xxs,
    dequantize_block_iq2_xxs
);
row_fn!(
    dequantize_row_iq2_xs,
    IQ2_XS,
    BlockIq2Xs,
    dequantize_block_iq2_xs
);
row_fn!(
    dequantize_row_iq2_s,
    IQ2_S,
    BlockIq2S,
    dequantize_block_iq2_s
);
row_fn!(
    dequantize_row_iq1_s,
    IQ1_S,
    BlockIq1S,
    dequantize_block_iq1_s
);
row_fn!(
    dequantize_row_iq1_m,
    IQ1_M,
    BlockIq1M,
    dequantize_block_iq1_m
);
row_fn!(
    dequantize_row_mxfp4,
    MXFP4,
    BlockMxfp4,
    dequantize_block_mxfp4
);

#[cfg(test)]
mod tests {
    use super::*;

    fn f16(x: f32) -> [u8; 2] {
        half::f16::from_f32(x).to_bits().to_le_bytes()
    }

    #[test]
    fn iq4_nl_and_mxfp4_hand_built() {
        let mut qs = [0u8; 16];
        qs[0] = 0xf0; // weight 0 → kv[0] = −127, weight 16 → kv[15] = 113
        let b = BlockIq4Nl { d: f16(0.5), qs };
        let mut y = [0.0; QK];
        dequantize_block_iq4_nl(&b, &mut y);
        assert_eq!((y[0], y[16], y[1]), (-63.5, 56.5, -63.5));
        let b = BlockMxfp4 { e: 128, qs }; // scale 1.0
        dequantize_block_mxfp4(&b, &mut y);
        assert_eq!((y[0], y[16], y[1]), (0.0, -12.0, 0.0));
    }

    #[test]
    fn iq2_xxs_signs_and_scale() {
        // Sub-block 0: group 0 is grid row 1 (43 then 7 × 8), sign index 1 → ksigns 0x81:
        // weights 0 and 7 negated. ls = 1 → db = d · 1.5 · 0.25.
        let mut qs = [0u8; 64];
        qs[0] = 1;
        qs[4..8].copy_from_slice(&(1u32 | (1 << 28)).to_le_bytes());
        let b = BlockIq2Xxs { d: f16(4.0), qs };
        let mut y = [0.0; QK_K];
        dequantize_block_iq2_xxs(&b, &mut y);
        assert_eq!(&y[..8], &[-64.5, 12.0, 12.0, 12.0, 12.0, 12.0, 12.0, -12.0]);
        // Sub-block 1 has ls = 0: db = 4 · 0.5 · 0.25 = 0.5, grid row 0 = all 8.
        assert_eq!(y[32], 4.0);
    }

    #[test]
    fn iq1_s_delta() {
        // Group 0 is row 0 (all −1); ls = 0 → dl = d; bit 15 set → delta −0.125.
        let mut qh = [0u8; 16];
        qh[0..2].copy_from_slice(&0x8000u16.to_le_bytes());
        let b = BlockIq1S {
            d: f16(2.0),
            qs: [0; 32],
            qh,
        };
        let mut y = [0.0; QK_K];
        dequantize_block_iq1_s(&b, &mut y);
        assert_eq!((y[0], y[32]), (-2.25, -1.75));
    }

    #[test]
    fn lengths_are_checked() {
        let mut y = [0.0; 64];
        assert!(matches!(
            dequantize_row_mxfp4(&[0; 33], &mut y),
            Err(QuantError::ByteCount { expected: 34, .. })
        ));
        assert!(matches!(
            dequantize_row_iq2_s(&[0; 82], &mut y),
            Err(QuantError::PartialBlock { block: 256, .. })
        ));
    }
}
