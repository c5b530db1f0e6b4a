//! Random quantized matrices for the CPU kernel tests, shared by tests/cpu_kernels.rs and its
//! browser twin tests/wasm_kernels.rs (both include it with `#[path]`).
#![allow(dead_code)]

use wasm_chord::model::QMatrix;
use wasm_chord::quant::GgmlType;

/// xorshift64*: deterministic, no dependency.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
}

pub fn f16_bits(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_bits().to_le_bytes()
}

/// Byte offsets of the f16 scale fields (d, and dmin / m where the type has one) in a block.
pub fn scale_fields(ty: GgmlType) -> &'static [usize] {
    use GgmlType::*;
    match ty {
        Q4_0 | Q5_0 | Q8_0 => &[0],
        Q4_1 | Q5_1 | Q4_K | Q5_K => &[0, 2],
        Q2_K => &[80, 82],
        Q3_K => &[108],
        Q6_K => &[208],
        IQ4_NL | IQ4_XS | IQ3_XXS | IQ3_S | IQ2_XXS | IQ2_XS | IQ2_S | IQ1_S => &[0],
        _ => &[],
    }
}

/// A `rows × cols` matrix of `ty` with random blocks: random quants and sub-block scales, and
/// f16 super-block scales of either sign in a sane range (float types: random values).
pub fn random_matrix(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> QMatrix {
    let (bs, ts) = ty.block_geometry();
    assert_eq!(cols % bs, 0);
    let row_bytes = cols / bs * ts;
    let mut data = vec![0u8; rows * row_bytes];
    match ty {
        GgmlType::F32 => {
            for c in data.chunks_exact_mut(4) {
                c.copy_from_slice(&rng.uniform(-1.0, 1.0).to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for c in data.chunks_exact_mut(2) {
                c.copy_from_slice(&f16_bits(rng.uniform(-1.0, 1.0)));
            }
        }
        GgmlType::BF16 => {
            for c in data.chunks_exact_mut(2) {
                let v = half::bf16::from_f32(rng.uniform(-1.0, 1.0));
                c.copy_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        _ => {
            data.iter_mut().for_each(|b| *b = rng.next() as u8);
            for blk in data.chunks_exact_mut(ts) {
                for &at in scale_fields(ty) {
                    let mag = rng.uniform(1e-3, 5e-2);
                    let v = if rng.next() & 1 == 0 { mag } else { -mag };
                    blk[at..at + 2].copy_from_slice(&f16_bits(v));
                }
                match ty {
                    // MXFP4: an E8M0 scale 2^(e − 128), here 2^−10 .. 2^1.
                    GgmlType::MXFP4 => blk[0] = 118 + (rng.next() % 12) as u8,
                    // IQ1_M: the f16 scale's nibbles are the top nibbles of 4 scale words.
                    GgmlType::IQ1_M => {
                        let mag = rng.uniform(1e-3, 5e-2);
                        let v = if rng.next() & 1 == 0 { mag } else { -mag };
                        let d = half::f16::from_f32(v).to_bits();
                        for k in 0..4 {
                            let nib = ((d >> (4 * k)) & 15) as u8;
                            blk[49 + 2 * k] = (blk[49 + 2 * k] & 0x0f) | (nib << 4);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    QMatrix {
        name: format!("test.{ty}"),
        ty,
        rows,
        cols,
        row_bytes,
        data,
    }
}

/// The formats with integer kernels natively (AVX-512) and on wasm32 (the i16 kernels, which
/// have every other quantized format too, and but for Q8_0 the relaxed ones: see
/// tests/wasm_kernels.rs).
pub const INT_TYPES: [GgmlType; 7] = {
    use GgmlType::*;
    [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K]
};

/// A `3 × cols` matrix of `ty` whose quant bytes are all `fill` (its scale fields random, for
/// Q6_K the sub-block scales −128): with activations of one sign and magnitude, the largest
/// i32 lane sums an integer kernel can produce.
pub fn extreme_matrix(ty: GgmlType, cols: usize, fill: u8, rng: &mut Rng) -> QMatrix {
    let mut w = random_matrix(ty, 3, cols, rng);
    let ts = ty.block_geometry().1;
    for blk in w.data.chunks_exact_mut(ts) {
        let keep: Vec<[u8; 2]> = scale_fields(ty)
            .iter()
            .map(|&at| [blk[at], blk[at + 1]])
            .collect();
        blk.fill(fill);
        if ty == GgmlType::Q6_K {
            // Scales −128 with quants 0 (q − 32 = −32): the products' maximum, 4096.
            blk[192..208].fill(0x80);
        }
        for (&at, k) in scale_fields(ty).iter().zip(&keep) {
            blk[at..at + 2].copy_from_slice(k);
        }
    }
    w
}
