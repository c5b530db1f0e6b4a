//! The block formats as ggml stores them (`ggml-common.h`), byte for byte.
//!
//! Every block is `#[repr(C)]` with only byte-array fields, so it has alignment 1 and its size is
//! exactly ggml's type size (checked at compile time below). GGUF packs blocks back to back with
//! no padding, and several sizes (18, 22, 34, 110, 210 bytes) are not multiples of 4, so blocks
//! are never reinterpreted in place: `from_bytes` copies the fields out of a byte array, which
//! needs no `unsafe` and works at any offset. All multi-byte fields are little-endian; `f16`
//! fields are kept as raw bits and read with [`f16_to_f32`].

use super::types::QK_K;

/// Weights per block of the 32-weight formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0).
pub const QK: usize = 32;

/// Bytes of the packed 6-bit scales and mins of Q4_K and Q5_K (8 scales + 8 mins).
pub const K_SCALE_SIZE: usize = 12;

/// IEEE binary16 bits to f32, exactly as numpy's `float16 -> float32` cast (and so the `gguf`
/// package): every finite value and infinity converts exactly; a NaN keeps its sign and payload
/// (shifted into the top of the f32 mantissa, not quieted). `half`'s software path quiets NaNs,
/// so this is written out here to keep F16 bit-exact for every one of the 65536 inputs.
#[inline]
pub const fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = (h >> 10) & 0x1f;
    let man = (h as u32) & 0x03ff;
    let bits = if exp == 0 {
        if man == 0 {
            sign // ±0
        } else {
            // Subnormal half: normalize. The value is man·2⁻²⁴; with the leading one at bit
            // position p (0..=9) it is 1.f·2^(p−24).
            let p = 31 - man.leading_zeros(); // 0..=9
            let f_exp = p + 127 - 24;
            let f_man = (man << (23 - p)) & 0x007f_ffff;
            sign | (f_exp << 23) | f_man
        }
    } else if exp == 0x1f {
        sign | 0x7f80_0000 | (man << 13) // ±inf or NaN with its payload
    } else {
        sign | (((h as u32 & 0x7fff) + 0x1_c000) << 13) // rebias 15 → 127
    };
    f32::from_bits(bits)
}

/// bfloat16 bits to f32: the top half of an f32, exact for every input (NaN payloads kept).
#[inline]
pub const fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `N` bytes of `b` starting at `at`. Callers pass constant offsets inside a fixed-size block,
/// so the range is always in bounds (the unit tests read every block type).
#[inline]
pub(crate) fn field<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut f = [0; N];
    f.copy_from_slice(&b[at..at + N]);
    f
}

/// Q4_0: 32 weights, `y = d·(q − 8)` with 4-bit `q`. 18 bytes.
/// ```text
/// offset size field
///      0    2 d      f16 scale
///      2   16 qs     nibbles: qs[j] & 15 is weight j, qs[j] >> 4 is weight j + 16
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ4_0 {
    pub d: [u8; 2],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

impl BlockQ4_0 {
    pub const BYTES: usize = 18;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            d: field(b, 0),
            qs: field(b, 2),
        }
    }
    pub fn d(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.d))
    }
}

/// Q4_1: 32 weights, `y = d·q + m` with 4-bit `q`. 20 bytes.
/// ```text
/// offset size field
///      0    2 d      f16 scale
///      2    2 m      f16 min (offset)
///      4   16 qs     nibbles as Q4_0
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ4_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

impl BlockQ4_1 {
    pub const BYTES: usize = 20;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            d: field(b, 0),
            m: field(b, 2),
            qs: field(b, 4),
        }
    }
    pub fn d(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.d))
    }
    pub fn m(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.m))
    }
}

/// Q5_0: 32 weights, `y = d·(q − 16)` with 5-bit `q`. 22 bytes.
/// ```text
/// offset size field
///      0    2 d      f16 scale
///      2    4 qh     u32 LE: bit j is the 5th bit of weight j
///      6   16 qs     low 4 bits, nibbles as Q4_0
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ5_0 {
    pub d: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

impl BlockQ5_0 {
    pub const BYTES: usize = 22;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            d: field(b, 0),
            qh: field(b, 2),
            qs: field(b, 6),
        }
    }
    pub fn d(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.d))
    }
}

