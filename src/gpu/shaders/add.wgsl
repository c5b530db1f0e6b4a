// add.wgsl: y[i] += b[i]: the residual adds, and the Q/K/V biases of qwen2.
//
// Bindings (group 0):
//   0 y: array<f32>         read-write
//   1 b: array<f32>         read-only
//   2 p: Params (uniform)   n
// Geometry: workgroup_size(64), one invocation per element: dispatch (ceil(n / 64), 1, 1).

struct Params {
    n: u32,
}

@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < p.n) {
        y[gid.x] += b[gid.x];
    }
}
