// fmt_f32.wgsl: F32, four weights per unit.

const UNIT_W: u32 = 4u;
const UNITS_PER_BLOCK: u32 = 1u;
const BLOCK_BYTES: u32 = 16u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4).
const STEP_QUADS: u32 = 1u;

fn unit_scale(b: u32, j: u32) -> vec2<f32> {
    return vec2<f32>(1.0, 0.0);
}

fn unit_q4(b: u32, j: u32, k: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(vec4<u32>(u32_at(b), u32_at(b + 4u), u32_at(b + 8u), u32_at(b + 12u)));
}
