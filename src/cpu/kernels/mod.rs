//! `Kernel::Fast`: fused per-type kernels that read the quantized blocks in place.
//!
//! Layout of the work: the output rows are split into chunks (one per thread task); inside a
//! chunk, tokens go in tiles of 8 (then 4, 2, 1). Decode (one token) decodes each block's
//! weights in registers and FMAs them straight into 4 accumulators. Prefill on SIMD128
//! (`wasm`) decodes one block of a pair of rows into a small L1 scratch (a block, never a row)
//! and runs a 2-row × T-token register tile over it, so the weights are unpacked once per tile
//! and every load feeds several FMAs; the AVX2 kernels (`x86`) and the portable ones instead
//! take each weight vector (group) with the tile's tokens as it is decoded, which measured up
//! to 3.5× faster on AVX2. Weights are decoded to exactly the reference dequantizer's f32
//! values and activations stay f32, so the only difference from `Kernel::Reference` is f32
//! accumulation.
//!
//! On x86_64 with AVX-512 BW (+ VNNI), the integer kernels of `x86_i16` replace these
//! for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K and Q6_K: the activations are quantized once per
//! call to i16 with one f32 scale per 32 values (256 for the K-quants, plus for Q6_K a
//! residual plane for groups with outliers), and each block is an exact integer dot product
//! (`vpdpwssds`) scaled once per block. Their error (~1e-5 of a group's largest activation,
//! logits NMSE 1e-8–3e-6) stays far below llama.cpp's 8-bit activations (1e-3 and more); the
//! i32 overflow bounds, tiles and measurements are in `x86_i16`.
//!
//! Code paths, chosen once per process ([`limit_isa`] narrows them for tests):
//! - x86_64 with AMX-INT8 (Linux) and AVX-512 VNNI, `limit_isa(4)` and above, unless opted out
//!   ([`set_amx`], or `CHORD_AMX=0` in the environment), for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
//!   Q4_K, Q5_K, Q6_K: matmuls of at least 16 tokens (prefill) on the tile kernels of
//!   `x86_amx` (two i8 activation planes, error `max|x|/64516` per 32 or 256 values; logits
//!   NMSE 5e-9–2e-8 on the bench models), fewer tokens on their AVX-512 VNNI twins
//!   (`x86_amx_one`), which give the tiles' numbers bit for bit;
//! - x86_64 with AVX-512 BW: the i16 kernels above (VNNI where the CPU has it);
//! - x86_64 with AVX2 + FMA + F16C, `limit_isa(2)` and above: the integer kernels of
//!   `x86_i16_avx2` for Q5_0, Q8_0, Q4_K and Q6_K (the scheme above on 256-bit registers,
//!   `vpmaddwd`; activations from the portable quantizer compiled for AVX2): one token
//!   1.3–1.9× the f32 kernels' speed on one matrix (decode of SmolLM2 Q4_K_M +50% on a Zen 3),
//!   8-token tiles level with theirs or up to 15% faster, and a token in a tile gets its
//!   one-token values bit for bit;
//! - x86_64 with AVX2 + FMA + F16C: hand-written intrinsics for F32, Q4_0, Q4_1, Q5_0, Q5_1,
//!   Q8_0, Q4_K, Q6_K (`x86`) and the IQ formats and MXFP4 (`x86_iq`: `pshufb` level lookups,
//!   grid rows with XOR-ed signs); the same code is compiled a second time with AVX-512 VL for
//!   its 32 vector registers where the CPU has it; the portable kernels recompiled under
//!   `target_feature(avx2,fma,f16c)` for the other formats (F16, BF16, Q2_K, Q3_K, Q5_K);
//! - wasm32 with relaxed SIMD (`+simd128,+relaxed-simd`): the relaxed-SIMD integer kernels
//!   (`wasm_relaxed`: unsigned weight quants × two i8 activation planes,
//!   `i32x4_relaxed_dot_i8x16_i7x16_add`) for Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K, each where a
//!   timing at its first matmul finds it faster than its i16 kernel on this CPU (one token
//!   and tiles of several timed apart)
//!   ([`relaxed_dot_products`]; `limit_isa(3)` forces them); then as below;
//! - wasm32 with SIMD128 (`-C target-feature=+simd128`, the web build): the integer kernels
//!   of `wasm_i16` (the scheme above on `i32x4_dot_i16x8`, activations quantized by the
//!   portable `QAct::quantize`, bit for bit the AVX-512 one) for every quantized format: Q4_0,
//!   Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, the IQ formats and MXFP4; hand-written
//!   `core::arch::wasm32` f32 kernels for F32 and (below `limit_isa(2)`) Q4_0, Q4_1, Q5_0,
//!   Q5_1, Q8_0, Q4_K, Q6_K (`wasm`) and the IQ formats and MXFP4 (`wasm_iq`: `i8x16_swizzle`
//!   level lookups, grid rows with XOR-ed signs); the portable kernels (autovectorized for
//!   SIMD128) for the others (F16, BF16, and Q2_K, Q3_K, Q5_K below `limit_isa(2)`);
//! - everything else (wasm32 without SIMD128, other CPUs): the portable kernels (`portable`).
//!
//! Threads: chunks of rows (and attention's heads) run on a rayon pool of [`set_threads`]
//! threads, natively with the feature `threads` (a pool of our own) and on wasm32 with
//! `web-threads` (rayon's global pool on Web Workers, started from JS by wasm-bindgen-rayon's
//! `initThreadPool`). A forward pass ([`on_pool`]) leads a team over the pool whose threads
//! spin between its forks instead of sleeping; see `pool`. Otherwise, and with `threads = 1`,
//! on the calling thread.

mod pool;
mod portable;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm;
// AVX-512 intrinsics and `target_feature` names are stable since Rust 1.89 (the AVX-512 VL
// build of the f32 kernels already needed it): Cargo.toml's rust-version should say 1.89.
#[cfg(target_arch = "x86_64")]
#[clippy::msrv = "1.89"]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_amx;
#[cfg(target_arch = "x86_64")]
mod x86_amx_one;
#[cfg(target_arch = "x86_64")]
mod x86_i16;
#[cfg(target_arch = "x86_64")]
mod x86_simd128;

