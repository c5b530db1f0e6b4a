// fmt_iq4_xs.wgsl: IQ4_XS {f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]}, 136 bytes, 256
// weights. Sub-block j (0..8) of 32 weights: 6-bit scale ls = nibble j % 2 of scales_l[j / 2]
// | ((scales_h >> 2j) & 3) << 4, and 16 bytes of 4-bit q at qs + 16j laid out as IQ4_NL's:
// weight = (d·(ls − 32))·kvalues_iq4nl[q] (the table as in fmt_iq4_nl.wgsl).

const UNIT_W: u32 = 32u;
const UNITS_PER_BLOCK: u32 = 8u;
const BLOCK_BYTES: u32 = 136u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4).
const STEP_QUADS: u32 = 1u;
// Blocks are word-aligned as they are (d/scales_h word 0, scales_l word 1, qs from byte 8):
// layout_aligned.wgsl reads them with no padding.
const ALIGN_LEAD: u32 = 0u;
const KVALUES: vec4<u32> = vec4<u32>(0xbfad9881u, 0xf6eaddcfu, 0x26190d01u, 0x71594535u);

fn unit_scale(b: u32, j: u32) -> vec2<f32> {
    let w0 = u32_at(b);
    let lo = (u8_at(b + 4u + (j >> 1u)) >> ((j & 1u) * 4u)) & 15u;
    let hi = (w0 >> (16u + 2u * j)) & 3u;
    return vec2<f32>(unpack2x16float(w0).x * f32(i32(lo | (hi << 4u)) - 32), 0.0);
}

// kvalues of weights 4k..4k+4 of sub-block j.
fn unit_q4(b: u32, j: u32, k: u32) -> vec4<f32> {
    let i = 4u * k;
    let q = (u32_at(b + 8u + 16u * j + (i & 15u)) >> ((i >> 4u) * 4u)) & 0x0f0f0f0fu;
    return lut16(KVALUES, q);
}
