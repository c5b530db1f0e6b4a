// fmt_iq2_xxs.wgsl: IQ2_XXS {f16 d; u16 qs[32]}, 66 bytes, 256 weights. Sub-block j (0..8) of 32
// weights is 8 bytes at qs + 8j: four indices into iq2xxs_grid (256 entries of 8 magnitudes,
// 8/25/43), then a u32 `a` holding four 7-bit sign fields (entry l: bits 7l..7l+7, the 8th sign
// from parity as ggml's ksigns_iq2xs) and the scale in bits 28..32:
// weight = (d·(0.5 + a >> 28)·0.25)·grid·sign.
//
// The grid sits in the weight buffer itself, in its first TABLE_BYTES (the u64 entries as word
// pairs, low word first; written there at upload, src/gpu/weights.rs), and the blocks follow
// it: every block offset `b` is taken TABLE_BYTES further. Not a WGSL `const` array: indexed by
// a runtime value, a const array is copied into function memory per invocation by naga's
// SPIR-V writer and by Tint (Chrome), kilobytes per lookup, and a workgroup-memory copy would
// not fit the 16 KiB WebGPU guarantees beside matmat's own. Not a binding of its own either:
// through the weight binding every kernel built on these readers (and any fused kernel) reads
// it with no change to its bindings. On a GPU the lookups are cached loads from a 2 KiB region.

const UNIT_W: u32 = 32u;
const UNITS_PER_BLOCK: u32 = 8u;
const BLOCK_BYTES: u32 = 66u;
// Consecutive quads (4 weights) one invocation takes per step of matvec/matmat (divides
// UNIT_W / 4): one grid entry of 8 weights.
const STEP_QUADS: u32 = 2u;
// Zero bytes before each block when repacked (layout_aligned.wgsl): 2, so that qs starts on a
// word (66 → 68 bytes).
const ALIGN_LEAD: u32 = 2u;
// The grid before the first block: 256 entries × 8 bytes.
const TABLE_BYTES: u32 = 2048u;

fn unit_scale(b0: u32, j: u32) -> vec2<f32> {
    let b = b0 + TABLE_BYTES;
    let a = u32_at(b + 6u + 8u * j);
    return vec2<f32>(f16_at(b) * (0.5 + f32(a >> 28u)) * 0.25, 0.0);
}

// grid·sign of weights 4k..4k+4 of sub-block j: half k % 2 of grid entry l = k / 2.
fn unit_q4(b0: u32, j: u32, k: u32) -> vec4<f32> {
    let b = b0 + TABLE_BYTES;
    let l = k >> 1u;
    let h = k & 1u;
    let idx = u8_at(b + 2u + 8u * j + l);
    let a = u32_at(b + 6u + 8u * j);
    let s = ksigns((a >> (7u * l)) & 127u) >> (4u * h);
    return bytes4(w[2u * idx + h]) * signs4(s);
}