use crate::model::QMatrix;
use crate::quant::GgmlType;
use portable::Dec;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Computes rows `r0..r0 + out.len() / n_tok` of `W·xᵀ` into `out`, laid out (row, token).
type RowsFn = fn(w: &QMatrix, x: &[f32], n_tok: usize, r0: usize, out: &mut [f32]);

/// Computes rows `r0..r0 + out.len() / n_tok` of `W·xᵀ` into `out` (row, token), from
/// activations quantized once per call (`QAct`).
#[cfg_attr(
    not(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    )),
    allow(dead_code)
)]
type IntRowsFn = fn(w: &QMatrix, x: &QAct, n_tok: usize, r0: usize, out: &mut [f32]);

/// Activations quantized for the integer kernels: per group of `g` values (32, or 256 for the
/// K-quants) one scale `d` with `x ≈ q·d`, `|q| ≤ 32767`; per 32 values the exact sum `s`.
/// With the residual plane (Q6_K), for 256-value groups where some 32 values are much smaller
/// than the group's largest (an outlier), `r` flags the group and `q2` holds the rounding
/// residual: `x ≈ (q + q2/65534)·d`.
#[cfg_attr(
    not(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    )),
    allow(dead_code)
)]
#[derive(Default)]
pub(super) struct QAct {
    pub(super) n_tok: usize,
    pub(super) cols: usize,
    pub(super) g: usize,
    /// (n_tok, cols).
    pub(super) q: Vec<i16>,
    /// (n_tok, cols), zero outside flagged groups; empty without the residual plane.
    pub(super) q2: Vec<i16>,
    /// (n_tok, cols / g): group has a residual plane; empty without it.
    pub(super) r: Vec<bool>,
    /// (n_tok, cols / g).
    pub(super) d: Vec<f32>,
    /// (n_tok, cols / 32).
    pub(super) s: Vec<f32>,
    #[cfg_attr(not(target_feature = "relaxed-simd"), allow(dead_code))]
    /// Relaxed SIMD only (`wasm_relaxed`, where `d = max|x| / 127`): (2, n_tok, cols), the
    /// plane `round(x / d)` then the residual plane; `q` is then unused.
    pub(super) q8: Vec<i8>,
    #[cfg_attr(not(target_feature = "relaxed-simd"), allow(dead_code))]
    /// Relaxed SIMD only: (2, n_tok, cols / 16), the sums of every 16 values of each plane.
    pub(super) sum16: Vec<i16>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    /// The AMX twins only (`x86_amx_one`): (n_tok, cols / 32), the integer sums of `q`.
    pub(super) si: Vec<i32>,
}

#[cfg_attr(
    not(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    )),
    allow(dead_code)
)]
impl QAct {
    /// Zeroed buffers for `n_tok` × `cols` (reusing `self`'s allocations).
    fn reset(&mut self, n_tok: usize, cols: usize, g: usize, resid: bool) {
        fn zero<T: Copy + Default>(v: &mut Vec<T>, n: usize) {
            v.clear();
            v.resize(n, T::default());
        }
        let wide = usize::from(g > 32 && resid);
        (self.n_tok, self.cols, self.g) = (n_tok, cols, g);
        zero(&mut self.q, n_tok * cols);
        zero(&mut self.q2, wide * n_tok * cols);
        zero(&mut self.r, wide * n_tok * (cols / g));
        zero(&mut self.d, n_tok * (cols / g));
        zero(&mut self.s, n_tok * (cols / 32));
    }

    /// A 256-value group gets a residual plane (for the formats that ask for it: Q6_K) when
    /// some 32 of its values have a largest magnitude under this fraction of the group's:
    /// per-32 scales would have been 16× finer for them. Real activations have outlier
    /// channels (ratios beyond 1/256 are common); the plane costs a second dot chain for the
    /// flagged groups.
    pub(super) const RESIDUAL_BELOW: f32 = 1.0 / 16.0;

    /// Quantize `n_tok` rows of `cols` activations (`cols` a multiple of `g`, `g` a multiple
    /// of 32) in portable Rust: per `g` values `d = max|x| / 32767` and `q = round(x / d)`
    /// (`x · (32767 / max|x|)` rounded half to even, so |q| ≤ 32767); per 32 values the f32
    /// sum `s`, added as a halving tree (`x[l] + x[l + 16]`, then 16 → 8 → 4 → 2 → 1, the
    /// order of `_mm512_reduce_add_ps`); with `resid` and `g = 256`, the residual plane of
    /// [`Self::RESIDUAL_BELOW`] groups, `q2 = round((x / d − q)·65534)`. For finite inputs
    /// this is bit for bit what `x86::quantize` (AVX-512) computes, so every path's integer
    /// kernels see the same activations. The wasm32 integer kernels use it directly, and on
    /// x86_64 without AVX-512 `x86::quantize` compiles it for AVX2 (inlined there).
    #[inline(always)]
    pub(super) fn quantize(&mut self, x: &[f32], n_tok: usize, cols: usize, g: usize, resid: bool) {
        self.reset(n_tok, cols, g, resid);
        for mut p in self.parts(x, n_tok) {
            p.quantize();
        }
    }

    /// Tokens of at most `per` each, as parts to be quantized on their own (in parallel: one
    /// token's values depend on that token only). Call after `reset`.
    pub(super) fn parts<'a>(&'a mut self, x: &'a [f32], per: usize) -> Vec<QActPart<'a>> {
        let (cols, g, per) = (self.cols, self.g, per.max(1));
        let (ng, ns) = (cols / g, cols / 32);
        let mut q2 = self.q2.chunks_mut(per * cols);
        let mut r = self.r.chunks_mut(per * ng);
        (x[..x.len().min(self.n_tok * cols)].chunks(per * cols))
            .zip(self.q.chunks_mut(per * cols))
            .zip(self.d.chunks_mut(per * ng))
            .zip(self.s.chunks_mut(per * ns))
            .map(|(((x, q), d), s)| QActPart {
                cols,
                g,
                x,
                q,
                // (Empty without the residual plane: no chunks.)
                q2: q2.next().unwrap_or_default(),
                r: r.next().unwrap_or_default(),
                d,
                s,
            })
            .collect()
    }
}

