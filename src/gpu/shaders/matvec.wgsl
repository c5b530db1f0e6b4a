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
//   256/ROWS invocations per row, each striding over the row's units. Per unit the integer
//   parts are dotted with x and the offset term is folded in through Σx:
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
        let n_units = p.cols / UNIT_W;
        let row = r * p.row_bytes;
        for (var u = lane; u < n_units; u += tpr) {
            let b = row + (u / UNITS_PER_BLOCK) * BLOCK_STRIDE + BLOCK_LEAD;
            let j = u % UNITS_PER_BLOCK;
            let s = unit_scale(b, j);
            let xo = (wg.z * p.cols + u * UNIT_W) / 4u;
            var sq = vec4<f32>(0.0);
            var sx = vec4<f32>(0.0);
            for (var k = 0u; k < UNIT_W / 4u; k++) {
                let xv = x[xo + k];
                sq += unit_q4(b, j, k) * xv;
                sx += xv;
            }
            let t = s.x * sq + s.y * sx;
            acc += (t.x + t.y) + (t.z + t.w);
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
