//! x86_64 AVX-512 VNNI kernels for the token counts below the AMX tiles' (`n_tok <
//! x86_amx::MIN_TOKENS`: decode, a batched step, a short prompt), giving the tiles' numbers bit
//! for bit. With them a token's matmul results do not depend on how many tokens share the
//! call: a batched decode step of 16 sequences or more (the tiles) gives each sequence exactly
//! what its own one-token step gives (`crate::batch`'s promise), which is what lets the tiles
//! be the default (`kernels::set_amx`); before, the batcher had to run without them.
//!
//! Same activations: `x86_amx::quantize_token` (two i8 planes `q1`, `q2` per group, `x ≈
//! d_x·(254·q1 + q2)`), held here as `254·q1 + q2` in i16 lanes. Same exact integers, other
//! instructions: the
//! i16 kernels' block decoders (`x86_i16::IntBlock::pair`, weights as i16 lanes, the K-quants'
//! sub-block scales folded in, exactly the tiles' `P`) times the activations with `vpdpwssds`,
//! every product and sum exact in i32; each block's lanes are then totalled exactly
//! (`Avx512::totals_i32`, `Avx512::totals_i64_f32`), as a tile holds a block's total. Same f32 steps per output, in the
//! same block order, with rows in the lanes where the tiles have tokens (IEEE products and
//! FMAs do not depend on operand order):
//! - 32-weight formats: activations `254·q1 + q2` (≤ 32 385: one i16 lane; a lane adds 2
//!   products of |P| ≤ 128, the block total stays below 1.33e8), `I = Σ P·(254·q1 + q2)` and
//!   `acc = fma(f32(I)·d_x, d_w, acc)`, then `acc = fma(s_x, m_w, acc)` for Q4_1 / Q5_1
//!   (`s_x` the exact f32 sum of the block's activations);
//! - K-quants: the same `I = Σ P·(254·q1 + q2)` over the super-block (a lane adds 16 products:
//!   at most 16·4096·32385 < 2^31), totalled exactly in i64 (up to 3.5e10; the tiles form
//!   `254·C1 + C2` in i64), `acc = fma(f32(I)·d_x, d_w, acc)`; then for Q4_K / Q5_K the min
//!   term from integers too, `acc = fma(f32(Σ_j m_j·S_j)·d_x, −dmin, acc)` with `S_j`
//!   the sub-block's sum of `254·q1 + q2` (so the output is the quantized activations' exact
//!   product with the weights, up to f32 rounding).
//!
//! Tiles: one token × `R` rows (32-weight formats 8, 4, 2, 1; K-quants 2, 1), with the i16
//! kernels' software prefetch; 2 to 15 tokens (a batched step, a short prompt) in tiles of 8,
//! 4 or 2 tokens × 2 rows (32-weight formats) or 1 row (K-quants), each row's block decoded
//! once for the tile's tokens. For 8 or 4 tokens the 32-weight formats take 16 rows at once
//! with the rows in the lanes (`tile32_rows16`): the 16 decoded blocks are transposed and each
//! lane builds its own block total, where the 2-row tiles spend more on lane totals (a shuffle
//! tree per block) than on the products. The same for the K-quants measured slower (their lane
//! totals come once per 256 weights, the transposes once per 32), so they keep the 1-row tiles.
//! tests/amx_kernels.rs checks tiles and twins bit for bit on every format, and both against
//! `Kernel::Reference`.
//!
//! [`run`] drives them for several tokens, or for matrices that share their input (a layer's
//! Q, K, V; its gate and up): the input quantized once, one fork for all their rows, each part
//! writing (token, row) itself.

use super::x86::{avx512_vnni, Avx512};
use super::x86_amx::quantize_token;
use super::x86_i16::{self as i16k, IntBlock};
use super::QAct;
use crate::model::QMatrix;
use crate::quant::GgmlType;
use std::arch::x86_64::__m512i;

