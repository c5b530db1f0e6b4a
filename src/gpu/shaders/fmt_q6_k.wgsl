// fmt_q6_k.wgsl: Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}, 210 bytes, 256 weights.
// Unit j (0..16) = 16 weights with scale d·scales[j]: weight = (d·sc)·(q − 32).

const UNIT_W: u32 = 16u;
const UNITS_PER_BLOCK: u32 = 16u;
const BLOCK_BYTES: u32 = 210u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4).
const STEP_QUADS: u32 = 4u;
// Zero bytes before each block when repacked (layout_aligned.wgsl).
const ALIGN_LEAD: u32 = 0u;

fn unit_scale(b: u32, j: u32) -> vec2<f32> {
    return vec2<f32>(f16_at(b + 208u) * f32(i8_at(b + 192u + j)), 0.0);
}

// q − 32 of weights 4k..4k+4 of unit j: element e = 16j + 4k, half h = e / 128, r = e % 128;
// low 4 bits from ql[64h + r % 64] (nibble r / 64), high 2 from qh[32h + r % 32] (pair r / 32).
fn unit_q4(b: u32, j: u32, k: u32) -> vec4<f32> {
    let e = j * 16u + k * 4u;
    let h = e >> 7u;
    let r = e & 127u;
    let ql = (u32_at(b + h * 64u + (r & 63u)) >> ((r >> 6u) * 4u)) & 0x0f0f0f0fu;
    let qh = (u32_at(b + 128u + h * 32u + (r & 31u)) >> ((r >> 5u) * 2u)) & 0x03030303u;
    return bytes4(ql | (qh << 4u)) - vec4<f32>(32.0);
}
