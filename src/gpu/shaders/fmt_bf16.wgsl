// fmt_bf16.wgsl: BF16, four weights per unit. A bfloat16 is the top half of an f32, so each
// weight is its 16 bits shifted up: exact for every value (no shader-f16 needed).

const UNIT_W: u32 = 4u;
const UNITS_PER_BLOCK: u32 = 1u;
const BLOCK_BYTES: u32 = 8u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4).
const STEP_QUADS: u32 = 1u;

fn unit_scale(b: u32, j: u32) -> vec2<f32> {
    return vec2<f32>(1.0, 0.0);
}

fn unit_q4(b: u32, j: u32, k: u32) -> vec4<f32> {
    let lo = u32_at(b);
    let hi = u32_at(b + 4u);
    return bitcast<vec4<f32>>(vec4<u32>(lo << 16u, lo & 0xffff0000u, hi << 16u, hi & 0xffff0000u));
}
