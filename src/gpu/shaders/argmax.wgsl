// argmax.wgsl: index of the largest logit (the first one on ties, as sampling::argmax), so a
// greedy decode step reads back 4 bytes.
//
// Bindings (group 0):
//   0 v: array<f32>         logits (n), read-only
//   1 out: array<u32>       out[0] = argmax, read-write
//   2 p: Params (uniform)   n
// Geometry: workgroup_size(256), a single workgroup: dispatch (1, 1, 1). Each invocation scans a
//   strided slice; (value, index) pairs reduce in a workgroup-memory tree.

struct Params {
    n: u32,
}

@group(0) @binding(0) var<storage, read> v: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    var bv = -3.4e38;
    var bi = 0xffffffffu;
    for (var i = lid; i < p.n; i += 256u) {
        let x = v[i];
        if (x > bv || bi == 0xffffffffu) {
            bv = x;
            bi = i;
        }
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (lid < st) {
            let ov = best_v[lid + st];
            let oi = best_i[lid + st];
            let mv = best_v[lid];
            let mi = best_i[lid];
            if (oi != 0xffffffffu && (mi == 0xffffffffu || ov > mv || (ov == mv && oi < mi))) {
                best_v[lid] = ov;
                best_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[0] = best_i[0];
    }
}
