// gate.wgsl: gated activation, g[i] = act(g[i]) · u[i], with act = SiLU (ACT = 0: the
// feed-forward block of llama, qwen2), GELU, tanh approximation (ACT = 1: gemma3) or the
// sigmoid (ACT = 2: Qwen3.5's attention output gate, u the attention output).
//
// Bindings (group 0):
//   0 g: array<f32>         gate projection, overwritten with the result, read-write
//   1 u: array<f32>         up projection, read-only
//   2 p: Params (uniform)   n
// Geometry: workgroup_size(64), one invocation per element: dispatch (ceil(n / 64), 1, batch);
//   workgroup z is the token (row z).

struct Params {
    n: u32,
}

override ACT: u32 = 0u;

@group(0) @binding(0) var<storage, read_write> g: array<f32>;
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

fn silu(x: f32) -> f32 {
    return x / (1.0 + exp(-x));
}

fn gelu_tanh(x: f32) -> f32 {
    // tanh(t) = 1 − 2 / (exp(2t) + 1), stable for large |t| (WGSL's tanh may overflow).
    let t = 0.7978846 * (x + 0.044715 * x * x * x);
    let th = 1.0 - 2.0 / (exp(2.0 * t) + 1.0);
    return 0.5 * x * (1.0 + th);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n) {
        return;
    }
    let i = gid.z * p.n + gid.x;
    var a: f32;
    if (ACT == 0u) {
        a = silu(g[i]);
    } else if (ACT == 1u) {
        a = gelu_tanh(g[i]);
    } else {
        a = 1.0 / (1.0 + exp(-g[i]));
    }
    g[i] = a * u[i];
}
