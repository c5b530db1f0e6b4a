// matvec_qkv.wgsl: the attention block's input side of one decode token in one dispatch:
// h = RMSNorm(x)·wt, then Q = Wq·h, K = Wk·h, V = Wv·h (+ the biases of qwen2), RoPE on Q and K
// (× q_scale on Q), Q to `q`, K and V appended to the layer's caches at the step's position
// (f32, or f16 pairs with KV_F16). Replaces rmsnorm + 3 matvec + (3 add) + 2 rope + 2 kv_store.
// Prepended: per matrix i (0 Q, 1 K, 2 V) quant.wgsl + layout + fmt + matvec_row.wgsl, suffixed
// _i (see matvec_row.wgsl), so the three may differ in format; then reduce_wg.wgsl or
// reduce_sg.wgsl (the norm's and the rows' reductions; see matvec.wgsl).
//
// Bindings (group 0):
//   0 w_0, 1 w_1, 2 w_2: array<u32>  Wq, Wk, Wv (one chunk each), read-only
//   3 x: array<vec4<f32>>    residual stream (n_embd / 4), read-only
//   4 vecs: array<vec4<f32>> attn_norm weight (n_embd), then when has_bias bq, bk, bv, read-only
//   5 q: array<f32>          roped queries (n_head·head_dim), read-write
//   6 kc: array<u32>         K cache (n_ctx, kv_dim), read-write
//   7 vc: array<u32>         V cache (n_ctx, v_dim), read-write
//   8 p: Params (uniform)    cols, eps, rows and row bytes of Q, K, V, head_dim, neox, cs_off,
//                            q_scale, has_bias
//   9 step: Step (uniform)   pos (the model's step parameters)
//  10 cs: array<vec4<f32>, 128> (uniform) cos/sin pairs of this token: [cos_i, sin_i] at 2i,
//                            global then sliding-window (rope.wgsl's table, first token only)
// Geometry: workgroup_size(256); ROWS (override, a multiple of 4) output rows per workgroup in
//   quads of 4 rows that RoPE needs together: rows 4c..4c+3 of a head (pairs (0,1), (2,3)) for
//   llama's adjacent pairs and for V; rows 2c, 2c+1, 2c+half, 2c+half+1 (pairs (0,2), (1,3))
//   for NeoX (half = head_dim / 2). Q's quads, then K's, then V's: dispatch
//   (min(n, 32768), ceil(n / 32768)) for n = ceil((q_rows + k_rows + v_rows) / ROWS). Each row
//   is reduced as in matvec.wgsl; then invocation c < ROWS/4 finishes quad c (bias, RoPE,
//   store), the f16 pairs of the cache being rows (0,1) and (2,3) of a quad. Every workgroup
//   computes the norm's Σx² itself, as matvec_fused.wgsl. Needs n_rot = head_dim.

struct Params {
    cols: u32,
    eps: f32,
    q_rows: u32,
    k_rows: u32,
    v_rows: u32,
    q_row_bytes: u32,
    k_row_bytes: u32,
    v_row_bytes: u32,
    head_dim: u32,
    neox: u32,
    cs_off: u32,
    q_scale: f32,
    has_bias: u32,
}

struct Step {
    pos: u32,
}

override ROWS: u32 = 4u;
override KV_F16: u32 = 0u;
const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> w_0: array<u32>;
@group(0) @binding(1) var<storage, read> w_1: array<u32>;
@group(0) @binding(2) var<storage, read> w_2: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> vecs: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> q: array<f32>;
@group(0) @binding(6) var<storage, read_write> kc: array<u32>;
@group(0) @binding(7) var<storage, read_write> vc: array<u32>;
@group(0) @binding(8) var<uniform> p: Params;
@group(0) @binding(9) var<uniform> step: Step;
@group(0) @binding(10) var<uniform> cs: array<vec4<f32>, 128>;

var<private> inv_rms: f32;

fn act_quad(i: u32) -> vec4<f32> {
    return x[i] * inv_rms * vecs[i];
}

fn vec_at(i: u32) -> f32 {
    return vecs[i >> 2u][i & 3u];
}

fn cs_at(i: u32) -> f32 {
    return cs[i >> 2u][i & 3u];
}

// Matrix (0 Q, 1 K, 2 V) and first row of global quad `g` (then `quad_row` gives member m's row).
fn quad_of(g: u32) -> vec2<u32> {
    let nq = p.q_rows / 4u;
    let nk = p.k_rows / 4u;
    if (g < nq) {
        return vec2<u32>(0u, g);
    }
    if (g < nq + nk) {
        return vec2<u32>(1u, g - nq);
    }
    return vec2<u32>(2u, g - nq - nk);
}