/// A run of tokens of a [`QAct`]: their activations `x` and their slices of its buffers.
#[cfg_attr(
    not(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    )),
    allow(dead_code)
)]
pub(super) struct QActPart<'a> {
    /// Values per token (the AVX-512 quantizer's rows).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) cols: usize,
    pub(super) g: usize,
    pub(super) x: &'a [f32],
    pub(super) q: &'a mut [i16],
    /// Empty without the residual plane.
    pub(super) q2: &'a mut [i16],
    /// Empty without the residual plane.
    pub(super) r: &'a mut [bool],
    pub(super) d: &'a mut [f32],
    pub(super) s: &'a mut [f32],
}

#[cfg_attr(
    not(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    )),
    allow(dead_code)
)]
impl QActPart<'_> {
    /// `QAct::quantize` for these tokens, in portable Rust.
    #[inline(always)]
    pub(super) fn quantize(&mut self) {
        let g = self.g;
        let wide = !self.q2.is_empty();
        // Token by token is group by group: groups never straddle tokens (`cols` is a
        // multiple of `g`).
        for (c, sc) in self.x.chunks_exact(32).zip(self.s.iter_mut()) {
            *sc = halving_sum32(c);
        }
        for (gi, (xg, qg)) in self
            .x
            .chunks_exact(g)
            .zip(self.q.chunks_exact_mut(g))
            .enumerate()
        {
            let (mut amax, mut amin32) = (0f32, f32::INFINITY);
            for c in xg.chunks_exact(32) {
                let m = c.iter().fold(0f32, |m, v| m.max(v.abs()));
                amax = amax.max(m);
                amin32 = amin32.min(m);
            }
            self.d[gi] = amax / 32767.0;
            // A zero group stays zero; a non-finite one makes `d` non-finite (as on the
            // f32 path, the outputs then are not finite either).
            let inv = if amax > 0.0 { 32767.0 / amax } else { 0.0 };
            let flag = wide && amin32 < QAct::RESIDUAL_BELOW * amax && inv.is_finite();
            if wide {
                self.r[gi] = flag;
            }
            for (j, (&xv, qv)) in xg.iter().zip(qg.iter_mut()).enumerate() {
                let v = xv * inv;
                let r = v.round_ties_even();
                *qv = to_i16(r);
                if flag {
                    // |v − round(v)| ≤ 1/2, so the residual times 65534 fits in i16.
                    self.q2[gi * g + j] = to_i16(((v - r) * 65534.0).round_ties_even());
                }
            }
        }
    }
}

/// The sum of 32 values (`c[..32]`) as a halving tree: `c[l] + c[l + 16]`, then 16 → 8 → 4 →
/// 2 → 1 (the order of `_mm512_reduce_add_ps` over two 16-lane halves).
#[inline(always)]
fn halving_sum32(c: &[f32]) -> f32 {
    let mut v = [0f32; 32];
    v.copy_from_slice(&c[..32]);
    let mut n = 16;
    while n >= 1 {
        for l in 0..n {
            v[l] += v[l + n];
        }
        n /= 2;
    }
    v[0]
}

/// An integral f32 to i16 as `vcvtps2dq` + `vpmovsdw` do it: saturated, and NaN or beyond i32
/// (the "integer indefinite") to −32768.
#[inline(always)]
fn to_i16(v: f32) -> i16 {
    if v.abs() < 2_147_483_648.0 {
        v.clamp(-32768.0, 32767.0) as i16
    } else {
        i16::MIN
    }
}

std::thread_local! {
    /// Per-thread buffers of `matmul` (quantized activations, prefill's (row, token) output),
    /// kept between calls: fresh multi-100 KB allocations page-fault on every call.
    static BUFS: std::cell::RefCell<(Option<QAct>, Vec<f32>)> =
        const { std::cell::RefCell::new((None, Vec::new())) };
}

/// The kernel `select` found for a matrix.
enum RowKernel {
    /// f32 activations.
    F32(RowsFn),
    /// Activations quantized to i16 per this many values first.
    #[cfg_attr(
        not(any(
            target_arch = "x86_64",
            all(target_arch = "wasm32", target_feature = "simd128")
        )),
        allow(dead_code)
    )]
    I16(IntRowsFn, usize, bool),
    /// Activations quantized to two i8 planes per this many values first (relaxed SIMD).
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    I8(IntRowsFn, usize),
    /// AMX-INT8 tiles (`x86_amx`), for `MIN_TOKENS` tokens and more.
    #[cfg(target_arch = "x86_64")]
    Amx(x86_amx::Tiles),
    /// The tiles' AVX-512 VNNI twins (`x86_amx_one`), below `MIN_TOKENS` tokens: activations
    /// quantized as the tiles do, per this many values.
    #[cfg(target_arch = "x86_64")]
    AmxTwin(IntRowsFn, usize),
}

