//! The row driver of the wasm32 integer kernels (`wasm_i16`, `wasm_relaxed`): tiles of up to 8
//! tokens (`token_tile`) over row pairs (where the kernel takes them), then single rows; in a
//! tile, each row's block is decoded once for all its tokens (one token: multiplied as it is
//! decoded). A kernel supplies a token's activations and its blocks' decoding and dot products
//! (`IntKernel`).

use super::super::QAct;
use super::hsum;
use super::simd::*;
use crate::model::QMatrix;

/// One output's running sum: f32 lanes, and a scalar for the 32-block formats' min terms.
#[derive(Clone, Copy)]
pub(super) struct Accumulator {
    pub(super) v: v128,
    pub(super) s: f32,
}

/// An integer kernel as `rows` drives it: a token's activations, a block format's decoded
/// blocks and their dot products with a token.
pub(super) trait IntKernel {
    /// Weights per block.
    const BS: usize;
    /// Bytes per block.
    const TS: usize;
    /// Whether rows go two at a time first (the rest, if any, one at a time).
    const PAIRS: bool;
    /// One token's activations.
    type Tok<'a>: Copy;
    /// A block's scales.
    type Head: Copy;
    /// A block's weights, decoded once for a prefill tile's tokens.
    type Weights: Copy;
    /// Token `t`'s activations in `x` (rows of `cols` values).
    fn tok(x: &QAct, cols: usize, t: usize) -> Self::Tok<'_>;
    /// Weights to be overwritten by `weights`.
    fn blank() -> Self::Weights;
    fn head(b: &[u8]) -> Self::Head;
    /// Block `b`'s weights (header `h`) into `w`.
    fn weights(b: &[u8], h: &Self::Head, w: &mut Self::Weights);
    /// `acc += block · x` for block `bi` of a row, from its header and decoded weights.
    fn dot(h: &Self::Head, w: &Self::Weights, x: Self::Tok<'_>, bi: usize, acc: &mut Accumulator);
    /// The same from the block's bytes `b`, each part decoded as it is multiplied (decode's
    /// path: the same sums and steps as `dot`).
    fn dot_bytes(b: &[u8], x: Self::Tok<'_>, bi: usize, acc: &mut Accumulator);
}

/// `R` rows × `T` tokens: each row's block is decoded once for the tile's tokens.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // index loops over constant bounds: fully unrolled
fn tile<K: IntKernel, const R: usize, const T: usize>(
    rows: [&[u8]; R],
    xs: [K::Tok<'_>; T],
) -> [[f32; T]; R] {
    let zero = Accumulator {
        v: f32x4_splat(0.0),
        s: 0.0,
    };
    let mut acc = [[zero; T]; R];
    let nb = rows[0].len() / K::TS;
    for bi in 0..nb {
        let block = |r: usize| &rows[r][bi * K::TS..(bi + 1) * K::TS];
        if T == 1 {
            // Decode: each block multiplied as it is decoded.
            for r in 0..R {
                K::dot_bytes(block(r), xs[0], bi, &mut acc[r][0]);
            }
            continue;
        }
        let mut heads = [K::head(block(0)); R];
        let mut w = [K::blank(); R];
        for r in 0..R {
            let b = block(r);
            heads[r] = K::head(b);
            K::weights(b, &heads[r], &mut w[r]);
        }
        for t in 0..T {
            for r in 0..R {
                K::dot(&heads[r], &w[r], xs[t], bi, &mut acc[r][t]);
            }
        }
    }
    let mut out = [[0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            out[r][t] = hsum(acc[r][t].v) + acc[r][t].s;
        }
    }
    out
}

/// Rows `r0..` of `W·xᵀ` into `out` (row, token). (Inlined into each kernel's entry: on x86_64
/// that is a `target_feature` function, see `x86_simd128`.)
#[inline(always)]
pub(super) fn rows<K: IntKernel>(w: &QMatrix, x: &QAct, n_tok: usize, r0: usize, out: &mut [f32]) {
    let cols = w.cols;
    let nb = cols / K::BS;
    let n_rows = out.len() / n_tok;
    let row = |ri: usize| &w.row(r0 + ri)[..nb * K::TS];
    let tok = |t: usize| K::tok(x, cols, t);
    macro_rules! run {
        // `$r` rows from `$ri` × the tile's `$t` tokens `$xs` (from `$t0`).
        (@ $r:literal, $t:literal, $ri:expr, $t0:expr, $xs:expr) => {{
            let xs: &[K::Tok<'_>; $t] = match $xs[..$t].try_into() {
                Ok(xs) => xs,
                Err(_) => return,
            };
            let v = tile::<K, $r, $t>(std::array::from_fn(|i| row($ri + i)), *xs);
            for (i, v) in v.iter().enumerate() {
                let o = ($ri + i) * n_tok + $t0;
                out[o..o + $t].copy_from_slice(v);
            }
        }};
        // The same for `$tt` (8, 4, 2 or 1) tokens.
        ($r:literal, $tt:expr, $ri:expr, $t0:expr, $xs:expr) => {
            match $tt {
                8 => run!(@ $r, 8, $ri, $t0, $xs),
                4 => run!(@ $r, 4, $ri, $t0, $xs),
                2 => run!(@ $r, 2, $ri, $t0, $xs),
                _ => run!(@ $r, 1, $ri, $t0, $xs),
            }
        };
    }
    let mut t0 = 0;
    while t0 < n_tok {
        let tt = super::super::token_tile(n_tok - t0);
        // The tile's tokens, built once for all its rows.
        let mut xs = [tok(t0); 8];
        for (i, x) in xs.iter_mut().enumerate().take(tt).skip(1) {
            *x = tok(t0 + i);
        }
        let mut ri = 0;
        while K::PAIRS && ri + 2 <= n_rows {
            run!(2, tt, ri, t0, xs);
            ri += 2;
        }
        while ri < n_rows {
            run!(1, tt, ri, t0, xs);
            ri += 1;
        }
        t0 += tt;
    }
}
