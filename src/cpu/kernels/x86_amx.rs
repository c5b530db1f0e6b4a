//! x86_64 AMX-INT8 tile kernels for prefill (`n_tok ≥ MIN_TOKENS`): Q4_0, Q4_1, Q5_0, Q5_1,
//! Q8_0, Q4_K, Q5_K, Q6_K. Fewer tokens take their AVX-512 VNNI twins (`x86_amx_one`), which
//! give these kernels' numbers bit for bit: the scaling below is written for both.
//!
//! The scheme follows llama.cpp's AMX kernels (ggml-org/llama.cpp,
//! `ggml/src/ggml-cpu/amx/mmq.cpp`, `tinygemm_kernel_amx`: 16×16 i32 tiles of `tdpbssd`, the
//! tile stored to a small buffer and scaled in f32 with AVX-512), written anew with three
//! differences: no repacked copy of the weights (each 16-row tile is decoded into an L1/L2
//! scratch once per call and reused by every token tile), two i8 activation planes instead of
//! one (accuracy), and the K-quants' integer sub-block scales folded into the weights (split
//! into two i8 planes) so a whole 256-value super-block accumulates in the tiles.
//!
//! Activations, once per call (`quantize_token`): per token and group of `G` values (32 for the
//! 32-weight formats, 256 for the K-quants) `q1 = round(x·127 / max|x|)` and the residual plane
//! `q2 = round((x·127 / max|x| − q1)·254)`, both in −127..=127, so `x ≈ d·(254·q1 + q2)` with
//! `d = max|x| / 32258`; error at most `max|x| / 64516` per value (the i16 path: `/ 65534`;
//! llama.cpp's one i8 plane: `/ 254`). Per 32 values the exact f32 sum (the 32-weight formats'
//! min terms) and the integer sum of `254·q1 + q2` (the K-quants'). Packed per 16-token tile in
//! `tdpbssd`'s B layout: row `k/4` holds 4 consecutive values of each of the 16 tokens (64 B).
//! Token counts that are not a multiple of 16 pad the last tile with zeros (`d = 0`).
//!
//! Weights, per 16-row tile and whole row (scratch `16·cols` or `2·16·cols` bytes):
//! - 32-weight formats: the block's integer quants (Q4_0 −8..7, Q5_0 −16..15, Q8_0 −128..127,
//!   Q4_1 0..15, Q5_1 0..31) as A tiles of 16 rows × 32 bytes; per block the f32 `d` (and `m`).
//!   Per block and 16×16 tile: `tdpbssd` with each plane (K = 32), `tilestored`, then
//!   `I = 254·C1 + C2` (exact in i32) and `acc = fma(f32(I)·d_x, d_w, acc)` (then
//!   `acc = fma(Σx, m, acc)`) in f32 (AVX-512, one zmm of 16 tokens per row);
//! - K-quants: `P = q·sc` (Q4_K 0..945, Q5_K 0..1953, Q6_K (q − 32)·sc in −4064..=4096),
//!   split as `P = 128·hi + lo` with `lo = P & 127` (0..127) and `hi = P >> 7` (−32..=32):
//!   two A planes of 16 rows × 64 bytes (K = 64). Per super-block: 4 K-chunks × 4 `tdpbssd`
//!   (hi/lo × q1/q2) into 4 i32 tiles, stored once; then `C = (hi << 7) + lo` in i32 per
//!   plane, `I = 254·C1 + C2` in i64 (up to 3.5e10) and `acc = fma(f32(I)·d_x, d, acc)`; for
//!   Q4_K / Q5_K then `acc = fma(f32(Σ_j m_j·S_j)·d_x, −dmin, acc)` with `S_j` the integer sum
//!   of sub-block `j`'s activations (so the min term, too, is the exact product with the
//!   quantized activations).
//!
//! Overflow (i32 tiles, zeroed per scaled product): 32-weight blocks: `|C| ≤ 32·128·127` =
//! 520 192. K-quants, one super-block: `|C_hi| ≤ 256·32·127` = 1 040 384, `|C_lo| ≤
//! 256·127·127` = 4 129 024, so `128·C_hi + C_lo ≤ 1.38e8 < 2^31`; `I` for 32-weight blocks
//! ≤ 255·520 192 < 1.33e8; the min sums `Σ_j m_j·S_j ≤ 8·63·32·32385 < 5.3e8`. (f32 rounds
//! values beyond 2^24 at 6e-8 relative, far below the activation error.)
//!
//! Tiles: tmm0/tmm1 weights (A), tmm2/tmm3 the two activation planes (B), tmm4..tmm7 i32
//! results (all eight in use, so no double buffering: each K-chunk's loads are issued right
//! after the last product that reads the tile they replace); the configuration is loaded
//! (`ldtilecfg`) at the start of every run on every thread, and `tilerelease` ends it. The scalar reference is `Kernel::Reference`
//! (tests/amx_kernels.rs).

