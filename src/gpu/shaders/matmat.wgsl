// matmat.wgsl: fused dequantize × matrix for batched prefill, Y[t, y_off + r] = Σ_c W[r, c]·X[t, c]
// for the rows of one weight chunk and a batch of tokens t. Prepended: quant.wgsl + one
// layout_*.wgsl + one fmt_*.wgsl (the block format) + matmat_row.wgsl (or matmat_row_pairs.wgsl
// for formats read in unit pairs, as matvec.wgsl): `row_dots`, one invocation's share of a row
// for the TOK tokens, through `act_tok(t, q)` declared here.
//
// Bindings (group 0):
//   0 w: array<u32>         quantized rows of this chunk (row r at byte r·row_bytes), read-only
//   1 x: array<vec4<f32>>   activations, token-major (token t at t·cols / 4), read-only
//   2 y: array<f32>         output, token-major (token t at t·y_stride + y_off), read-write
//   3 p: Params (uniform)   rows (of this chunk), cols, row_bytes, y_off, y_stride
//   4 batch: Step (uniform) pos, n_tok (tokens in the batch; the model's step parameters)
// Geometry: workgroup_size(256); ROWS (override, a power of two dividing 256) rows × TOK tokens
//   per workgroup, 256/ROWS invocations per row, each striding over the row's quads (4 weights,
//   STEP_QUADS at a time; or one shared word of a unit pair) as matvec.wgsl does. Each quad is
//   dequantized once (`unit_scale`, `unit_q4`) into registers and dotted with the TOK tokens'
//   activations (`quad_dot`): the weights are read once per tile
//   of TOK tokens instead of once per token. Per token the arithmetic (order included) is
//   matvec.wgsl's (on its workgroup-memory path, reduce_wg.wgsl), so a batched prefill gives the
//   token-by-token results bit for bit. Rows reduce in a workgroup-memory tree, all TOK tokens
//   at once.
//   Dispatch (min(n, 32768), ceil(n / 32768), ceil(n_tok / TOK)) workgroups for
//   n = ceil(rows / ROWS); workgroup z is the tile of tokens.

struct Params {
    rows: u32,
    cols: u32,
    row_bytes: u32,
    y_off: u32,
    y_stride: u32,
}

struct Step {
    pos: u32,
    n_tok: u32,
}

override ROWS: u32 = 4u;
const WG: u32 = 256u;
// Tokens per workgroup (keep in step with `kernels::MATMAT_TOKENS`).
const TOK: u32 = 8u;

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> batch: Step;

var<workgroup> part: array<f32, 2048>; // WG · TOK
var<private> x_first: u32;
var<private> x_last: u32;
var<private> x_quads: u32;

// Activation quad q of token t of the tile (tokens past the batch: its last token).
fn act_tok(t: u32, q: u32) -> vec4<f32> {
    return x[(x_first + min(t, x_last)) * x_quads + q];
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let tpr = WG / ROWS;
    let slot = lid / tpr;
    let lane = lid % tpr;
    let r = (wg.x + wg.y * nwg.x) * ROWS + slot;
    let t0 = wg.z * TOK;
    let nt = min(TOK, batch.n_tok - min(t0, batch.n_tok));
    // Tokens past the batch (the last tile) read the batch's last token and are not written.
    let last = max(nt, 1u) - 1u;
    var acc: array<f32, TOK>;
    if (r < p.rows) {
        x_first = t0;
        x_last = last;
        x_quads = p.cols / 4u;
        acc = row_dots(r * p.row_bytes, p.cols, lane, tpr);
    }
    for (var t = 0u; t < TOK; t++) {
        part[t * WG + lid] = acc[t];
    }
    workgroupBarrier();
    for (var st = tpr / 2u; st > 0u; st >>= 1u) {
        if (lane < st) {
            for (var t = 0u; t < TOK; t++) {
                part[t * WG + lid] += part[t * WG + lid + st];
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u && r < p.rows) {
        for (var t = 0u; t < nt; t++) {
            y[(t0 + t) * p.y_stride + p.y_off + r] = part[t * WG + lid];
        }
    }
}
