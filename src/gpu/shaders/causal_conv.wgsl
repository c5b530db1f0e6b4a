// causal_conv.wgsl: a depthwise causal convolution over the tokens of a step, for one layer,
// carrying its recurrent state (ggml's ssm_conv order). For channel i of n (one invocation
// each), token by token:
//   u = the channel's input: x[t, i] (GATED 0), or B[t, i]·x[t, i] (GATED 1)
//   c = Σ_j state[j, i]·w[i, j] + u·w[i, L−1]
//   y[t, i] = SiLU(c) (GATED 0: Qwen3.5's convolution over Q, K and V)
//          or C[t, i]·c (GATED 1: LFM2's short convolution)
//   the state moves on: rows shift up by one, u becomes the last row.
// Tokens are serial (each needs the one before); channels are parallel. The CPU twin is
// `cpu::short_conv` (`causal_conv_step`, `short_conv_step`).
//
// Bindings (group 0):
//   0 input: array<f32>     (batch, n) x, or (batch, 3·n) B, C, x (LFM2's in_proj), read-only
//   1 w: array<f32>         taps (n, L), channel-major, the first meeting the oldest input
//   2 state: array<f32>     the last L−1 inputs u (L−1, n), oldest row first, read-write
//   3 y: array<f32>         output (batch, n), read-write
//   4 p: Params (uniform)   n, taps (L)
//   5 step: Step (uniform)  pos, n_tokens (the step's batch)
// Geometry: workgroup_size(64), one invocation per channel: dispatch (ceil(n / 64), 1, 1) for any
//   batch.

override GATED: u32 = 0u;

struct Params {
    n: u32,
    taps: u32,
}

struct Step {
    pos: u32,
    n_tokens: u32,
}

@group(0) @binding(0) var<storage, read> input: array<f32>;
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
    // Values per token in `input`: B, C, x when gated.
    let stride = select(n, 3u * n, GATED == 1u);
    for (var t = 0u; t < step.n_tokens; t++) {
        let base = t * stride;
        var u = input[base + i];
        if (GATED == 1u) {
            u = u * input[base + 2u * n + i];
        }
        var acc = 0.0;
        for (var j = 0u; j < rows; j++) {
            acc += state[j * n + i] * w[wi + j];
        }
        acc += u * w[wi + rows];
        if (GATED == 1u) {
            y[t * n + i] = input[base + n + i] * acc;
        } else {
            y[t * n + i] = acc / (1.0 + exp(-acc));
        }
        for (var j = 0u; j + 1u < rows; j++) {
            state[j * n + i] = state[(j + 1u) * n + i];
        }
        if (rows > 0u) {
            state[(rows - 1u) * n + i] = u;
        }
    }
}
