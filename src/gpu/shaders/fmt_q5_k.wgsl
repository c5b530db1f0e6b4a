// fmt_q5_k.wgsl: Q5_K {f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}, 176 bytes, 256
// weights. Unit j (0..8) = sub-block of 32 weights: weight = (d·sc_j)·q − dmin·m_j with 5-bit q
// (low 4 bits in qs as Q4_K, the 5th bit of weight 32j + l is bit j of qh[l]); sc_j and m_j
// packed as Q4_K's.

const UNIT_W: u32 = 32u;
const UNITS_PER_BLOCK: u32 = 8u;
const BLOCK_BYTES: u32 = 176u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4): one, as Q4_K, so that neighbouring invocations read neighbouring words.
const STEP_QUADS: u32 = 1u;
// Blocks are word-aligned as they are (d/dmin word, scales 4, qh 16, qs 48):
// layout_aligned.wgsl reads them with no padding.
const ALIGN_LEAD: u32 = 0u;

// (scale, offset) of unit j, as fmt_q4_k.wgsl (the same 12 scale bytes at the same offset):
// branch-free, d and dmin from one word, the 6-bit scale and min from byte j % 4 of the three
// scale words.
fn unit_scale(b: u32, j: u32) -> vec2<f32> {
    let dm = unpack2x16float(u32_at(b));
    let sh = (j & 3u) * 8u;
    let b0 = (u32_at(b + 4u) >> sh) & 0xffu;
    let b1 = (u32_at(b + 8u) >> sh) & 0xffu;
    let b2 = (u32_at(b + 12u) >> sh) & 0xffu;
    let lo = j < 4u;
    let sc = select((b2 & 0xfu) | ((b0 >> 6u) << 4u), b0 & 63u, lo);
    let m = select((b2 >> 4u) | ((b1 >> 6u) << 4u), b1 & 63u, lo);
    return vec2<f32>(dm.x * f32(sc), -(dm.y * f32(m)));
}

// q of weights 4k..4k+4 of unit j: the nibbles of qs as Q4_K, bit j of qh[4k..4k+4] above them.
fn unit_q4(b: u32, j: u32, k: u32) -> vec4<f32> {
    let lo = (u32_at(b + 48u + (j >> 1u) * 32u + 4u * k) >> ((j & 1u) * 4u)) & 0x0f0f0f0fu;
    let hi = (u32_at(b + 16u + 4u * k) >> j) & 0x01010101u;
    return bytes4(lo | (hi << 4u));
}