/// What these kernels need of a block besides its integer weights.
pub(super) trait TwinBlock: IntBlock {
    /// Whether the block has a min term (`m`, or the K-quants' `min_ints` and `−dmin`).
    const HAS_MIN: bool;
    /// The block's scale `d`.
    fn d(h: &Self::H) -> f32;
    /// 32-weight formats with a min term: `m`.
    fn m(_h: &Self::H) -> f32 {
        0.0
    }
    /// K-quants with a min term: the integer sub-block mins `m_j` of block `b` (i32 lanes 0..8).
    fn min_ints<const V: bool>(a: Avx512<V>, _b: &[u8]) -> __m512i {
        a.splat16(0)
    }
}

macro_rules! twin32 {
    ($($t:ident $min:literal)*) => {$(
        impl TwinBlock for i16k::$t {
            const HAS_MIN: bool = $min;
            #[inline(always)]
            fn d(h: &Self::H) -> f32 {
                h.0
            }
            #[inline(always)]
            fn m(h: &Self::H) -> f32 {
                h.1
            }
        }
    )*};
}
twin32!(Q4_0 false Q4_1 true Q5_0 false Q5_1 true Q8_0 false);

macro_rules! twin_k {
    ($($t:ident $min:literal)*) => {$(
        impl TwinBlock for i16k::$t {
            const HAS_MIN: bool = $min;
            #[inline(always)]
            fn d(h: &Self::H) -> f32 {
                <Self as IntBlock>::scale(h)
            }
            #[inline(always)]
            fn min_ints<const V: bool>(a: Avx512<V>, b: &[u8]) -> __m512i {
                a.u8x8_32(&i16k::k4_words(b).1.to_le_bytes())
            }
        }
    )*};
}
twin_k!(Q4K true Q5K true Q6K false);

/// The twin of the tile kernel for `ty` (the same formats as `x86_amx::select`), where the CPU
/// has AVX-512 VNNI and DQ: rows of `W·xᵀ` from activations quantized by [`quantize`], and the
/// activation group size.
pub(super) fn select(ty: GgmlType) -> Option<(super::IntRowsFn, usize)> {
    // (AVX-512 DQ as well: `x86_amx::available` checks it.)
    if avx512_vnni().is_none() || !super::x86_amx::available() {
        return None;
    }
    use GgmlType as G;
    Some(match ty {
        G::Q4_0 => (rows::<i16k::Q4_0> as super::IntRowsFn, 32),
        G::Q4_1 => (rows::<i16k::Q4_1>, 32),
        G::Q5_0 => (rows::<i16k::Q5_0>, 32),
        G::Q5_1 => (rows::<i16k::Q5_1>, 32),
        G::Q8_0 => (rows::<i16k::Q8_0>, 32),
        G::Q4_K => (rows::<i16k::Q4K>, 256),
        G::Q5_K => (rows::<i16k::Q5K>, 256),
        G::Q6_K => (rows::<i16k::Q6K>, 256),
        _ => return None,
    })
}

/// `x` (n_tok, cols) into `qa` as these kernels read it: `q = 254·q1 + q2`, `d`, `s` and
/// `si` as `quantize_token` gives them. Returns `false` (leaving `qa` unusable) without
/// AVX-512.
pub(super) fn quantize(qa: &mut QAct, x: &[f32], n_tok: usize, cols: usize, g: usize) -> bool {
    if avx512_vnni().is_none() {
        return false;
    }
    qa.reset(n_tok, cols, g, false);
    let (ng, ns) = (cols / g, cols / 32);
    qa.si.clear();
    qa.si.resize(n_tok * ns, 0);
    let (mut q1, mut q2) = (vec![0i8; cols], vec![0i8; cols]);
    for (t, xt) in x.chunks_exact(cols).take(n_tok).enumerate() {
        // SAFETY: AVX-512 F/BW, checked above (VNNI implies both).
        unsafe {
            quantize_token(
                xt,
                g,
                [&mut q1, &mut q2],
                &mut qa.d[t * ng..(t + 1) * ng],
                &mut qa.s[t * ns..(t + 1) * ns],
                &mut qa.si[t * ns..(t + 1) * ns],
                &mut [],
            )
        };
        let q = &mut qa.q[t * cols..(t + 1) * cols];
        for ((q, &a), &b) in q.iter_mut().zip(&q1).zip(&q2) {
            *q = 254 * i16::from(a) + i16::from(b);
        }
    }
    true
}