use super::portable::f16_at;
use crate::model::QMatrix;
use crate::quant::{get_scale_min_k4, GgmlType};
use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// Fewest tokens for which the tile kernels run (below: their twins, `x86_amx_one`). Token
/// tiles are 16 wide; below 16 tokens the tiles' weight decoding outweighs their products
/// (one token: about 2.5× the twins' time).
pub(super) const MIN_TOKENS: usize = 16;

/// Whether the CPU has AMX-TILE + AMX-INT8 (and AVX-512 F/BW/DQ for the f32 side), and the OS
/// granted this process the tile data state. Detected (and asked for) once per process;
/// whether a matmul uses them is also up to `kernels::set_amx` (on by default).
pub(super) fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(detect)
}

fn detect() -> bool {
    if !(is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("xsave"))
    {
        return false;
    }
    // CPUID leaf 7: EDX bit 24 AMX-TILE, bit 25 AMX-INT8.
    #[allow(unused_unsafe)]
    // SAFETY: CPUID leaf 7 exists on every CPU with AVX-512.
    let edx = unsafe { __cpuid_count(7, 0) }.edx;
    if edx & (3 << 24) != 3 << 24 {
        return false;
    }
    request_permission() && {
        // XCR0 bits 17 (XTILECFG) and 18 (XTILEDATA): the OS manages the tile state.
        let (lo, _hi): (u32, u32);
        // SAFETY: XGETBV with ECX = 0 is valid where CPUID reports XSAVE (checked above).
        unsafe {
            asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") _hi, options(nomem, nostack));
        }
        lo & (3 << 17) == 3 << 17
    }
}

/// Linux: `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)` (once for the whole process).
#[cfg(target_os = "linux")]
fn request_permission() -> bool {
    const SYS_ARCH_PRCTL: usize = 158;
    const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
    const XFEATURE_XTILEDATA: usize = 18;
    let rc: isize;
    // SAFETY: a plain syscall; the kernel reads only its two integer arguments.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL as isize => rc,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    rc == 0
}

/// Elsewhere the tile state is not requested: never used.
#[cfg(not(target_os = "linux"))]
fn request_permission() -> bool {
    false
}

/// `y (row, token) = W·xᵀ` for all rows: `out` is (rows, n_tok).
pub(super) type AmxFn = fn(w: &QMatrix, x: &[f32], n_tok: usize, out: &mut [f32]);

/// The tile kernel for `ty`, where the CPU has AMX.
pub(super) fn select(ty: GgmlType) -> Option<AmxFn> {
    if !available() {
        return None;
    }
    use GgmlType as G;
    Some(match ty {
        G::Q4_0 => run::<Q4_0>,
        G::Q4_1 => run::<Q4_1>,
        G::Q5_0 => run::<Q5_0>,
        G::Q5_1 => run::<Q5_1>,
        G::Q8_0 => run::<Q8_0>,
        G::Q4_K => run::<Q4K>,
        G::Q5_K => run::<Q5K>,
        G::Q6_K => run::<Q6K>,
        _ => return None,
    })
}

/// A block format as integer weights for the tiles.
trait AmxBlock {
    /// Weights (32 or 256) and bytes per block.
    const BS: usize;
    const TS: usize;
    /// Whether the block has a min term (`m` per 32 weights).
    const MIN: bool;
    /// The block's integer weights `p` (K-quants: times their sub-block scales) and its scale
    /// `d`; with a min term, 32-weight formats `m[0] = m` (`w = d·p + m`), K-quants the integer
    /// sub-block mins `m[j] = m_j` (j < 8, exact in f32) and `m[8] = −dmin`
    /// (`w = d·p − dmin·m_j`).
    fn decode(b: &[u8], p: &mut [i16; 256], m: &mut [f32; 9]) -> f32;
}

struct Q4_0;
impl AmxBlock for Q4_0 {
    const BS: usize = 32;
    const TS: usize = 18;
    const MIN: bool = false;
    #[inline(always)]
    fn decode(b: &[u8], p: &mut [i16; 256], _: &mut [f32; 9]) -> f32 {
        for (j, &q) in b[2..18].iter().enumerate() {
            p[j] = i16::from(q & 15) - 8;
            p[j + 16] = i16::from(q >> 4) - 8;
        }
        f16_at(b, 0)
    }
}

