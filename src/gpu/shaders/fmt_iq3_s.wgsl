// fmt_iq3_s.wgsl: IQ3_S {f16 d; u8 qs[64]; u8 qh[8]; u8 signs[32]; u8 scales[4]}, 110 bytes, 256
// weights. Sub-block j (0..8) of 32 weights: grid entry k (0..8, 4 weights) has the 9-bit index
// qs[8j + k] | ((qh[j] >> k) & 1) << 8 into iq3s_grid (512 entries of 4 magnitudes, 1..15) and
// its signs in nibble k % 2 of signs[4j + k / 2]; the scale is nibble j % 2 of scales[j / 2]:
// weight = (d·(1 + 2·nibble))·grid·sign.
//
// The grid sits in the weight buffer itself, before the blocks (see fmt_iq2_xxs.wgsl for why it
// is neither a WGSL const array nor a binding of its own): every block offset `b` is taken
// TABLE_BYTES further.

const UNIT_W: u32 = 32u;
const UNITS_PER_BLOCK: u32 = 8u;
const BLOCK_BYTES: u32 = 110u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4): two grid entries, which share one sign byte.
const STEP_QUADS: u32 = 2u;
// Zero bytes before each block when repacked (layout_aligned.wgsl): 2, so that qs starts on a
// word (110 → 112 bytes).
const ALIGN_LEAD: u32 = 2u;
// The grid before the first block: 512 entries × 4 bytes.
const TABLE_BYTES: u32 = 2048u;

fn unit_scale(b0: u32, j: u32) -> vec2<f32> {
    let b = b0 + TABLE_BYTES;
    let sc = (u8_at(b + 106u + (j >> 1u)) >> ((j & 1u) * 4u)) & 15u;
    return vec2<f32>(f16_at(b) * f32(1u + 2u * sc), 0.0);
}

// grid·sign of weights 4k..4k+4 of sub-block j.
fn unit_q4(b0: u32, j: u32, k: u32) -> vec4<f32> {
    let b = b0 + TABLE_BYTES;
    let idx = u8_at(b + 2u + 8u * j + k) | (((u8_at(b + 66u + j) >> k) & 1u) << 8u);
    let s = u8_at(b + 74u + 4u * j + (k >> 1u)) >> (4u * (k & 1u));
    return bytes4(w[idx]) * signs4(s);
}
