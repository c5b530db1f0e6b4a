// delta_rule.wgsl: Qwen3.5's gated delta rule over the tokens of a step, one workgroup per value
// head j (key head j mod H_k), carrying the head's S×S state M (stored value-major: row r holds
// M[·][r]). Per token, as src/cpu/delta_net.rs (its module doc cites llama.cpp):
//   q, k ← the key head's convolved Q, K, L2-normalised (x / max(‖x‖, eps)); q × 1/√S
//   β = sigmoid(beta_in), decay = exp(softplus(alpha_in + dt_bias) · a)
//   M ← decay·M;  d = β(v − Mᵀk);  M ← M + k dᵀ;  o = Mᵀq
//   out = RMSNorm(o)·norm · SiLU(z)
// Invocation r < S owns row r of M (value index r): its dot products run over i in order.
// Tokens are serial; heads are parallel.
//
// Bindings (group 0):
//   0 conv: array<f32>      convolved Q, K, V (batch, conv_dim): Q (H_k·S), K (H_k·S), V (H_v·S)
//   1 z: array<f32>         the output gate (batch, H_v·S), read-only
//   2 beta: array<f32>      β before its sigmoid (batch, H_v), read-only
//   3 alpha: array<f32>     the decay's input (batch, H_v), read-only
//   4 vecs: array<f32>      dt_bias (H_v), a (H_v), the norm's weight (S), read-only
//   5 state: array<f32>     M per value head (H_v, S, S), read-write
//   6 out: array<f32>       (batch, H_v·S), read-write
//   7 p: Params (uniform)   s (S ≤ 256), k_heads, v_heads, conv_dim, eps
//   8 step: Step (uniform)  pos, n_tokens
// Geometry: workgroup_size(256): dispatch (H_v, 1, 1) for any batch. Sums of squares reduce in a
//   workgroup-memory tree.

struct Params {
    s: u32,
    k_heads: u32,
    v_heads: u32,
    conv_dim: u32,
    eps: f32,
}

struct Step {
    pos: u32,
    n_tokens: u32,
}

@group(0) @binding(0) var<storage, read> conv: array<f32>;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read> alpha: array<f32>;
@group(0) @binding(4) var<storage, read> vecs: array<f32>;
@group(0) @binding(5) var<storage, read_write> state: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<uniform> p: Params;
@group(0) @binding(8) var<uniform> step: Step;

var<workgroup> red: array<f32, 256>;
var<workgroup> qs: array<f32, 256>;
var<workgroup> ks: array<f32, 256>;

// Σ over the workgroup of each invocation's v (every invocation gets the sum).
fn reduce_sum(lid: u32, v: f32) -> f32 {
    workgroupBarrier();
    red[lid] = v;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (lid < st) {
            red[lid] += red[lid + st];
        }
        workgroupBarrier();
    }
    return red[0];
}

fn softplus(x: f32) -> f32 {
    if (x > 20.0) {
        return x;
    }
    return log(1.0 + exp(x));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j = wg.x;
    let s = p.s;
    let kh = j % p.k_heads;
    let key_dim = p.k_heads * s;
    let vd = p.v_heads * s;
    let owns_row = lid < s;
    let dt_bias = vecs[j];
    let a = vecs[p.v_heads + j];
    var w_norm = 0.0;
    if (owns_row) {
        w_norm = vecs[2u * p.v_heads + lid];
    }
    let m0 = (j * s + lid) * s;
    for (var t = 0u; t < step.n_tokens; t++) {
        let base = t * p.conv_dim;
        var qv = 0.0;
        var kv = 0.0;
        if (owns_row) {
            qv = conv[base + kh * s + lid];
            kv = conv[base + key_dim + kh * s + lid];
        }
        let qn = max(sqrt(reduce_sum(lid, qv * qv)), p.eps);
        let kn = max(sqrt(reduce_sum(lid, kv * kv)), p.eps);
        if (owns_row) {
            qs[lid] = qv / qn / sqrt(f32(s));
            ks[lid] = kv / kn;
        }
        workgroupBarrier();
        let b = 1.0 / (1.0 + exp(-beta[t * p.v_heads + j]));
        let decay = exp(softplus(alpha[t * p.v_heads + j] + dt_bias) * a);
        var o = 0.0;
        if (owns_row) {
            var sk = 0.0;
            for (var i = 0u; i < s; i++) {
                let m = state[m0 + i] * decay;
                state[m0 + i] = m;
                sk += m * ks[i];
            }
            let d = b * (conv[base + 2u * key_dim + j * s + lid] - sk);
            for (var i = 0u; i < s; i++) {
                let m = state[m0 + i] + ks[i] * d;
                state[m0 + i] = m;
                o += m * qs[i];
            }
        }
        // The gated norm over the head's S outputs.
        let ms = reduce_sum(lid, o * o) / f32(s);
        if (owns_row) {
            let zi = z[t * vd + j * s + lid];
            let inv = 1.0 / sqrt(ms + p.eps);
            out[t * vd + j * s + lid] = o * inv * w_norm * (zi / (1.0 + exp(-zi)));
        }
    }
}