struct Q4_1;
impl AmxBlock for Q4_1 {
    const BS: usize = 32;
    const TS: usize = 20;
    const MIN: bool = true;
    #[inline(always)]
    fn decode(b: &[u8], p: &mut [i16; 256], m: &mut [f32; 9]) -> f32 {
        for (j, &q) in b[4..20].iter().enumerate() {
            p[j] = i16::from(q & 15);
            p[j + 16] = i16::from(q >> 4);
        }
        m[0] = f16_at(b, 2);
        f16_at(b, 0)
    }
}

/// Q5_0 / Q5_1 quants (0..31) from `qh` (at `h`) and `qs` (at `h + 4`).
#[inline(always)]
fn q5(b: &[u8], h: usize, p: &mut [i16; 256], off: i16) {
    let qh = u32::from_le_bytes([b[h], b[h + 1], b[h + 2], b[h + 3]]);
    for (j, &q) in b[h + 4..h + 20].iter().enumerate() {
        p[j] = i16::from(q & 15) + (((qh >> j) & 1) << 4) as i16 - off;
        p[j + 16] = i16::from(q >> 4) + (((qh >> (j + 16)) & 1) << 4) as i16 - off;
    }
}

struct Q5_0;
impl AmxBlock for Q5_0 {
    const BS: usize = 32;
    const TS: usize = 22;
    const MIN: bool = false;
    #[inline(always)]
    fn decode(b: &[u8], p: &mut [i16; 256], _: &mut [f32; 9]) -> f32 {
        q5(b, 2, p, 16);
        f16_at(b, 0)
    }
}

struct Q5_1;
impl AmxBlock for Q5_1 {
    const BS: usize = 32;
    const TS: usize = 24;
    const MIN: bool = true;
    #[inline(always)]
    fn decode(b: &[u8], p: &mut [i16; 256], m: &mut [f32; 9]) -> f32 {
        q5(b, 4, p, 0);
        m[0] = f16_at(b, 2);
        f16_at(b, 0)
    }
}

struct Q8_0;
impl AmxBlock for Q8_0 {
    const BS: usize = 32;
    const TS: usize = 34;
    const MIN: bool = false;
    #[inline(always)]
    fn decode(b: &[u8], p: &mut [i16; 256], _: &mut [f32; 9]) -> f32 {
        for (j, &q) in b[2..34].iter().enumerate() {
            p[j] = i16::from(q as i8);
        }
        f16_at(b, 0)
    }
}

/// Q4_K / Q5_K: the 8 sub-block scales of block `b` (6-bit, `get_scale_min_k4`), their
/// integer mins into `m[..8]` and `−dmin` into `m[8]`.
#[inline(always)]
fn k4_scales_mins(b: &[u8], m: &mut [f32; 9]) -> [u8; 8] {
    m[8] = -f16_at(b, 2);
    let packed: &[u8; 12] = b[4..16].try_into().unwrap_or(&[0; 12]);
    let mut sc = [0u8; 8];
    for (j, (s, mj)) in sc.iter_mut().zip(m.iter_mut()).enumerate() {
        let (sj, mn) = get_scale_min_k4(j, packed);
        *s = sj;
        *mj = f32::from(mn);
    }
    sc
}

struct Q4K;
impl AmxBlock for Q4K {
    const BS: usize = 256;
    const TS: usize = 144;
    const MIN: bool = true;
    #[inline(always)]
    fn decode(b: &[u8], p: &mut [i16; 256], m: &mut [f32; 9]) -> f32 {
        let sc = k4_scales_mins(b, m);
        for j in 0..4 {
            let (s1, s2) = (sc[2 * j], sc[2 * j + 1]);
            for l in 0..32 {
                let q = b[16 + 32 * j + l];
                p[64 * j + l] = i16::from(q & 15) * i16::from(s1);
                p[64 * j + 32 + l] = i16::from(q >> 4) * i16::from(s2);
            }
        }
        f16_at(b, 0)
    }
}

struct Q5K;
impl AmxBlock for Q5K {
    const BS: usize = 256;
    const TS: usize = 176;
    const MIN: bool = true;
    #[inline(always)]
    fn decode(b: &[u8], p: &mut [i16; 256], m: &mut [f32; 9]) -> f32 {
        let sc = k4_scales_mins(b, m);
        for j in 0..4 {
            let (s1, s2) = (sc[2 * j], sc[2 * j + 1]);
            for l in 0..32 {
                let (q, h) = (b[48 + 32 * j + l], b[16 + l]);
                let lo = i16::from(q & 15) + i16::from((h >> (2 * j)) & 1) * 16;
                let hi = i16::from(q >> 4) + i16::from((h >> (2 * j + 1)) & 1) * 16;
                p[64 * j + l] = lo * i16::from(s1);
                p[64 * j + 32 + l] = hi * i16::from(s2);
            }
        }
        f16_at(b, 0)
    }
}

