// fmt_iq3_xxs.wgsl: IQ3_XXS {f16 d; u8 qs[64]; u32 scales_and_signs[8]}, 98 bytes, 256 weights.
// Sub-block j (0..8) of 32 weights: indices qs[8j..8j + 8] into iq3xxs_grid (256 entries of 4
// magnitudes, 4..62), and a u32 `a` holding four 7-bit sign fields (weights 8l..8l + 8: bits
// 7l..7l+7, the 8th sign from parity as ggml's ksigns_iq2xs) and the scale in bits 28..32:
// weight = (d·(0.5 + a >> 28)·0.5)·grid·sign.
//
// The grid sits in the weight buffer itself, before the blocks (see fmt_iq2_xxs.wgsl for why it
// is neither a WGSL const array nor a binding of its own): every block offset `b` is taken
// TABLE_BYTES further.

const UNIT_W: u32 = 32u;
const UNITS_PER_BLOCK: u32 = 8u;
const BLOCK_BYTES: u32 = 98u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4): two grid entries, which share one sign field.
const STEP_QUADS: u32 = 2u;
// Zero bytes before each block when repacked (layout_aligned.wgsl): 2, so that qs starts on a
// word (98 → 100 bytes).
const ALIGN_LEAD: u32 = 2u;
// The grid before the first block: 256 entries × 4 bytes.
const TABLE_BYTES: u32 = 1024u;

fn unit_scale(b0: u32, j: u32) -> vec2<f32> {
    let b = b0 + TABLE_BYTES;
    let a = u32_at(b + 66u + 4u * j);
    return vec2<f32>(f16_at(b) * (0.5 + f32(a >> 28u)) * 0.5, 0.0);
}

// grid·sign of weights 4k..4k+4 of sub-block j: grid entry qs[8j + k], signs from field k / 2.
fn unit_q4(b0: u32, j: u32, k: u32) -> vec4<f32> {
    let b = b0 + TABLE_BYTES;
    let a = u32_at(b + 66u + 4u * j);
    let s = ksigns((a >> (7u * (k >> 1u))) & 127u) >> (4u * (k & 1u));
    return bytes4(w[u8_at(b + 2u + 8u * j + k)]) * signs4(s);
}