// Row of member m (0..4) of quad c of matrix `mat`.
fn quad_row(mat: u32, c: u32, m: u32) -> u32 {
    if (mat == 2u || p.neox == 0u) {
        return 4u * c + m;
    }
    let qph = p.head_dim / 4u;
    let head = c / qph;
    let k = c % qph;
    return head * p.head_dim + 2u * k + (m & 1u) + (m >> 1u) * (p.head_dim / 2u);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    var ss = 0.0;
    for (var i = lid; i < p.cols; i += WG) {
        let v = x[i >> 2u][i & 3u];
        ss += v * v;
    }
    inv_rms = 1.0 / sqrt(reduce_all(ss, lid) / f32(p.cols) + p.eps);

    let n_quads = (p.q_rows + p.k_rows + p.v_rows) / 4u;
    let first = (wg.x + wg.y * nwg.x) * (ROWS / 4u);
    let tpr = WG / ROWS;
    let slot = lid / tpr;
    let lane = lid % tpr;
    let g = first + slot / 4u;
    var acc = 0.0;
    if (g < n_quads) {
        let mq = quad_of(g);
        let r = quad_row(mq.x, mq.y, slot % 4u);
        if (mq.x == 0u) {
            acc = row_dot_0(r * p.q_row_bytes, p.cols, lane, tpr);
        } else if (mq.x == 1u) {
            acc = row_dot_1(r * p.k_row_bytes, p.cols, lane, tpr);
        } else {
            acc = row_dot_2(r * p.v_row_bytes, p.cols, lane, tpr);
        }
    }
    reduce_rows(acc, lid);
    let gq = first + lid;
    if (lid >= ROWS / 4u || gq >= n_quads) {
        return;
    }
    let mq = quad_of(gq);
    let mat = mq.x;
    let c = mq.y;
    var v: array<f32, 4>;
    var rows: array<u32, 4>;
    for (var m = 0u; m < 4u; m++) {
        rows[m] = quad_row(mat, c, m);
        v[m] = row_sum(4u * lid + m);
    }
    if (p.has_bias != 0u) {
        var off = p.cols;
        if (mat >= 1u) {
            off += p.q_rows;
        }
        if (mat == 2u) {
            off += p.k_rows;
        }
        for (var m = 0u; m < 4u; m++) {
            v[m] += vec_at(off + rows[m]);
        }
    }
    if (mat < 2u) {
        // RoPE: pairs (0,1), (2,3) (llama) or (0,2), (1,3) (NeoX), pair index j within the head.
        var scale = 1.0;
        if (mat == 0u) {
            scale = p.q_scale;
        }
        var a = vec2<u32>(0u, 2u);
        var b = vec2<u32>(1u, 3u);
        if (p.neox != 0u) {
            a = vec2<u32>(0u, 1u);
            b = vec2<u32>(2u, 3u);
        }
        for (var k = 0u; k < 2u; k++) {
            let ia = a[k];
            let ib = b[k];
            var j = (rows[ia] % p.head_dim) / 2u;
            if (p.neox != 0u) {
                j = rows[ia] % p.head_dim;
            }
            let co = cs_at(p.cs_off + 2u * j);
            let si = cs_at(p.cs_off + 2u * j + 1u);
            let x0 = v[ia];
            let x1 = v[ib];
            v[ia] = (x0 * co - x1 * si) * scale;
            v[ib] = (x0 * si + x1 * co) * scale;
        }
    }
    if (mat == 0u) {
        for (var m = 0u; m < 4u; m++) {
            q[rows[m]] = v[m];
        }
        return;
    }
    var n = p.k_rows;
    if (mat == 2u) {
        n = p.v_rows;
    }
    let base = step.pos * n;
    for (var k = 0u; k < 2u; k++) {
        // Members (0,1) and (2,3) are adjacent rows r, r + 1 (r even).
        let r = rows[2u * k];
        var words: vec2<u32>;
        if (KV_F16 != 0u) {
            let h = pack2x16float(vec2<f32>(v[2u * k], v[2u * k + 1u]));
            if (mat == 1u) {
                kc[(base + r) / 2u] = h;
            } else {
                vc[(base + r) / 2u] = h;
            }
        } else {
            words = vec2<u32>(bitcast<u32>(v[2u * k]), bitcast<u32>(v[2u * k + 1u]));
            if (mat == 1u) {
                kc[base + r] = words.x;
                kc[base + r + 1u] = words.y;
            } else {
                vc[base + r] = words.x;
                vc[base + r + 1u] = words.y;
            }
        }
    }
}