std::thread_local! {
    /// The calling thread's quantized activations for [`run`], kept between calls.
    static ACTS: std::cell::RefCell<QAct> = std::cell::RefCell::new(QAct::default());
    /// A part's results (row, token) before they go to `y` (token, row), kept between calls.
    static PART: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `ys[i] = x·Wᵢᵀ` for every matrix `(Wᵢ, its twin)` of `mats`, which read the same input `x`
/// (n_tok, cols): one matrix, or a layer's Q, K and V, or its gate and up projections. The
/// input is quantized once with group size `g`, all the matrices' rows go to the matmul threads
/// in one fork (parts of whole 16-row tiles), and each part writes its rows of every token
/// straight into `ys[i]` (n_tok, rowsᵢ): no serial pass between the matmuls. Each output is
/// exactly that of a call for its matrix alone. Returns `false`, computing nothing, if the
/// matrices differ in columns or a buffer is short.
pub(super) fn run(
    mats: &[(&QMatrix, super::IntRowsFn)],
    g: usize,
    x: &[f32],
    n_tok: usize,
    ys: &mut [&mut [f32]],
) -> bool {
    let Some(&(w0, _)) = mats.first() else {
        return true;
    };
    let cols = w0.cols;
    if n_tok == 0 {
        return true;
    }
    if x.len() < n_tok * cols
        || mats
            .iter()
            .any(|(w, _)| w.cols != cols || w.data.len() < w.rows * w.row_bytes)
    {
        return false;
    }
    let rows: Vec<usize> = mats.iter().map(|(w, _)| w.rows).collect();
    let Some(outs) = super::x86_amx::outputs(&rows, ys, n_tok) else {
        return false;
    };
    // Parts: (matrix, first row, rows), a few per thread, whole 16-row tiles. Below ~256k
    // multiply-adds (~20 µs on one core) one part a matrix, on this thread.
    let all_rows: usize = rows.iter().sum();
    let n = super::threads();
    let split = n > 1 && all_rows * cols * n_tok >= 1 << 18;
    let per = if split {
        all_rows.div_ceil(n * 4).next_multiple_of(16)
    } else {
        all_rows
    };
    let mut parts = super::x86_amx::row_parts(&rows, per);
    // (Taken out of the thread-locals for the call, as `kernels::matmul` does: a nested call
    // would find them empty, not borrowed.)
    let mut qa = ACTS.with(|a| a.take());
    if !quantize(&mut qa, x, n_tok, cols, g) {
        return false;
    }
    let part = |&mut (i, r0, nr): &mut (usize, usize, usize)| {
        let (w, f) = mats[i];
        let mut buf = PART.with(|b| b.take());
        buf.clear();
        buf.resize(nr * n_tok, 0.0);
        f(w, &qa, n_tok, r0, &mut buf);
        outs[i].put_rows(r0, nr, &buf);
        PART.with(|b| *b.borrow_mut() = buf);
    };
    if split {
        super::for_each_part(&mut parts, |_, p| part(p));
    } else {
        parts.iter_mut().for_each(part);
    }
    ACTS.with(|a| *a.borrow_mut() = qa);
    true
}

fn rows<B: TwinBlock>(w: &QMatrix, x: &QAct, n_tok: usize, r0: usize, out: &mut [f32]) {
    match avx512_vnni() {
        // SAFETY: the token proves the CPU has the features `rows_vnni` is compiled for.
        // (`select` also checked AVX-512 DQ.)
        Some(a) => unsafe { rows_vnni::<B>(a, w, x, n_tok, r0, out) },
        // Unreachable: `select` hands these out only after detection.
        None => out.fill(f32::NAN),
    }
}

/// One token's activations (see [`quantize`]).
#[derive(Clone, Copy)]
struct Tok<'a> {
    q: &'a [i16],
    d: &'a [f32],
    s: &'a [f32],
    si: &'a [i32],
}