std::thread_local! {
    /// See [`limit_isa`].
    static ISA_LIMIT: std::cell::Cell<u8> = const { std::cell::Cell::new(u8::MAX) };
    /// Whether `run_rows` keeps this thread's matmuls on it (`relaxed_is_faster`'s timing:
    /// the kernels' speed, not the pool's wake-ups).
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    static ONE_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Testing aid: the widest code path `Kernel::Fast` matmuls started from the calling thread
/// may use. 0: portable kernels; 1: the f32 SIMD kernels (AVX2 on x86_64, SIMD128 on wasm32);
/// 2: the i16 integer kernels (x86_64: with AVX-512 BW, and with AVX2 those of Q2_K, Q3_K,
/// Q5_K, Q5_0, Q8_0, Q4_K, Q6_K; wasm32: SIMD128); 3 and above: also
/// AVX-512 VNNI (x86_64), the relaxed-SIMD kernels (wasm32 built with `+relaxed-simd`). Each
/// is used only where the CPU (or the build) has it. 4 and above: also AMX-INT8 (x86_64,
/// prefill of at least `x86_amx::MIN_TOKENS` tokens). Every path meets its computed accuracy
/// bound (the integer ones: the activation quantization's, see `x86_i16`, `wasm_relaxed`).
pub fn limit_isa(level: u8) {
    ISA_LIMIT.with(|l| l.set(level));
}

/// AMX setting: 0 not yet read from the environment, 1 off, 2 on.
static AMX: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Use (the default) or leave the AMX-INT8 kernels for the whole process (`CHORD_AMX=0` in the
/// environment turns them off). On x86_64 CPUs with AMX they prefill 2–2.6× faster than the
/// i16 kernels, as accurately (logits NMSE 5e-9–2e-8), and their twins for fewer than 16
/// tokens (`x86_amx_one`) give the same numbers bit for bit, so a token's matmul results do
/// not depend on how many tokens share the call (a batched step gives each sequence its solo
/// bits, as the i16 kernels' tiles do).
pub fn set_amx(on: bool) {
    AMX.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

/// Whether the AMX kernels are on (see [`set_amx`]).
#[cfg(target_arch = "x86_64")]
fn amx_on() -> bool {
    match AMX.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var_os("CHORD_AMX").is_none_or(|v| v != "0");
            set_amx(on);
            on
        }
        v => v == 2,
    }
}

/// Whether `Kernel::Fast` matmuls of `ty` with `n_tok` tokens started from the calling thread
/// run on the AMX-INT8 tiles (`x86_amx`: x86_64 CPUs with AMX, unless turned off with
/// [`set_amx`], `limit_isa(4)` and above, prefill-sized token counts).
pub fn amx_in_use(ty: GgmlType, n_tok: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    return matches!(amx_kernel(ty, n_tok), Some(RowKernel::Amx(_)));
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ty, n_tok);
        false
    }
}

/// Whether `Kernel::Fast` matmuls of `ty` with `n_tok` tokens take the AMX path from the
/// calling thread: the tiles (see [`amx_in_use`]) or, below 16 tokens, their twins.
pub fn amx_path_in_use(ty: GgmlType, n_tok: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    return amx_kernel(ty, n_tok).is_some();
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ty, n_tok);
        false
    }
}

/// The AMX tile kernel for `n_tok` tokens of `ty` from the calling thread, or its twin below
/// `MIN_TOKENS`, where the CPU (AMX and AVX-512 VNNI), the setting and [`limit_isa`] (4 and
/// above) allow it. A format takes both or neither, so every token count agrees.
#[cfg(target_arch = "x86_64")]
fn amx_kernel(ty: GgmlType, n_tok: usize) -> Option<RowKernel> {
    if ISA_LIMIT.with(|l| l.get()) < 4 || !amx_on() {
        return None;
    }
    let tiles = x86_amx::select(ty)?;
    let (twin, g) = x86_amx_one::select(ty)?;
    Some(if n_tok >= x86_amx::MIN_TOKENS {
        RowKernel::Amx(tiles)
    } else {
        RowKernel::AmxTwin(twin, g)
    })
}

/// Whether the CPU has AVX2 and FMA (detected once); the attention loop's wider path.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    ISA_LIMIT.with(|l| l.get()) >= 1 && x86::available()
}

