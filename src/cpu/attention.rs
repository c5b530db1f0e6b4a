//! Attention over the cached positions: for each query head, scores `scale · q·k_j`, softmax,
//! then the weighted sum of the values, for `j` in a causal (or sliding-window) span.
//!
//! This is the part of a forward pass that grows with the context: at 1,500 cached positions
//! it costs SmolLM2-135M more per token than the weight products. The keys and values are f32
//! rows in the cache (position-major, `stride` floats apart, this head's `width` floats at
//! `offset`). [`attend_reference`] is the plain scalar loop, one query at a time.
//! [`attend_many`] runs a tile of queries that share a KV head (the forward pass's tokens × a
//! group's query heads) over each key and value row once, so a long prefill reads the cache
//! once per tile, not once per query; its dots are `dot_fast`'s 16 independent lanes, which
//! the compiler vectorizes: for wasm32 with SIMD128, and on x86-64 once more with AVX2 when
//! the CPU has it (detected at run time, as the matrix kernels are), since a default x86-64
//! build may only assume SSE2. No fused multiply-add: wasm32 has none, and the paths then
//! round alike; its softmax's exp is a polynomial that vectorizes too. [`attend_layer`] is a
//! layer's attention over a batch, on either.

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

/// `out[i] = Σ_j softmax_j(scale · q_i·keys[j]) · values[j]` over each query's span, for
/// queries that share one KV head (a tile of tokens × the query heads of a group): each key
/// and value row is read once for all of them while it is in L1, not once per query.
/// `out`: (queries, values.width); `scores`: scratch, resized as needed.
pub fn attend_many(
    queries: &[Query],
    keys: HeadRows,
    values: HeadRows,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if super::matmul::has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (detected above).
        unsafe { attend_many_avx2(queries, keys, values, scale, scores, out) };
        return;
    }
    attend_many_lanes(queries, keys, values, scale, scores, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_many_avx2(
    queries: &[Query],
    keys: HeadRows,
    values: HeadRows,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    attend_many_lanes(queries, keys, values, scale, scores, out);
}

#[inline(always)]
fn attend_many_lanes(
    queries: &[Query],
    keys: HeadRows,
    values: HeadRows,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let lo = queries.iter().map(|q| q.span.start).min().unwrap_or(0);
    let hi = queries.iter().map(|q| q.span.end).max().unwrap_or(0);
    let w = hi.saturating_sub(lo);
    scores.clear();
    scores.resize(queries.len() * w, 0.0);
    // Row i of `scores`: query i's scores at positions lo..hi (those outside its span unused).
    for j in lo..hi {
        let k = keys.row(j);
        for (i, qy) in queries.iter().enumerate() {
            if qy.span.contains(&j) {
                scores[i * w + j - lo] = super::matmul::dot_fast(qy.q, k) * scale;
            }
        }
    }
    for (i, qy) in queries.iter().enumerate() {
        let row = &mut scores[i * w..(i + 1) * w];
        softmax_lanes(&mut row[qy.span.start - lo..qy.span.end - lo]);
    }
    let wv = values.width;
    out[..queries.len() * wv].fill(0.0);
    for j in lo..hi {
        let v = values.row(j);
        for (i, qy) in queries.iter().enumerate() {
            if qy.span.contains(&j) {
                let a = scores[i * w + j - lo];
                for (o, &x) in out[i * wv..(i + 1) * wv].iter_mut().zip(v) {
                    *o += a * x;
                }
            }
        }
    }
}

/// Lanes of the vectorized softmax.
const L: usize = 16;

/// `e^x` for `x <= 0` to about 1 ulp (Cephes' `expf`: `x = n·ln 2 + r`, a degree-6 polynomial
/// in `r`, then `2^n` from the exponent bits), in plain arithmetic that vectorizes, unlike the
/// library call. Below -87 it returns `e^-87` (1.6e-38): against the row's maximum, `e^0`, that
/// is zero in any sum.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    let x = x.max(-87.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

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
    let mut tile_out = vec![0f32; TILE * group * hdv];
    for kvh in 0..s.n_head_kv {
        let (keys, values) = rows(kvh);
        let heads = kvh * group..(kvh + 1) * group;
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
            attend_many(&queries, keys, values, s.scale, &mut scores, &mut tile_out);
            for (i, t) in tokens.enumerate() {
                for (g, hh) in heads.clone().enumerate() {
                    let row = &tile_out[(i * group + g) * hdv..][..hdv];
                    att[t * att_dim + hh * hdv..][..hdv].copy_from_slice(row);
                }
            }
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

    #[test]
    fn the_vectorized_exp_is_within_two_ulp() {
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let (got, want) = (exp_nonpositive(x), x.exp());
            assert!(
                (got - want).abs() <= 2.5e-7 * want,
                "e^{x}: {got} vs {want}"
            );
        }
        assert!(exp_nonpositive(-1e9) < 2e-38 && exp_nonpositive(f32::NEG_INFINITY) < 2e-38);
    }

    #[test]
    fn the_fast_path_matches_the_reference() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        // Head widths with and without a tail past the lanes; spans from one position up.
        for (width, n_pos, first) in [(64, 1, 0), (64, 300, 0), (80, 257, 100), (40, 33, 5)] {
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
            let mut scratch = Vec::new();
            let (mut fast, mut slow) = (vec![0f32; width], vec![0f32; width]);
            let span = first..n_pos;
            let one = [Query {
                q: &q,
                span: span.clone(),
            }];
            attend_many(
                &one,
                rows(&data),
                rows(&vdata),
                0.125,
                &mut scratch,
                &mut fast,
            );
            attend_reference(
                &q,
                rows(&data),
                rows(&vdata),
                span,
                0.125,
                &mut scores,
                &mut slow,
            );
            assert_close(&fast, &slow, &format!("width {width}, {n_pos} positions"));

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
            let mut many = vec![0f32; 5 * width];
            attend_many(
                &tile,
                rows(&data),
                rows(&vdata),
                0.125,
                &mut scratch,
                &mut many,
            );
            for (i, (q, s)) in qs.iter().zip(&spans).enumerate() {
                let (k, v) = (rows(&data), rows(&vdata));
                attend_reference(q, k, v, s.clone(), 0.125, &mut scores, &mut slow);
                let got = &many[i * width..(i + 1) * width];
                assert_close(got, &slow, &format!("tile query {i}, width {width}"));
            }
        }
    }
}
