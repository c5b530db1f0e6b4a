// kv_store.wgsl: append one token's K or V to a layer's cache: dst[pos·n + i] = src[i]. A
// dispatch rather than a buffer copy, so a whole decode step stays in one compute pass.
//
// Bindings (group 0):
//   0 src: array<f32>       this token's K or V (n), read-only
//   1 dst: array<f32>       the layer's cache (n_ctx, n), read-write
//   2 p: Params (uniform)   n
//   3 step: Step (uniform)  pos (written once per step, shared by every layer)
// Geometry: workgroup_size(64), one invocation per element: dispatch (ceil(n / 64), 1, batch);
//   token z of a batch goes to position pos + z. With KV_F16 the cache holds f16 pairs and
//   invocation i < n/2 packs elements 2i, 2i+1.

struct Params {
    n: u32,
}

struct Step {
    pos: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
// KV_F16 = 1: the caches hold f16 pairs (pack2x16float, core WGSL: no shader-f16 needed);
// 0: f32 (as bits).
override KV_F16: u32 = 0u;

@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<uniform> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = gid.z * p.n;
    if (KV_F16 != 0u) {
        // One f16 pair per invocation (n is even).
        let h = p.n / 2u;
        if (gid.x < h) {
            let i = s + 2u * gid.x;
            dst[(step.pos + gid.z) * h + gid.x] = pack2x16float(vec2<f32>(src[i], src[i + 1u]));
        }
    } else if (gid.x < p.n) {
        dst[(step.pos + gid.z) * p.n + gid.x] = bitcast<u32>(src[s + gid.x]);
    }
}
