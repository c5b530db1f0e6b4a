//! Test data shared by the native GPU kernel tests (tests/gpu_kernels.rs, through
//! tests/common) and their browser twin (tests/wasm_gpu.rs, through `#[path]`): a seeded RNG,
//! random quantized matrices, and the NMSE they are judged by.
#![allow(dead_code)]

use wasm_chord::model::QMatrix;
use wasm_chord::quant::GgmlType;

/// xorshift: the same numbers natively and in wasm.
pub struct Rng(pub u64);
impl Rng {
    pub fn u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u32
    }
    /// Uniform in [-1, 1).
    pub fn f(&mut self) -> f32 {
        (self.u32() % 2_000_000) as f32 / 1_000_000.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
}

/// Normalised mean squared error of `got` against `want`.
pub fn nmse(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        num += (f64::from(g) - f64::from(w)).powi(2);
        den += f64::from(w).powi(2);
    }
    num / den.max(1e-30)
}

pub fn f16_bytes(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_bits().to_le_bytes()
}

/// Random blocks of `ty` for `rows` × `cols`, with finite scales.
pub fn random_matrix(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> QMatrix {
    let mut r = Rng(seed);
    let (bs, ts) = ty.block_geometry();
    let row_bytes = cols / bs * ts;
    let mut data: Vec<u8> = (0..rows * row_bytes).map(|_| r.u32() as u8).collect();
    for b in data.chunks_exact_mut(ts) {
        let mut put = |at: usize, v: f32| b[at..at + 2].copy_from_slice(&f16_bytes(v));
        match ty {
            GgmlType::Q4_K => {
                put(0, 0.01 + r.f().abs() * 0.05);
                put(2, 0.01 + r.f().abs() * 0.05);
            }
            GgmlType::Q6_K => put(208, r.f() * 0.05),
            GgmlType::Q4_1 => {
                put(0, r.f() * 0.1);
                put(2, r.f() * 0.5);
            }
            GgmlType::Q5_0 | GgmlType::Q8_0 | GgmlType::Q4_0 => put(0, r.f() * 0.1),
            GgmlType::F16 => put(0, r.f() * 4.0),
            GgmlType::F32 => b.copy_from_slice(&(r.f() * 4.0).to_le_bytes()),
            GgmlType::Q5_1 => {
                put(0, r.f() * 0.1);
                put(2, r.f() * 0.5);
            }
            GgmlType::Q5_K => {
                put(0, 0.01 + r.f().abs() * 0.05);
                put(2, 0.01 + r.f().abs() * 0.05);
            }
            GgmlType::Q2_K => {
                put(80, 0.01 + r.f().abs() * 0.05);
                put(82, 0.01 + r.f().abs() * 0.05);
            }
            GgmlType::Q3_K => put(108, r.f() * 0.05),
            // bfloat16: the top half of the f32 (normal values: no subnormal to be flushed).
            GgmlType::BF16 => {
                b.copy_from_slice(&(((r.f() * 4.0).to_bits() >> 16) as u16).to_le_bytes())
            }
            // The IQ formats led by an f16 d (IQ4_XS's scales and every grid index are valid
            // as random bytes).
            GgmlType::IQ4_NL
            | GgmlType::IQ4_XS
            | GgmlType::IQ3_XXS
            | GgmlType::IQ3_S
            | GgmlType::IQ2_XXS
            | GgmlType::IQ2_XS
            | GgmlType::IQ2_S
            | GgmlType::IQ1_S => put(0, 0.01 + r.f().abs() * 0.05),
            // IQ1_M's d is the top nibbles of its four scale words (bytes 48..56).
            GgmlType::IQ1_M => {
                let d = half::f16::from_f32(0.01 + r.f().abs() * 0.05).to_bits();
                for k in 0..4 {
                    let nibble = ((d >> (4 * k)) & 0xf) as u8;
                    b[49 + 2 * k] = (b[49 + 2 * k] & 0x0f) | (nibble << 4);
                }
            }
            // MXFP4's E8M0 scale: d = 2^(e − 128), here 2^-10..2^2 (normal, not flushed).
            GgmlType::MXFP4 => b[0] = 118 + (r.u32() % 13) as u8,
            _ => unreachable!("no test data for {ty}"),
        }
    }
    QMatrix {
        name: format!("test {ty}"),
        ty,
        rows,
        cols,
        row_bytes,
        data,
    }
}

pub fn cols_for(ty: GgmlType) -> usize {
    if ty.block_size() == 256 {
        768
    } else {
        576
    }
}
