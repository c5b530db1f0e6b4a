// kv_store.wgsl: append one token's K or V to a layer's cache: dst[pos·n + i] = src[i]. A
// dispatch rather than a buffer copy, so a whole decode step stays in one compute pass.
//
// Bindings (group 0):
//   0 src: array<f32>       this token's K or V (n), read-only
//   1 dst: array<f32>       the layer's cache (n_ctx, n), read-write
//   2 p: Params (uniform)   n
//   3 step: Step (uniform)  pos (written once per step, shared by every layer)
// Geometry: workgroup_size(64), one invocation per element: dispatch (ceil(n / 64), 1, 1).

struct Params {
    n: u32,
}

struct Step {
    pos: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<uniform> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < p.n) {
        dst[step.pos * p.n + gid.x] = src[gid.x];
    }
}
