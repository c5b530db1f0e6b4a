// softmax.wgsl: numerically stable softmax of n_rows rows of n, in place.
//
// Bindings (group 0):
//   0 v: array<f32>         rows, read-write
//   1 p: Params (uniform)   n
// Geometry: workgroup_size(256), one workgroup per row: dispatch (n_rows, 1, 1).
//   Max and sum reduce in a workgroup-memory tree.

struct Params {
    n: u32,
}

@group(0) @binding(0) var<storage, read_write> v: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let base = wg.x * p.n;
    var mx = -3.4e38;
    for (var i = lid; i < p.n; i += 256u) {
        mx = max(mx, v[base + i]);
    }
    red[lid] = mx;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (lid < st) {
            red[lid] = max(red[lid], red[lid + st]);
        }
        workgroupBarrier();
    }
    mx = red[0];
    workgroupBarrier();
    var sum = 0.0;
    for (var i = lid; i < p.n; i += 256u) {
        let e = exp(v[base + i] - mx);
        v[base + i] = e;
        sum += e;
    }
    red[lid] = sum;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (lid < st) {
            red[lid] += red[lid + st];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / red[0];
    for (var i = lid; i < p.n; i += 256u) {
        v[base + i] *= inv;
    }
}
