// fmt_q4_k.wgsl: Q4_K {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}, 144 bytes, 256 weights.
// Unit j (0..8) = sub-block of 32 weights: weight = (d·sc_j)·q − dmin·m_j.

const UNIT_W: u32 = 32u;
const UNITS_PER_BLOCK: u32 = 8u;
const BLOCK_BYTES: u32 = 144u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4).
const STEP_QUADS: u32 = 1u;
// Blocks are word-aligned as they are: layout_aligned.wgsl reads them with no padding.
const ALIGN_LEAD: u32 = 0u;

// (scale, offset) of unit j of the block at byte `b`: weight = scale·q + offset. Branch-free
// (the lanes of a row hold different j): d and dmin from one word, the 6-bit scale and min
// from byte j % 4 of the three scale words.
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

// q of weights 4k..4k+4 of unit j (low nibbles for even j, high for odd).
fn unit_q4(b: u32, j: u32, k: u32) -> vec4<f32> {
    return bytes4((u32_at(b + 16u + (j >> 1u) * 32u + 4u * k) >> ((j & 1u) * 4u)) & 0x0f0f0f0fu);
}

// Paired reading (matvec_row_pairs.wgsl, matmat_pairs.wgsl; `GpuFormat::pairs`): units 2k and
// 2k+1 share the 32 bytes of qs at 16 + 32k, unit 2k in the low nibbles and 2k+1 in the high, so
// one invocation takes one qs word (4 weights of each unit) and decodes both halves, with both
// units' (scale, offset) from one read of the scale words.
const PAIRS_PER_BLOCK: u32 = 4u;

// (scale, offset) of unit 2k in .xy and of unit 2k+1 in .zw: unit_scale's arithmetic, the three
// scale words read once for both (bytes 2k % 4 and 2k % 4 + 1 of each; 2k and 2k+1 are both
// below 4 or both not).
fn pair_scale(b: u32, k: u32) -> vec4<f32> {
    let dm = unpack2x16float(u32_at(b));
    let sh = (k & 1u) * 16u;
    let b0 = u32_at(b + 4u) >> sh;
    let b1 = u32_at(b + 8u) >> sh;
    let b2 = u32_at(b + 12u) >> sh;
    let lo = k < 2u;
    // Byte e (0: unit 2k, 1: unit 2k+1) of each word.
    let e0 = vec2<u32>(b0 & 0xffu, (b0 >> 8u) & 0xffu);
    let e1 = vec2<u32>(b1 & 0xffu, (b1 >> 8u) & 0xffu);
    let e2 = vec2<u32>(b2 & 0xffu, (b2 >> 8u) & 0xffu);
    let sc = select((e2 & vec2<u32>(0xfu)) | ((e0 >> vec2<u32>(6u)) << vec2<u32>(4u)),
                    e0 & vec2<u32>(63u), lo);
    let m = select((e2 >> vec2<u32>(4u)) | ((e1 >> vec2<u32>(6u)) << vec2<u32>(4u)),
                   e1 & vec2<u32>(63u), lo);
    let s = dm.x * vec2<f32>(sc);
    let o = -(dm.y * vec2<f32>(m));
    return vec4<f32>(s.x, o.x, s.y, o.y);
}

// Word i (0..8) of the qs shared by units 2k and 2k+1: weights 4i..4i+4 of both.
fn pair_qs(b: u32, k: u32, i: u32) -> u32 {
    return u32_at(b + 16u + k * 32u + 4u * i);
}