/// Rows `r0..r0 + out.len() / n_tok` of `W·xᵀ` into `out` (row, token), token by token.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq,avx512vnni")]
fn rows_vnni<B: TwinBlock>(
    a: Avx512<true>,
    w: &QMatrix,
    x: &QAct,
    n_tok: usize,
    r0: usize,
    out: &mut [f32],
) {
    let cols = w.cols;
    let nb = cols / B::BS;
    let n_rows = out.len() / n_tok;
    let (ng, ns) = (cols / B::G, cols / 32);
    if x.d.len() < n_tok * ng
        || x.s.len() < n_tok * ns
        || x.si.len() < n_tok * ns
        || x.q.len() < n_tok * cols
    {
        out.fill(f32::NAN);
        return;
    }
    let row = |ri: usize| &w.row(r0 + ri)[..nb * B::TS];
    let ahead_of = |ri: usize, r: usize| {
        let at = (r0 + ri + 2 * r) * w.row_bytes;
        w.data.get(at..at + r * w.row_bytes).unwrap_or_default()
    };
    let tok = |t: usize| Tok {
        q: &x.q[t * cols..(t + 1) * cols],
        d: &x.d[t * ng..(t + 1) * ng],
        s: &x.s[t * ns..(t + 1) * ns],
        si: &x.si[t * ns..(t + 1) * ns],
    };
    let mut t0 = 0;
    while t0 < n_tok {
        let tt = super::token_tile(n_tok - t0);
        let mut ri = 0;
        if tt > 1 {
            // Several tokens: each row's blocks decoded once for the tile's tokens.
            let mut xs = [tok(t0); 8];
            for (i, x) in xs.iter_mut().enumerate().take(tt).skip(1) {
                *x = tok(t0 + i);
            }
            // Lane `n` of `xd[b]` / `xs_[b]`: token `n % tt`'s scale and sum of block `b`.
            let lanes = |of: fn(Tok) -> &[f32]| -> Vec<[f32; 16]> {
                (0..nb)
                    .map(|b| std::array::from_fn(|n| of(xs[n % tt]).get(b).copied().unwrap_or(0.0)))
                    .collect()
            };
            let xd = lanes(|x| x.d);
            let xsum = if B::BS == 32 && B::HAS_MIN {
                lanes(|x| x.s)
            } else {
                Vec::new()
            };
            macro_rules! run {
                ($tile:ident, $r:literal, $t:literal) => {{
                    let xt: &[Tok; $t] = match xs[..$t].try_into() {
                        Ok(xt) => xt,
                        Err(_) => return,
                    };
                    let rs: [&[u8]; $r] = std::array::from_fn(|i| row(ri + i));
                    let v = $tile::<B, $r, $t>(a, rs, *xt, &xd, &xsum, ahead_of(ri, $r));
                    for (i, v) in v.iter().enumerate() {
                        let o = (ri + i) * n_tok + t0;
                        out[o..o + $t].copy_from_slice(v);
                    }
                    ri += $r;
                }};
            }
            macro_rules! rows16 {
                ($t:literal) => {{
                    while ri + 16 <= n_rows {
                        let xt: &[Tok; $t] = match xs[..$t].try_into() {
                            Ok(xt) => xt,
                            Err(_) => return,
                        };
                        let rs: [&[u8]; 16] = std::array::from_fn(|i| row(ri + i));
                        let v = tile32_rows16::<B, $t>(a, &rs, *xt, ahead_of(ri, 16));
                        for (t, v) in v.iter().enumerate() {
                            for (i, &y) in v.iter().enumerate() {
                                out[(ri + i) * n_tok + t0 + t] = y;
                            }
                        }
                        ri += 16;
                    }
                }};
            }
            // 32-weight formats, 4 tokens or more: 16 rows in the lanes (no lane totals).
            if B::BS == 32 {
                match tt {
                    8 => rows16!(8),
                    4 => rows16!(4),
                    _ => {}
                }
            }
            macro_rules! rows_of {
                ($t:literal) => {{
                    if B::BS == 32 {
                        while ri + 2 <= n_rows {
                            run!(tile32_multi, 2, $t);
                        }
                        while ri < n_rows {
                            run!(tile32_multi, 1, $t);
                        }
                    } else {
                        while ri < n_rows {
                            run!(tile_k_multi, 1, $t);
                        }
                    }
                }};
            }
            match tt {
                8 => rows_of!(8),
                4 => rows_of!(4),
                _ => rows_of!(2),
            }
            t0 += tt;
            continue;
        }
        let x = tok(t0);
        let t = t0;
        macro_rules! run {
            ($tile:ident, $r:literal) => {{
                let rs: [&[u8]; $r] = std::array::from_fn(|i| row(ri + i));
                let v = $tile::<B, $r>(a, rs, x, ahead_of(ri, $r));
                for (i, v) in v.iter().enumerate() {
                    out[(ri + i) * n_tok + t] = *v;
                }
                ri += $r;
            }};
        }
        if B::BS == 32 {
            while ri + 8 <= n_rows {
                run!(tile32, 8);
            }
            while ri + 4 <= n_rows {
                run!(tile32, 4);
            }
            while ri + 2 <= n_rows {
                run!(tile32, 2);
            }
            while ri < n_rows {
                run!(tile32, 1);
            }
        } else {
            while ri + 2 <= n_rows {
                run!(tile_k, 2);
            }
            while ri < n_rows {
                run!(tile_k, 1);
            }
        }
        t0 += 1;
    }
}

