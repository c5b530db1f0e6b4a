// fmt_q2_k.wgsl: Q2_K {u8 scales[16]; u8 qs[64]; f16 d; f16 dmin}, 84 bytes, 256 weights.
// Unit j (0..16) = sub-block of 16 weights, scales[j] = sc | m << 4:
// weight = (d·sc)·q − dmin·m with 2-bit q.

const UNIT_W: u32 = 16u;
const UNITS_PER_BLOCK: u32 = 16u;
const BLOCK_BYTES: u32 = 84u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4): a whole unit, as Q6_K (the same 16-weight units over bit planes), so each
// invocation decodes its scale byte once per 16 weights.
const STEP_QUADS: u32 = 4u;
// Blocks are word-aligned as they are (84 bytes; scales, qs and the d/dmin word all start on
// words): layout_aligned.wgsl reads them with no padding.
const ALIGN_LEAD: u32 = 0u;

fn unit_scale(b: u32, j: u32) -> vec2<f32> {
    let dm = unpack2x16float(u32_at(b + 80u));
    let sc = u8_at(b + j);
    return vec2<f32>(dm.x * f32(sc & 15u), -(dm.y * f32(sc >> 4u)));
}

// q of weights 4k..4k+4 of unit j: element e = 16j + 4k sits in half h = e / 128 at plane
// s = (e % 128) / 32: bits 2s..2s+2 of qs[32h + e % 32].
fn unit_q4(b: u32, j: u32, k: u32) -> vec4<f32> {
    let e = j * 16u + k * 4u;
    let q = u32_at(b + 16u + (e >> 7u) * 32u + (e & 31u)) >> (((e >> 5u) & 3u) * 2u);
    return bytes4(q & 0x03030303u);
}
