// fmt_q5_1.wgsl: Q5_1 {f16 d; f16 m; u8 qh[4]; u8 qs[16]}, 24 bytes, 32 weights: weight = d·q + m
// with 5-bit q (low 4 bits in qs as Q4_1, the 5th bit of weight i is bit i of qh).

const UNIT_W: u32 = 32u;
const UNITS_PER_BLOCK: u32 = 1u;
const BLOCK_BYTES: u32 = 24u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4).
const STEP_QUADS: u32 = 1u;
// Blocks are word-aligned as they are (d and m share word 0, qh is word 1, qs words 2..6):
// layout_aligned.wgsl reads them with no padding.
const ALIGN_LEAD: u32 = 0u;

fn unit_scale(b: u32, j: u32) -> vec2<f32> {
    return unpack2x16float(u32_at(b));
}

// q of weights 4k..4k+4: low nibbles of qs for the first 16, high for the last 16, plus the
// 5th bits from qh.
fn unit_q4(b: u32, j: u32, k: u32) -> vec4<f32> {
    let i = 4u * k;
    let lo = (u32_at(b + 8u + (i & 15u)) >> ((i >> 4u) * 4u)) & 0x0f0f0f0fu;
    return bytes4(lo | hbits4(u32_at(b + 4u), i));
}
