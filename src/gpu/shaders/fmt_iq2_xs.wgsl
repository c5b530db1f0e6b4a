// fmt_iq2_xs.wgsl: IQ2_XS {f16 d; u16 qs[32]; u8 scales[8]}, 74 bytes, 256 weights. Each qs
// entry is a 9-bit index into iq2xs_grid (512 entries of 8 magnitudes, 8/25/43) and 7 sign bits
// (<< 9; the 8th sign from parity as ggml's ksigns_iq2xs). Unit j (0..16) = 16 weights, qs
// entries 2j and 2j + 1, with scale nibble j % 2 of scales[j / 2]:
// weight = (d·(0.5 + nibble)·0.25)·grid·sign.
//
// The grid sits in the weight buffer itself, before the blocks (see fmt_iq2_xxs.wgsl for why it
// is neither a WGSL const array nor a binding of its own): every block offset `b` is taken
// TABLE_BYTES further.

const UNIT_W: u32 = 16u;
const UNITS_PER_BLOCK: u32 = 16u;
const BLOCK_BYTES: u32 = 74u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4): one grid entry of 8 weights.
const STEP_QUADS: u32 = 2u;
// Zero bytes before each block when repacked (layout_aligned.wgsl): 2, so that qs starts on a
// word (74 → 76 bytes).
const ALIGN_LEAD: u32 = 2u;
// The grid before the first block: 512 entries × 8 bytes.
const TABLE_BYTES: u32 = 4096u;

fn unit_scale(b0: u32, j: u32) -> vec2<f32> {
    let b = b0 + TABLE_BYTES;
    let sc = (u8_at(b + 66u + (j >> 1u)) >> ((j & 1u) * 4u)) & 15u;
    return vec2<f32>(f16_at(b) * (0.5 + f32(sc)) * 0.25, 0.0);
}

// grid·sign of weights 4k..4k+4 of unit j: half k % 2 of qs entry 2j + k / 2.
fn unit_q4(b0: u32, j: u32, k: u32) -> vec4<f32> {
    let b = b0 + TABLE_BYTES;
    let h = k & 1u;
    let q = u16_at(b + 2u + 4u * j + 2u * (k >> 1u));
    let s = ksigns(q >> 9u) >> (4u * h);
    return bytes4(w[2u * (q & 511u) + h]) * signs4(s);
}
