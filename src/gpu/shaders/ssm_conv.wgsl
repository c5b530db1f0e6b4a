// ssm_conv.wgsl: Qwen3.5's depthwise causal convolution over Q, K and V, then SiLU, over the
// tokens of a step, carrying its state (ggml's ssm_conv + silu). For channel i of n (one
// invocation each), token by token:
//   y[t, i] = SiLU(Σ_j state[j, i]·w[i, j] + x[t, i]·w[i, L−1]), then the state moves on
//   (rows shift up by one, x[t, i] becomes the last row).
// Tokens are serial (each needs the one before); channels are parallel.
//
// Bindings (group 0):
//   0 x: array<f32>         attn_qkv output (batch, n), read-only
//   1 w: array<f32>         taps (n, L), channel-major, the first meeting the oldest input
//   2 state: array<f32>     the last L−1 inputs (L−1, n), oldest row first, read-write
//   3 y: array<f32>         output (batch, n), read-write
//   4 p: Params (uniform)   n, taps (L)
//   5 step: Step (uniform)  pos, n_tokens (the step's batch)
// Geometry: workgroup_size(64), one invocation per channel: dispatch (ceil(n / 64), 1, 1) for any
//   batch.

struct Params {
    n: u32,
    taps: u32,
}

struct Step {
    pos: u32,
    n_tokens: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> state: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.n) {
        return;
    }
    let n = p.n;
    let rows = p.taps - 1u;
    let wi = i * p.taps;
    for (var t = 0u; t < step.n_tokens; t++) {
        let xi = x[t * n + i];
        var acc = 0.0;
        for (var j = 0u; j < rows; j++) {
            acc += state[j * n + i] * w[wi + j];
        }
        acc += xi * w[wi + rows];
        y[t * n + i] = acc / (1.0 + exp(-acc));
        for (var j = 0u; j + 1u < rows; j++) {
            state[j * n + i] = state[(j + 1u) * n + i];
        }
        if (rows > 0u) {
            state[(rows - 1u) * n + i] = xi;
        }
    }
}
