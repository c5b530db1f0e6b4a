//! The IQ ("importance" lattice) formats and MXFP4 as ggml stores them (`ggml-common.h`), byte
//! for byte; the same conventions as [`super::blocks`]: `#[repr(C)]`, byte-array fields only
//! (alignment 1, size checked at compile time), multi-byte fields little-endian, f16 as raw bits.
//!
//! Grids (`super::grids`) hold 4 or 8 weights per index; a sign byte's bit `j` negates weight
//! `j` of its group of 8. `KSIGNS_IQ2XS` expands 7 stored sign bits to 8 (even parity).

use super::blocks::{f16_to_f32, field, QK};
use super::types::QK_K;

fn f16_at(b: [u8; 2]) -> f32 {
    f16_to_f32(u16::from_le_bytes(b))
}

/// IQ4_NL: 32 weights, `y = d·kvalues_iq4nl[q]` with 4-bit `q`. 18 bytes.
/// ```text
/// offset size field
///      0    2 d      f16 scale
///      2   16 qs     nibbles: qs[j] & 15 is weight j, qs[j] >> 4 is weight j + 16
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockIq4Nl {
    pub d: [u8; 2],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockIq4Nl>() == 18);

impl BlockIq4Nl {
    pub const BYTES: usize = 18;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            d: field(b, 0),
            qs: field(b, 2),
        }
    }
    pub fn d(&self) -> f32 {
        f16_at(self.d)
    }
}

/// IQ4_XS: 256 weights in 8 sub-blocks of 32, `y = d·(ls − 32)·kvalues_iq4nl[q]` with a 6-bit
/// `ls` per sub-block. 136 bytes.
/// ```text
/// offset size field
///      0    2 d         f16 super-block scale
///      2    2 scales_h  u16: bits 2i..2i+2 are the high 2 bits of ls of sub-block i
///      4    4 scales_l  low 4 bits of ls: sub-block i is nibble i % 2 of byte i / 2
///      8  128 qs        16 bytes per sub-block i: weight 32i + j is qs[16i + j] & 15,
///                       weight 32i + 16 + j is qs[16i + j] >> 4
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockIq4Xs {
    pub d: [u8; 2],
    pub scales_h: [u8; 2],
    pub scales_l: [u8; QK_K / 64],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockIq4Xs>() == 136);

impl BlockIq4Xs {
    pub const BYTES: usize = 136;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            d: field(b, 0),
            scales_h: field(b, 2),
            scales_l: field(b, 4),
            qs: field(b, 8),
        }
    }
    pub fn d(&self) -> f32 {
        f16_at(self.d)
    }
    /// The 6-bit scale of sub-block `i` (0..8), minus 32.
    pub fn scale(&self, i: usize) -> i32 {
        let h = u16::from_le_bytes(self.scales_h);
        let lo = (self.scales_l[i / 2] >> (4 * (i % 2))) & 15;
        let hi = ((h >> (2 * i)) & 3) as u8;
        (lo | (hi << 4)) as i32 - 32
    }
}

/// IQ3_XXS: 256 weights in 8 sub-blocks of 32, each 4 groups of 8 = 2 `iq3xxs_grid` rows of 4;
/// `y = d·(0.5 + ls)·0.5·grid·sign` with 4-bit `ls`. 98 bytes.
/// ```text
/// offset size field
///      0    2 d      f16 super-block scale
///      2   64 qs     grid indices: weights 32i + 8l + 4k .. +4 are row qs[8i + 2l + k]
///     66   32 sas    8 u32 LE, one per sub-block i: bits 7l..7l+7 index KSIGNS_IQ2XS for
///                    group l (0..4), bits 28..32 are ls
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockIq3Xxs {
    pub d: [u8; 2],
    pub qs: [u8; QK_K / 4],
    pub sas: [u8; QK_K / 8],
}
const _: () = assert!(std::mem::size_of::<BlockIq3Xxs>() == 98);

impl BlockIq3Xxs {
    pub const BYTES: usize = 98;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            d: field(b, 0),
            qs: field(b, 2),
            sas: field(b, 66),
        }
    }
    pub fn d(&self) -> f32 {
        f16_at(self.d)
    }
}

/// IQ3_S: 256 weights in 8 sub-blocks of 32, 9-bit indices into `iq3s_grid` (rows of 4);
/// `y = d·(1 + 2·ls)·grid·sign` with 4-bit `ls`. 110 bytes.
/// ```text
/// offset size field
///      0    2 d       f16 super-block scale
///      2   64 qs      low 8 bits of index k (weights 4k..4k+4)
///     66    8 qh      bit 8 of index k is (qh[k / 8] >> (k % 8)) & 1
///     74   32 signs   weight e is negated when (signs[e / 8] >> (e % 8)) & 1
///    106    4 scales  ls of sub-block i is nibble i % 2 of byte i / 2
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockIq3S {
    pub d: [u8; 2],
    pub qs: [u8; QK_K / 4],
    pub qh: [u8; QK_K / 32],
    pub signs: [u8; QK_K / 8],
    pub scales: [u8; QK_K / 64],
}
const _: () = assert!(std::mem::size_of::<BlockIq3S>() == 110);

