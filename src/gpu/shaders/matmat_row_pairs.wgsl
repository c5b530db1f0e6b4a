// matmat_row_pairs.wgsl: matmat_row.wgsl's `row_dots` for formats read in unit pairs
// (`GpuFormat::pairs`, Q4_K): the loop of matvec_row_pairs.wgsl (one shared qs word per step,
// both nibble halves, both units' scales from one read of the scale words; see there for the
// shapes), in its order per token, so that matmat.wgsl keeps matvec.wgsl's results bit for bit.

fn row_dots(row: u32, cols: u32, lane: u32, tpr: u32) -> array<f32, TOK> {
    var acc: array<f32, TOK>;
    let wpu = UNIT_W / 4u;
    for (var g = lane; g < cols / (2u * UNIT_W) * wpu; g += tpr) {
        let pr = g / wpu;
        let i = g % wpu;
        let b = row + (pr / PAIRS_PER_BLOCK) * BLOCK_STRIDE + BLOCK_LEAD;
        let k = pr % PAIRS_PER_BLOCK;
        let s = pair_scale(b, k);
        let v = pair_qs(b, k, i);
        let lo = bytes4(v & 0x0f0f0f0fu);
        let hi = bytes4((v >> 4u) & 0x0f0f0f0fu);
        let q = pr * 2u * wpu + i;
        for (var t = 0u; t < TOK; t++) {
            acc[t] += quad_dot(s.xy, lo, act_tok(t, q));
            acc[t] += quad_dot(s.zw, hi, act_tok(t, q + wpu));
        }
    }
    return acc;
}
