// matvec_row.wgsl: one invocation's share of a row's dot product, for matvec.wgsl (unsuffixed)
// and the fused matrix kernels (matvec_fused.wgsl, matvec_qkv.wgsl, matvec_glu.wgsl); formats
// read in unit pairs (Q4_K) use matvec_row_pairs.wgsl instead. Prepended, with quant.wgsl + one
// layout_*.wgsl + one fmt_*.wgsl, once per weight matrix of the kernel, every top-level name
// (this function, the format's readers, the weight binding `w`) suffixed with the matrix's
// index (`row_dot_0`, `w_0`, ...; kernels::suffixed), so one kernel can read matrices of
// different formats (Q4_K_M keeps some V and ffn_down matrices in Q6_K).
//
// The kernel declares `w` (as `w_<i>`) and `act_quad(q) -> vec4<f32>`: activation quad q (4
// values) of the token, normalised or not. The loop is matmat_row.wgsl's, in the same order per
// token: lane `lane` of `tpr` invocations strides over the row's quads STEP_QUADS at a time.

fn row_dot(row: u32, cols: u32, lane: u32, tpr: u32) -> f32 {
    var acc = 0.0;
    let n_quads = cols / 4u;
    for (var g = lane; g < n_quads / STEP_QUADS; g += tpr) {
        let u = g * STEP_QUADS / (UNIT_W / 4u);
        let b = row + (u / UNITS_PER_BLOCK) * BLOCK_STRIDE + BLOCK_LEAD;
        let j = u % UNITS_PER_BLOCK;
        let s = unit_scale(b, j);
        for (var i = 0u; i < STEP_QUADS; i++) {
            let q = g * STEP_QUADS + i;
            acc += quad_dot(s, unit_q4(b, j, q % (UNIT_W / 4u)), act_quad(q));
        }
    }
    return acc;
}
