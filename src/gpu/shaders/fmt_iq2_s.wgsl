// fmt_iq2_s.wgsl: IQ2_S {f16 d; u8 qs[32]; u8 signs[32]; u8 qh[8]; u8 scales[8]}, 82 bytes, 256
// weights (ggml's qs[64] is qs then signs). Grid entry e (0..32, 8 weights) has the 10-bit index
// qs[e] | ((qh[e / 4] >> 2·(e % 4)) & 3) << 8 into iq2s_grid (1024 entries of 8 magnitudes,
// 8/25/43) and its 8 signs in signs[e]. Unit j (0..16) = 16 weights, entries 2j and 2j + 1,
// with scale nibble j % 2 of scales[j / 2]: weight = (d·(0.5 + nibble)·0.25)·grid·sign.
//
// The grid sits in the weight buffer itself, before the blocks (see fmt_iq2_xxs.wgsl for why it
// is neither a WGSL const array nor a binding of its own): every block offset `b` is taken
// TABLE_BYTES further.

const UNIT_W: u32 = 16u;
const UNITS_PER_BLOCK: u32 = 16u;
const BLOCK_BYTES: u32 = 82u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4): one grid entry of 8 weights.
const STEP_QUADS: u32 = 2u;
// Zero bytes before each block when repacked (layout_aligned.wgsl): 2, so that qs starts on a
// word (82 → 84 bytes).
const ALIGN_LEAD: u32 = 2u;
// The grid before the first block: 1024 entries × 8 bytes.
const TABLE_BYTES: u32 = 8192u;

fn unit_scale(b0: u32, j: u32) -> vec2<f32> {
    let b = b0 + TABLE_BYTES;
    let sc = (u8_at(b + 74u + (j >> 1u)) >> ((j & 1u) * 4u)) & 15u;
    return vec2<f32>(f16_at(b) * (0.5 + f32(sc)) * 0.25, 0.0);
}

// grid·sign of weights 4k..4k+4 of unit j: half k % 2 of grid entry e = 2j + k / 2.
fn unit_q4(b0: u32, j: u32, k: u32) -> vec4<f32> {
    let b = b0 + TABLE_BYTES;
    let h = k & 1u;
    let e = 2u * j + (k >> 1u);
    let hi = (u8_at(b + 66u + (e >> 2u)) >> (2u * (e & 3u))) & 3u;
    let idx = u8_at(b + 2u + e) | (hi << 8u);
    let s = u8_at(b + 34u + e) >> (4u * h);
    return bytes4(w[2u * idx + h]) * signs4(s);
}
