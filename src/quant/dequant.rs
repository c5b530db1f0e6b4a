//! Reference dequantizers: plain scalar code, the oracle every fast path is tested against.
//!
//! Each one is bit-exact with the `gguf` PyPI package 0.19.0 (`gguf.quants.dequantize`), which
//! matches ggml's reference `dequantize_row_*`. Bit-exactness comes from doing the same float32
//! operations in the same order, one rounding each (Rust never fuses `a*b - c` into an FMA):
//!
//! | type | per-weight arithmetic (all f32)              |
//! | ---- | -------------------------------------------- |
//! | Q4_0 | `d * (q - 8)`                                |
//! | Q4_1 | `(d * q) + m`                                |
//! | Q5_0 | `d * (q - 16)`                               |
//! | Q5_1 | `(d * q) + m`                                |
//! | Q8_0 | `q * d`                                      |
//! | Q2_K | `(d * sc) * q - (dmin * m)`                  |
//! | Q3_K | `(d * (sc - 32)) * q`, `q` in −4..=3         |
//! | Q4_K | `(d * sc) * q - (dmin * m)`                  |
//! | Q5_K | `(d * sc) * q - (dmin * m)`                  |
//! | Q6_K | `(d * sc) * (q - 32)`                        |
//!
//! where the integer parts (`q - 8`, `sc - 32`, ...) are exact small integers converted to f32.
//! F32, F16 and BF16 are exact conversions.
//!
//! Why this is robust: `d` and `dmin` are f16 (11 significant bits) and the integers are small,
//! so every product above has at most 11 + 7 + 5 = 23 significant bits and is exact in f32
//! (no overflow, never subnormal). The only rounding is the final `+ m` / `- dmin·m`. So the
//! grouping of the products does not matter, and a fast path that uses FMA
//! (`fma(d·sc, q, −dmin·m)`) is still bit-exact; what must match is the final add/subtract.
//!
//! Block functions take one parsed block and fill a fixed-size array; row functions take whole
//! blocks as bytes, check the lengths and never panic.

use super::blocks::*;
use super::types::{GgmlType, QK_K};
use super::QuantError;

/// Check that `elements` of `ty` are whole blocks and take exactly `bytes` bytes.
pub fn check_len(ty: GgmlType, bytes: usize, elements: usize) -> Result<(), QuantError> {
    let (block, type_size) = ty.block_geometry();
    if !elements.is_multiple_of(block) {
        return Err(QuantError::PartialBlock {
            ty,
            elements,
            block,
        });
    }
    let expected = (elements / block).saturating_mul(type_size);
    if bytes != expected {
        return Err(QuantError::ByteCount {
            ty,
            elements,
            expected,
            got: bytes,
        });
    }
    Ok(())
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
        // chunks_exact yields exactly TS / BS items, so both conversions succeed.
        if let (Ok(b), Ok(y)) = (b.try_into(), y.try_into()) {
            f(b, y);
        }
    }
    Ok(())
}

/// The 6-bit scale and min of sub-block `j` (0..8) of a Q4_K / Q5_K block, as ggml's
/// `get_scale_min_k4`. Bytes 0..4 hold the low 6 bits of scales 0..4, bytes 4..8 the low 6
/// bits of mins 0..4; scales and mins 4..8 take their low 4 bits from the nibbles of bytes
/// 8..12 and their high 2 bits from the top bits of bytes 0..4 (scales) and 4..8 (mins):
/// ```text
///  0 EEAAAAAA   4 eeaaaaaa   8 eeeeEEEE      A..D scales 0..4, E..H scales 4..8
///  1 FFBBBBBB   5 ffbbbbbb   9 ffffFFFF      a..d mins 0..4,   e..h mins 4..8
///  2 GGCCCCCC   6 ggcccccc  10 ggggGGGG
///  3 HHDDDDDD   7 hhdddddd  11 hhhhHHHH
/// ```
/// Panics if `j >= 8`.
#[inline]
pub fn get_scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The 16 signed 6-bit scales of a Q3_K block, already minus 32 (−32..=31).
#[inline]
pub fn q3_k_scales(s: &[u8; 12]) -> [i8; 16] {
    std::array::from_fn(|i| {
        let low = if i < 8 { s[i] & 0x0f } else { s[i - 8] >> 4 };
        let high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        ((low | (high << 4)) as i8) - 32
    })
}

// ---- 32-weight formats ----

