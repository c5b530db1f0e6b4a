// fmt_q5_0.wgsl: Q5_0 {f16 d; u8 qh[4]; u8 qs[16]}, 22 bytes, 32 weights: weight = d·(q − 16).

const UNIT_W: u32 = 32u;
const UNITS_PER_BLOCK: u32 = 1u;
const BLOCK_BYTES: u32 = 22u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4).
const STEP_QUADS: u32 = 1u;
// Zero bytes before each block when repacked (layout_aligned.wgsl).
const ALIGN_LEAD: u32 = 2u;

fn unit_scale(b: u32, j: u32) -> vec2<f32> {
    return vec2<f32>(f16_at(b), 0.0);
}

// q − 16 of weights 4k..4k+4: low nibbles of qs for the first 16, high for the last 16; the
// 5th bit of weight i is bit i of qh.
fn unit_q4(b: u32, j: u32, k: u32) -> vec4<f32> {
    let i = 4u * k;
    let lo = (u32_at(b + 6u + (i & 15u)) >> ((i >> 4u) * 4u)) & 0x0f0f0f0fu;
    return bytes4(lo | hbits4(u32_at(b + 2u), i)) - vec4<f32>(16.0);
}
