// attention.wgsl: causal attention of a batch of tokens over the preallocated KV cache of one
// layer, with grouped-query heads and an optional sliding window. Token t of the batch (workgroup
// z) sits at position n_kv − 1 + t: out[t, h] = Σ_j softmax_j(q_{t,h}·k_j · kq_scale) · v_j over
// cache positions j in first_t..n_kv + t, where first_t = n_kv + t − window when window > 0 and
// that is larger, else `first`. The single-pass kernel; attention_split.wgsl +
// attention_combine.wgsl are the split-K pair for long contexts.
//
// Bindings (group 0):
//   0 q: array<f32>         queries (batch, n_head·head_dim), read-only
//   1 kc: array<u32>        K cache (n_ctx, kv_dim): f32 bits, or f16 pairs (KV_F16), read-only
//   2 vc: array<u32>        V cache (n_ctx, v_dim), as kc, read-only
//   3 o: array<f32>         output (batch, n_head·head_dim_v), read-write
//   4 sc: array<f32>        scores scratch (batch, n_head, n_ctx), read-write
//   5 p: Params (uniform)   n_ctx, group (Q heads per KV head), head_dim, head_dim_v, kv_dim,
//                           v_dim, first, n_kv, kq_scale, window (0: none)
// Geometry: workgroup_size(256), one workgroup per (Q head, token): dispatch (n_head, 1, batch).
//   attention_row.wgsl: scores to `sc`, max and sum in a workgroup-memory
//   tree, then invocation d (< head_dim_v) sums its output column.

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
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> kc: array<u32>;
@group(0) @binding(2) var<storage, read> vc: array<u32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;
@group(0) @binding(4) var<storage, read_write> sc: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let h = wg.x;
    // Token t of a batch: position n_kv - 1 + t, attending causally to 0..n_kv + t.
    let t = wg.z;
    let n_kv = p.n_kv + t;
    var first = p.first;
    if (p.window > 0u && n_kv > p.window) {
        first = n_kv - p.window;
    }
    attend_row(lid, h, t * nwg.x + h, 0u, first, n_kv);
}