pub fn dequantize_block_q4_0(b: &BlockQ4_0, y: &mut [f32; QK]) {
    let d = b.d();
    for (j, &q) in b.qs.iter().enumerate() {
        y[j] = d * ((q & 0x0f) as i8 - 8) as f32;
        y[j + QK / 2] = d * ((q >> 4) as i8 - 8) as f32;
    }
}

pub fn dequantize_block_q4_1(b: &BlockQ4_1, y: &mut [f32; QK]) {
    let (d, m) = (b.d(), b.m());
    for (j, &q) in b.qs.iter().enumerate() {
        y[j] = d * (q & 0x0f) as f32 + m;
        y[j + QK / 2] = d * (q >> 4) as f32 + m;
    }
}

pub fn dequantize_block_q5_0(b: &BlockQ5_0, y: &mut [f32; QK]) {
    let d = b.d();
    let qh = u32::from_le_bytes(b.qh);
    for (j, &q) in b.qs.iter().enumerate() {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + QK / 2)) & 1) as u8;
        y[j] = d * (((q & 0x0f) | (h0 << 4)) as i8 - 16) as f32;
        y[j + QK / 2] = d * (((q >> 4) | (h1 << 4)) as i8 - 16) as f32;
    }
}

pub fn dequantize_block_q5_1(b: &BlockQ5_1, y: &mut [f32; QK]) {
    let (d, m) = (b.d(), b.m());
    let qh = u32::from_le_bytes(b.qh);
    for (j, &q) in b.qs.iter().enumerate() {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + QK / 2)) & 1) as u8;
        y[j] = d * ((q & 0x0f) | (h0 << 4)) as f32 + m;
        y[j + QK / 2] = d * ((q >> 4) | (h1 << 4)) as f32 + m;
    }
}

pub fn dequantize_block_q8_0(b: &BlockQ8_0, y: &mut [f32; QK]) {
    let d = b.d();
    for (y, &q) in y.iter_mut().zip(&b.qs) {
        *y = (q as i8) as f32 * d;
    }
}

// ---- K-quants (256-weight super-blocks) ----

pub fn dequantize_block_q2_k(b: &BlockQ2K, y: &mut [f32; QK_K]) {
    let (d, dmin) = (b.d(), b.dmin());
    for (i, (y, &sc)) in y.chunks_exact_mut(16).zip(&b.scales).enumerate() {
        let dl = d * (sc & 0x0f) as f32;
        let ml = dmin * (sc >> 4) as f32;
        // Sub-block i covers weights 16i..16i+16: half h, shift s, bytes l0..l0+16.
        let (h, s, l0) = (i / 8, (i % 8) / 2, (i % 2) * 16);
        let qs = &b.qs[h * 32 + l0..h * 32 + l0 + 16];
        for (y, &q) in y.iter_mut().zip(qs) {
            *y = dl * ((q >> (2 * s)) & 3) as f32 - ml;
        }
    }
}

pub fn dequantize_block_q3_k(b: &BlockQ3K, y: &mut [f32; QK_K]) {
    let d = b.d();
    let scales = q3_k_scales(&b.scales);
    for (i, (y, &sc)) in y.chunks_exact_mut(16).zip(&scales).enumerate() {
        let dl = d * sc as f32;
        let (h, s, l0) = (i / 8, (i % 8) / 2, (i % 2) * 16);
        // Weight e = 16i + k has its high bit in bit e / 32 of hmask[e % 32].
        let bit = i / 2;
        for (k, y) in y.iter_mut().enumerate() {
            let l = l0 + k;
            let low = ((b.qs[h * 32 + l] >> (2 * s)) & 3) as i8;
            let high = ((b.hmask[l] >> bit) & 1) as i8;
            // A clear high bit means "subtract 4", so q is in −4..=3.
            *y = dl * (low - ((high ^ 1) << 2)) as f32;
        }
    }
}

pub fn dequantize_block_q4_k(b: &BlockQ4K, y: &mut [f32; QK_K]) {
    let (d, dmin) = (b.d(), b.dmin());
    for (j, y) in y.chunks_exact_mut(32).enumerate() {
        let (sc, m) = get_scale_min_k4(j, &b.scales);
        let dl = d * sc as f32;
        let ml = dmin * m as f32;
        // Sub-block j: bytes of chunk j / 2, low nibbles when j is even, high when odd.
        let qs = &b.qs[(j / 2) * 32..(j / 2) * 32 + 32];
        let shift = 4 * (j % 2);
        for (y, &q) in y.iter_mut().zip(qs) {
            *y = dl * ((q >> shift) & 0x0f) as f32 - ml;
        }
    }
}

