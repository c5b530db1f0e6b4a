// matvec.wgsl: fused dequantize × vector, y[y_off + r] = Σ_c W[r, c]·x[c], for the rows of one
// weight chunk. Prepended: quant.wgsl + one layout_*.wgsl + one fmt_*.wgsl (the block format).
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
//   planes cost more to decode than the looser loads). Per quad (`quad_dot`) the
//   integer parts are dotted with x and the offset term is folded in through Σx:
//   Σ (s·q + m)·x = s·Σ q·x + m·Σ x. Rows reduce in a workgroup-memory tree.
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

var<workgroup> part: array<f32, WG>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let tpr = WG / ROWS;
    let slot = lid / tpr;
    let lane = lid % tpr;
    let r = (wg.x + wg.y * nwg.x) * ROWS + slot;
    var acc = 0.0;
    if (r < p.rows) {
        let n_quads = p.cols / 4u;
        let row = r * p.row_bytes;
        let xo = wg.z * n_quads;
        for (var g = lane; g < n_quads / STEP_QUADS; g += tpr) {
            let u = g * STEP_QUADS / (UNIT_W / 4u);
            let b = row + (u / UNITS_PER_BLOCK) * BLOCK_STRIDE + BLOCK_LEAD;
            let j = u % UNITS_PER_BLOCK;
            let s = unit_scale(b, j);
            for (var i = 0u; i < STEP_QUADS; i++) {
                let q = g * STEP_QUADS + i;
                acc += quad_dot(s, unit_q4(b, j, q % (UNIT_W / 4u)), x[xo + q]);
            }
        }
    }
    part[lid] = acc;
    workgroupBarrier();
    for (var st = tpr / 2u; st > 0u; st >>= 1u) {
        if (lane < st) {
            part[lid] += part[lid + st];
        }
        workgroupBarrier();
    }
    if (lane == 0u && r < p.rows) {
        y[wg.z * p.y_stride + p.y_off + r] = part[lid];
    }
}