/// 32-weight formats: `R` rows × `T` tokens (`R·T ≤ 16`, output lane `r·T + t`), each row's
/// block decoded once for the tile. `xd[b]` / `xs[b]`: lane `n` holds token `n % T`'s scale
/// and exact sum for block `b`. Per output the f32 steps of `tile32`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // index loops over constant bounds: fully unrolled
fn tile32_multi<B: TwinBlock, const R: usize, const T: usize>(
    a: Avx512<true>,
    rows: [&[u8]; R],
    xs: [Tok; T],
    xd: &[[f32; 16]],
    xsum: &[[f32; 16]],
    pf: &[u8],
) -> [[f32; T]; R] {
    const { assert!(R * T <= 16) };
    let nb = rows[0].len() / B::TS;
    let z = a.splat16(0);
    let mut acc = a.zero();
    for bi in 0..nb.min(xd.len()) {
        let blk = |r: usize| &rows[r][bi * B::TS..(bi + 1) * B::TS];
        i16k::ahead(a, pf, bi, nb);
        let mut x = [z; T];
        for t in 0..T {
            x[t] = a.load16(i16k::x32(xs[t].q, 32 * bi));
        }
        let mut p = [z; 16];
        let (mut d, mut m) = ([0f32; R], [0f32; R]);
        for r in 0..R {
            let h = B::head(a, blk(r));
            let [w, _] = B::pair(a, blk(r), &h, 0);
            for t in 0..T {
                p[r * T + t] = a.madd(w, x[t]);
            }
            (d[r], m[r]) = (B::d(&h), B::m(&h));
        }
        let total = a.cvt(a.totals_i32::<16>(&p));
        let v = a.mul(total, a.loadf(&xd[bi]));
        acc = a.fmadd(v, i16k::row_lanes::<true, R, T>(a, d), acc);
        if B::HAS_MIN {
            if let Some(sv) = xsum.get(bi) {
                acc = a.fmadd(a.loadf(sv), i16k::row_lanes::<true, R, T>(a, m), acc);
            }
        }
    }
    let v = a.store(acc);
    let mut out = [[0f32; T]; R];
    for r in 0..R {
        out[r].copy_from_slice(&v[r * T..r * T + T]);
    }
    out
}

