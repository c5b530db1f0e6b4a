// fmt_iq1_s.wgsl: IQ1_S {f16 d; u8 qs[32]; u16 qh[8]}, 50 bytes, 256 weights. Sub-block j (0..8)
// of 32 weights: qh[j] holds a scale (bits 12..15), the sign of a shift delta (bit 15) and
// 3 high index bits per grid entry l (0..4, bits 3l..3l+3); entry l has the 11-bit index
// qs[4j + l] | high << 8 into iq1s_grid (2048 entries of 8 values −1/0/1):
// weight = dl·(grid + delta), dl = d·(2·scale + 1), delta = ±1/8; as (scale, offset)
// (dl, dl·delta), both exact.
//
// The grid sits in the weight buffer itself, before the blocks (see fmt_iq2_xxs.wgsl for why it
// is neither a WGSL const array nor a binding of its own): every block offset `b` is taken
// TABLE_BYTES further.

const UNIT_W: u32 = 32u;
const UNITS_PER_BLOCK: u32 = 8u;
const BLOCK_BYTES: u32 = 50u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4): one grid entry of 8 weights.
const STEP_QUADS: u32 = 2u;
// Zero bytes before each block when repacked (layout_aligned.wgsl): 2, so that qs and qh start
// on words (50 → 52 bytes).
const ALIGN_LEAD: u32 = 2u;
// The grid before the first block: 2048 entries × 8 bytes.
const TABLE_BYTES: u32 = 16384u;

fn unit_scale(b0: u32, j: u32) -> vec2<f32> {
    let b = b0 + TABLE_BYTES;
    let qh = u16_at(b + 34u + 2u * j);
    let dl = f16_at(b) * f32(2u * ((qh >> 12u) & 7u) + 1u);
    return vec2<f32>(dl, dl * select(0.125, -0.125, (qh & 0x8000u) != 0u));
}

// grid values of weights 4k..4k+4 of sub-block j: half k % 2 of grid entry l = k / 2.
fn unit_q4(b0: u32, j: u32, k: u32) -> vec4<f32> {
    let b = b0 + TABLE_BYTES;
    let l = k >> 1u;
    let qh = u16_at(b + 34u + 2u * j);
    let idx = u8_at(b + 2u + 4u * j + l) | (((qh >> (3u * l)) & 7u) << 8u);
    return sbytes4(w[2u * idx + (k & 1u)]);
}
