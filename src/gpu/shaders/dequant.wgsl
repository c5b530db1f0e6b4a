// dequant.wgsl: dequantize whole units of a quantized tensor to f32 (also the embedding lookup:
// one row of token_embd, times the embedding scale). Prepended: quant.wgsl + one layout_*.wgsl +
// one fmt_*.wgsl.
//
// Bindings (group 0):
//   0 w: array<u32>         quantized bytes, read-only
//   1 y: array<f32>         output, read-write
//   2 p: Params (uniform)   n_units, w_off (byte offset of the first block), y_off, scale (f32 bits)
// Geometry: workgroup_size(64), one invocation per unit (UNIT_W weights);
//   dispatch (min(n, 32768), ceil(n / 32768)) workgroups for n = ceil(n_units / 64).

struct Params {
    n_units: u32,
    w_off: u32,
    y_off: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let u = (wg.x + wg.y * nwg.x) * 64u + lid;
    if (u >= p.n_units) {
        return;
    }
    let b = p.w_off + (u / UNITS_PER_BLOCK) * BLOCK_STRIDE + BLOCK_LEAD;
    let j = u % UNITS_PER_BLOCK;
    let s = unit_scale(b, j);
    let o = p.y_off + u * UNIT_W;
    for (var k = 0u; k < UNIT_W / 4u; k++) {
        let v = (s.x * unit_q4(b, j, k) + s.y) * p.scale;
        y[o + 4u * k] = v.x;
        y[o + 4u * k + 1u] = v.y;
        y[o + 4u * k + 2u] = v.z;
        y[o + 4u * k + 3u] = v.w;
    }
}
