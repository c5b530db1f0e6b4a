// attention_combine.wgsl: split-K attention, pass 2 of 2: merge the chunks of
// attention_split.wgsl. With M = max_s m_s and L = Σ_s l_s·exp(m_s − M):
//   o[row·head_dim_v + d] = Σ_s acc_s[d]·exp(m_s − M) / L.
//
// Bindings (group 0):
//   0 part: array<f32>      partials (batch, n_head, n_split, 2 + head_dim_v), read-only
//   1 o: array<f32>         output (batch, n_head·head_dim_v), read-write
//   2 p: Params (uniform)   as attention_split.wgsl (head_dim_v, n_split)
// Geometry: workgroup_size(64), one workgroup per (head, token): dispatch (n_head, 1, batch).

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

@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> o: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wg.z * nwg.x + wg.x;
    let stride = 2u + p.head_dim_v;
    let base = row * p.n_split * stride;
    var m = -3.4e38;
    for (var s = 0u; s < p.n_split; s++) {
        m = max(m, part[base + s * stride]);
    }
    var l = 0.0;
    for (var s = 0u; s < p.n_split; s++) {
        let b = base + s * stride;
        l += part[b + 1u] * exp(part[b] - m);
    }
    let inv = 1.0 / l;
    for (var d = lid; d < p.head_dim_v; d += 64u) {
        var acc = 0.0;
        for (var s = 0u; s < p.n_split; s++) {
            let b = base + s * stride;
            acc += part[b + 2u + d] * exp(part[b] - m);
        }
        o[row * p.head_dim_v + d] = acc * inv;
    }
}