pub fn dequantize_block_q5_k(b: &BlockQ5K, y: &mut [f32; QK_K]) {
    let (d, dmin) = (b.d(), b.dmin());
    for (j, y) in y.chunks_exact_mut(32).enumerate() {
        let (sc, m) = get_scale_min_k4(j, &b.scales);
        let dl = d * sc as f32;
        let ml = dmin * m as f32;
        let qs = &b.qs[(j / 2) * 32..(j / 2) * 32 + 32];
        let shift = 4 * (j % 2);
        // Weight 32j + l has its 5th bit in bit j of qh[l].
        for ((y, &q), &h) in y.iter_mut().zip(qs).zip(&b.qh) {
            let q = ((q >> shift) & 0x0f) | (((h >> j) & 1) << 4);
            *y = dl * q as f32 - ml;
        }
    }
}

pub fn dequantize_block_q6_k(b: &BlockQ6K, y: &mut [f32; QK_K]) {
    let d = b.d();
    for (i, (y, &sc)) in y.chunks_exact_mut(16).zip(&b.scales).enumerate() {
        let dl = d * (sc as i8) as f32;
        for (k, y) in y.iter_mut().enumerate() {
            let e = 16 * i + k;
            let (h, r) = (e / 128, e % 128);
            let ql = (b.ql[h * 64 + r % 64] >> (4 * (r / 64))) & 0x0f;
            let qh = (b.qh[h * 32 + r % 32] >> (2 * (r / 32))) & 3;
            *y = dl * ((ql | (qh << 4)) as i8 - 32) as f32;
        }
    }
}

// ---- Row functions: whole blocks as bytes ----

pub fn dequantize_row_f32(data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    for_each_block::<4, 1>(GgmlType::F32, data, out, |b, y| {
        y[0] = f32::from_le_bytes(*b)
    })
}

pub fn dequantize_row_f16(data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    for_each_block::<2, 1>(GgmlType::F16, data, out, |b, y| {
        y[0] = f16_to_f32(u16::from_le_bytes(*b))
    })
}

pub fn dequantize_row_bf16(data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    for_each_block::<2, 1>(GgmlType::BF16, data, out, |b, y| {
        y[0] = bf16_to_f32(u16::from_le_bytes(*b))
    })
}

pub fn dequantize_row_q4_0(data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    for_each_block(GgmlType::Q4_0, data, out, |b, y| {
        dequantize_block_q4_0(&BlockQ4_0::from_bytes(b), y)
    })
}

pub fn dequantize_row_q4_1(data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    for_each_block(GgmlType::Q4_1, data, out, |b, y| {
        dequantize_block_q4_1(&BlockQ4_1::from_bytes(b), y)
    })
}

pub fn dequantize_row_q5_0(data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    for_each_block(GgmlType::Q5_0, data, out, |b, y| {
        dequantize_block_q5_0(&BlockQ5_0::from_bytes(b), y)
    })
}

pub fn dequantize_row_q5_1(data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    for_each_block(GgmlType::Q5_1, data, out, |b, y| {
        dequantize_block_q5_1(&BlockQ5_1::from_bytes(b), y)
    })
}

pub fn dequantize_row_q8_0(data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    for_each_block(GgmlType::Q8_0, data, out, |b, y| {
        dequantize_block_q8_0(&BlockQ8_0::from_bytes(b), y)
    })
}

pub fn dequantize_row_q2_k(data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    for_each_block(GgmlType::Q2_K, data, out, |b, y| {
        dequantize_block_q2_k(&BlockQ2K::from_bytes(b), y)
    })
}

pub fn dequantize_row_q3_k(data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    for_each_block(GgmlType::Q3_K, data, out, |b, y| {
        dequantize_block_q3_k(&BlockQ3K::from_bytes(b), y)
    })
}

pub fn dequantize_row_q4_k(data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    for_each_block(GgmlType::Q4_K, data, out, |b, y| {
        dequantize_block_q4_k(&BlockQ4K::from_bytes(b), y)
    })
}

pub fn dequantize_row_q5_k(data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    for_each_block(GgmlType::Q5_K, data, out, |b, y| {
        dequantize_block_q5_k(&BlockQ5K::from_bytes(b), y)
    })
}

