// matvec_fused.wgsl: one token's y[y_off + r] (+)= Σ_c W[r, c]·h[c] for the rows of one weight
// chunk, with the RMSNorm of the input fused in front (NORM = 1: h = x / sqrt(mean(x²) + eps)·wt,
// rmsnorm.wgsl's arithmetic) and the residual add fused behind (ADD = 1: y += scale·W·h, so the
// output projections write the residual stream directly; else y = scale·W·h). `scale` is
// Granite's residual_scale on a block's output and 1/logit_scale on its logits; 1 otherwise. The decode step's o_proj and ffn_down
// (ADD) and the output head (NORM). Prepended: quant.wgsl + layout + fmt + matvec_row.wgsl (or
// matvec_row_pairs.wgsl), suffixed _0 (see matvec_row.wgsl), then reduce_wg.wgsl or
// reduce_sg.wgsl (both reductions; see matvec.wgsl).
//
// Bindings (group 0):
//   0 w_0: array<u32>        quantized rows of this chunk (row r at byte r·row_bytes), read-only
//   1 x: array<vec4<f32>>    input (cols / 4), read-only
//   2 wt: array<vec4<f32>>   RMSNorm weight (cols / 4; any buffer when NORM = 0), read-only
//   3 y: array<f32>          output, read-write (not x)
//   4 p: Params (uniform)    rows (of this chunk), cols, row_bytes, y_off, eps, scale
// Geometry: workgroup_size(256); ROWS (override) rows per workgroup, 256/ROWS invocations per
//   row as matvec.wgsl; dispatch (min(n, 32768), ceil(n / 32768)) for n = ceil(rows / ROWS).
//   With NORM every workgroup first reduces Σx² itself (256 strided partial sums, a
//   `reduce_all`, as rmsnorm.wgsl's tree): n_embd reads from cache per workgroup instead of a
//   dispatch and a barrier.

struct Params {
    rows: u32,
    cols: u32,
    row_bytes: u32,
    y_off: u32,
    eps: f32,
    scale: f32,
}

override ROWS: u32 = 4u;
override NORM: u32 = 0u;
override ADD: u32 = 0u;
const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> w_0: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> wt: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

var<private> inv_rms: f32;

fn act_quad(q: u32) -> vec4<f32> {
    if (NORM != 0u) {
        return x[q] * inv_rms * wt[q];
    }
    return x[q];
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    if (NORM != 0u) {
        var ss = 0.0;
        for (var i = lid; i < p.cols; i += WG) {
            let v = x[i >> 2u][i & 3u];
            ss += v * v;
        }
        inv_rms = 1.0 / sqrt(reduce_all(ss, lid) / f32(p.cols) + p.eps);
    }
    let tpr = WG / ROWS;
    let slot = lid / tpr;
    let lane = lid % tpr;
    let r = (wg.x + wg.y * nwg.x) * ROWS + slot;
    var acc = 0.0;
    if (r < p.rows) {
        acc = row_dot_0(r * p.row_bytes, p.cols, lane, tpr);
    }
    reduce_rows(acc, lid);
    if (lane == 0u && r < p.rows) {
        let i = p.y_off + r;
        if (ADD != 0u) {
            y[i] = y[i] + p.scale * row_sum(slot);
        } else {
            y[i] = p.scale * row_sum(slot);
        }
    }
}
