// attention_rows.wgsl: attention.wgsl for a step of independent sequences (batched decode):
// token t of the step (workgroup z) attends over its own slot's cache only, positions
// first_t..pos_t + 1 of the slot that starts at cache position base_t (rows[t]), where first_t =
// pos_t + 1 − window when window > 0 and that is larger, else 0. Per token the arithmetic (order
// included) is attention.wgsl's for a token at pos_t, so a sequence's row does not depend on
// the others in the step. Single-pass at every length (no split-K variant).
//
// Bindings (group 0):
//   0 q: array<f32>         queries (batch, n_head·head_dim), read-only
//   1 kc: array<u32>        K slot caches (slots·n_ctx, kv_dim): f32 bits, or f16 pairs (KV_F16)
//   2 vc: array<u32>        V slot caches (slots·n_ctx, v_dim), as kc, read-only
//   3 o: array<f32>         output (batch, n_head·head_dim_v), read-write
//   4 sc: array<f32>        scores scratch (batch, n_head, n_ctx), read-write
//   5 p: Params (uniform)   attention.wgsl's (first and n_kv unused)
//   6 rows: array<Row>      per token: base (its slot's first position), pos, read-only
// Geometry: workgroup_size(256), one workgroup per (Q head, token): dispatch (n_head, 1, batch).
//   attention_row.wgsl: scores to `sc`, max and sum in a workgroup-memory
//   tree, then invocation d (< head_dim_v) sums its output column.

struct Row {
    base: u32,
    pos: u32,
}

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
@group(0) @binding(6) var<storage, read> rows: array<Row>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let h = wg.x;
    // Token t of the step: position pos_t of its slot, attending to 0..pos_t + 1 there.
    let t = wg.z;
    let n_kv = rows[t].pos + 1u;
    let base = rows[t].base;
    var first = 0u;
    if (p.window > 0u && n_kv > p.window) {
        first = n_kv - p.window;
    }
    attend_row(lid, h, t * nwg.x + h, base, first, n_kv);
}
