// add.wgsl: y[i] = (y[i] + b_scale·b[i]) · y_scale: the residual adds (with Granite's
// residual_scale on the block's output, and Gemma 4's layer_output_scale on the sum), and the
// Q/K/V biases of qwen2 (both scales 1).
//
// Bindings (group 0):
//   0 y: array<f32>         read-write
//   1 b: array<f32>         read-only
//   2 p: Params (uniform)   n, b_batched (1: b has a row per token; 0: one row, a bias),
//                           b_scale, y_scale
// Geometry: workgroup_size(64), one invocation per element: dispatch (ceil(n / 64), 1, batch);
//   workgroup z is the token (row z of y).

struct Params {
    n: u32,
    b_batched: u32,
    b_scale: f32,
    y_scale: f32,
}

@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < p.n) {
        let i = gid.z * p.n + gid.x;
        var bi = b[gid.x];
        if (p.b_batched != 0u) {
            bi = b[i];
        }
        y[i] = (y[i] + p.b_scale * bi) * p.y_scale;
    }
}
