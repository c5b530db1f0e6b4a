// split_gate.wgsl: Qwen3.5's attn_q output holds, per head, the query (head_dim) then its
// output gate (head_dim); this splits it into the queries and the gates, each head-major.
//
// Bindings (group 0):
//   0 qg: array<f32>        (batch, n_head, 2·head_dim), read-only
//   1 q: array<f32>         (batch, n_head·head_dim), read-write
//   2 g: array<f32>         (batch, n_head·head_dim), read-write
//   3 p: Params (uniform)   n (= n_head·head_dim), head_dim
// Geometry: workgroup_size(64), one invocation per query value: dispatch (ceil(n / 64), 1,
//   batch); workgroup z is the token.

struct Params {
    n: u32,
    head_dim: u32,
}

@group(0) @binding(0) var<storage, read> qg: array<f32>;
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> g: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n) {
        return;
    }
    let head = gid.x / p.head_dim;
    let d = gid.x % p.head_dim;
    let src = gid.z * 2u * p.n + head * 2u * p.head_dim + d;
    q[gid.z * p.n + gid.x] = qg[src];
    g[gid.z * p.n + gid.x] = qg[src + p.head_dim];
}