/// Threads requested with `set_threads` (0: one per available core).
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Set how many threads `Kernel::Fast` matmuls use: `0` = one per available core (the
/// default natively; 1 on the web, where the worker sets the size of the pool it started with
/// `initThreadPool`), `1` = only the calling thread. Without a thread pool (see `pool`)
/// everything runs on the calling thread whatever is set here.
pub fn set_threads(n: usize) {
    THREADS.store(n, Ordering::Relaxed);
}

/// The number of threads `Kernel::Fast` matmuls will use.
pub fn threads() -> usize {
    if !pool::ENABLED {
        return 1;
    }
    match THREADS.load(Ordering::Relaxed) {
        0 => pool::default_threads(),
        n => n,
    }
}

/// `ys[i][t] = Wᵢ · x[t]` for matrices that read the same input (a layer's Q, K and V; its
/// gate and up projections). When all of them take the AMX tiles, or all their twins (below
/// the tiles' token count: decode, a batched step), with one activation group size, the input
/// is quantized once and all their rows go to the threads in one fork (the same numbers as one
/// call each); returns `false` (computing nothing) where that does not apply, and the caller
/// makes one call each.
pub(super) fn matmul_shared(
    ws: &[&QMatrix],
    x: &[f32],
    ys: &mut [&mut [f32]],
    n_tok: usize,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if ws.len() > 1 {
        // Each matrix's kernel, chosen once: all the tiles, or all the twins (below the tiles'
        // token count: decode, a batched step) with one group size.
        let kerns: Vec<Option<RowKernel>> = ws.iter().map(|&w| select(w, n_tok)).collect();
        let tiles: Option<Vec<_>> = ws
            .iter()
            .zip(&kerns)
            .map(|(&w, k)| match k {
                Some(RowKernel::Amx(t)) if w.data.len() >= w.rows * w.row_bytes => Some((w, *t)),
                _ => None,
            })
            .collect();
        if let Some(tiles) = tiles {
            return x86_amx::run(&tiles, x, n_tok, ys);
        }
        let g = match kerns.first() {
            Some(Some(RowKernel::AmxTwin(_, g))) => *g,
            _ => return false,
        };
        let twins: Option<Vec<_>> = ws
            .iter()
            .zip(&kerns)
            .map(|(&w, k)| match k {
                Some(RowKernel::AmxTwin(f, gw)) if *gw == g => Some((w, *f)),
                _ => None,
            })
            .collect();
        if let Some(twins) = twins {
            return x86_amx_one::run(&twins, g, x, n_tok, ys);
        }
    }
    let _ = (ws, x, ys, n_tok);
    false
}

/// `y[t] = W · x[t]`; `x`: (n_tok, cols), `y`: (n_tok, rows). Returns `false` (computing
/// nothing) when the matrix's shape does not match its type's block geometry, so the caller
/// can take the checked path that reports the error.
pub(super) fn matmul(w: &QMatrix, x: &[f32], y: &mut [f32], n_tok: usize) -> bool {
    let Some(kern) = select(w, n_tok) else {
        return false;
    };
    let (rows, cols) = (w.rows, w.cols);
    if n_tok == 0 || rows == 0 {
        return true;
    }
    if x.len() < n_tok * cols || y.len() < n_tok * rows || w.data.len() < rows * w.row_bytes {
        return false;
    }
    let x = &x[..n_tok * cols];
    #[cfg(target_arch = "x86_64")]
    if let RowKernel::Amx(tiles) = kern {
        // The tiles write (token, row) themselves.
        return x86_amx::run(&[(w, tiles)], x, n_tok, &mut [&mut y[..n_tok * rows]]);
    }
    #[cfg(target_arch = "x86_64")]
    if let (&RowKernel::AmxTwin(f, g), 2..) = (&kern, n_tok) {
        // Several tokens: each part writes (token, row) itself.
        return x86_amx_one::run(&[(w, f)], g, x, n_tok, &mut [&mut y[..n_tok * rows]]);
    }
    // (Taken out of the thread-local for the call: a nested call would find them empty.
    // Decode's few KB come fresh: prefill-sized buffers reused by decode measured slower.)
    let (mut qa, mut yt) = if n_tok > 1 {
        BUFS.with(|b| std::mem::take(&mut *b.borrow_mut()))
    } else {
        (None, Vec::new())
    };
    let mut run = |out: &mut [f32]| match kern {
        RowKernel::F32(f) => run_rows(w, n_tok, out, |r0, o| f(w, x, n_tok, r0, o)),
        #[cfg(target_arch = "x86_64")]
        // Handled above (the tiles write `y` themselves).
        RowKernel::Amx(_) => out.fill(f32::NAN),
        #[cfg(target_arch = "x86_64")]
        RowKernel::AmxTwin(f, g) => {
            let qa = qa.get_or_insert_with(QAct::default);
            if x86_amx_one::quantize(qa, x, n_tok, cols, g) {
                let qa = &*qa;
                run_rows(w, n_tok, out, |r0, o| f(w, qa, n_tok, r0, o));
            } else {
                // Unreachable: `select` hands these out only where the quantizer runs.
                out.fill(f32::NAN);
            }
        }
        RowKernel::I16(f, g, resid) => {
            let qa = qa.get_or_insert_with(QAct::default);
            // The AVX-512 quantizer where the CPU has it, the portable one (same values)
            // elsewhere.
            #[cfg(target_arch = "x86_64")]
            let fast = x86::quantize(qa, x, n_tok, cols, g, resid);
            #[cfg(not(target_arch = "x86_64"))]
            let fast = false;
            if !fast {
                qa.quantize(x, n_tok, cols, g, resid);
            }
            let qa = &*qa;
            run_rows(w, n_tok, out, |r0, o| f(w, qa, n_tok, r0, o));
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        RowKernel::I8(f, g) => {
            let qa = qa.get_or_insert_with(QAct::default);
            wasm::quantize_relaxed(qa, x, n_tok, cols, g);
            let qa = &*qa;
            run_rows(w, n_tok, out, |r0, o| f(w, qa, n_tok, r0, o));
        }
    };
    if n_tok == 1 {
        run(&mut y[..rows]);
    } else {
        // Every value is written by the kernels: kept from the last call, not zeroed again.
        if yt.len() < rows * n_tok {
            yt.resize(rows * n_tok, 0.0);
        }
        let yt_here = &mut yt[..rows * n_tok];
        run(yt_here);
        let yt_here = &*yt_here;
        // Transpose (row, token) → (token, row), each part a run of tokens (split over the
        // threads for prefill: on the calling thread alone, ~4% of a 2-thread prefill), in
        // blocks of 16 rows.
        let per = tokens_per_part(n_tok, rows);
        let mut parts: Vec<_> = y[..n_tok * rows].chunks_mut(per * rows).collect();
        for_each_part(&mut parts, |pi, yp| {
            for (rb, v) in yt_here.chunks(16 * n_tok).enumerate() {
                let nr = v.len() / n_tok;
                for (ti, yt) in yp.chunks_exact_mut(rows).enumerate() {
                    let t = pi * per + ti;
                    let yr = &mut yt[rb * 16..rb * 16 + nr];
                    for (i, y) in yr.iter_mut().enumerate() {
                        *y = v[i * n_tok + t];
                    }
                }
            }
        });
    }
    if n_tok > 1 {
        BUFS.with(|b| *b.borrow_mut() = (qa, yt));
    }
    true
}

/// Tokens per part when work on `n_tok` tokens of `width` values each (a quantization, a
/// transpose) is split by tokens over the matmul threads (`for_each_part`): two parts per
/// thread from 32k values on, else one part (a fork costs more than it saves).
fn tokens_per_part(n_tok: usize, width: usize) -> usize {
    if n_tok * width >= 1 << 15 {
        n_tok.div_ceil(2 * threads())
    } else {
        n_tok
    }
}

/// Split the rows over threads (when enabled and worth it) and run `f(r0, out_chunk)` on each
/// chunk.
fn run_rows(w: &QMatrix, n_tok: usize, out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync) {
    let n = threads();
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    let n = if ONE_THREAD.with(|o| o.get()) { 1 } else { n };
    // Below ~256k multiply-adds (~20 µs on one core) a fork/join costs more than it saves.
    if n > 1 && w.rows >= 16 && w.rows * w.cols * n_tok >= 1 << 18 {
        // A few chunks per thread for balance; a multiple of 4 rows.
        let per = w.rows.div_ceil(n * 4).next_multiple_of(4).max(4);
        if pool::for_each_mut(
            n,
            &mut out.chunks_mut(per * n_tok).collect::<Vec<_>>(),
            |i, o| f(i * per, o),
        ) {
            return;
        }
    }
    f(0, out);
}

/// Runs `f(i, part)` for every part, split over the matmul threads when there are several
/// (see `pool`), else in order on the calling thread. For work that falls into independent
/// parts of similar size, such as attention's KV heads; each part runs under the caller's
/// [`limit_isa`].
pub(crate) fn for_each_part<T: Send>(parts: &mut [T], f: impl Fn(usize, &mut T) + Sync) {
    let n = threads();
    if n > 1 && parts.len() > 1 {
        // Each part runs under the caller's `limit_isa`, as if on the calling thread.
        let limit = ISA_LIMIT.with(|l| l.get());
        let ran = pool::for_each_mut(n, parts, |i, p| under_isa_limit(limit, || f(i, p)));
        if ran {
            return;
        }
    }
    parts.iter_mut().enumerate().for_each(|(i, p)| f(i, p));
}

/// `f()` on this thread under the ISA limit `limit` (a caller's [`limit_isa`], carried to a
/// pool thread), restoring this thread's own afterwards.
fn under_isa_limit<R>(limit: u8, f: impl FnOnce() -> R) -> R {
    let before = ISA_LIMIT.with(|l| l.replace(limit));
    let r = f();
    ISA_LIMIT.with(|l| l.set(before));
    r
}

/// Runs `f` (a whole forward pass) on a thread of the matmul pool when there are several
/// threads, under the caller's [`limit_isa`], as the leader of a team (see `pool`): its
/// matmuls and attention heads fork to threads that stay awake through the pass, where a
/// caller outside the pool blocked at every fork and woke the pool from sleep at every join (a
/// few hundred per decode step). Otherwise `f` runs here.
pub(crate) fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let n = threads();
    if n <= 1 {
        return f();
    }
    let limit = ISA_LIMIT.with(|l| l.get());
    let run = move || under_isa_limit(limit, f);
    match pool::run_on(n, run) {
        Ok(r) => r,
        Err(run) => run(),
    }
}

/// The kernel for `w`'s type and `n_tok` tokens, or `None` when its shape is not whole blocks
/// of that type.
fn select(
    w: &QMatrix,
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))] n_tok: usize,
) -> Option<RowKernel> {
    use GgmlType as G;
    let (bs, ts) = w.ty.block_geometry();
    let float = matches!(w.ty, G::F32 | G::F16 | G::BF16);
    // Float rows may end in a partial 32-element group; quantized rows are whole blocks.
    if !float && (!w.cols.is_multiple_of(bs) || w.row_bytes != w.cols / bs * ts) {
        return None;
    }
    if float && w.row_bytes != w.cols * ts {
        return None;
    }
    let limit = ISA_LIMIT.with(|l| l.get());
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = amx_kernel(w.ty, n_tok) {
        return Some(k);
    }
    #[cfg(target_arch = "x86_64")]
    if limit >= 2 {
        if let Some((f, g, resid)) = x86::select_i16(w.ty, limit) {
            return Some(RowKernel::I16(f, g, resid));
        }
        // The usual Q4_K_M formats without AVX-512 BW: the AVX2 integer kernels.
        if let Some((f, g, resid)) = x86::select_i16_avx2(w.ty) {
            return Some(RowKernel::I16(f, g, resid));
        }
        // Formats without an f32 kernel of their own in `x86` (Q2_K, Q3_K, Q5_K: the generic
        // one ran a third as fast): the browser's integer kernels, compiled natively.
        if x86::available() && x86::select(w.ty).is_none() {
            if let Some((f, g, resid)) = x86_simd128::select(w.ty) {
                return Some(RowKernel::I16(f, g, resid));
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    if limit >= 1 && x86::available() {
        if let Some(f) = x86::select(w.ty) {
            return Some(RowKernel::F32(f));
        }
        return generic_avx2(w.ty).map(RowKernel::F32);
    }
    // Relaxed SIMD: where `limit_isa` asks for level 3 (tests), or by default where a timing
    // on this CPU found this format's relaxed kernel faster than its i16 one for this many
    // tokens (`relaxed_is_faster`).
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    if limit >= 3 && (limit != u8::MAX || relaxed_is_faster(w.ty, n_tok > 1)) {
        if let Some((f, g)) = wasm::select_relaxed(w.ty) {
            return Some(RowKernel::I8(f, g));
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if limit >= 2 {
        if let Some((f, g, resid)) = wasm::select_int(w.ty) {
            return Some(RowKernel::I16(f, g, resid));
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if limit >= 1 {
        if let Some(f) = wasm::select(w.ty) {
            return Some(RowKernel::F32(f));
        }
    }
    let _ = limit; // unused where no SIMD path is compiled in
    generic(w.ty).map(RowKernel::F32)
}

/// Where the relaxed-SIMD build runs its relaxed dot products by default
/// ([`relaxed_dot_products`]): the formats whose one-token matmuls (decode) and whose
/// multi-token tiles (prefill, batches) do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelaxedChoice {
    pub decode: Vec<GgmlType>,
    pub tiles: Vec<GgmlType>,
}

/// Where `Kernel::Fast` matmuls of `formats` use the relaxed-SIMD dot products by default:
/// only in a build with relaxed SIMD (`-C target-feature=+relaxed-simd`, the web's
/// pkg/relaxed/), for those of [`RELAXED_FORMATS`] and the matmul shapes (one token, or tiles
/// of several) where a timing on this CPU found them faster than the i16 kernels. This call
/// times every one not yet timed (30–150 ms each, once per module: what the first matmul
/// of each would spend); else none.
pub fn relaxed_dot_products(formats: &[GgmlType]) -> RelaxedChoice {
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    {
        let pick = |tiles: bool| {
            RELAXED_FORMATS
                .into_iter()
                .filter(|ty| formats.contains(ty) && relaxed_is_faster(*ty, tiles))
                .collect()
        };
        RelaxedChoice {
            decode: pick(false),
            tiles: pick(true),
        }
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
    {
        let _ = formats;
        RelaxedChoice::default()
    }
}

/// The formats with relaxed-SIMD kernels (`wasm_relaxed`); the other integer formats run the
/// i16 kernels in that build too.
pub const RELAXED_FORMATS: [GgmlType; 6] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
];

/// Whether the relaxed-SIMD kernel of `ty` beats its i16 kernel on this CPU, for one-token
/// matmuls or (`tiles`) for several tokens: timed once per format, shape and module, at the
/// first matmul that asks.
///
/// The relaxed dot (`i32x4_relaxed_dot_i8x16_i7x16_add`) is one instruction where the CPU has
/// a u8×i8 dot product (AVX-VNNI, Arm's SDOT) and three elsewhere (V8 on x86 without VNNI:
/// `pmaddubsw`, `pmaddwd`, `paddd`), and these kernels take two i8 planes for the i16 path's
/// accuracy; so which is faster depends on the CPU, the format and the shape (Chromium 156 on
/// an Intel Xeon with AVX-VNNI: one token, the relaxed Q4_K and Q6_K kernels 1.45–1.55×
/// faster, Q5_0's 15% slower; 64 tokens, the relaxed Q4_K 16% slower and Q6_K even). Both are
/// timed on two synthetic matrices of the format (256 × 2048 and 640 × 768, 0.3–0.4 MB
/// each), one after the other: 32 one-token products, or 4 of an 8-token tile; alternating
/// rounds (1–3 ms each: `performance.now()` may be coarsened to 0.1 ms), best of all, on the
/// calling thread alone. V8 first runs a function's
/// baseline (Liftoff) code and swaps in the optimized code once it is hot, compiled in the
/// background: here the first 5 rounds (50 ms) ran baseline code 3–8× slower, the relaxed
/// kernels more so, and a fixed 3, 10 or 30 ms of rounds chose the i16 kernels in some page
/// loads. So the rounds go on until 6 in a row bring neither best time down by a fifth (at
/// least 12 rounds, at most 0.3 s per matrix: past that the i16 kernels, the default, stay).
/// The relaxed kernel must be 1.25× faster on both matrices to be chosen: on a Zen 3 without
/// VNNI (Chromium 156, 2026-12-07) the relaxed Q6_K kernel won its 256 × 2048 timing by over
/// 10% in one page load, which then decoded pad768 on 2 threads at 20 tok/s, where a load
/// minutes later on the i16 kernels gave 28 (24 in a third: a noisy VM); with AVX-VNNI the
/// relaxed one-token kernels won by 1.45× and more, so they are still chosen there. Both stay
/// within the same error bound (tests/wasm_kernels.rs).
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
fn relaxed_is_faster(ty: GgmlType, tiles: bool) -> bool {
    use std::sync::OnceLock;
    static FASTER: [[OnceLock<bool>; 2]; RELAXED_FORMATS.len()] =
        [const { [const { OnceLock::new() }; 2] }; RELAXED_FORMATS.len()];
    let Some(i) = RELAXED_FORMATS.iter().position(|&t| t == ty) else {
        return false;
    };
    // Both shapes: a wide one and rows as short as small models' (768 columns).
    *FASTER[i][usize::from(tiles)].get_or_init(|| {
        [(256, 2048), (640, 768)]
            .iter()
            .all(|&(r, c)| relaxed_wins(ty, tiles, r, c))
    })
}

/// `relaxed_is_faster`'s timing on one synthetic `rows × cols` matrix of `ty`.
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
fn relaxed_wins(ty: GgmlType, tiles: bool, rows: usize, cols: usize) -> bool {
    let (n_tok, reps) = if tiles { (8, 4) } else { (1, 32) };
    let (bs, ts) = ty.block_geometry();
    let row_bytes = cols / bs * ts;
    // Quants from a fixed pattern; every f16 scale field 1/64 (0x2400), so no NaN or
    // subnormal slows either side.
    let mut data: Vec<u8> = (0..rows * row_bytes)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let scales: &[usize] = match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 => &[0],
        GgmlType::Q6_K => &[208],
        _ => &[0, 2],
    };
    for b in data.chunks_exact_mut(ts) {
        for &at in scales {
            b[at..at + 2].copy_from_slice(&[0x00, 0x24]);
        }
    }
    let w = QMatrix {
        name: format!("relaxed-SIMD timing ({ty:?})"),
        ty,
        rows,
        cols,
        row_bytes,
        data,
    };
    let x: Vec<f32> = (0..n_tok * cols)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
        .collect();
    let mut y = vec![0f32; n_tok * rows];
    // On this thread alone: in the threaded build a split matmul this small would time the
    // pool's fork and wake-ups (the same for both kernels) more than the kernels.
    let before = ISA_LIMIT.with(|l| l.get());
    let one_thread_before = ONE_THREAD.with(|o| o.replace(true));
    let mut time = |level: u8| {
        ISA_LIMIT.with(|l| l.set(level));
        let t0 = instant::Instant::now();
        for _ in 0..reps {
            matmul(&w, &x, &mut y, n_tok);
        }
        t0.elapsed().as_secs_f64()
    };
    // Rounds until 6 in a row bring neither minimum down by a fifth (the swap to optimized
    // code cuts a round 3–8×), at least 12, at most 0.3 s.
    let (mut relaxed, mut int) = (f64::MAX, f64::MAX);
    let (mut spent, mut rounds, mut since_drop) = (0.0, 0, 0);
    while (rounds < 12 || since_drop < 6) && spent < 0.3 {
        let (r, i) = (time(3), time(2));
        since_drop = if r < 0.8 * relaxed || i < 0.8 * int {
            0
        } else {
            since_drop + 1
        };
        (relaxed, int) = (relaxed.min(r), int.min(i));
        spent += r + i;
        rounds += 1;
    }
    ISA_LIMIT.with(|l| l.set(before));
    ONE_THREAD.with(|o| o.set(one_thread_before));
    relaxed * 1.25 < int
}

macro_rules! by_type {
    ($ty:expr, $f:ident) => {{
        use GgmlType as G;
        Some(match $ty {
            G::F32 => $f::<portable::F32> as RowsFn,
            G::F16 => $f::<portable::F16>,
            G::BF16 => $f::<portable::BF16>,
            G::Q4_0 => $f::<portable::Q4_0>,
            G::Q4_1 => $f::<portable::Q4_1>,
            G::Q5_0 => $f::<portable::Q5_0>,
            G::Q5_1 => $f::<portable::Q5_1>,
            G::Q8_0 => $f::<portable::Q8_0>,
            G::Q2_K => $f::<portable::Q2K>,
            G::Q3_K => $f::<portable::Q3K>,
            G::Q4_K => $f::<portable::Q4K>,
            G::Q5_K => $f::<portable::Q5K>,
            G::Q6_K => $f::<portable::Q6K>,
            G::IQ4_NL => $f::<portable::Iq4Nl>,
            G::IQ4_XS => $f::<portable::Iq4Xs>,
            G::IQ3_XXS => $f::<portable::Iq3Xxs>,
            G::IQ3_S => $f::<portable::Iq3S>,
            G::IQ2_XXS => $f::<portable::Iq2Xxs>,
            G::IQ2_XS => $f::<portable::Iq2Xs>,
            G::IQ2_S => $f::<portable::Iq2S>,
            G::IQ1_S => $f::<portable::Iq1S>,
            G::IQ1_M => $f::<portable::Iq1M>,
            G::MXFP4 => $f::<portable::Mxfp4>,
            _ => return None,
        })
    }};
}

fn generic(ty: GgmlType) -> Option<RowsFn> {
    by_type!(ty, rows_portable)
}

#[cfg(target_arch = "x86_64")]
fn generic_avx2(ty: GgmlType) -> Option<RowsFn> {
    use x86::portable_avx2;
    by_type!(ty, portable_avx2)
}

/// Portable kernels, without FMA (it would be a libm call on CPUs that lack it).
fn rows_portable<D: Dec>(w: &QMatrix, x: &[f32], n_tok: usize, r0: usize, out: &mut [f32]) {
    rows_impl(portable::Tiles::<D, false>::new(), w, x, n_tok, r0, out)
}

/// Dot products of rows' whole blocks with tiles of tokens.
///
/// `xp` is the tile's activations for the rows' whole blocks, packed token-interleaved by 8
/// columns: column `8c + l` of token `t` is `xp[(c·T + t)·8 + l]` (for `T = 1` simply the
/// activation row). So one block's activations for all the tile's tokens are one contiguous
/// run, read through a single pointer at constant offsets.
pub(super) trait Tiler: Copy {
    /// Weights per block.
    const BS: usize;
    /// Bytes per block.
    const TS: usize;
    /// Floats per row of the scratch `tile` decodes a block into (0: it decodes in
    /// registers).
    const SCRATCH: usize = 0;
    /// One row, one token (decode).
    fn dot(self, row: &[u8], x: &[f32]) -> f32;
    /// `R` rows × `T` tokens; each row's blocks are decoded once for the `T` tokens.
    /// `scratch` (at least `R · Self::SCRATCH` floats) is the kernel's to use.
    fn tile<const R: usize, const T: usize>(
        self,
        rows: [&[u8]; R],
        xp: &[f32],
        scratch: &mut [f32],
    ) -> [[f32; T]; R];
}

/// Tokens in the next prefill tile when `left` remain: 8, 4, 2 or 1 (the tile kernels are
/// instantiated for those widths).
pub(super) fn token_tile(left: usize) -> usize {
    match left {
        8.. => 8,
        4..=7 => 4,
        2..=3 => 2,
        _ => 1,
    }
}

/// Store an `R×T` tile's results at tokens `t0..` of `out`'s first `R` rows (row, token).
#[inline(always)]
pub(super) fn put<const R: usize, const T: usize>(
    out: &mut [f32],
    n_tok: usize,
    t0: usize,
    v: [[f32; T]; R],
) {
    for (r, v) in v.iter().enumerate() {
        out[r * n_tok + t0..r * n_tok + t0 + T].copy_from_slice(v);
    }
}

/// Rows `r0..` of `W·xᵀ` into `out` (row, token). Token tiles outermost, so a tile's packed
/// activations stay in L1 while the chunk's rows stream by; then pairs of rows; then blocks.
#[inline(always)]
pub(super) fn rows_impl<K: Tiler>(
    k: K,
    w: &QMatrix,
    x: &[f32],
    n_tok: usize,
    r0: usize,
    out: &mut [f32],
) {
    let cols = w.cols;
    let nb = cols / K::BS;
    let body = nb * K::BS;
    let n_rows = out.len() / n_tok;
    let blocks = |ri: usize| &w.row(r0 + ri)[..nb * K::TS];
    let mut xp = Vec::new();
    let mut scratch = Vec::new();
    let mut t0 = 0;
    while t0 < n_tok {
        let tt = token_tile(n_tok - t0);
        let xr = |t: usize| &x[(t0 + t) * cols..(t0 + t + 1) * cols];
        if tt == 1 {
            let xt = &xr(0)[..body];
            for ri in 0..n_rows {
                out[ri * n_tok + t0] = k.dot(blocks(ri), xt);
            }
        } else {
            xp.clear();
            xp.resize(body * tt, 0.0);
            for t in 0..tt {
                for (c, v) in xr(t)[..body].chunks_exact(8).enumerate() {
                    xp[(c * tt + t) * 8..(c * tt + t + 1) * 8].copy_from_slice(v);
                }
            }
            scratch.resize(2 * K::SCRATCH, 0.0);
            let sc = &mut scratch[..];
            let mut ri = 0;
            while ri < n_rows {
                let rr = if ri + 2 <= n_rows { 2 } else { 1 };
                let o = &mut out[ri * n_tok..];
                match (rr, tt) {
                    (2, 8) => put(
                        o,
                        n_tok,
                        t0,
                        k.tile::<2, 8>([blocks(ri), blocks(ri + 1)], &xp, sc),
                    ),
                    (2, 4) => put(
                        o,
                        n_tok,
                        t0,
                        k.tile::<2, 4>([blocks(ri), blocks(ri + 1)], &xp, sc),
                    ),
                    (2, _) => put(
                        o,
                        n_tok,
                        t0,
                        k.tile::<2, 2>([blocks(ri), blocks(ri + 1)], &xp, sc),
                    ),
                    (_, 8) => put(o, n_tok, t0, k.tile::<1, 8>([blocks(ri)], &xp, sc)),
                    (_, 4) => put(o, n_tok, t0, k.tile::<1, 4>([blocks(ri)], &xp, sc)),
                    _ => put(o, n_tok, t0, k.tile::<1, 2>([blocks(ri)], &xp, sc)),
                }
                ri += rr;
            }
        }
        if body < cols {
            // Float types only: each row's last partial group, dequantized exactly.
            let rest = cols - body;
            let mut buf = [0f32; 32];
            for ri in 0..n_rows {
                let row = w.row(r0 + ri);
                if crate::quant::dequantize(w.ty, &row[nb * K::TS..], &mut buf[..rest]).is_ok() {
                    for t in 0..tt {
                        let xt = &xr(t)[body..];
                        let d: f32 = buf[..rest].iter().zip(xt).map(|(a, b)| a * b).sum();
                        out[ri * n_tok + t0 + t] += d;
                    }
                }
            }
        }
        t0 += tt;
    }
}
