// sample.wgsl: draw the next token from the logits (penalties already applied by
// penalties.wgsl) with top-k, top-p, min-p and temperature, given a uniform number u in [0, 1)
// drawn on the host from the seeded RNG, so a sampled decode step reads back 4 bytes. The rule
// is `sampling::choose`'s (llama.cpp's chain):
//   1. the set: the top_k finite logits (larger logit first, the smaller id first on ties), all
//      finite logits when top_k is 0 or ≥ n;
//   2. top-p: probabilities at temperature 1 over the set; keep the shortest prefix whose
//      cumulative probability reaches top_p (when top_p < 1);
//   3. min-p: keep the prefix whose probabilities are ≥ min_p × the first one's (when min_p > 0;
//      the ratio is exp(l − l_max), whatever the normaliser);
//   4. probabilities at `temperature` over what is kept; the first whose cumulative probability
//      exceeds u is chosen (the last kept one when rounding leaves u above the total).
//      Temperature ≤ 0 is greedy: the first candidate.
// Only the first 64 of the set are extracted as candidates. When the set is larger (top_k 0),
// its normalisers at temperature 1 and at `temperature` are sums over all finite logits, so the
// choice is still exact whenever it is decided within the 64 candidates (a top-p or min-p cut
// there, or u falling there); otherwise (the cut or the draw lies further, or 64 < top_k < n)
// out[0] is 0xffffffff and the host samples the logits itself (GpuModel::step_sample does).
// Differences with the CPU sampler: f32 instead of f64 arithmetic (choices differ only when u,
// top_p or min_p lie within ~1e-6 of a boundary).
//
// Bindings (group 0):
//   0 v: array<f32>         logits (n), read-only
//   1 out: array<u32>       out[0] = the chosen id or 0xffffffff (decide on the host), read-write
//   2 p: Params (uniform)   n, k (top_k, 0 = all), temperature, top_p, u, min_p
// Geometry: workgroup_size(256), a single workgroup: dispatch (1, 1, 1). Top-k by iterative
//   max-extraction: each invocation keeps the best logit of its strided slice that ranks after
//   the last candidate taken; each round reduces those in a workgroup-memory tree, takes the
//   winner, and only the winner's owner rescans its slice. For a set larger than the candidates
//   every invocation then sums its slice (tree-reduced). Invocation 0 does steps 2 to 4 over
//   the ≤ 64 candidates.

struct Params {
    n: u32,
    k: u32,
    temperature: f32,
    top_p: f32,
    u: f32,
    min_p: f32,
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
var<workgroup> sum1: array<f32, 256>;
var<workgroup> sum_t: array<f32, 256>;

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
    // The set is every finite logit (top_k 0 or ≥ n) or the top_k; at most 64 are candidates.
    let all = p.k == 0u || p.k >= p.n;
    var k = MAX_K;
    if (!all) {
        k = min(p.k, MAX_K);
    }
    if (p.temperature <= 0.0) {
        k = 1u;
    }
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
    workgroupBarrier();
    // The set extends past the candidates: k of them were found and the set is larger.
    let wide = m == MAX_K && (all || p.k > MAX_K) && p.temperature > 0.0;
    let mx = cand_v[0];
    if (all && p.temperature > 0.0) {
        // Normalisers over every finite logit (candidates included; used when `wide`).
        var a = 0.0;
        var b = 0.0;
        for (var i = lid; i < p.n; i += 256u) {
            let x = v[i];
            if (finite(x)) {
                a += exp(x - mx);
                b += exp((x - mx) / p.temperature);
            }
        }
        sum1[lid] = a;
        sum_t[lid] = b;
        workgroupBarrier();
        for (var st = 128u; st > 0u; st >>= 1u) {
            if (lid < st) {
                sum1[lid] += sum1[lid + st];
                sum_t[lid] += sum_t[lid + st];
            }
            workgroupBarrier();
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
    if (wide && !all) {
        // 64 < top_k < n: the set's normalisers are not known here.
        out[0] = NONE;
        return;
    }
    // `inside`: what is kept lies within the candidates (so its normaliser is their sum).
    var inside = !wide;
    var keep = m;
    if (p.top_p < 1.0) {
        var s = 0.0;
        if (wide) {
            s = sum1[0];
        } else {
            for (var i = 0u; i < m; i++) {
                s += exp(cand_v[i] - mx);
            }
        }
        var acc = 0.0;
        for (var i = 0u; i < m; i++) {
            acc += exp(cand_v[i] - mx) / s;
            if (acc >= p.top_p) {
                keep = i + 1u;
                inside = true;
                break;
            }
        }
    }
    if (p.min_p > 0.0) {
        var j = 0u;
        while (j < keep && exp(cand_v[j] - mx) >= p.min_p) {
            j++;
        }
        if (j < keep) {
            keep = max(j, 1u);
            inside = true;
        }
    }
    var s = 0.0;
    if (inside) {
        for (var i = 0u; i < keep; i++) {
            s += exp((cand_v[i] - mx) / p.temperature);
        }
    } else if (p.top_p < 1.0 || p.min_p > 0.0) {
        // A top-p or min-p cut past the candidates: the kept set's normaliser is unknown.
        out[0] = NONE;
        return;
    } else {
        s = sum_t[0];
    }
    var acc = 0.0;
    var pick = cand_i[keep - 1u];
    if (!inside) {
        pick = NONE;
    }
    for (var i = 0u; i < keep; i++) {
        acc += exp((cand_v[i] - mx) / p.temperature) / s;
        if (p.u < acc) {
            pick = cand_i[i];
            break;
        }
    }
    out[0] = pick;
}