struct Q6K;
impl AmxBlock for Q6K {
    const BS: usize = 256;
    const TS: usize = 210;
    const MIN: bool = false;
    #[inline(always)]
    fn decode(b: &[u8], p: &mut [i16; 256], _: &mut [f32; 9]) -> f32 {
        for n in 0..2 {
            let (ql, qh, sc, y) = (64 * n, 128 + 32 * n, 192 + 8 * n, 128 * n);
            for l in 0..32 {
                let s = |k: usize| i16::from(b[sc + l / 16 + k] as i8);
                let (a, c, h) = (b[ql + l], b[ql + l + 32], b[qh + l]);
                let q = |v: u8, sh: u32| i16::from((v & 15) | (((h >> sh) & 3) << 4)) - 32;
                p[y + l] = q(a, 0) * s(0);
                p[y + l + 32] = q(c, 2) * s(2);
                p[y + l + 64] = q(a >> 4, 4) * s(4);
                p[y + l + 96] = q(c >> 4, 6) * s(6);
            }
        }
        f16_at(b, 208)
    }
}

/// The activations of one call, quantized and packed per 16-token tile (see the module doc).
#[derive(Default)]
struct Acts {
    /// Planes q1, q2: (tile, cols / 4, 16 tokens, 4).
    q1: Vec<i8>,
    q2: Vec<i8>,
    /// (tile, cols / G, 16 tokens).
    d: Vec<f32>,
    /// (tile, cols / 32, 16 tokens): the exact f32 sums (32-weight formats' min terms).
    s: Vec<f32>,
    /// (tile, cols / 32, 16 tokens): the integer sums of `254·q1 + q2` (K-quants' min terms).
    si: Vec<i32>,
}

std::thread_local! {
    static ACTS: std::cell::RefCell<Acts> = std::cell::RefCell::new(Acts::default());
}

/// One token's activations `xt` (cols) in two i8 planes per `g` values (see the module doc):
/// `q1`, `q2` (cols); per group the scale of the integer `254·q1 + q2` the kernels multiply
/// with, `d = max|x| / 32258` (cols / g); per 32 values the exact f32 sum `s` and the integer
/// sum `si` of `254·q1 + q2` (cols / 32). The tiles and their one-token twins (`x86_amx_one`)
/// both take their activations from here, so both multiply the same numbers.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn quantize_token(
    xt: &[f32],
    g: usize,
    q: [&mut [i8]; 2],
    d: &mut [f32],
    s: &mut [f32],
    si: &mut [i32],
) {
    let [q1, q2] = q;
    let v254 = _mm512_set1_ps(254.0);
    for (gi, xg) in xt.chunks_exact(g).enumerate() {
        let mut m = _mm512_setzero_ps();
        for c in xg.chunks_exact(16) {
            m = _mm512_max_ps(m, _mm512_abs_ps(ldf(c)));
        }
        let amax = _mm512_reduce_max_ps(m);
        if let Some(d) = d.get_mut(gi) {
            *d = amax / 127.0 / 254.0;
        }
        let inv = _mm512_set1_ps(if amax > 0.0 { 127.0 / amax } else { 0.0 });
        for (k, c) in xg.chunks_exact(16).enumerate() {
            let v = _mm512_mul_ps(ldf(c), inv);
            let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
            // |v| ≤ 127 and |(v − r)·254| ≤ 127: the saturating narrowings never clip finite
            // inputs.
            let a = _mm512_cvtps_epi32(r);
            let b = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_sub_ps(v, r), v254));
            let o = gi * g + 16 * k;
            if let (Some(p1), Some(p2)) = (q1.get_mut(o..o + 16), q2.get_mut(o..o + 16)) {
                p1.copy_from_slice(&st16(_mm512_cvtsepi32_epi8(a)));
                p2.copy_from_slice(&st16(_mm512_cvtsepi32_epi8(b)));
            }
            // 254·q1 + q2, summed per 32 values (|sum| ≤ 32·32385: exact in i32 and f32).
            let t = _mm512_reduce_add_epi32(_mm512_add_epi32(
                _mm512_mullo_epi32(a, _mm512_set1_epi32(254)),
                b,
            ));
            if let Some(si) = si.get_mut(o / 32) {
                *si = if k % 2 == 0 { t } else { *si + t };
            }
        }
    }
    for (s, c) in s.iter_mut().zip(xt.chunks_exact(32)) {
        *s = _mm512_reduce_add_ps(_mm512_add_ps(ldf(&c[..16]), ldf(&c[16..])));
    }
}

