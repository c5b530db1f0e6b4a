//! Attention of one query head over the cached positions: scores `scale · q·k_j`, softmax,
//! then the weighted sum of the values, for `j` in a causal (or sliding-window) span.
//!
//! This is the part of a forward pass that grows with the context: at 1,500 cached positions
//! it costs SmolLM2-135M about as much per token as the weight products. The keys and values
//! are f32 rows in the cache (position-major, `stride` floats apart, this head's `width`
//! floats at `offset`). [`attend_reference`] is the plain scalar loop; [`attend`] is the same
//! arithmetic in 16 independent lanes, which the compiler vectorizes: for wasm32 with
//! SIMD128, and on x86-64 once more with AVX2 and FMA when the CPU has them (detected at run
//! time, as the matrix kernels are), since a default x86-64 build may only assume SSE2.

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

/// `out = Σ_j softmax_j(scale · q·keys[j]) · values[j]` over `span`; `scores` holds at least
/// `span.len()` floats of scratch.
pub fn attend(
    q: &[f32],
    keys: HeadRows,
    values: HeadRows,
    span: std::ops::Range<usize>,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if super::matmul::has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (detected above).
        unsafe { attend_avx2(q, keys, values, span, scale, scores, out) };
        return;
    }
    attend_lanes(q, keys, values, span, scale, scores, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(
    q: &[f32],
    keys: HeadRows,
    values: HeadRows,
    span: std::ops::Range<usize>,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    attend_lanes(q, keys, values, span, scale, scores, out);
}

const L: usize = 16;

/// `a·b` in `L` lanes (then a tree sum), as `crate::cpu::matmul::dot_fast`.
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; L];
    let mut ca = a.chunks_exact(L);
    let mut cb = b.chunks_exact(L);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..L {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0f32;
    for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    let mut w = L;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            acc[i] += acc[i + w];
        }
    }
    acc[0] + tail
}

#[inline(always)]
fn attend_lanes(
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
        *sc = dot_lanes(q, keys.row(j)) * scale;
    }
    super::ops::softmax(s);
    out.fill(0.0);
    for (&a, j) in s.iter().zip(span) {
        for (o, &v) in out.iter_mut().zip(values.row(j)) {
            *o += a * v;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
            let (mut fast, mut slow) = (vec![0f32; width], vec![0f32; width]);
            let span = first..n_pos;
            attend(
                &q,
                rows(&data),
                rows(&vdata),
                span.clone(),
                0.125,
                &mut scores,
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
            let err: f32 = fast
                .iter()
                .zip(&slow)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            let scale: f32 = slow.iter().map(|v| v.abs()).fold(1e-3, f32::max);
            assert!(
                err <= 1e-5 * scale,
                "width {width}, {n_pos} positions: {err} (of {scale})"
            );
        }
    }
}
