// softcap.wgsl: the final logit soft-cap (Gemma 4's final_logit_softcapping), in place:
// v = cap · tanh(v / cap) over the n logits of one token. tanh's argument is clamped to ±15,
// where tanh is ±1 to f32 precision, because some backends build tanh from exp, which
// overflows for large arguments.
//
// Bindings (group 0):
//   0 v: array<f32>         logits (n), read-write
//   1 p: Params (uniform)   n, cap
// Geometry: workgroup_size(64), one invocation per value: dispatch (min(g, 32768), ceil(g / 32768))
//   for g = ceil(n / 64).

struct Params {
    n: u32,
    cap: f32,
}

@group(0) @binding(0) var<storage, read_write> v: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x) * 64u + lid;
    if (i < p.n) {
        v[i] = p.cap * tanh(clamp(v[i] / p.cap, -15.0, 15.0));
    }
}
