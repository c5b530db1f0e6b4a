// rmsnorm.wgsl: y[row] = x[row] / sqrt(mean(x[row]²) + eps) · wt, for n_rows rows of n.
// (Also the Q/K norms of Gemma 3, one row per head, and its post-attention/FFN norms.)
//
// Bindings (group 0):
//   0 x: array<f32>         input rows, read-only
//   1 wt: array<f32>        weight (n), read-only
//   2 y: array<f32>         output rows, read-write (a different buffer from x)
//   3 p: Params (uniform)   n, eps
// Geometry: workgroup_size(256), one workgroup per row: dispatch (n_rows, 1, 1).
//   The sum of squares reduces in a workgroup-memory tree.

// Batches: workgroup z is the token; row (z·num_workgroups.x + x).

struct Params {
    n: u32,
    eps: f32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let base = (wg.z * nwg.x + wg.x) * p.n;
    var ss = 0.0;
    for (var i = lid; i < p.n; i += 256u) {
        let v = x[base + i];
        ss += v * v;
    }
    part[lid] = ss;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (lid < st) {
            part[lid] += part[lid + st];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / sqrt(part[0] / f32(p.n) + p.eps);
    for (var i = lid; i < p.n; i += 256u) {
        y[base + i] = x[base + i] * inv * wt[i];
    }
}
