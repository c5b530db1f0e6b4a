// matmat_row.wgsl: one invocation's share of a row's dot products with the TOK tokens of a
// matmat.wgsl tile (`row_dots`), prepended to it after quant.wgsl + layout + fmt. The loop is
// matvec_row.wgsl's, in the same order per token (lane `lane` of `tpr` strides over the row's
// quads STEP_QUADS at a time), each quad dequantized once for all TOK tokens; the kernel
// declares `TOK` and `act_tok(t, q)` (activation quad q of token t).

fn row_dots(row: u32, cols: u32, lane: u32, tpr: u32) -> array<f32, TOK> {
    var acc: array<f32, TOK>;
    let n_quads = cols / 4u;
    for (var g = lane; g < n_quads / STEP_QUADS; g += tpr) {
        let u = g * STEP_QUADS / (UNIT_W / 4u);
        let b = row + (u / UNITS_PER_BLOCK) * BLOCK_STRIDE + BLOCK_LEAD;
        let j = u % UNITS_PER_BLOCK;
        let sc = unit_scale(b, j);
        for (var i = 0u; i < STEP_QUADS; i++) {
            let q = g * STEP_QUADS + i;
            let qv = unit_q4(b, j, q % (UNIT_W / 4u));
            for (var t = 0u; t < TOK; t++) {
                acc[t] += quad_dot(sc, qv, act_tok(t, q));
            }
        }
    }
    return acc;
}
