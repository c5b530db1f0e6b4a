// token_mask.wgsl: constrained decoding. Sets the logit of every token the grammar does not
// allow to −∞, in place, after the head (and penalties.wgsl) and before argmax.wgsl or
// sample.wgsl, so a constrained greedy step still reads back 4 bytes. The host computes the
// allowed set per step (llguidance, crate::constrain) and uploads it as a bitmask: bit i % 32 of
// word i / 32 is set when token i is allowed. CPU reference: sampling::apply_token_mask.
//
// Bindings (group 0):
//   0 v: array<u32>         logits (n), read-write, as f32 bit patterns: −∞ is written as its
//                           bits, because WGSL rejects a constant expression that evaluates
//                           to an infinity (Chromium's Tint refuses `bitcast<f32>(0xff800000u)`
//                           as a shader-creation error; naga accepted it)
//   1 bits: array<u32>      the bitmask, ceil(n / 32) words, read-only
//   2 p: Params (uniform)   n
// Geometry: workgroup_size(256), one invocation per mask word (32 logits):
//   dispatch (ceil(ceil(n / 32) / 256), 1, 1).

struct Params {
    n: u32,
}

@group(0) @binding(0) var<storage, read_write> v: array<u32>;
@group(0) @binding(1) var<storage, read> bits: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

const NEG_INF_BITS: u32 = 0xff800000u;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let base = gid.x * 32u;
    if (base >= p.n) {
        return;
    }
    let word = bits[gid.x];
    if (word == 0xffffffffu) {
        return;
    }
    let end = min(base + 32u, p.n);
    for (var i = base; i < end; i++) {
        if ((word & (1u << (i - base))) == 0u) {
            v[i] = NEG_INF_BITS;
        }
    }
}
