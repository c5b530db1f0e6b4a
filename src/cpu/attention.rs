//! Attention over the cached positions: for each query head, scores `scale · q·k_j`, softmax,
//! then the weighted sum of the values, for `j` in a causal (or sliding-window) span.
//!
//! This is the part of a forward pass that grows with the context: at 1,500 cached positions
//! it costs SmolLM2-135M about what the weight products cost per token. The keys and values are
//! f32 rows in the cache (position-major, `stride` floats apart, this head's `width` floats at
//! `offset`). [`attend_reference`] is the plain scalar loop, one query at a time.
//! [`attend_many`] runs a tile of queries that share a KV head (the forward pass's tokens × a
//! group's query heads), so a long prefill reads the cache once per tile, not once per query:
//! - scores: for a prefill, each head's keys are transposed once per layer into
//!   [`KeyColumns`], blocks of 32 positions, and two queries' elements times a block row
//!   update 64 scores at once: a small matrix product with no horizontal sum per dot (as
//!   ggml's and llama.cpp's flash-attention tiles do). A decode step has too few queries to
//!   pay for the transpose and dots the rows (`dot_fast`);
//! - softmax with a polynomial exp that vectorizes, unlike the library call;
//! - the weighted sum: a query's 64 (or 32) outputs stay in registers over blocks of 64 value
//!   rows kept in L1.
//!
//! The loops are plain arrays the compiler vectorizes: for wasm32 with SIMD128, and on x86-64
//! once more with AVX2 when the CPU has it (detected at run time, as the matrix kernels are),
//! since a default x86-64 build may only assume SSE2. No fused multiply-add: wasm32 has none,
//! and the paths then round alike. [`attend_layer`] is a layer's attention over a batch, its
//! KV heads split over the matmul threads natively.

use super::ops::exp_nonpositive;

/// One head's rows in a KV cache: position `j`'s values are `data[j·stride + offset..][..width]`.
#[derive(Clone, Copy)]
pub struct HeadRows<'a> {
    pub data: &'a [f32],
    pub stride: usize,
    pub offset: usize,
    pub width: usize,
}

impl<'a> HeadRows<'a> {
    fn row(&self, j: usize) -> &'a [f32] {
        let at = j * self.stride + self.offset;
        &self.data[at..at + self.width]
    }
}

/// One query of a tile: its head's values and the positions it attends to.
pub struct Query<'a> {
    pub q: &'a [f32],
    pub span: std::ops::Range<usize>,
}

/// Keys per block of [`KeyColumns`]: one query element times one block row updates 32 scores
/// at once (4 AVX2 vectors, 8 SIMD128 ones), with no horizontal sum per dot.
const KB: usize = 32;
/// Value columns per accumulator block of the weighted sum (a query's outputs that stay in
/// registers over a block of [`VJ`] positions): 64 with AVX2 (8 vectors, so that 8 chains of
/// additions hide the adder's latency), 32 elsewhere (8 SIMD128 vectors of the 16 registers).
#[cfg(target_arch = "x86_64")]
const VB_AVX2: usize = 64;
const VB: usize = 32;
/// Positions per block of the weighted sum: 64 value rows of a head (16 KiB at width 64) stay
/// in L1 while every query of the tile goes over them.
const VJ: usize = 64;

/// One head's keys over a span of positions, transposed in blocks of 32 (`KB`) positions: block
/// `b` is (width, KB) and holds positions `first + b·KB..` (zeros past the span). Built once
/// per layer for a prefill, whose tiles then score many queries per key element read; a
/// decode step (a few queries) dots the cache's rows directly instead, as building these would
/// cost it more than it saves.
#[derive(Default)]
pub struct KeyColumns {
    data: Vec<f32>,
    first: usize,
    width: usize,
}

impl KeyColumns {
    /// Transposes `keys` at positions `span`.
    pub fn fill(&mut self, keys: HeadRows, span: std::ops::Range<usize>) {
        let (hd, n) = (keys.width, span.len());
        self.first = span.start;
        self.width = hd;
        self.data.clear();
        self.data.resize(n.div_ceil(KB) * hd * KB, 0.0);
        for (b, block) in self.data.chunks_exact_mut(hd * KB).enumerate() {
            for jj in 0..KB.min(n - b * KB) {
                let row = keys.row(span.start + b * KB + jj);
                for (col, &x) in block.chunks_exact_mut(KB).zip(row) {
                    col[jj] = x;
                }
            }
        }
    }