/// Q5_1: 32 weights, `y = d·q + m` with 5-bit `q`. 24 bytes.
/// ```text
/// offset size field
///      0    2 d      f16 scale
///      2    2 m      f16 min
///      4    4 qh     u32 LE high bits as Q5_0
///      8   16 qs     low 4 bits as Q4_0
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ5_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

impl BlockQ5_1 {
    pub const BYTES: usize = 24;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            d: field(b, 0),
            m: field(b, 2),
            qh: field(b, 4),
            qs: field(b, 8),
        }
    }
    pub fn d(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.d))
    }
    pub fn m(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.m))
    }
}

/// Q8_0: 32 weights, `y = d·q` with signed 8-bit `q`. 34 bytes (not 4-byte aligned).
/// ```text
/// offset size field
///      0    2 d      f16 scale
///      2   32 qs     i8 weights in order
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ8_0 {
    pub d: [u8; 2],
    pub qs: [u8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

impl BlockQ8_0 {
    pub const BYTES: usize = 34;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            d: field(b, 0),
            qs: field(b, 2),
        }
    }
    pub fn d(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.d))
    }
}

/// Q2_K: 256 weights in 16 sub-blocks of 16, `y = d·sc·q − dmin·m` with 2-bit `q` and 4-bit
/// `sc`, `m`. 84 bytes.
/// ```text
/// offset size field
///      0   16 scales  per sub-block: low nibble sc, high nibble m
///     16   64 qs      two 128-weight halves of 32 bytes; weight h·128 + s·32 + l is
///                     (qs[h·32 + l] >> 2s) & 3
///     80    2 d       f16 super-block scale of sc
///     82    2 dmin    f16 super-block scale of m
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: [u8; 2],
    pub dmin: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ2K>() == 84);

impl BlockQ2K {
    pub const BYTES: usize = 84;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            scales: field(b, 0),
            qs: field(b, 16),
            d: field(b, 80),
            dmin: field(b, 82),
        }
    }
    pub fn d(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.d))
    }
    pub fn dmin(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.dmin))
    }
}

/// Q3_K: 256 weights in 16 sub-blocks of 16, `y = d·(sc − 32)·(q − 4·!hbit)` with 2 low bits
/// in `qs`, a high bit in `hmask` (set means no −4 offset) and 6-bit `sc`. 110 bytes.
/// ```text
/// offset size field
///      0   32 hmask   weight b·32 + l has high bit (hmask[l] >> b) & 1
///     32   64 qs      low 2 bits, laid out as Q2_K
///     96   12 scales  16 6-bit scales: low nibbles in bytes 0..8 (sub-block i < 8 low nibble
///                     of byte i, i ≥ 8 high nibble of byte i−8), high 2 bits in bytes 8..12
///                     (sub-block s·4 + k: (byte 8+k >> 2s) & 3)
///    108    2 d       f16 super-block scale
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ3K>() == 110);

impl BlockQ3K {
    pub const BYTES: usize = 110;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            hmask: field(b, 0),
            qs: field(b, 32),
            scales: field(b, 96),
            d: field(b, 108),
        }
    }
    pub fn d(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.d))
    }
}

/// Q4_K: 256 weights in 8 sub-blocks of 32, `y = d·sc·q − dmin·m` with 4-bit `q` and 6-bit
/// `sc`, `m` (see `get_scale_min_k4`). 144 bytes.
/// ```text
/// offset size field
///      0    2 d       f16 super-block scale of sc
///      2    2 dmin    f16 super-block scale of m
///      4   12 scales  8 sc and 8 m, 6 bits each, packed as get_scale_min_k4 reads them
///     16  128 qs      four 64-weight chunks of 32 bytes: weight c·64 + l is qs[c·32+l] & 15
///                     (sub-block 2c), weight c·64 + 32 + l is qs[c·32+l] >> 4 (sub-block 2c+1)
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ4K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; K_SCALE_SIZE],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

impl BlockQ4K {
    pub const BYTES: usize = 144;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            d: field(b, 0),
            dmin: field(b, 2),
            scales: field(b, 4),
            qs: field(b, 16),
        }
    }
    pub fn d(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.d))
    }
    pub fn dmin(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.dmin))
    }
}

