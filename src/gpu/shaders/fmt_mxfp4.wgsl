// fmt_mxfp4.wgsl: MXFP4 {u8 e; u8 qs[16]}, 17 bytes, 32 weights: weight = d·kvalues_mxfp4[q]
// with 4-bit q laid out as Q4_0's, d = 2^(e − 128) (ggml's GGML_E8M0_TO_FP32_HALF: the E8M0
// scale halved, since kvalues_mxfp4 = {0, 1, 2, 3, 4, 6, 8, 12, 0, −1, −2, −3, −4, −6, −8, −12}
// are the FP4 (E2M1) values doubled). The table is four words of i8 in a vector (see
// fmt_iq4_nl.wgsl). e < 2 gives a subnormal d, which a GPU may flush to zero; quantizers never
// write such scales for real weights.

const UNIT_W: u32 = 32u;
const UNITS_PER_BLOCK: u32 = 1u;
const BLOCK_BYTES: u32 = 17u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4).
const STEP_QUADS: u32 = 1u;
// Zero bytes before each block when repacked (layout_aligned.wgsl): 3, so that e is the top
// byte of a word and qs starts on the next (17 → 20 bytes).
const ALIGN_LEAD: u32 = 3u;
const KVALUES: vec4<u32> = vec4<u32>(0x03020100u, 0x0c080604u, 0xfdfeff00u, 0xf4f8fafcu);

fn unit_scale(b: u32, j: u32) -> vec2<f32> {
    let e = u8_at(b);
    return vec2<f32>(bitcast<f32>(select((e - 1u) << 23u, 0x00200000u << e, e < 2u)), 0.0);
}

// kvalues of weights 4k..4k+4.
fn unit_q4(b: u32, j: u32, k: u32) -> vec4<f32> {
    let i = 4u * k;
    return lut16(KVALUES, (u32_at(b + 1u + (i & 15u)) >> ((i >> 4u) * 4u)) & 0x0f0f0f0fu);
}