    /// Block `b`: (width, KB).
    fn block(&self, b: usize) -> &[f32] {
        &self.data[b * self.width * KB..(b + 1) * self.width * KB]
    }
}

/// Scratch of [`attend_many`], kept between calls.
#[derive(Default)]
pub struct Scratch {
    /// (queries, positions lo..hi): the scores, then the softmax weights.
    scores: Vec<f32>,
}

/// `out[i] = Σ_j softmax_j(scale · q_i·keys[j]) · values[j]` over each query's span, for
/// queries that share one KV head (a tile of tokens × the query heads of a group): each key
/// and value row is read once for all of them while it is in L1, not once per query.
/// `columns`: the same keys as [`KeyColumns`] over every position the queries see, for a tile
/// of many queries; `None` dots the rows. `out`: (queries, values.width).
///
/// With `columns`, every score is summed over the head's elements in order, and every output
/// over the positions in order, as in [`attend_reference`]: only the softmax's exp differs.
pub fn attend_many(
    queries: &[Query],
    keys: HeadRows,
    columns: Option<&KeyColumns>,
    values: HeadRows,
    scale: f32,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if super::matmul::has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (detected above).
        unsafe { attend_many_avx2(queries, keys, columns, values, scale, scratch, out) };
        return;
    }
    attend_many_lanes::<VB>(queries, keys, columns, values, scale, scratch, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_many_avx2(
    queries: &[Query],
    keys: HeadRows,
    columns: Option<&KeyColumns>,
    values: HeadRows,
    scale: f32,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    attend_many_lanes::<VB_AVX2>(queries, keys, columns, values, scale, scratch, out);
}

#[inline(always)]
fn attend_many_lanes<const VB: usize>(
    queries: &[Query],
    keys: HeadRows,
    columns: Option<&KeyColumns>,
    values: HeadRows,
    scale: f32,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    let lo = queries.iter().map(|q| q.span.start).min().unwrap_or(0);
    let hi = queries.iter().map(|q| q.span.end).max().unwrap_or(0);
    let w = hi.saturating_sub(lo);
    let nq = queries.len();
    let scores = &mut scratch.scores;
    scores.clear();
    scores.resize(nq * w, 0.0);
    // Row i of `scores`: query i's scores at positions lo..hi (those outside its span unused).
    match columns {
        Some(cols) if w > 0 => {
            assert!(
                cols.first <= lo && cols.width == keys.width,
                "key columns span"
            );
            for b in (lo - cols.first) / KB..=(hi - 1 - cols.first) / KB {
                let block = cols.block(b);
                // Positions of this block inside lo..hi, and their place in a block.
                let p0 = cols.first + b * KB;
                let (from, to) = (p0.max(lo), (p0 + KB).min(hi));
                let (r0, r1) = (from - p0, to - p0);
                let at = from - lo;
                let mut pairs = queries.chunks_exact(2);
                for (i, pair) in (&mut pairs).enumerate() {
                    let (s0, s1) = scores_two(pair[0].q, pair[1].q, block);
                    let rows = &mut scores[2 * i * w..];
                    store_scaled(&mut rows[at..at + r1 - r0], &s0[r0..r1], scale);
                    store_scaled(&mut rows[w + at..w + at + r1 - r0], &s1[r0..r1], scale);
                }
                if let [last] = pairs.remainder() {
                    let (s0, _) = scores_two(last.q, last.q, block);
                    let row = &mut scores[(nq - 1) * w..];
                    store_scaled(&mut row[at..at + r1 - r0], &s0[r0..r1], scale);
                }
            }
        }
        _ => {
            // One query at a time over its span: its elements stay in registers while the key
            // rows stream past (with the queries innermost, the dot was vectorized 2 lanes wide).
            for (i, qy) in queries.iter().enumerate() {
                let row = &mut scores[i * w + qy.span.start - lo..i * w + qy.span.end - lo];
                for (s, j) in row.iter_mut().zip(qy.span.clone()) {
                    *s = super::matmul::dot_fast(qy.q, keys.row(j)) * scale;
                }
            }
        }
    }
    for (i, qy) in queries.iter().enumerate() {
        let row = &mut scores[i * w..(i + 1) * w];
        softmax_lanes(&mut row[qy.span.start - lo..qy.span.end - lo]);
    }
    let wv = values.width;
    out[..nq * wv].fill(0.0);
    for jb in (lo..hi).step_by(VJ) {
        let block = jb..(jb + VJ).min(hi);
        for (i, qy) in queries.iter().enumerate() {
            let js = block.start.max(qy.span.start)..block.end.min(qy.span.end);
            if js.is_empty() {
                continue;
            }
            let p = &scores[i * w + js.start - lo..i * w + js.end - lo];
            let o = &mut out[i * wv..(i + 1) * wv];
            let mut cols = o.chunks_exact_mut(VB);
            for (c, oc) in (&mut cols).enumerate() {
                let mut acc: [f32; VB] = oc.try_into().expect("VB columns");
                for (&a, j) in p.iter().zip(js.clone()) {
                    let v: &[f32; VB] = values.row(j)[c * VB..][..VB].try_into().expect("VB");
                    for l in 0..VB {
                        acc[l] += a * v[l];
                    }
                }
                oc.copy_from_slice(&acc);
            }
            let tail = cols.into_remainder();
            let t0 = wv - tail.len();
            if tail.is_empty() {
                continue;
            }
            for (&a, j) in p.iter().zip(js.clone()) {
                for (o, &x) in tail.iter_mut().zip(&values.row(j)[t0..]) {
                    *o += a * x;
                }
            }
        }
    }
}

/// Two queries' scores against the KB keys of `kt` (width, KB): one element of each query
/// times a row of `kt`, in element order.
#[inline(always)]
fn scores_two(q0: &[f32], q1: &[f32], kt: &[f32]) -> ([f32; KB], [f32; KB]) {
    let (mut s0, mut s1) = ([0f32; KB], [0f32; KB]);
    for ((&a, &b), col) in q0.iter().zip(q1).zip(kt.chunks_exact(KB)) {
        let col: &[f32; KB] = col.try_into().expect("KB keys");
        for l in 0..KB {
            s0[l] += a * col[l];
            s1[l] += b * col[l];
        }
    }
    (s0, s1)
}

#[inline(always)]
fn store_scaled(dst: &mut [f32], s: &[f32], scale: f32) {
    for (d, &v) in dst.iter_mut().zip(s) {
        *d = v * scale;
    }
}

/// Lanes of the vectorized softmax.
const L: usize = 16;

/// Softmax in place with [`exp_nonpositive`] over 16 lanes (the scores minus their maximum are
/// never positive); `super::ops::softmax` is the exact one the reference uses.
#[inline(always)]
fn softmax_lanes(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut acc = [0f32; L];
    let mut chunks = x.chunks_exact_mut(L);
    for c in &mut chunks {
        for i in 0..L {
            c[i] = exp_nonpositive(c[i] - max);
            acc[i] += c[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp_nonpositive(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// The scalar reference: one sum at a time, in position order.
pub fn attend_reference(
    q: &[f32],
    keys: HeadRows,
    values: HeadRows,
    span: std::ops::Range<usize>,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let s = &mut scores[..span.len()];
    for (sc, j) in s.iter_mut().zip(span.clone()) {
        let k = keys.row(j);
        *sc = q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale;
    }
    super::ops::softmax(s);
    out.fill(0.0);
    for (&a, j) in s.iter().zip(span) {
        for (o, &v) in out.iter_mut().zip(values.row(j)) {
            *o += a * v;
        }
    }
}

/// One layer's attention over a batch: its shapes and options.
pub struct LayerShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
    /// Sliding window (positions a token sees, itself included), on sliding-window layers.
    pub window: Option<usize>,
    pub scale: f32,
}

/// Queries per layer (tokens × a group's query heads) from which [`attend_layer`] scores with
/// [`KeyColumns`]: transposing a key element costs about what 16 queries save on it.
const MANY_QUERIES: usize = 16;

/// Tokens per tile of [`attend_layer`]: with a group's query heads, the queries that share each
/// key and value row read.
const TILE: usize = 8;

/// Attention of `n` tokens at positions `pos..pos + n` (their keys and values already in the
/// cache): `q` is (n, n_head·head_dim), `att` (n, n_head·head_dim_v). `reference`: the scalar
/// loop, one query at a time.
#[allow(clippy::too_many_arguments)]
pub fn attend_layer(
    s: &LayerShape,
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    n: usize,
    pos: usize,
    reference: bool,
    att: &mut [f32],
) {
    let (hd, hdv) = (s.head_dim, s.head_dim_v);
    let (q_dim, att_dim) = (s.n_head * hd, s.n_head * hdv);
    let group = s.n_head / s.n_head_kv;
    let span = |t: usize| {
        let p = pos + t;
        let first = s.window.map_or(0, |w| (p + 1).saturating_sub(w));
        first..p + 1
    };
    let rows = |kvh: usize| {
        let keys = HeadRows {
            data: k_cache,
            stride: s.n_head_kv * hd,
            offset: kvh * hd,
            width: hd,
        };
        let values = HeadRows {
            data: v_cache,
            stride: s.n_head_kv * hdv,
            offset: kvh * hdv,
            width: hdv,
        };
        (keys, values)
    };
    let mut scores = vec![0f32; pos + n];
    if reference {
        for t in 0..n {
            for hh in 0..s.n_head {
                let (keys, values) = rows(hh / group);
                let qh = &q[t * q_dim + hh * hd..][..hd];
                let out = &mut att[t * att_dim + hh * hdv..][..hdv];
                attend_reference(qh, keys, values, span(t), s.scale, &mut scores, out);
            }
        }
        return;
    }
    // Each KV head is a part (on its own thread when there are several and the work is worth
    // a fork): its tiles' outputs, (n, group, hdv), then copied into `att`.
    let many = n * group >= MANY_QUERIES;
    let mut parts: Vec<Vec<f32>> = vec![vec![0f32; n * group * hdv]; s.n_head_kv];
    let head = |kvh: usize, out: &mut Vec<f32>| {
        let (keys, values) = rows(kvh);
        let heads = kvh * group..(kvh + 1) * group;
        let mut scratch = Scratch::default();
        // Many queries per key (a prefill): transpose the head's keys once for all its tiles.
        let columns = many.then(|| {
            let mut c = KeyColumns::default();
            c.fill(keys, span(0).start..pos + n);
            c
        });
        for t0 in (0..n).step_by(TILE) {
            let tokens = t0..(t0 + TILE).min(n);
            let queries: Vec<Query> = tokens
                .clone()
                .flat_map(|t| {
                    heads.clone().map(move |hh| Query {
                        q: &q[t * q_dim + hh * hd..][..hd],
                        span: span(t),
                    })
                })
                .collect();
            let o = &mut out[t0 * group * hdv..tokens.end * group * hdv];
            let cols = columns.as_ref();
            attend_many(&queries, keys, cols, values, s.scale, &mut scratch, o);
        }
    };
    // Below ~256k multiply-adds a fork/join costs more than it saves (as for the matmuls).
    if n * (pos + n) * s.n_head * hd >= 1 << 18 {
        super::matmul::for_each_part(&mut parts, head);
    } else {
        parts.iter_mut().enumerate().for_each(|(i, p)| head(i, p));
    }
    for (kvh, part) in parts.iter().enumerate() {
        for (t, rows) in part.chunks_exact(group * hdv).enumerate() {
            att[t * att_dim + kvh * group * hdv..][..group * hdv].copy_from_slice(rows);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest difference is at most 1e-5 of the largest reference value.
    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        let err: f32 = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let scale: f32 = want.iter().map(|v| v.abs()).fold(1e-3, f32::max);
        assert!(err <= 1e-5 * scale, "{what}: {err} (of {scale})");
    }

    /// Uniform values in [-0.5, 0.5) from an xorshift of `seed`.
    fn uniform(mut seed: u64) -> impl FnMut() -> f32 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        }
    }

    #[test]
    fn the_fast_path_matches_the_reference() {
        let mut rand = uniform(0x2545_f491_4f6c_dd1du64);
        // Head widths with and without a tail past the lanes; spans from one position up.
        for (width, n_pos, first) in [(64, 1, 0usize), (64, 300, 0), (80, 257, 100), (40, 33, 5)] {
            let (stride, offset) = (3 * width + 8, width + 4);
            let data: Vec<f32> = (0..n_pos * stride).map(|_| rand()).collect();
            let vdata: Vec<f32> = (0..n_pos * stride).map(|_| rand() * 3.0).collect();
            let q: Vec<f32> = (0..width).map(|_| rand() * 4.0).collect();
            let rows = |d| HeadRows {
                data: d,
                stride,
                offset,
                width,
            };
            let mut scores = vec![0f32; n_pos];
            let mut scratch = Scratch::default();
            // The keys also as columns, from before the first position any query sees.
            let mut columns = KeyColumns::default();
            columns.fill(rows(&data), first.saturating_sub(7)..n_pos);
            let (mut fast, mut slow) = (vec![0f32; width], vec![0f32; width]);
            let span = first..n_pos;
            attend_reference(
                &q,
                rows(&data),
                rows(&vdata),
                span.clone(),
                0.125,
                &mut scores,
                &mut slow,
            );
            // A tile of queries with causal spans ending at different positions.
            let qs: Vec<Vec<f32>> = (0..5)
                .map(|_| (0..width).map(|_| rand() * 4.0).collect())
                .collect();
            let spans: Vec<_> = (0..5)
                .map(|i| first..(n_pos + i).saturating_sub(4).max(first + 1))
                .collect();
            let tile: Vec<Query> = qs
                .iter()
                .zip(&spans)
                .map(|(q, s)| Query { q, span: s.clone() })
                .collect();
            // The portable lanes (as on wasm32), then AVX2 where the CPU has it.
            let paths = [(None, "rows", 0), (Some(&columns), "columns", 0)];
            for (cols, how, isa) in paths
                .into_iter()
                .chain([(None, "rows", 1), (Some(&columns), "columns", 1)])
            {
                super::super::matmul::limit_isa(isa);
                let one = [Query {
                    q: &q,
                    span: span.clone(),
                }];
                let (k, v) = (rows(&data), rows(&vdata));
                attend_many(&one, k, cols, v, 0.125, &mut scratch, &mut fast);
                let what = format!("{how}, isa {isa}: width {width}, {n_pos} positions");
                assert_close(&fast, &slow, &what);

                let mut many = vec![0f32; 5 * width];
                attend_many(&tile, k, cols, v, 0.125, &mut scratch, &mut many);
                for (i, (q, s)) in qs.iter().zip(&spans).enumerate() {
                    let mut want = vec![0f32; width];
                    attend_reference(q, k, v, s.clone(), 0.125, &mut scores, &mut want);
                    let got = &many[i * width..(i + 1) * width];
                    let what = format!("{how}, isa {isa}: tile query {i}, width {width}");
                    assert_close(got, &want, &what);
                }
            }
        }
    }

    #[test]
    fn a_layer_matches_the_reference_for_prefill_and_decode() {
        let mut rand = uniform(0x9e37_79b9_7f4a_7c15u64);
        // (query heads, KV heads, head width, value width, sliding window): grouped, multi-head,
        // and a window shorter than the span; a prefill of 45 tokens after 40, then a decode step.
        for (n_head, n_kv, hd, hdv, window) in [
            (6, 2, 64, 64, None),
            (4, 4, 32, 48, None),
            (4, 1, 64, 64, Some(37)),
        ] {
            let shape = LayerShape {
                n_head,
                n_head_kv: n_kv,
                head_dim: hd,
                head_dim_v: hdv,
                window,
                scale: 1.0 / (hd as f32).sqrt(),
            };
            let total = 86;
            let k: Vec<f32> = (0..total * n_kv * hd).map(|_| rand()).collect();
            let v: Vec<f32> = (0..total * n_kv * hdv).map(|_| rand() * 2.0).collect();
            for (n, pos) in [(45, 40), (1, 85)] {
                let q: Vec<f32> = (0..n * n_head * hd).map(|_| rand() * 3.0).collect();
                let mut fast = vec![0f32; n * n_head * hdv];
                let mut slow = vec![0f32; n * n_head * hdv];
                attend_layer(&shape, &q, &k, &v, n, pos, true, &mut slow);
                for isa in [0, 1] {
                    super::super::matmul::limit_isa(isa);
                    attend_layer(&shape, &q, &k, &v, n, pos, false, &mut fast);
                    let what = format!("{n_head}/{n_kv} heads, {hd}/{hdv}, {window:?}, n {n}");
                    assert_close(&fast, &slow, &format!("{what}, isa {isa}"));
                }
            }
        }
    }
}