/// 32-weight formats: `T` tokens × 16 rows, the rows in the lanes. Each row's block is decoded
/// once (32 i16 weights: 16 pairs), the 16 decoded blocks transposed (`x86_amx::transpose16`)
/// so that vector `k` holds every row's pair `k`, and each token's 16 block totals come from 16
/// `vpdpwssds` against its activation pair `k` broadcast: the exact `I` of each (row, token)
/// builds up in its own lane (32 products of at most 128·32385: below 2^31), with no lane
/// totals, the shuffle tree that `tile32_multi` spends most of its time in. The transpose
/// costs 64 shuffles a block for all the tile's tokens. Per output the f32 steps of `tile32`.
#[inline(always)]
fn tile32_rows16<B: TwinBlock, const T: usize>(
    a: Avx512<true>,
    rows: &[&[u8]; 16],
    xs: [Tok; T],
    pf: &[u8],
) -> [[f32; 16]; T] {
    use std::arch::x86_64::{_mm512_castps_si512, _mm512_castsi512_ps, _mm512_set1_epi32};
    let nb = rows[0].len() / B::TS;
    let mut acc = [a.zero(); T];
    for bi in 0..nb {
        i16k::ahead(a, pf, bi, nb);
        let mut w = [a.zero(); 16];
        let (mut d, mut m) = ([0f32; 16], [0f32; 16]);
        for r in 0..16 {
            let blk = &rows[r][bi * B::TS..(bi + 1) * B::TS];
            let h = B::head(a, blk);
            let [p, _] = B::pair(a, blk, &h, 0);
            // SAFETY: a cast between vector types.
            w[r] = unsafe { _mm512_castsi512_ps(p) };
            (d[r], m[r]) = (B::d(&h), B::m(&h));
        }
        // Vector k, lane r: row r's weights 2k and 2k + 1.
        // SAFETY: AVX-512 F, which the token `a` proves.
        let wk = unsafe { super::x86_amx::transpose16(w) };
        let (dv, mv) = (a.loadf(&d), a.loadf(&m));
        let xq: [&[i16; 32]; T] = std::array::from_fn(|t| i16k::x32(xs[t].q, 32 * bi));
        // One sum per token: T independent chains of 16 `vpdpwssds`.
        let mut s = [a.splat16(0); T];
        for k in 0..16 {
            // SAFETY: a cast between vector types.
            let wv = unsafe { _mm512_castps_si512(wk[k]) };
            for t in 0..T {
                // The token's activations 2k and 2k + 1, as one i32 in every lane.
                let (lo, hi) = (xq[t][2 * k] as u16, xq[t][2 * k + 1] as u16);
                let pair = (u32::from(lo) | u32::from(hi) << 16) as i32;
                // SAFETY: a broadcast (AVX-512 F).
                s[t] = a.dp(s[t], wv, unsafe { _mm512_set1_epi32(pair) });
            }
        }
        for t in 0..T {
            let xd = xs[t].d.get(bi).copied().unwrap_or(0.0);
            acc[t] = a.fmadd(a.mul(a.cvt(s[t]), a.splat(xd)), dv, acc[t]);
            if B::HAS_MIN {
                let xsum = xs[t].s.get(bi).copied().unwrap_or(0.0);
                acc[t] = a.fmadd(a.splat(xsum), mv, acc[t]);
            }
        }
    }
    acc.map(|v| a.store(v))
}

