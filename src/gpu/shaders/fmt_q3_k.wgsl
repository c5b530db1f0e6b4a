// fmt_q3_k.wgsl: Q3_K {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}, 110 bytes, 256 weights.
// Unit j (0..16) = sub-block of 16 weights with a signed 6-bit scale sc_j:
// weight = (d·(sc_j − 32))·(q − 4), q = 2 low bits from qs (as Q2_K) | the hmask bit << 2.

const UNIT_W: u32 = 16u;
const UNITS_PER_BLOCK: u32 = 16u;
const BLOCK_BYTES: u32 = 110u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4): a whole unit, as Q6_K, since the 6-bit scale takes two bytes to assemble.
const STEP_QUADS: u32 = 4u;
// Zero bytes before each block when repacked (layout_aligned.wgsl): none; every field then
// starts on a word (hmask 0, qs 32, scales 96, d 108) and the block is padded 110 → 112 bytes.
const ALIGN_LEAD: u32 = 0u;

// Scale of unit j: low 4 bits from nibble j / 8 of scales[j % 8], high 2 bits from bits
// 2·(j / 4) of scales[8 + j % 4].
fn unit_scale(b: u32, j: u32) -> vec2<f32> {
    let lo = (u8_at(b + 96u + (j & 7u)) >> ((j >> 3u) * 4u)) & 15u;
    let hi = (u8_at(b + 104u + (j & 3u)) >> ((j >> 2u) * 2u)) & 3u;
    return vec2<f32>(f16_at(b + 108u) * f32(i32(lo | (hi << 4u)) - 32), 0.0);
}

// q − 4 of weights 4k..4k+4 of unit j: element e = 16j + 4k; low bits as Q2_K, the high bit
// is bit e / 32 of hmask[e % 32] (set: no −4).
fn unit_q4(b: u32, j: u32, k: u32) -> vec4<f32> {
    let e = j * 16u + k * 4u;
    let l = e & 31u;
    let lo = (u32_at(b + 32u + (e >> 7u) * 32u + l) >> (((e >> 5u) & 3u) * 2u)) & 0x03030303u;
    let hm = (u32_at(b + l) >> (e >> 5u)) & 0x01010101u;
    return bytes4(lo | (hm << 2u)) - vec4<f32>(4.0);
}