impl BlockIq3S {
    pub const BYTES: usize = 110;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            d: field(b, 0),
            qs: field(b, 2),
            qh: field(b, 66),
            signs: field(b, 74),
            scales: field(b, 106),
        }
    }
    pub fn d(&self) -> f32 {
        f16_at(self.d)
    }
}

/// IQ2_XXS: 256 weights in 8 sub-blocks of 32, each 4 groups of 8 = one `iq2xxs_grid` row;
/// `y = d·(0.5 + ls)·0.25·grid·sign` with 4-bit `ls`. 66 bytes.
/// ```text
/// offset size field
///      0    2 d      f16 super-block scale
///      2   64 qs     per sub-block i, two u32 LE at 2 + 8i: the first's byte l is the grid
///                    row of group l; the second's bits 7l..7l+7 index KSIGNS_IQ2XS for
///                    group l, bits 28..32 are ls
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockIq2Xxs {
    pub d: [u8; 2],
    pub qs: [u8; QK_K / 4],
}
const _: () = assert!(std::mem::size_of::<BlockIq2Xxs>() == 66);

impl BlockIq2Xxs {
    pub const BYTES: usize = 66;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            d: field(b, 0),
            qs: field(b, 2),
        }
    }
    pub fn d(&self) -> f32 {
        f16_at(self.d)
    }
}

/// IQ2_XS: 256 weights in 32 groups of 8, each a u16 of 9-bit `iq2xs_grid` row and a 7-bit
/// KSIGNS_IQ2XS index; `y = d·(0.5 + ls)·0.25·grid·sign` with a 4-bit `ls` per 16 weights.
/// 74 bytes.
/// ```text
/// offset size field
///      0    2 d       f16 super-block scale
///      2   64 qs      u16 LE per group g: bits 0..9 grid row, bits 9..16 sign index
///     66    8 scales  ls of weights 16s..16s+16 is nibble s % 2 of byte s / 2
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockIq2Xs {
    pub d: [u8; 2],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; QK_K / 32],
}
const _: () = assert!(std::mem::size_of::<BlockIq2Xs>() == 74);

impl BlockIq2Xs {
    pub const BYTES: usize = 74;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            d: field(b, 0),
            qs: field(b, 2),
            scales: field(b, 66),
        }
    }
    pub fn d(&self) -> f32 {
        f16_at(self.d)
    }
}

/// IQ2_S: 256 weights in 32 groups of 8, 10-bit `iq2s_grid` rows and explicit sign bytes;
/// `y = d·(0.5 + ls)·0.25·grid·sign` with a 4-bit `ls` per 16 weights. 82 bytes.
/// ```text
/// offset size field
///      0    2 d       f16 super-block scale
///      2   32 qs      low 8 bits of the grid row of group g
///     34   32 signs   bit j of signs[g] negates weight j of group g
///     66    8 qh      bits 8..10 of group g's row: (qh[g / 4] >> 2(g % 4)) & 3
///     74    8 scales  ls of weights 16s..16s+16 is nibble s % 2 of byte s / 2
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockIq2S {
    pub d: [u8; 2],
    pub qs: [u8; QK_K / 8],
    pub signs: [u8; QK_K / 8],
    pub qh: [u8; QK_K / 32],
    pub scales: [u8; QK_K / 32],
}
const _: () = assert!(std::mem::size_of::<BlockIq2S>() == 82);

impl BlockIq2S {
    pub const BYTES: usize = 82;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            d: field(b, 0),
            qs: field(b, 2),
            signs: field(b, 34),
            qh: field(b, 66),
            scales: field(b, 74),
        }
    }
    pub fn d(&self) -> f32 {
        f16_at(self.d)
    }
}

/// IQ1_S: 256 weights in 8 sub-blocks of 32, each 4 groups of 8 = one `iq1s_grid` row (values
/// −1, 0, 1); `y = d·(2·ls + 1)·(grid + delta)`, delta = ±0.125. 50 bytes.
/// ```text
/// offset size field
///      0    2 d      f16 super-block scale
///      2   32 qs     low 8 bits of the grid row of group g
///     34   16 qh     u16 LE per sub-block i: bits 3l..3l+3 are bits 8..11 of group 4i + l's
///                    row, bits 12..15 ls, bit 15 set means delta = −0.125
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockIq1S {
    pub d: [u8; 2],
    pub qs: [u8; QK_K / 8],
    pub qh: [u8; QK_K / 16],
}
const _: () = assert!(std::mem::size_of::<BlockIq1S>() == 50);

impl BlockIq1S {
    pub const BYTES: usize = 50;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            d: field(b, 0),
            qs: field(b, 2),
            qh: field(b, 34),
        }
    }
    pub fn d(&self) -> f32 {
        f16_at(self.d)
    }
}