/// K-quants: one row × `T ≤ 8` tokens (output lane `t`), the row's block decoded once for the
/// tile. Per output the f32 steps of `tile_k`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // index loops over constant bounds: fully unrolled
fn tile_k_multi<B: TwinBlock, const R: usize, const T: usize>(
    a: Avx512<true>,
    rows: [&[u8]; R],
    xs: [Tok; T],
    xd: &[[f32; 16]],
    _xsum: &[[f32; 16]],
    pf: &[u8],
) -> [[f32; T]; R] {
    const { assert!(R == 1 && T <= 8) };
    let nb = rows[0].len() / B::TS;
    let z = a.splat16(0);
    let mut acc = a.zero();
    for bi in 0..nb.min(xd.len()) {
        let blk = &rows[0][bi * B::TS..(bi + 1) * B::TS];
        i16k::ahead(a, pf, bi, nb);
        let h = B::head(a, blk);
        let mut p = [[z; 2]; T];
        macro_rules! pair {
            ($($k:literal)*) => {$(
                let [g0, g1] = B::PG[$k];
                let [w0, w1] = B::pair(a, blk, &h, $k);
                for t in 0..T {
                    let xq = &xs[t].q[256 * bi..256 * bi + 256];
                    p[t][0] = a.dp(p[t][0], w0, a.load16(i16k::x32(xq, 32 * g0)));
                    p[t][1] = a.dp(p[t][1], w1, a.load16(i16k::x32(xq, 32 * g1)));
                }
            )*};
        }
        pair!(0 1 2 3);
        let mut v = [z; 8];
        for t in 0..T {
            v[t] = a.add32(p[t][0], p[t][1]);
        }
        let dx = a.loadf(&xd[bi]);
        let d = [B::d(&h); R];
        let t_main = a.totals_i64_f32_8(&v);
        acc = a.fmadd(a.mul(t_main, dx), i16k::row_lanes::<true, R, T>(a, d), acc);
        if B::HAS_MIN {
            let mi = B::min_ints(a, blk);
            let mut v = [z; 8];
            for t in 0..T {
                let si: &[i32; 8] = xs[t].si[8 * bi..8 * bi + 8].try_into().unwrap_or(&[0; 8]);
                v[t] = a.mullo32(mi, a.i32x8z(si));
            }
            // (Each total below 5.3e8: exact in i32.)
            let t_min = a.cvt(a.totals_i32::<8>(&v));
            let dmin = [-a.f16(blk, 2); R];
            acc = a.fmadd(
                a.mul(t_min, dx),
                i16k::row_lanes::<true, R, T>(a, dmin),
                acc,
            );
        }
    }
    let v = a.store(acc);
    let mut out = [[0f32; T]; R];
    out[0].copy_from_slice(&v[..T]);
    out
}

/// 32-weight formats: one token, `R` rows (output lane `r`).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // index loops over constant bounds: fully unrolled
fn tile32<B: TwinBlock, const R: usize>(
    a: Avx512<true>,
    rows: [&[u8]; R],
    x: Tok,
    pf: &[u8],
) -> [f32; R] {
    let nb = rows[0].len() / B::TS;
    let mut acc = a.zero();
    for bi in 0..nb {
        let blk = |r: usize| &rows[r][bi * B::TS..(bi + 1) * B::TS];
        i16k::ahead(a, pf, bi, nb);
        let xq = a.load16(i16k::x32(x.q, 32 * bi));
        let mut p = [a.splat16(0); R];
        let (mut d, mut m) = ([0f32; R], [0f32; R]);
        for r in 0..R {
            let h = B::head(a, blk(r));
            let [w, _] = B::pair(a, blk(r), &h, 0);
            p[r] = a.madd(w, xq);
            (d[r], m[r]) = (B::d(&h), B::m(&h));
        }
        let total = a.cvt(a.totals_i32::<R>(&p));
        let v = a.mul(total, a.splat(x.d[bi]));
        acc = a.fmadd(v, i16k::row_lanes::<true, R, 1>(a, d), acc);
        if B::HAS_MIN {
            acc = a.fmadd(a.splat(x.s[bi]), i16k::row_lanes::<true, R, 1>(a, m), acc);
        }
    }
    let v = a.store(acc);
    let mut out = [0f32; R];
    out.copy_from_slice(&v[..R]);
    out
}

