// rope.wgsl: rotary position embedding, in place, on n_heads heads of head_dim, then × scale
// (Gemma 3's q_scale; 1 otherwise). Pairs (2i, 2i+1) for llama, (i, i + n_rot/2) for NeoX
// (qwen2, gemma3). The host writes cos/sin of pos·inv_freq[i] (computed in f64) each step.
//
// Bindings (group 0):
//   0 v: array<f32>         heads (n_heads·head_dim), read-write
//   1 cs: array<f32>        [cos, sin] per pair i < n_rot/2, from element cs_off, read-only
//   2 p: Params (uniform)   n_heads, head_dim, n_rot, neox (0/1), cs_off, scale, cs_stride
// Geometry: workgroup_size(64), one invocation per (head, pair j < head_dim/2):
//   dispatch (ceil(n_heads·head_dim/2 / 64), 1, batch). Token z of a batch: heads at row z, cos/sin
//   from cs_off + z·cs_stride.

struct Params {
    n_heads: u32,
    head_dim: u32,
    n_rot: u32,
    neox: u32,
    cs_off: u32,
    scale: f32,
    cs_stride: u32,
}

@group(0) @binding(0) var<storage, read_write> v: array<f32>;
@group(0) @binding(1) var<storage, read> cs: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half_dim = p.head_dim / 2u;
    if (gid.x >= p.n_heads * half_dim) {
        return;
    }
    let head = gid.x / half_dim;
    let j = gid.x % half_dim;
    let base = (gid.z * p.n_heads + head) * p.head_dim;
    let cs_off = gid.z * p.cs_stride + p.cs_off;
    let half_rot = p.n_rot / 2u;
    if (j < half_rot) {
        var a = 2u * j;
        var b = 2u * j + 1u;
        if (p.neox != 0u) {
            a = j;
            b = j + half_rot;
        }
        let c = cs[cs_off + 2u * j];
        let s = cs[cs_off + 2u * j + 1u];
        let x0 = v[base + a];
        let x1 = v[base + b];
        v[base + a] = (x0 * c - x1 * s) * p.scale;
        v[base + b] = (x0 * s + x1 * c) * p.scale;
    } else {
        // Dimensions past n_rot are not rotated, only scaled.
        v[base + 2u * j] *= p.scale;
        v[base + 2u * j + 1u] *= p.scale;
    }
}
