// fmt_q8_0.wgsl: Q8_0 {f16 d; i8 qs[32]}, 34 bytes, 32 weights: weight = q·d.

const UNIT_W: u32 = 32u;
const UNITS_PER_BLOCK: u32 = 1u;
const BLOCK_BYTES: u32 = 34u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4).
const STEP_QUADS: u32 = 1u;
// Zero bytes before each block when repacked (layout_aligned.wgsl).
const ALIGN_LEAD: u32 = 2u;

fn unit_scale(b: u32, j: u32) -> vec2<f32> {
    return vec2<f32>(f16_at(b), 0.0);
}

fn unit_q4(b: u32, j: u32, k: u32) -> vec4<f32> {
    return sbytes4(u32_at(b + 2u + 4u * k));
}
