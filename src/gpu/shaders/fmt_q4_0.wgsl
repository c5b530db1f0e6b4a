// fmt_q4_0.wgsl: Q4_0 {f16 d; u8 qs[16]}, 18 bytes, 32 weights: weight = d·(q − 8).

const UNIT_W: u32 = 32u;
const UNITS_PER_BLOCK: u32 = 1u;
const BLOCK_BYTES: u32 = 18u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4).
const STEP_QUADS: u32 = 1u;
// Zero bytes before each block when repacked (layout_aligned.wgsl).
const ALIGN_LEAD: u32 = 2u;

fn unit_scale(b: u32, j: u32) -> vec2<f32> {
    return vec2<f32>(f16_at(b), 0.0);
}

// q − 8 of weights 4k..4k+4: low nibbles of qs for the first 16, high for the last 16.
fn unit_q4(b: u32, j: u32, k: u32) -> vec4<f32> {
    let i = 4u * k;
    return bytes4((u32_at(b + 2u + (i & 15u)) >> ((i >> 4u) * 4u)) & 0x0f0f0f0fu) - vec4<f32>(8.0);
}