/// Quantize `x` (n_tok, cols) per `g` values into `a` (`quantize_token`, then packed per
/// 16-token tile).
#[target_feature(enable = "avx512f,avx512bw")]
fn quantize(a: &mut Acts, x: &[f32], n_tok: usize, cols: usize, g: usize) {
    let nt = n_tok.div_ceil(16);
    let (ng, ns) = (cols / g, cols / 32);
    for v in [&mut a.q1, &mut a.q2] {
        v.clear();
        v.resize(nt * 16 * cols, 0);
    }
    a.d.clear();
    a.d.resize(nt * ng * 16, 0.0);
    a.s.clear();
    a.s.resize(nt * ns * 16, 0.0);
    a.si.clear();
    a.si.resize(nt * ns * 16, 0);
    let (mut t1, mut t2) = (vec![0i8; cols], vec![0i8; cols]);
    let (mut td, mut ts, mut tsi) = (vec![0f32; ng], vec![0f32; ns], vec![0i32; ns]);
    for (t, xt) in x.chunks_exact(cols).take(n_tok).enumerate() {
        let (tile, n) = (t / 16, t % 16);
        quantize_token(xt, g, [&mut t1, &mut t2], &mut td, &mut ts, &mut tsi);
        for (gi, &d) in td.iter().enumerate() {
            a.d[(tile * ng + gi) * 16 + n] = d;
        }
        for (si, (&s, &i)) in ts.iter().zip(&tsi).enumerate() {
            a.s[(tile * ns + si) * 16 + n] = s;
            a.si[(tile * ns + si) * 16 + n] = i;
        }
        // Values 4k..4k + 4 go to B-tile row k (64 bytes: 4 per token).
        let base = tile * 16 * cols + n * 4;
        for (plane, q) in [(&mut a.q1, &t1), (&mut a.q2, &t2)] {
            for (k, c) in q.chunks_exact(4).enumerate() {
                plane[base + k * 64..base + k * 64 + 4].copy_from_slice(c);
            }
        }
    }
}

/// f32 of the exact `254·i1 + i2` per lane (i64 in between: K-quant totals reach 3.5e10).
#[target_feature(enable = "avx512f,avx512dq")]
#[inline]
fn total254(i1: __m512i, i2: __m512i) -> __m512 {
    let half = |v: __m512i, h: bool| {
        _mm512_cvtepi32_epi64(if h {
            _mm512_extracti64x4_epi64::<1>(v)
        } else {
            _mm512_castsi512_si256(v)
        })
    };
    let f = |h: bool| {
        let a = half(i1, h);
        let t = _mm512_add_epi64(
            _mm512_sub_epi64(_mm512_slli_epi64::<8>(a), _mm512_slli_epi64::<1>(a)),
            half(i2, h),
        );
        _mm512_cvtepi64_ps(t)
    };
    _mm512_insertf32x8::<1>(_mm512_castps256_ps512(f(false)), f(true))
}

/// The 16 bytes of `v`, as i8.
#[target_feature(enable = "avx512f")]
#[inline]
fn st16(v: __m128i) -> [i8; 16] {
    let mut o = [0i8; 16];
    // SAFETY: writes exactly the 16 bytes of `o`.
    unsafe { _mm_storeu_si128(o.as_mut_ptr().cast(), v) };
    o
}

/// 32 i16 of `p[..32]` narrowed to i8 (`vpmovwb`, truncating) into `o[..32]`.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn narrow32(v: __m512i, o: &mut [i8]) {
    let o: &mut [i8; 32] = (&mut o[..32]).try_into().unwrap_or_else(|_| unreachable!());
    // SAFETY: writes exactly the 32 bytes of `o`.
    unsafe { _mm256_storeu_si256(o.as_mut_ptr().cast(), _mm512_cvtepi16_epi8(v)) };
}

/// 32 i16 from `p[..32]`.
#[target_feature(enable = "avx512f")]
#[inline]
fn ld16(p: &[i16]) -> __m512i {
    let p: &[i16; 32] = p[..32].try_into().unwrap_or(&[0; 32]);
    // SAFETY: reads exactly the 32 values of `p`.
    unsafe { _mm512_loadu_si512(p.as_ptr().cast()) }
}

/// The tile configuration (palette 1): `(rows, bytes per row)` of tmm0..tmm7.
#[repr(C, align(64))]
struct TileCfg([u8; 64]);

impl TileCfg {
    fn new(shapes: [(u8, u16); 8]) -> Self {
        let mut c = [0u8; 64];
        c[0] = 1;
        for (i, (rows, colsb)) in shapes.into_iter().enumerate() {
            c[16 + 2 * i..18 + 2 * i].copy_from_slice(&colsb.to_le_bytes());
            c[48 + i] = rows;
        }
        TileCfg(c)
    }
}

