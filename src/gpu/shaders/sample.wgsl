// sample.wgsl: draw the next token from the logits with temperature, top-k and top-p, given a
// uniform number u in [0, 1) drawn on the host from the seeded RNG, so a sampled decode step
// reads back 4 bytes. The rule is `sampling::Sampler`'s (without penalties and min-p):
//   1. candidates: the k finite logits ranking first (larger logit first, the smaller id first on
//      ties), k = top_k clamped to 1..=64 by the host;
//   2. top-p: probabilities at temperature 1 over the candidates; keep the shortest prefix whose
//      cumulative probability reaches top_p (when top_p < 1);
//   3. probabilities at `temperature` over the kept candidates; the first candidate whose
//      cumulative probability exceeds u is chosen (the last kept one when rounding leaves u above
//      the total).
// Differences with the CPU sampler: f32 instead of f64 arithmetic (choices differ only when u or
// top_p lies within ~1e-6 of a cumulative boundary), and at most 64 candidates (top_k = 0 means
// 64 here, all tokens on the CPU).
//
// Bindings (group 0):
//   0 v: array<f32>         logits (n), read-only
//   1 out: array<u32>       out[0] = the chosen id, read-write
//   2 p: Params (uniform)   n, k, temperature, top_p, u
// Geometry: workgroup_size(256), a single workgroup: dispatch (1, 1, 1). Top-k by iterative
//   max-extraction: each invocation keeps the best logit of its strided slice that ranks after
//   the last candidate taken; each round reduces those in a workgroup-memory tree, takes the
//   winner, and only the winner's owner rescans its slice. Invocation 0 then does steps 2 and 3
//   over the ≤ 64 candidates.

struct Params {
    n: u32,
    k: u32,
    temperature: f32,
    top_p: f32,
    u: f32,
}

@group(0) @binding(0) var<storage, read> v: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

const NONE: u32 = 0xffffffffu;
const MAX_K: u32 = 64u;

var<workgroup> red_v: array<f32, 256>;
var<workgroup> red_i: array<u32, 256>;
var<workgroup> cand_v: array<f32, 64>;
var<workgroup> cand_i: array<u32, 64>;

struct Best {
    v: f32,
    i: u32,
}

fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// (av, ai) ranks before (bv, bi): the larger logit, then the smaller id; NONE ranks last.
fn before(av: f32, ai: u32, bv: f32, bi: u32) -> bool {
    if (ai == NONE) {
        return false;
    }
    if (bi == NONE) {
        return true;
    }
    return av > bv || (av == bv && ai < bi);
}

// The best finite logit of invocation `lid`'s slice that ranks after (lv, li) (li == NONE: any).
fn scan(lid: u32, lv: f32, li: u32) -> Best {
    var b = Best(0.0, NONE);
    for (var i = lid; i < p.n; i += 256u) {
        let x = v[i];
        if (!finite(x)) {
            continue;
        }
        if (li != NONE && !before(lv, li, x, i)) {
            continue;
        }
        // Ascending ids within a slice: a strict > keeps the first of equal logits.
        if (b.i == NONE || x > b.v) {
            b = Best(x, i);
        }
    }
    return b;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    let k = clamp(p.k, 1u, MAX_K);
    var mine = scan(lid, 0.0, NONE);
    var m = 0u;
    for (var r = 0u; r < k; r++) {
        red_v[lid] = mine.v;
        red_i[lid] = mine.i;
        workgroupBarrier();
        for (var st = 128u; st > 0u; st >>= 1u) {
            if (lid < st) {
                let ov = red_v[lid + st];
                let oi = red_i[lid + st];
                if (before(ov, oi, red_v[lid], red_i[lid])) {
                    red_v[lid] = ov;
                    red_i[lid] = oi;
                }
            }
            workgroupBarrier();
        }
        let wv = red_v[0];
        let wi = red_i[0];
        workgroupBarrier();
        if (wi != NONE) {
            if (lid == 0u) {
                cand_v[m] = wv;
                cand_i[m] = wi;
            }
            m += 1u;
            if (wi % 256u == lid) {
                mine = scan(lid, wv, wi);
            }
        }
    }
    if (lid != 0u) {
        return;
    }
    if (m == 0u) {
        out[0] = 0u;
        return;
    }
    if (p.temperature <= 0.0) {
        out[0] = cand_i[0];
        return;
    }
    let mx = cand_v[0];
    var keep = m;
    if (p.top_p < 1.0) {
        var s = 0.0;
        for (var i = 0u; i < m; i++) {
            s += exp(cand_v[i] - mx);
        }
        var acc = 0.0;
        for (var i = 0u; i < m; i++) {
            acc += exp(cand_v[i] - mx) / s;
            if (acc >= p.top_p) {
                keep = i + 1u;
                break;
            }
        }
    }
    var s = 0.0;
    for (var i = 0u; i < keep; i++) {
        s += exp((cand_v[i] - mx) / p.temperature);
    }
    var acc = 0.0;
    var pick = cand_i[keep - 1u];
    for (var i = 0u; i < keep; i++) {
        acc += exp((cand_v[i] - mx) / p.temperature) / s;
        if (p.u < acc) {
            pick = cand_i[i];
            break;
        }
    }
    out[0] = pick;
}
