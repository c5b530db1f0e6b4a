// attention_row.wgsl: one (Q head, token) row of single-pass attention, prepended (after
// attention_common.wgsl) to attention.wgsl and attention_rows.wgsl, which differ only in where
// a token's cache rows start: both compute a row in the same order, so a sequence's row in a
// batched step equals its row alone.
//
// Row `row` (= token·n_head + head) attending over cache positions first..n_kv, whose rows sit
// at cache rows base + j: scores (× kq_scale) into sc[row·n_ctx + j], their softmax weights
// over them, then o[row·head_dim_v + d] = Σ_j w_j · v_j[d]. Needs the kernel's q, sc, o, p
// (Params with head_dim, head_dim_v, kv_dim, v_dim, n_ctx, group, kq_scale).
fn attend_row(lid: u32, h: u32, row: u32, base: u32, first: u32, n_kv: u32) {
    let kvh = h / p.group;
    let qo = row * p.head_dim;
    let ko = kvh * p.head_dim;
    let so = row * p.n_ctx;
    var mx = -3.4e38;
    for (var j = first + lid; j < n_kv; j += 256u) {
        let kr = (base + j) * p.kv_dim + ko;
        var s = 0.0;
        for (var d = 0u; d < p.head_dim; d++) {
            s += q[qo + d] * k_at(kr + d);
        }
        s *= p.kq_scale;
        sc[so + j] = s;
        mx = max(mx, s);
    }
    mx = reduce_max(lid, mx);
    var sum = 0.0;
    for (var j = first + lid; j < n_kv; j += 256u) {
        let e = exp(sc[so + j] - mx);
        sc[so + j] = e;
        sum += e;
    }
    sum = reduce_sum(lid, sum);
    storageBarrier();
    let inv = 1.0 / sum;
    let vo = kvh * p.head_dim_v;
    for (var d = lid; d < p.head_dim_v; d += 256u) {
        var acc = 0.0;
        for (var j = first; j < n_kv; j++) {
            acc += sc[so + j] * v_at((base + j) * p.v_dim + vo + d);
        }
        o[row * p.head_dim_v + d] = acc * inv;
    }
}
