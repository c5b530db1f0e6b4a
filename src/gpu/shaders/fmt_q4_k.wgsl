// fmt_q4_k.wgsl: Q4_K {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}, 144 bytes, 256 weights.
// Unit j (0..8) = sub-block of 32 weights: weight = (d·sc_j)·q − dmin·m_j.

const UNIT_W: u32 = 32u;
const UNITS_PER_BLOCK: u32 = 8u;
const BLOCK_BYTES: u32 = 144u;

// (scale, offset) of unit j of the block at byte `b`: weight = scale·q + offset.
fn unit_scale(b: u32, j: u32) -> vec2<f32> {
    let d = f16_at(b);
    let dmin = f16_at(b + 2u);
    let s = b + 4u;
    var sc: u32;
    var m: u32;
    if (j < 4u) {
        sc = u8_at(s + j) & 63u;
        m = u8_at(s + j + 4u) & 63u;
    } else {
        sc = (u8_at(s + j + 4u) & 0xfu) | ((u8_at(s + j - 4u) >> 6u) << 4u);
        m = (u8_at(s + j + 4u) >> 4u) | ((u8_at(s + j) >> 6u) << 4u);
    }
    return vec2<f32>(d * f32(sc), -(dmin * f32(m)));
}

// q of weights 4k..4k+4 of unit j (low nibbles for even j, high for odd).
fn unit_q4(b: u32, j: u32, k: u32) -> vec4<f32> {
    return bytes4((u32_at(b + 16u + (j >> 1u) * 32u + 4u * k) >> ((j & 1u) * 4u)) & 0x0f0f0f0fu);
}