/// 64-byte aligned i32 storage for the result tiles.
#[repr(C, align(64))]
struct CBuf([[i32; 256]; 4]);

/// 16 f32 from `v[..16]`.
#[target_feature(enable = "avx512f")]
#[inline]
fn ldf(v: &[f32]) -> __m512 {
    let v: &[f32; 16] = v[..16].try_into().unwrap_or(&[0.0; 16]);
    // SAFETY: reads exactly the 16 values of `v`.
    unsafe { _mm512_loadu_ps(v.as_ptr()) }
}

/// 16 i32 from `v[..16]`.
#[target_feature(enable = "avx512f")]
#[inline]
fn ldi(v: &[i32]) -> __m512i {
    let v: &[i32; 16] = v[..16].try_into().unwrap_or(&[0; 16]);
    // SAFETY: reads exactly the 16 values of `v`.
    unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
}

/// The 16 lanes of `v`.
#[target_feature(enable = "avx512f")]
#[inline]
fn stf(v: __m512) -> [f32; 16] {
    let mut o = [0f32; 16];
    // SAFETY: writes exactly the 16 values of `o`.
    unsafe { _mm512_storeu_ps(o.as_mut_ptr(), v) };
    o
}

/// Runs the tile kernel for format `B` over all rows (split over the matmul threads in
/// multiples of 16 rows).
fn run<B: AmxBlock>(w: &QMatrix, x: &[f32], n_tok: usize, out: &mut [f32]) {
    let g = B::BS;
    ACTS.with(|a| {
        let mut a = a.borrow_mut();
        // SAFETY: `select` hands this kernel out only where `available()` (AVX-512 F/BW).
        unsafe { quantize(&mut a, x, n_tok, w.cols, g) };
        let a = &*a;
        let tiles = w.rows.div_ceil(16);
        let parts = (super::threads() * 4).clamp(1, tiles);
        let per = tiles.div_ceil(parts) * 16;
        let mut chunks: Vec<&mut [f32]> = out.chunks_mut(per * n_tok).collect();
        super::for_each_part(&mut chunks, |i, o| {
            // SAFETY: as above, plus the tile state this process was granted.
            unsafe { rows::<B>(w, a, n_tok, i * per, o) }
        });
    });
}