pub fn dequantize_row_q6_k(data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    for_each_block(GgmlType::Q6_K, data, out, |b, y| {
        dequantize_block_q6_k(&BlockQ6K::from_bytes(b), y)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16(x: f32) -> [u8; 2] {
        half::f16::from_f32(x).to_bits().to_le_bytes()
    }

    #[test]
    fn get_scale_min_k4_unpacks_all_eight() {
        // Pack known 6-bit values the way ggml's quantizer does, then unpack them.
        let sc: [u8; 8] = [1, 22, 63, 0, 45, 7, 33, 60];
        let m: [u8; 8] = [63, 2, 17, 40, 0, 59, 31, 12];
        let mut q = [0u8; 12];
        for j in 0..8 {
            if j < 4 {
                q[j] = sc[j];
                q[j + 4] = m[j];
            } else {
                q[j + 4] = (sc[j] & 0x0f) | ((m[j] & 0x0f) << 4);
                q[j - 4] |= (sc[j] >> 4) << 6;
                q[j] |= (m[j] >> 4) << 6;
            }
        }
        for j in 0..8 {
            assert_eq!(get_scale_min_k4(j, &q), (sc[j], m[j]), "sub-block {j}");
        }
        assert_eq!(get_scale_min_k4(0, &[0xff; 12]), (63, 63));
        assert_eq!(get_scale_min_k4(7, &[0xff; 12]), (63, 63));
    }

    #[test]
    fn q4_k_hand_built_block() {
        // d = 1, dmin = 0, every scale 1: low nibbles 1, high nibbles 2.
        let mut b = BlockQ4K {
            d: f16(1.0),
            dmin: f16(0.0),
            scales: [0; 12],
            qs: [0x21; 128],
        };
        for j in 0..4 {
            b.scales[j] = 1; // sc 0..4
            b.scales[j + 8] = 1; // low bits of sc 4..8
        }
        let mut y = [0.0; QK_K];
        dequantize_block_q4_k(&b, &mut y);
        for (i, v) in y.iter().enumerate() {
            assert_eq!(*v, if (i / 32) % 2 == 0 { 1.0 } else { 2.0 }, "weight {i}");
        }
        // Now with a min: sub-block 1 gets m = 3, dmin = 0.5 → 2 − 1.5.
        b.dmin = f16(0.5);
        b.scales[5] = 3;
        dequantize_block_q4_k(&b, &mut y);
        assert_eq!(y[32], 0.5);
        assert_eq!(y[0], 1.0);
    }

    #[test]
    fn q4_0_and_q8_0_hand_built_blocks() {
        let mut qs = [0u8; 16];
        qs[0] = 0xf0; // weight 0 → 0 − 8, weight 16 → 15 − 8
        let b = BlockQ4_0 { d: f16(0.5), qs };
        let mut y = [0.0; QK];
        dequantize_block_q4_0(&b, &mut y);
        assert_eq!((y[0], y[16], y[1]), (-4.0, 3.5, -4.0));

        let mut qs = [0u8; 32];
        qs[3] = 0x80; // −128
        qs[4] = 0x7f;
        let b = BlockQ8_0 { d: f16(-2.0), qs };
        dequantize_block_q8_0(&b, &mut y);
        assert_eq!((y[3], y[4], y[0].to_bits()), (256.0, -254.0, 0x8000_0000));
    }

    #[test]
    fn q5_0_high_bits() {
        // qh bit j sets the 5th bit of weight j: weight 0 → 16 − 16 = 0, weight 31 → 31 − 16.
        let b = BlockQ5_0 {
            d: f16(1.0),
            qh: 0x8000_0001u32.to_le_bytes(),
            qs: [0xf0; 16],
        };
        let mut y = [0.0; QK];
        dequantize_block_q5_0(&b, &mut y);
        assert_eq!((y[0], y[1], y[16], y[31]), (0.0, -16.0, -1.0, 15.0));
    }

    #[test]
    fn q3_k_scales_unpack() {
        let mut s = [0u8; 12];
        s[0] = 0x21; // sub-block 0 low 1, sub-block 8 low 2
        s[8] = 0b1110_0100; // sub-block 0 high 0, 4 high 1, 8 high 2, 12 high 3
        let v = q3_k_scales(&s);
        assert_eq!(v[0], 1 - 32);
        assert_eq!(v[4], 16 - 32);
        assert_eq!(v[8], 32 + 2 - 32);
        assert_eq!(v[12], 48 - 32);
    }

    #[test]
    fn lengths_are_checked() {
        let mut y = [0.0; 64];
        assert_eq!(
            dequantize_row_q8_0(&[0; 67], &mut y),
            Err(QuantError::ByteCount {
                ty: GgmlType::Q8_0,
                elements: 64,
                expected: 68,
                got: 67
            })
        );
        assert!(matches!(
            dequantize_row_q4_k(&[0; 144], &mut y),
            Err(QuantError::PartialBlock { block: 256, .. })
        ));
        assert_eq!(dequantize_row_f32(&[], &mut []), Ok(()));
    }
}
