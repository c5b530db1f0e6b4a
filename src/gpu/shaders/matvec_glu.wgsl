// matvec_glu.wgsl: the feed-forward block's input side of one decode token in one dispatch:
// h = RMSNorm(x)·wt, then y[r] = act(Wg·h)[r] · (Wu·h)[r] with act = SiLU (ACT = 0) or GELU,
// tanh approximation (ACT = 1), gate.wgsl's arithmetic. Replaces rmsnorm + 2 matvec + gate.
// Prepended: per matrix i (0 gate, 1 up) quant.wgsl + layout + fmt + matvec_row.wgsl,
// suffixed _i (see matvec_row.wgsl), then reduce_wg.wgsl or reduce_sg.wgsl (the norm's and
// the rows' reductions; see matvec.wgsl).
//
// Bindings (group 0):
//   0 w_0, 1 w_1: array<u32>  W_gate, W_up (one chunk each), read-only
//   2 x: array<vec4<f32>>     residual stream (n_embd / 4), read-only
//   3 wt: array<vec4<f32>>    ffn_norm weight (n_embd / 4), read-only
//   4 y: array<f32>           output (n_ff), read-write
//   5 p: Params (uniform)     rows (n_ff), cols, gate row bytes, up row bytes, eps
// Geometry: workgroup_size(256); ROWS (override, even) rows per workgroup: slots 0..ROWS/2 take
//   rows of W_gate, slots ROWS/2..ROWS the same rows of W_up, each reduced as in matvec.wgsl;
//   invocation i < ROWS/2 then writes output row i. Dispatch (min(n, 32768), ceil(n / 32768))
//   for n = ceil(rows / (ROWS / 2)). Every workgroup computes the norm's Σx² itself, as
//   matvec_fused.wgsl.

struct Params {
    rows: u32,
    cols: u32,
    gate_row_bytes: u32,
    up_row_bytes: u32,
    eps: f32,
}

override ROWS: u32 = 4u;
override ACT: u32 = 0u;
const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> w_0: array<u32>;
@group(0) @binding(1) var<storage, read> w_1: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> wt: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

var<private> inv_rms: f32;

fn act_quad(i: u32) -> vec4<f32> {
    return x[i] * inv_rms * wt[i];
}

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

fn gelu_tanh(v: f32) -> f32 {
    // tanh(t) = 1 − 2 / (exp(2t) + 1), stable for large |t| (WGSL's tanh may overflow).
    let t = 0.7978846 * (v + 0.044715 * v * v * v);
    let th = 1.0 - 2.0 / (exp(2.0 * t) + 1.0);
    return 0.5 * v * (1.0 + th);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    var ss = 0.0;
    for (var i = lid; i < p.cols; i += WG) {
        let v = x[i >> 2u][i & 3u];
        ss += v * v;
    }
    inv_rms = 1.0 / sqrt(reduce_all(ss, lid) / f32(p.cols) + p.eps);

    let half = ROWS / 2u;
    let tpr = WG / ROWS;
    let slot = lid / tpr;
    let lane = lid % tpr;
    let first = (wg.x + wg.y * nwg.x) * half;
    let up = slot >= half;
    let r = first + slot % half;
    var acc = 0.0;
    if (r < p.rows) {
        if (up) {
            acc = row_dot_1(r * p.up_row_bytes, p.cols, lane, tpr);
        } else {
            acc = row_dot_0(r * p.gate_row_bytes, p.cols, lane, tpr);
        }
    }
    reduce_rows(acc, lid);
    let ro = first + lid;
    if (lid < half && ro < p.rows) {
        let g = row_sum(lid);
        let u = row_sum(lid + half);
        var a: f32;
        if (ACT == 0u) {
            a = silu(g);
        } else {
            a = gelu_tanh(g);
        }
        y[ro] = a * u;
    }
}