/// K-quants: one token, `R ≤ 2` rows (output lane `r`).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // index loops over constant bounds: fully unrolled
fn tile_k<B: TwinBlock, const R: usize>(
    a: Avx512<true>,
    rows: [&[u8]; R],
    x: Tok,
    pf: &[u8],
) -> [f32; R] {
    const { assert!(R <= 2) };
    let nb = rows[0].len() / B::TS;
    let z = a.splat16(0);
    let mut acc = a.zero();
    for bi in 0..nb {
        let blk = |r: usize| &rows[r][bi * B::TS..(bi + 1) * B::TS];
        i16k::ahead(a, pf, bi, nb);
        let mut h = [B::head(a, blk(0)); R];
        for r in 1..R {
            h[r] = B::head(a, blk(r));
        }
        let xq = &x.q[256 * bi..256 * bi + 256];
        let mut p = [[z; 2]; R];
        // Unrolled by hand (`k` constant): group pair `k` of every row.
        macro_rules! pair {
            ($($k:literal)*) => {$(
                let [g0, g1] = B::PG[$k];
                let x0 = a.load16(i16k::x32(xq, 32 * g0));
                let x1 = a.load16(i16k::x32(xq, 32 * g1));
                for r in 0..R {
                    let [w0, w1] = B::pair(a, blk(r), &h[r], $k);
                    p[r][0] = a.dp(p[r][0], w0, x0);
                    p[r][1] = a.dp(p[r][1], w1, x1);
                }
            )*};
        }
        pair!(0 1 2 3);
        // Vectors 0..R: each row's lanes of `Σ P·q` (16 products a lane: at most
        // 16·4096·32385 < 2^31); R..2R: its min lanes `m_j·Σq_j` (j < 8).
        let mut v = [z; 4];
        let si: &[i32; 8] = x.si[8 * bi..8 * bi + 8].try_into().unwrap_or(&[0; 8]);
        for r in 0..R {
            v[r] = a.add32(p[r][0], p[r][1]);
            if B::HAS_MIN {
                v[R + r] = a.mullo32(B::min_ints(a, blk(r)), a.i32x8z(si));
            }
        }
        // Lanes 0..R: `f32(Σ P·q)`; R..2R: `f32(Σ_j m_j·Σq_j)`, each summed exactly (i64).
        let t = a.totals_i64_f32(&v);
        let dx = a.splat(x.d[bi]);
        let mut d = [0f32; R];
        for r in 0..R {
            d[r] = B::d(&h[r]);
        }
        acc = a.fmadd(a.mul(t, dx), i16k::row_lanes::<true, R, 1>(a, d), acc);
        if B::HAS_MIN {
            let mut dmin = [0f32; R];
            for r in 0..R {
                dmin[r] = -a.f16(blk(r), 2);
            }
            let tm = a.lanes_down(t, R);
            acc = a.fmadd(a.mul(tm, dx), i16k::row_lanes::<true, R, 1>(a, dmin), acc);
        }
    }
    let v = a.store(acc);
    let mut out = [0f32; R];
    out.copy_from_slice(&v[..R]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `totals_i32` is the exact lane total of each vector; `totals_i64_f32` too, past 2^31.
    #[test]
    fn lane_totals_are_exact() {
        use std::arch::x86_64::*;
        let Some(a) = avx512_vnni() else {
            eprintln!("!!! no AVX-512 VNNI here: the lane totals are not tested");
            return;
        };
        let v: [[i32; 16]; 4] = std::array::from_fn(|n| {
            std::array::from_fn(|l| (n as i32 + 1) * 1_000_003 * (l as i32 - 7))
        });
        let big: [[i32; 16]; 4] =
            std::array::from_fn(|n| std::array::from_fn(|l| i32::MAX - (n * 16 + l) as i32));
        // SAFETY: the token proves AVX-512 F/BW/VNNI; DQ is checked before `totals_i64_f32`.
        let (got, got64) = unsafe {
            let ld = |x: &[i32; 16]| _mm512_loadu_si512(x.as_ptr().cast());
            let t = a.totals_i32::<4>(&std::array::from_fn(|n| ld(&v[n])));
            let mut o = [0i32; 16];
            _mm512_storeu_si512(o.as_mut_ptr().cast(), t);
            let mut f = [0f32; 16];
            if is_x86_feature_detected!("avx512dq") {
                f = a.store(a.totals_i64_f32(&std::array::from_fn(|n| ld(&big[n]))));
            }
            (o, f)
        };
        if is_x86_feature_detected!("avx512dq") {
            for n in 0..4 {
                let want: i64 = big[n].iter().map(|&x| i64::from(x)).sum();
                assert_eq!(got64[n], want as f32, "i64 total {n}");
            }
            assert!(
                got64[4..].iter().all(|&x| x == 0.0),
                "lanes 4.. must be zero"
            );
        }
        for n in 0..4 {
            assert_eq!(got[n], v[n].iter().sum::<i32>(), "vector {n}");
        }
    }
}