/// IQ1_M: 256 weights in 32 groups of 8 = one `iq1s_grid` row; `y = d·(2·ls + 1)·(grid +
/// delta)` with a 3-bit `ls` per 16 weights and a delta sign per group. It has no `d` field:
/// the f16 super-block scale is spread over the top nibbles of the four scale words. 56 bytes.
/// ```text
/// offset size field
///      0   32 qs      low 8 bits of the grid row of group g
///     32   16 qh      nibble g % 2 of byte g / 2: bits 0..3 are bits 8..11 of group g's
///                     row, bit 3 set means delta = −0.125
///     48    8 scales  4 u16 LE: ls of weights 16s..16s+16 is bits 3(s%4)..+3 of word s / 4;
///                     the f16 scale is word0 >> 12 | word1 >> 8 & 0xf0 | word2 >> 4 & 0xf00 |
///                     word3 & 0xf000
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockIq1M {
    pub qs: [u8; QK_K / 8],
    pub qh: [u8; QK_K / 16],
    pub scales: [u8; QK_K / 32],
}
const _: () = assert!(std::mem::size_of::<BlockIq1M>() == 56);

impl BlockIq1M {
    pub const BYTES: usize = 56;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            qs: field(b, 0),
            qh: field(b, 32),
            scales: field(b, 48),
        }
    }
    /// Scale word `k` (0..4).
    pub fn word(&self, k: usize) -> u16 {
        u16::from_le_bytes([self.scales[2 * k], self.scales[2 * k + 1]])
    }
    pub fn d(&self) -> f32 {
        let w = |k| self.word(k) & 0xf000;
        f16_to_f32((w(0) >> 12) | (w(1) >> 8) | (w(2) >> 4) | w(3))
    }
}

/// MXFP4 (OCP microscaling FP4): 32 E2M1 weights with a shared E8M0 exponent,
/// `y = e8m0_to_f32_half(e)·kvalues_mxfp4[q]`. 17 bytes.
/// ```text
/// offset size field
///      0    1 e      E8M0 exponent (the scale, halved as kvalues_mxfp4 are doubled)
///      1   16 qs     nibbles: qs[j] & 15 is weight j, qs[j] >> 4 is weight j + 16
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockMxfp4 {
    pub e: u8,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockMxfp4>() == 17);

impl BlockMxfp4 {
    pub const BYTES: usize = 17;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            e: b[0],
            qs: field(b, 1),
        }
    }
    pub fn d(&self) -> f32 {
        e8m0_to_f32_half(self.e)
    }
}

/// Half of 2^(e − 127), as ggml's `ggml_e8m0_to_fp32_half`: exact for every `e`, subnormal for
/// `e < 2` (2^−128 and 2^−127).
#[inline]
pub const fn e8m0_to_f32_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        ((e as u32) - 1) << 23
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::GgmlType;

    #[test]
    fn sizes_match_ggml_type_sizes() {
        use GgmlType::*;
        assert_eq!(BlockIq4Nl::BYTES, IQ4_NL.type_size());
        assert_eq!(BlockIq4Xs::BYTES, IQ4_XS.type_size());
        assert_eq!(BlockIq3Xxs::BYTES, IQ3_XXS.type_size());
        assert_eq!(BlockIq3S::BYTES, IQ3_S.type_size());
        assert_eq!(BlockIq2Xxs::BYTES, IQ2_XXS.type_size());
        assert_eq!(BlockIq2Xs::BYTES, IQ2_XS.type_size());
        assert_eq!(BlockIq2S::BYTES, IQ2_S.type_size());
        assert_eq!(BlockIq1S::BYTES, IQ1_S.type_size());
        assert_eq!(BlockIq1M::BYTES, IQ1_M.type_size());
        assert_eq!(BlockMxfp4::BYTES, MXFP4.type_size());
        assert_eq!(std::mem::align_of::<BlockIq1M>(), 1);
    }

    #[test]
    fn e8m0_half_values() {
        assert_eq!(e8m0_to_f32_half(127), 0.5);
        assert_eq!(e8m0_to_f32_half(128), 1.0);
        assert_eq!(e8m0_to_f32_half(2), 2f32.powi(-126));
        assert_eq!(e8m0_to_f32_half(1), 2f32.powi(-127));
        assert_eq!(e8m0_to_f32_half(0), 2f32.powi(-128));
        assert_eq!(e8m0_to_f32_half(255), 2f32.powi(127));
    }

    #[test]
    fn iq1_m_scale_is_gathered_from_the_nibbles() {
        let mut b = [0u8; 56];
        // f16 1.0 = 0x3c00: nibbles 0, 0, c, 3 from word 0 to word 3.
        b[48 + 5] = 0xc0;
        b[48 + 7] = 0x30;
        assert_eq!(BlockIq1M::from_bytes(&b).d(), 1.0);
    }

    #[test]
    fn iq4_xs_scales_unpack() {
        let mut b = [0u8; 136];
        b[2..4].copy_from_slice(&0b11_00_00_00_00_00_00_10u16.to_le_bytes());
        b[4] = 0x5a; // sub-block 0 low 0xa, sub-block 1 low 5
        b[7] = 0xf0; // sub-block 7 low 0xf
        let x = BlockIq4Xs::from_bytes(&b);
        assert_eq!(x.scale(0), 0x2a - 32);
        assert_eq!(x.scale(1), 5 - 32);
        assert_eq!(x.scale(7), 0x3f - 32);
    }
}
