// fmt_iq1_m.wgsl: IQ1_M {u8 qs[32]; u8 qh[16]; u16 scales[4]}, 56 bytes, 256 weights, no d field:
// the f16 super-block scale d is the top nibbles of the four scale words (scales[0] >> 12 lowest).
// Unit j (0..32) = one grid entry of 8 weights: nibble j % 2 of qh[j / 2] holds 3 high index bits
// and the sign of a shift delta (bit 3); the index qs[j] | high << 8 points into iq1s_grid
// (2048 entries of 8 values −1/0/1). Sub-block ib = j / 4 has two 3-bit scales in
// scales[ib / 2] (bits 6·(ib % 2) for units 4ib, 4ib + 1, + 3 for the next two):
// weight = dl·(grid + delta), dl = d·(2·scale + 1), delta = ±1/8; as (scale, offset)
// (dl, dl·delta), both exact.
//
// The grid sits in the weight buffer itself, before the blocks (see fmt_iq2_xxs.wgsl for why it
// is neither a WGSL const array nor a binding of its own): every block offset `b` is taken
// TABLE_BYTES further.

const UNIT_W: u32 = 8u;
const UNITS_PER_BLOCK: u32 = 32u;
const BLOCK_BYTES: u32 = 56u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4): the whole unit.
const STEP_QUADS: u32 = 2u;
// Blocks are word-aligned as they are (qs 0, qh 32, scales 48): layout_aligned.wgsl reads them
// with no padding.
const ALIGN_LEAD: u32 = 0u;
// The grid before the first block: 2048 entries × 8 bytes.
const TABLE_BYTES: u32 = 16384u;

fn unit_scale(b0: u32, j: u32) -> vec2<f32> {
    let b = b0 + TABLE_BYTES;
    let s01 = u32_at(b + 48u);
    let s23 = u32_at(b + 52u);
    let d16 = ((s01 >> 12u) & 0xfu) | ((s01 >> 24u) & 0xf0u) | ((s23 >> 4u) & 0xf00u)
        | ((s23 >> 16u) & 0xf000u);
    let ib = j >> 2u;
    let sc = select(s01, s23, ib >= 4u) >> (16u * ((ib >> 1u) & 1u));
    let s3 = (sc >> (6u * (ib & 1u) + 3u * ((j >> 1u) & 1u))) & 7u;
    let dl = unpack2x16float(d16).x * f32(2u * s3 + 1u);
    let qh = u8_at(b + 32u + (j >> 1u)) >> (4u * (j & 1u));
    return vec2<f32>(dl, dl * select(0.125, -0.125, (qh & 8u) != 0u));
}

// grid values of weights 4k..4k+4 of unit j: half k of its grid entry.
fn unit_q4(b0: u32, j: u32, k: u32) -> vec4<f32> {
    let b = b0 + TABLE_BYTES;
    let qh = u8_at(b + 32u + (j >> 1u)) >> (4u * (j & 1u));
    let idx = u8_at(b + j) | ((qh & 7u) << 8u);
    return sbytes4(w[2u * idx + k]);
}
