// attention_split.wgsl: split-K attention for long contexts, pass 1 of 2. The cache positions
// first..n_kv of a (head, token) are cut into chunks of 256 aligned positions, one workgroup per
// chunk; each writes its partial softmax statistics and unnormalised output:
//   part[(row·n_split + s)·(2 + head_dim_v) ..] = [m_s, l_s, acc_s[0..head_dim_v]]
// with m_s = max_j score_j, l_s = Σ_j exp(score_j − m_s), acc_s = Σ_j exp(score_j − m_s)·v_j over
// the chunk's positions (an empty chunk writes m = −3.4e38, l = 0, acc = 0). attention_combine.wgsl
// merges the chunks. Same parameters, causal rule and sliding window as attention.wgsl.
//
// Bindings (group 0):
//   0 q: array<f32>         queries (batch, n_head·head_dim), read-only
//   1 kc: array<f32>        K cache (n_ctx, kv_dim), read-only
//   2 vc: array<f32>        V cache (n_ctx, v_dim), read-only
//   3 part: array<f32>      partials (batch, n_head, n_split, 2 + head_dim_v), read-write
//   4 p: Params (uniform)   as attention.wgsl, plus n_split
// Geometry: workgroup_size(256): dispatch (n_head, n_split, batch) with n_split = ceil(n_ctx /
//   256); token t of the batch sits at position n_kv − 1 + t.

struct Params {
    n_ctx: u32,
    group: u32,
    head_dim: u32,
    head_dim_v: u32,
    kv_dim: u32,
    v_dim: u32,
    first: u32,
    n_kv: u32,
    kq_scale: f32,
    window: u32,
    n_split: u32,
}

const CHUNK: u32 = 256u;

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> kc: array<u32>;
@group(0) @binding(2) var<storage, read> vc: array<u32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> ew: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let h = wg.x;
    let s = wg.y;
    let t = wg.z;
    let n_kv = p.n_kv + t;
    var first = p.first;
    if (p.window > 0u && n_kv > p.window) {
        first = n_kv - p.window;
    }
    let row = t * nwg.x + h;
    let pb = (row * nwg.y + s) * (2u + p.head_dim_v);
    let lo = max(first, s * CHUNK);
    let hi = min(n_kv, (s + 1u) * CHUNK);
    if (lo >= hi) {
        if (lid == 0u) {
            part[pb] = -3.4e38;
            part[pb + 1u] = 0.0;
        }
        for (var d = lid; d < p.head_dim_v; d += 256u) {
            part[pb + 2u + d] = 0.0;
        }
        return;
    }
    let kvh = h / p.group;
    let qo = row * p.head_dim;
    let ko = kvh * p.head_dim;
    let j = lo + lid;
    var sv = -3.4e38;
    if (j < hi) {
        let kr = j * p.kv_dim + ko;
        var acc = 0.0;
        for (var d = 0u; d < p.head_dim; d++) {
            acc += q[qo + d] * k_at(kr + d);
        }
        sv = acc * p.kq_scale;
    }
    let mx = reduce_max(lid, sv);
    var e = 0.0;
    if (j < hi) {
        e = exp(sv - mx);
    }
    ew[lid] = e;
    let l = reduce_sum(lid, e);
    let vo = kvh * p.head_dim_v;
    for (var d = lid; d < p.head_dim_v; d += 256u) {
        var acc = 0.0;
        for (var i = 0u; i < hi - lo; i++) {
            acc += ew[i] * v_at((lo + i) * p.v_dim + vo + d);
        }
        part[pb + 2u + d] = acc;
    }
    if (lid == 0u) {
        part[pb] = mx;
        part[pb + 1u] = l;
    }
}
