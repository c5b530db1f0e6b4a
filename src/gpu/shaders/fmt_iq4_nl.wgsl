// fmt_iq4_nl.wgsl: IQ4_NL {f16 d; u8 qs[16]}, 18 bytes, 32 weights: weight = d·kvalues_iq4nl[q]
// with 4-bit q laid out as Q4_0's (low nibbles for weights 0..16, high for 16..32) and ggml's
// non-linear table kvalues_iq4nl = {−127, −104, −83, −65, −49, −35, −22, −10, 1, 13, 25, 38, 53,
// 69, 89, 113}, held as four words of i8 (KVALUES) in a vector: a vector indexed at run time is
// one register select, unlike a const array (copied into function memory per lookup by naga's
// SPIR-V writer and by Tint).

const UNIT_W: u32 = 32u;
const UNITS_PER_BLOCK: u32 = 1u;
const BLOCK_BYTES: u32 = 18u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4).
const STEP_QUADS: u32 = 1u;
// Zero bytes before each block when repacked (layout_aligned.wgsl), as Q4_0.
const ALIGN_LEAD: u32 = 2u;
const KVALUES: vec4<u32> = vec4<u32>(0xbfad9881u, 0xf6eaddcfu, 0x26190d01u, 0x71594535u);

fn unit_scale(b: u32, j: u32) -> vec2<f32> {
    return vec2<f32>(f16_at(b), 0.0);
}

// kvalues of weights 4k..4k+4.
fn unit_q4(b: u32, j: u32, k: u32) -> vec4<f32> {
    let i = 4u * k;
    return lut16(KVALUES, (u32_at(b + 2u + (i & 15u)) >> ((i >> 4u) * 4u)) & 0x0f0f0f0fu);
}
