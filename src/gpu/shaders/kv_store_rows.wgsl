// kv_store_rows.wgsl: kv_store.wgsl for a step of independent sequences (batched decode): token z
// of the step goes to its own slot and position, dst[(rows[z].base + rows[z].pos)·n + i] = src[z·n + i],
// where `base` is the first cache position of the token's slot (slot · n_ctx).
//
// Bindings (group 0):
//   0 src: array<f32>       the step's K or V rows (batch, n), read-only
//   1 dst: array<u32>       the layer's slot caches (slots·n_ctx, n): f32 bits or f16 pairs, read-write
//   2 p: Params (uniform)   n
//   3 rows: array<Row>      per token of the step: base (its slot's first position), pos, read-only
// Geometry: workgroup_size(64), one invocation per element: dispatch (ceil(n / 64), 1, batch).
//   With KV_F16 the cache holds f16 pairs and invocation i < n/2 packs elements 2i, 2i+1.

struct Params {
    n: u32,
}

struct Row {
    base: u32,
    pos: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
// KV_F16 = 1: the caches hold f16 pairs (pack2x16float, core WGSL: no shader-f16 needed);
// 0: f32 (as bits).
override KV_F16: u32 = 0u;

@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> rows: array<Row>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = gid.z * p.n;
    let at = rows[gid.z].base + rows[gid.z].pos;
    if (KV_F16 != 0u) {
        // One f16 pair per invocation (n is even).
        let h = p.n / 2u;
        if (gid.x < h) {
            let i = s + 2u * gid.x;
            dst[at * h + gid.x] = pack2x16float(vec2<f32>(src[i], src[i + 1u]));
        }
    } else if (gid.x < p.n) {
        dst[at * p.n + gid.x] = bitcast<u32>(src[s + gid.x]);
    }
}
