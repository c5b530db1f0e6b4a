// embed_token.wgsl: the embedding lookup of a decode step whose token the previous step chose on
// the device (argmax.wgsl / sample.wgsl wrote it to `tok[0]`), so the host can submit the step
// before it has read that token back (pipelined decoding). dequant.wgsl's unit loop over one row
// of token_embd, times the embedding scale, with the row taken from `tok[0]`.
// Prepended: quant.wgsl + one layout_*.wgsl + one fmt_*.wgsl.
//
// token_embd may be split over several buffers (a binding holds at most
// maxStorageBufferBindingSize): one dispatch per chunk, each bound to its chunk and its rows
// [row_start, row_start + rows); only the chunk holding the token writes, the others return at
// once. A token outside every chunk (sample.wgsl's 0xffffffff, "decide on the host") writes
// nothing; the host discards such a step.
//
// Bindings (group 0):
//   0 w: array<u32>         one chunk of token_embd's quantized rows, read-only
//   1 y: array<f32>         output row (n_units·UNIT_W values from 0), read-write
//   2 tok: array<u32>       tok[0] = the token id, read-only
//   3 p: Params (uniform)   n_units (per row), row_bytes, row_start, rows, scale (f32 bits)
// Geometry: workgroup_size(64), one invocation per unit (UNIT_W weights);
//   dispatch (min(n, 32768), ceil(n / 32768)) workgroups for n = ceil(n_units / 64).

struct Params {
    n_units: u32,
    row_bytes: u32,
    row_start: u32,
    rows: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> tok: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let u = (wg.x + wg.y * nwg.x) * 64u + lid;
    let t = tok[0];
    // Unsigned: a token below row_start wraps past `rows` too.
    if (u >= p.n_units || t - p.row_start >= p.rows) {
        return;
    }
    let b = (t - p.row_start) * p.row_bytes + (u / UNITS_PER_BLOCK) * BLOCK_STRIDE + BLOCK_LEAD;
    let j = u % UNITS_PER_BLOCK;
    let s = unit_scale(b, j);
    let o = u * UNIT_W;
    for (var k = 0u; k < UNIT_W / 4u; k++) {
        let v = (s.x * unit_q4(b, j, k) + s.y) * p.scale;
        y[o + 4u * k] = v.x;
        y[o + 4u * k + 1u] = v.y;
        y[o + 4u * k + 2u] = v.z;
        y[o + 4u * k + 3u] = v.w;
    }
}