/// Rows `r0..r0 + out.len() / n_tok` into `out` (row, token).
#[target_feature(enable = "avx512f,avx512bw,avx512dq")]
fn rows<B: AmxBlock>(w: &QMatrix, a: &Acts, n_tok: usize, r0: usize, out: &mut [f32]) {
    let wide = B::BS == 256;
    let cols = w.cols;
    let nb = cols / B::BS;
    let n_rows = out.len() / n_tok;
    let nt = n_tok.div_ceil(16);
    // Weight planes: 32-blocks (block, row, 32); K-quants (block, chunk, row, 64) ×2.
    let mut ahi = vec![0i8; 16 * cols];
    let mut alo = vec![0i8; if wide { 16 * cols } else { 0 }];
    let mut dw = vec![0f32; nb * 16];
    // Per block and row: `m` (32-weight formats) or `−dmin` (K-quants); K-quants: the
    // integer mins (block, sub-block, row).
    let mut mw = vec![0f32; if B::MIN { nb * 16 } else { 0 }];
    let mut mn = vec![0i32; if B::MIN && wide { nb * 8 * 16 } else { 0 }];
    let mut p = [0i16; 256];
    let mut m = [0f32; 9];
    let mut cb = CBuf([[0; 256]; 4]);
    let cfg = if wide {
        TileCfg::new([(16, 64); 8])
    } else {
        TileCfg::new([
            (16, 32),
            (16, 32),
            (8, 64),
            (8, 64),
            (16, 64),
            (16, 64),
            (16, 64),
            (16, 64),
        ])
    };
    // SAFETY: a valid palette-1 configuration (64 bytes, aligned).
    unsafe { asm!("ldtilecfg [{0}]", in(reg) cfg.0.as_ptr(), options(nostack)) };
    let stride64 = 64usize;
    let stride32 = 32usize;
    let lo7 = _mm512_set1_epi16(127);
    let mut rt = 0;
    while rt < n_rows {
        let nr = (n_rows - rt).min(16);
        if nr < 16 {
            ahi.fill(0);
            alo.fill(0);
            dw.fill(0.0);
            mw.fill(0.0);
            mn.fill(0);
        }
        for r in 0..nr {
            let row = w.row(r0 + rt + r);
            for (bi, blk) in row.chunks_exact(B::TS).take(nb).enumerate() {
                let d = B::decode(blk, &mut p, &mut m);
                dw[bi * 16 + r] = d;
                if B::MIN {
                    mw[bi * 16 + r] = if wide { m[8] } else { m[0] };
                    if wide {
                        for j in 0..8 {
                            mn[(bi * 8 + j) * 16 + r] = m[j] as i32;
                        }
                    }
                }
                if wide {
                    for c in 0..4 {
                        for h in 0..2 {
                            let o = ((bi * 4 + c) * 16 + r) * 64 + 32 * h;
                            let v = ld16(&p[c * 64 + 32 * h..]);
                            narrow32(_mm512_srai_epi16::<7>(v), &mut ahi[o..]);
                            narrow32(_mm512_and_si512(v, lo7), &mut alo[o..]);
                        }
                    }
                } else {
                    narrow32(ld16(&p[..]), &mut ahi[(bi * 16 + r) * 32..]);
                }
            }
        }
        for tt in 0..nt {
            let mut acc = [_mm512_setzero_ps(); 16];
            let b1 = a.q1[tt * 16 * cols..].as_ptr();
            let b2 = a.q2[tt * 16 * cols..].as_ptr();
            for bi in 0..nb {
                let c = cb.0.as_mut_ptr();
                if wide {
                    let (ah, al) = (ahi[bi * 4096..].as_ptr(), alo[bi * 4096..].as_ptr());
                    let (x1, x2) = (b1.wrapping_add(bi * 4096), b2.wrapping_add(bi * 4096));
                    // SAFETY: every tile row read lies inside `ahi`/`alo` (4 chunks of 16×64
                    // bytes per block) and the token tile's planes (cols/4 rows of 64 bytes);
                    // the stores fill `cb` (4 × 16×64 bytes).
                    unsafe {
                        asm!(
                            "tilezero tmm4",
                            "tilezero tmm5",
                            "tilezero tmm6",
                            "tilezero tmm7",
                            "tileloadd tmm0, [{ah} + {s}*1]",
                            "tileloadd tmm2, [{x1} + {s}*1]",
                            "tileloadd tmm1, [{al} + {s}*1]",
                            "tileloadd tmm3, [{x2} + {s}*1]",
                            "tdpbssd tmm4, tmm0, tmm2",
                            "tdpbssd tmm5, tmm1, tmm2",
                            "tileloadd tmm2, [{x1} + {s}*1 + 1024]",
                            "tdpbssd tmm6, tmm0, tmm3",
                            "tileloadd tmm0, [{ah} + {s}*1 + 1024]",
                            "tdpbssd tmm7, tmm1, tmm3",
                            "tileloadd tmm1, [{al} + {s}*1 + 1024]",
                            "tileloadd tmm3, [{x2} + {s}*1 + 1024]",
                            "tdpbssd tmm4, tmm0, tmm2",
                            "tdpbssd tmm5, tmm1, tmm2",
                            "tileloadd tmm2, [{x1} + {s}*1 + 2048]",
                            "tdpbssd tmm6, tmm0, tmm3",
                            "tileloadd tmm0, [{ah} + {s}*1 + 2048]",
                            "tdpbssd tmm7, tmm1, tmm3",
                            "tileloadd tmm1, [{al} + {s}*1 + 2048]",
                            "tileloadd tmm3, [{x2} + {s}*1 + 2048]",
                            "tdpbssd tmm4, tmm0, tmm2",
                            "tdpbssd tmm5, tmm1, tmm2",
                            "tileloadd tmm2, [{x1} + {s}*1 + 3072]",
                            "tdpbssd tmm6, tmm0, tmm3",
                            "tileloadd tmm0, [{ah} + {s}*1 + 3072]",
                            "tdpbssd tmm7, tmm1, tmm3",
                            "tileloadd tmm1, [{al} + {s}*1 + 3072]",
                            "tileloadd tmm3, [{x2} + {s}*1 + 3072]",
                            "tdpbssd tmm4, tmm0, tmm2",
                            "tdpbssd tmm5, tmm1, tmm2",
                            "tdpbssd tmm6, tmm0, tmm3",
                            "tdpbssd tmm7, tmm1, tmm3",
                            "tilestored [{c} + {s}*1], tmm4",
                            "tilestored [{c} + {s}*1 + 1024], tmm5",
                            "tilestored [{c} + {s}*1 + 2048], tmm6",
                            "tilestored [{c} + {s}*1 + 3072], tmm7",
                            ah = in(reg) ah,
                            al = in(reg) al,
                            x1 = in(reg) x1,
                            x2 = in(reg) x2,
                            c = in(reg) c,
                            s = in(reg) stride64,
                            options(nostack),
                        );
                    }
                    // Per row: `acc = fma(f32(254·C1 + C2)·d_x, d, acc)`, then the min
                    // term `acc = fma(f32(Σ_j m_j·Σx_j)·d_x, −dmin, acc)` (integer sums of
                    // the quantized activations): `x86_amx_one`'s steps.
                    let dx = ldf(&a.d[(tt * nb + bi) * 16..]);
                    let mut sx = [_mm512_setzero_si512(); 8];
                    if B::MIN {
                        for (j, s) in sx.iter_mut().enumerate() {
                            *s = ldi(&a.si[(tt * (cols / 32) + bi * 8 + j) * 16..]);
                        }
                    }
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let ld = |k: usize| ldi(&cb.0[k][r * 16..]);
                        let i1 = _mm512_add_epi32(_mm512_slli_epi32::<7>(ld(0)), ld(1));
                        let i2 = _mm512_add_epi32(_mm512_slli_epi32::<7>(ld(2)), ld(3));
                        let v = _mm512_mul_ps(total254(i1, i2), dx);
                        *acc = _mm512_fmadd_ps(v, _mm512_set1_ps(dw[bi * 16 + r]), *acc);
                        if B::MIN {
                            let mut im = _mm512_setzero_si512();
                            for (j, s) in sx.iter().enumerate() {
                                let mj = _mm512_set1_epi32(mn[(bi * 8 + j) * 16 + r]);
                                im = _mm512_add_epi32(im, _mm512_mullo_epi32(mj, *s));
                            }
                            let v = _mm512_mul_ps(_mm512_cvtepi32_ps(im), dx);
                            *acc = _mm512_fmadd_ps(v, _mm512_set1_ps(mw[bi * 16 + r]), *acc);
                        }
                    }
                } else {
                    let aw = ahi[bi * 512..].as_ptr();
                    let (x1, x2) = (b1.wrapping_add(bi * 512), b2.wrapping_add(bi * 512));
                    // SAFETY: the A tile is 16 rows of 32 bytes of `ahi`, the B tiles 8 rows
                    // of 64 bytes of the planes, the stores 2 × 16×64 bytes of `cb`.
                    unsafe {
                        asm!(
                            "tilezero tmm4",
                            "tilezero tmm5",
                            "tileloadd tmm0, [{aw} + {s32}*1]",
                            "tileloadd tmm2, [{x1} + {s}*1]",
                            "tdpbssd tmm4, tmm0, tmm2",
                            "tileloadd tmm3, [{x2} + {s}*1]",
                            "tdpbssd tmm5, tmm0, tmm3",
                            "tilestored [{c} + {s}*1], tmm4",
                            "tilestored [{c} + {s}*1 + 1024], tmm5",
                            aw = in(reg) aw,
                            x1 = in(reg) x1,
                            x2 = in(reg) x2,
                            c = in(reg) c,
                            s = in(reg) stride64,
                            s32 = in(reg) stride32,
                            options(nostack),
                        );
                    }
                    let dx = ldf(&a.d[(tt * nb + bi) * 16..]);
                    let sx = if B::MIN {
                        ldf(&a.s[(tt * nb + bi) * 16..])
                    } else {
                        _mm512_setzero_ps()
                    };
                    for (r, acc) in acc.iter_mut().enumerate() {
                        // 254·C1 + C2, exact (|C| ≤ 520 192: below 1.33e8), then scaled by
                        // d_x/254: the one-token kernels' steps (`x86_amx_one`).
                        let ld = |k: usize| ldi(&cb.0[k][r * 16..]);
                        let c1 = ld(0);
                        let i = _mm512_add_epi32(
                            _mm512_sub_epi32(
                                _mm512_slli_epi32::<8>(c1),
                                _mm512_slli_epi32::<1>(c1),
                            ),
                            ld(1),
                        );
                        let v = _mm512_mul_ps(_mm512_cvtepi32_ps(i), dx);
                        *acc = _mm512_fmadd_ps(v, _mm512_set1_ps(dw[bi * 16 + r]), *acc);
                        if B::MIN {
                            let mv = _mm512_set1_ps(mw[bi * 16 + r]);
                            *acc = _mm512_fmadd_ps(sx, mv, *acc);
                        }
                    }
                }
            }
            let t0 = tt * 16;
            let nv = (n_tok - t0).min(16);
            for (r, acc) in acc.iter().enumerate().take(nr) {
                let v = stf(*acc);
                let o = (rt + r) * n_tok + t0;
                out[o..o + nv].copy_from_slice(&v[..nv]);
            }
        }
        rt += 16;
    }
    // SAFETY: ends this thread's use of the tiles (the next run loads the configuration).
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}