/// Q5_K: Q4_K plus a 5th bit per weight, `y = d·sc·q − dmin·m` with 5-bit `q`. 176 bytes.
/// ```text
/// offset size field
///      0    2 d       f16 super-block scale of sc
///      2    2 dmin    f16 super-block scale of m
///      4   12 scales  as Q4_K
///     16   32 qh      weight b·32 + l has 5th bit (qh[l] >> b) & 1
///     48  128 qs      low 4 bits, laid out as Q4_K
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ5K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; K_SCALE_SIZE],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

impl BlockQ5K {
    pub const BYTES: usize = 176;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            d: field(b, 0),
            dmin: field(b, 2),
            scales: field(b, 4),
            qh: field(b, 16),
            qs: field(b, 48),
        }
    }
    pub fn d(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.d))
    }
    pub fn dmin(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.dmin))
    }
}

/// Q6_K: 256 weights in 16 sub-blocks of 16, `y = d·sc·(q − 32)` with 6-bit `q` and signed
/// 8-bit `sc`. 210 bytes (not 4-byte aligned).
/// ```text
/// offset size field
///      0  128 ql      low 4 bits; two 128-weight halves of 64 bytes: weight h·128 + l
///                     (l < 64) is ql[h·64+l] & 15, weight h·128 + 64 + l is ql[h·64+l] >> 4
///    128   64 qh      high 2 bits; weight h·128 + s·32 + l is (qh[h·32+l] >> 2s) & 3
///    192   16 scales  i8 scale per 16-weight sub-block
///    208    2 d       f16 super-block scale
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [u8; QK_K / 16],
    pub d: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

impl BlockQ6K {
    pub const BYTES: usize = 210;
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        Self {
            ql: field(b, 0),
            qh: field(b, 128),
            scales: field(b, 192),
            d: field(b, 208),
        }
    }
    pub fn d(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::GgmlType;

    #[test]
    fn sizes_match_ggml_type_sizes() {
        use GgmlType::*;
        assert_eq!(BlockQ4_0::BYTES, Q4_0.type_size());
        assert_eq!(BlockQ4_1::BYTES, Q4_1.type_size());
        assert_eq!(BlockQ5_0::BYTES, Q5_0.type_size());
        assert_eq!(BlockQ5_1::BYTES, Q5_1.type_size());
        assert_eq!(BlockQ8_0::BYTES, Q8_0.type_size());
        assert_eq!(BlockQ2K::BYTES, Q2_K.type_size());
        assert_eq!(BlockQ3K::BYTES, Q3_K.type_size());
        assert_eq!(BlockQ4K::BYTES, Q4_K.type_size());
        assert_eq!(BlockQ5K::BYTES, Q5_K.type_size());
        assert_eq!(BlockQ6K::BYTES, Q6_K.type_size());
        assert_eq!(std::mem::align_of::<BlockQ6K>(), 1);
    }

    #[test]
    fn from_bytes_reads_fields_at_their_offsets() {
        let b: [u8; 210] = std::array::from_fn(|i| i as u8);
        let q6 = BlockQ6K::from_bytes(&b);
        assert_eq!(
            (q6.ql[0], q6.qh[0], q6.scales[0], q6.d),
            (0, 128, 192, [208, 209])
        );
        let b: [u8; 84] = std::array::from_fn(|i| i as u8);
        let q2 = BlockQ2K::from_bytes(&b);
        assert_eq!((q2.qs[0], q2.d, q2.dmin), (16, [80, 81], [82, 83]));
        let b: [u8; 176] = std::array::from_fn(|i| i as u8);
        let q5 = BlockQ5K::from_bytes(&b);
        assert_eq!(
            (q5.scales[0], q5.qh[0], q5.qs[0], q5.qs[127]),
            (4, 16, 48, 175)
        );
    }

    #[test]
    fn f16_conversion_of_special_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24)); // smallest subnormal
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24)); // largest subnormal
        assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14)); // smallest normal
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0x7c01).to_bits(), 0x7f80_2000); // signalling NaN kept as numpy does
        assert_eq!(f16_to_f32(0xfe00).to_bits(), 0xffc0_0000);
        // Every finite value agrees with `half`.
        for h in 0..=u16::MAX {
            let x = half::f16::from_bits(h);
            if x.is_finite() {
                assert_eq!(f16_to_f32(h).to_bits(), x.to_f32().to_bits(), "{h:#06x}");
            }
        }
    }
}
