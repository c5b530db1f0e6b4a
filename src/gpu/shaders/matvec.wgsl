// matvec.wgsl: fused dequantize × vector, y[y_off + r] = Σ_c W[r, c]·x[c], for the rows of one
// weight chunk. Prepended: quant.wgsl + one layout_*.wgsl + one fmt_*.wgsl (the block format)
// + matvec_row.wgsl (`row_dot`; matvec_row_pairs.wgsl for a format read in unit pairs, Q4_K)
// + reduce_wg.wgsl or reduce_sg.wgsl (the row reduction; subgroups where the device has them).
//
// Bindings (group 0):
//   0 w: array<u32>         quantized rows of this chunk (row r at byte r·row_bytes), read-only
//   1 x: array<vec4<f32>>   activation (cols / 4; cols is whole units, so a multiple of 4),
//                           read-only
//   2 y: array<f32>         output, read-write
//   3 p: Params (uniform)   rows (of this chunk), cols, row_bytes, y_off (first row's output index)
// Geometry: workgroup_size(256); ROWS (override, a power of two dividing 256) rows per workgroup,
//   256/ROWS invocations per row, each striding over the row's quads (4 weights; quad q of a row
//   is quad q % (UNIT_W/4) of unit q / (UNIT_W/4)) STEP_QUADS at a time (from the fmt file), so
//   that neighbouring invocations read nearby activations: one Q4_K unit (32 weights) per
//   invocation put a warp's 16-byte loads 128 bytes apart, 8× the memory transactions, while a
//   whole Q6_K unit (16 weights) per invocation measured best for Q6_K (its scale and bit
//   planes cost more to decode than the looser loads). Q4_K instead takes one word of qs per
//   step, both nibble halves (4 weights of each of the two units sharing it) with both units'
//   scales from one read of the scale words (matvec_row_pairs.wgsl). Per quad (`quad_dot`) the
//   integer parts are dotted with x and the offset term is folded in through Σx:
//   Σ (s·q + m)·x = s·Σ q·x + m·Σ x. Rows reduce in a workgroup-memory tree (reduce_wg.wgsl)
//   or through subgroupAdd (reduce_sg.wgsl).
//   Dispatch (min(n, 32768), ceil(n / 32768)) workgroups for n = ceil(rows / ROWS).

// Batches: workgroup z is the token: x row z (cols), y row z (stride y_stride); the weights are
// then read once per token. The model runs this for a decode step (one token) and matmat.wgsl
// for prefill batches (read once per tile of tokens); `chord bench --kernels` compares both.

struct Params {
    rows: u32,
    cols: u32,
    row_bytes: u32,
    y_off: u32,
    y_stride: u32,
}

override ROWS: u32 = 4u;
const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

var<private> x_off: u32;

fn act_quad(q: u32) -> vec4<f32> {
    return x[x_off + q];
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let tpr = WG / ROWS;
    let slot = lid / tpr;
    let lane = lid % tpr;
    let r = (wg.x + wg.y * nwg.x) * ROWS + slot;
    var acc = 0.0;
    if (r < p.rows) {
        x_off = wg.z * (p.cols / 4u);
        acc = row_dot(r * p.row_bytes, p.cols, lane, tpr);
    }
    reduce_rows(acc, lid);
    if (lane == 0u && r < p.rows) {
        y[wg.z * p.y_stride + p.y_off + r] = row_sum(slot);
    }
}
