// matvec_row_pairs.wgsl: matvec_row.wgsl's `row_dot` for formats whose units come in pairs over
// shared bytes (`GpuFormat::pairs`: Q4_K, where units 2k and 2k+1 are the low and high nibbles
// of the same 32 bytes of qs and share the block's scale words). Prepended in place of
// matvec_row.wgsl, with quant.wgsl + one layout_*.wgsl + the fmt file, which gives
// `PAIRS_PER_BLOCK`, `pair_scale(b, k)` ((scale, offset) of units 2k and 2k+1 as .xy, .zw) and
// `pair_qs(b, k, i)` (word i of the pair's shared bytes: 4 weights of each unit, low nibbles
// unit 2k's).
//
// Shapes: a row is cols / 8 words of qs (UNIT_W / 4 = 8 words per pair of 32-weight units); lane `lane` of
// `tpr` invocations strides over them, so neighbouring invocations read neighbouring words of a
// block (coalesced, as matvec_row.wgsl's quads) and each load yields 8 weights instead of 4:
// the generic path (one quad of one unit per step) loaded every qs word twice, once per nibble
// half, and the four scale words once per 4 weights instead of once per 8. Per word: the quad
// of unit 2k (activation quad 16p + i for pair p of the row) then the quad of unit 2k+1
// (16p + 8 + i), each through `quad_dot`.

fn row_dot(row: u32, cols: u32, lane: u32, tpr: u32) -> f32 {
    var acc = 0.0;
    let wpu = UNIT_W / 4u;
    for (var g = lane; g < cols / (2u * UNIT_W) * wpu; g += tpr) {
        let pr = g / wpu;
        let i = g % wpu;
        let b = row + (pr / PAIRS_PER_BLOCK) * BLOCK_STRIDE + BLOCK_LEAD;
        let k = pr % PAIRS_PER_BLOCK;
        let s = pair_scale(b, k);
        let v = pair_qs(b, k, i);
        let q = pr * 2u * wpu + i;
        acc += quad_dot(s.xy, bytes4(v & 0x0f0f0f0fu), act_quad(q));
        acc += quad_dot(s.zw, bytes4((v >> 4u) & 0x0f0f0f0fu), act_quad(q + wpu));
    }
    return acc;
}
