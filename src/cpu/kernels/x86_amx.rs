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
//! min terms) and the plane sums `Σq1`, `Σq2` as one i16 pair (the K-quants'). Packed per
//! 16-token tile in `tdpbssd`'s B layout: row `k/4` holds 4 consecutive values of each of the
//! 16 tokens (64 B), a 16×16 transpose of 4-byte words per 64 values (`transpose16`). Token
//! counts that are not a multiple of 16 pad the last tile with zeros (`d = 0`). The tiles are
//! quantized in parallel, one part each.
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
//!   Q4_K / Q5_K then `acc = fma(f32(Σ_j m_j·S_j)·d_x, −dmin, acc)` with `S_j = 254·Σq1 +
//!   Σq2` the integer sum of sub-block `j`'s activations (so the min term, too, is the exact
//!   product with the quantized activations), one `vpdpwssds` per sub-block of the words
//!   `(254·m_j, m_j)` and `(Σq1, Σq2)`. The K-quant blocks are decoded with AVX-512
//!   (`k4_quants_avx512`, `q6k_quants_avx512`, each tested against its scalar twin).
//!
//! Output: each 16 × 16 result (rows × tokens) is transposed in registers and stored straight
//! into `y` (token, row), with no buffer and no transpose pass after the call.
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

/// Whether the CPU has AMX-TILE + AMX-INT8 (and AVX-512 F/BW/DQ/VNNI for the f32 side), and the OS
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
        && is_x86_feature_detected!("avx512vnni")
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

/// The tile kernel of one format: its activation group size and its rows.
#[derive(Clone, Copy)]
pub(super) struct Tiles {
    g: usize,
    rows: RowsFn,
}

/// Rows `r0..r0 + n_rows` of every token into `out` (`rows::<B>`).
type RowsFn = unsafe fn(&QMatrix, &Acts, usize, usize, usize, &Out);

impl Tiles {
    fn of<B: AmxBlock>() -> Self {
        Tiles {
            g: B::BS,
            rows: rows::<B>,
        }
    }
}

/// The tile kernel for `ty`, where the CPU has AMX.
pub(super) fn select(ty: GgmlType) -> Option<Tiles> {
    if !available() {
        return None;
    }
    use GgmlType as G;
    Some(match ty {
        G::Q4_0 => Tiles::of::<Q4_0>(),
        G::Q4_1 => Tiles::of::<Q4_1>(),
        G::Q5_0 => Tiles::of::<Q5_0>(),
        G::Q5_1 => Tiles::of::<Q5_1>(),
        G::Q8_0 => Tiles::of::<Q8_0>(),
        G::Q4_K => Tiles::of::<Q4K>(),
        G::Q5_K => Tiles::of::<Q5K>(),
        G::Q6_K => Tiles::of::<Q6K>(),
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
        // SAFETY: `decode` runs only inside `rows`, which `select` hands out only where
        // `available()` (AVX-512 BW).
        unsafe { k4_quants_avx512(b, &sc, false, p) };
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
        // SAFETY: as for Q4K.
        unsafe { k4_quants_avx512(b, &sc, true, p) };
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
        // SAFETY: as for Q4K.
        unsafe { q6k_quants_avx512(b, p) };
        f16_at(b, 208)
    }
}

/// Q4_K (`high`: Q5_K) block `b`'s quants times their sub-block scales `sc`, `P = q·sc`
/// (64 at a time: sub-blocks 2j and 2j + 1 are the low and high nibbles of 32 bytes).
/// [`k4_quants_scalar`] is the reference (tested against it).
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn k4_quants_avx512(b: &[u8], sc: &[u8; 8], high: bool, p: &mut [i16; 256]) {
    let qs = if high { 48 } else { 16 };
    let (Some(q), Some(h)) = (b.get(qs..qs + 128), b.get(16..48)) else {
        return;
    };
    let m15 = _mm512_set1_epi16(15);
    let one = _mm512_set1_epi16(1);
    let hv = ld32u8(h);
    for j in 0..4 {
        let v = ld32u8(&q[32 * j..]);
        let (mut lo, mut hi) = (_mm512_and_si512(v, m15), _mm512_srli_epi16::<4>(v));
        if high {
            // Q5_K: bit 2j (2j + 1) of each `qh` byte is the fifth bit of the low (high)
            // nibble.
            let bit = |k: i16| {
                let b = _mm512_and_si512(_mm512_srlv_epi16(hv, _mm512_set1_epi16(k)), one);
                _mm512_slli_epi16::<4>(b)
            };
            lo = _mm512_add_epi16(lo, bit(2 * j as i16));
            hi = _mm512_add_epi16(hi, bit(2 * j as i16 + 1));
        }
        let s = |k: usize| _mm512_set1_epi16(i16::from(sc[k]));
        st16i(_mm512_mullo_epi16(lo, s(2 * j)), &mut p[64 * j..]);
        st16i(_mm512_mullo_epi16(hi, s(2 * j + 1)), &mut p[64 * j + 32..]);
    }
}

/// Q6_K block `b`'s `P = (q − 32)·sc` (32 at a time: 2 halves of 128, each 4 rows of 32 with
/// two scales of 16). [`q6k_quants_scalar`] is the reference (tested against it).
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn q6k_quants_avx512(b: &[u8], p: &mut [i16; 256]) {
    if b.len() < 210 {
        return;
    }
    let (m15, m3, c32) = (
        _mm512_set1_epi16(15),
        _mm512_set1_epi16(3),
        _mm512_set1_epi16(32),
    );
    for n in 0..2 {
        let (ql, qh, sc, y) = (64 * n, 128 + 32 * n, 192 + 8 * n, 128 * n);
        let (a, c, h) = (ld32u8(&b[ql..]), ld32u8(&b[ql + 32..]), ld32u8(&b[qh..]));
        // Lanes 0..16 take scale k, 16..32 scale k + 1.
        let s = |k: usize| {
            let (s0, s1) = (i16::from(b[sc + k] as i8), i16::from(b[sc + k + 1] as i8));
            _mm512_mask_blend_epi16(0xFFFF_0000, _mm512_set1_epi16(s0), _mm512_set1_epi16(s1))
        };
        let q = |low4: __m512i, h2: __m512i| {
            let v = _mm512_or_si512(low4, _mm512_slli_epi16::<4>(_mm512_and_si512(h2, m3)));
            _mm512_sub_epi16(v, c32)
        };
        let rows = [
            q(_mm512_and_si512(a, m15), h),
            q(_mm512_and_si512(c, m15), _mm512_srli_epi16::<2>(h)),
            q(_mm512_srli_epi16::<4>(a), _mm512_srli_epi16::<4>(h)),
            q(_mm512_srli_epi16::<4>(c), _mm512_srli_epi16::<6>(h)),
        ];
        for (k, v) in rows.into_iter().enumerate() {
            st16i(_mm512_mullo_epi16(v, s(2 * k)), &mut p[y + 32 * k..]);
        }
    }
}

/// 32 bytes of `v`, zero-extended to i16 lanes.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn ld32u8(v: &[u8]) -> __m512i {
    let v: &[u8; 32] = v[..32].try_into().unwrap_or(&[0; 32]);
    // SAFETY: reads exactly the 32 bytes of `v`.
    _mm512_cvtepu8_epi16(unsafe { _mm256_loadu_si256(v.as_ptr().cast()) })
}

/// 32 i16 lanes into `o[..32]`.
#[target_feature(enable = "avx512f")]
#[inline]
fn st16i(v: __m512i, o: &mut [i16]) {
    let o: &mut [i16; 32] = (&mut o[..32]).try_into().unwrap_or_else(|_| unreachable!());
    // SAFETY: writes exactly the 32 values of `o`.
    unsafe { _mm512_storeu_si512(o.as_mut_ptr().cast(), v) };
}

/// The scalar reference of [`k4_quants_avx512`].
#[cfg(test)]
fn k4_quants_scalar(b: &[u8], sc: &[u8; 8], high: bool, p: &mut [i16; 256]) {
    for j in 0..4 {
        let (s1, s2) = (sc[2 * j], sc[2 * j + 1]);
        for l in 0..32 {
            let (q, h) = if high {
                (b[48 + 32 * j + l], b[16 + l])
            } else {
                (b[16 + 32 * j + l], 0)
            };
            let lo = i16::from(q & 15) + i16::from((h >> (2 * j)) & 1) * 16;
            let hi = i16::from(q >> 4) + i16::from((h >> (2 * j + 1)) & 1) * 16;
            p[64 * j + l] = lo * i16::from(s1);
            p[64 * j + 32 + l] = hi * i16::from(s2);
        }
    }
}

/// The scalar reference of [`q6k_quants_avx512`].
#[cfg(test)]
fn q6k_quants_scalar(b: &[u8], p: &mut [i16; 256]) {
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
    /// (tile, cols / 32, 16 tokens): `(Σq2 << 16) | (Σq1 & 0xFFFF)` (K-quants' min terms).
    sp: Vec<i32>,
}

/// One token tile's part of [`Acts`].
struct TileActs<'a> {
    q1: &'a mut [i8],
    q2: &'a mut [i8],
    d: &'a mut [f32],
    s: &'a mut [f32],
    sp: &'a mut [i32],
}

/// One row tile's decoded weights (see `rows`).
#[derive(Default)]
struct RowTile {
    ahi: Vec<i8>,
    alo: Vec<i8>,
    dw: Vec<f32>,
    mw: Vec<f32>,
    mn: Vec<i32>,
}

std::thread_local! {
    static WEIGHTS: std::cell::Cell<RowTile> = std::cell::Cell::new(RowTile::default());
    static ACTS: std::cell::RefCell<Acts> = std::cell::RefCell::new(Acts::default());
    /// A tile's 16 tokens, quantized token by token before the packing: planes q1, q2 (16,
    /// cols) and per token `d`, `s`, `sp`.
    static TILE: std::cell::RefCell<(Vec<i8>, Vec<f32>, Vec<i32>)> =
        std::cell::RefCell::new(Default::default());
}

/// One token's activations `xt` (cols) in two i8 planes per `g` values (see the module doc):
/// `q1`, `q2` (cols); per group the scale of the integer `254·q1 + q2` the kernels multiply
/// with, `d = max|x| / 32258` (cols / g); per 32 values the exact f32 sum `s`, the integer
/// sum `si` of `254·q1 + q2` and (where `sp` is not empty) the plane sums packed as i16 pairs,
/// `sp = (Σq2 << 16) | (Σq1 & 0xFFFF)` (each |Σ| ≤ 32·127: the tiles' min terms take them with
/// `vpdpwssd`). The tiles and their one-token twins (`x86_amx_one`) both take their
/// activations from here, so both multiply the same numbers.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn quantize_token(
    xt: &[f32],
    g: usize,
    q: [&mut [i8]; 2],
    d: &mut [f32],
    s: &mut [f32],
    si: &mut [i32],
    sp: &mut [i32],
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
        for (k, c) in xg.chunks_exact(32).enumerate() {
            // Per 32 values: Σq1 + 65536·Σq2 in one lane total (|Σq1| ≤ 4064 < 2^15: the low
            // half is Σq1).
            let mut w = _mm512_setzero_si512();
            for h in 0..2 {
                let v = _mm512_mul_ps(ldf(&c[16 * h..]), inv);
                let r =
                    _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
                // |v| ≤ 127 and |(v − r)·254| ≤ 127: the saturating narrowings never clip
                // finite inputs.
                let a = _mm512_cvtps_epi32(r);
                let b = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_sub_ps(v, r), v254));
                let o = gi * g + 32 * k + 16 * h;
                if let (Some(p1), Some(p2)) = (q1.get_mut(o..o + 16), q2.get_mut(o..o + 16)) {
                    p1.copy_from_slice(&st16(_mm512_cvtsepi32_epi8(a)));
                    p2.copy_from_slice(&st16(_mm512_cvtsepi32_epi8(b)));
                }
                w = _mm512_add_epi32(w, _mm512_add_epi32(a, _mm512_slli_epi32::<16>(b)));
            }
            let packed = _mm512_reduce_add_epi32(w);
            let sa = i32::from(packed as i16);
            let sb = (packed - sa) >> 16;
            let o = (gi * g) / 32 + k;
            // 254·Σq1 + Σq2 (|sum| ≤ 32·32385: exact in i32 and f32).
            if let Some(si) = si.get_mut(o) {
                *si = 254 * sa + sb;
            }
            if let Some(sp) = sp.get_mut(o) {
                *sp = (sb << 16) | (sa & 0xFFFF);
            }
        }
    }
    for (s, c) in s.iter_mut().zip(xt.chunks_exact(32)) {
        *s = _mm512_reduce_add_ps(_mm512_add_ps(ldf(&c[..16]), ldf(&c[16..])));
    }
}

/// Quantize `x` (n_tok, cols) per `g` values into `a`: each 16-token tile (split over the
/// matmul threads) token by token (`quantize_token`), then packed into `tdpbssd`'s B layout.
fn quantize(a: &mut Acts, x: &[f32], n_tok: usize, cols: usize, g: usize) {
    let nt = n_tok.div_ceil(16);
    let (ng, ns) = (cols / g, cols / 32);
    // Every value is written below (the last tile's missing tokens as zeros).
    a.q1.resize(nt * 16 * cols, 0);
    a.q2.resize(nt * 16 * cols, 0);
    a.d.resize(nt * ng * 16, 0.0);
    a.s.resize(nt * ns * 16, 0.0);
    a.sp.resize(nt * ns * 16, 0);
    let mut parts: Vec<TileActs> =
        a.q1.chunks_mut(16 * cols)
            .zip(a.q2.chunks_mut(16 * cols))
            .zip(a.d.chunks_mut(ng * 16))
            .zip(a.s.chunks_mut(ns * 16))
            .zip(a.sp.chunks_mut(ns * 16))
            .take(nt)
            .map(|((((q1, q2), d), s), sp)| TileActs { q1, q2, d, s, sp })
            .collect();
    super::for_each_part(&mut parts, |tile, p| {
        let xs = x.get(tile * 16 * cols..).unwrap_or_default();
        let n = (n_tok - tile * 16).min(16);
        // SAFETY: `select` hands these kernels out only where `available()` (AVX-512 F/BW).
        unsafe { quantize_tile(p, xs, n, cols, g) }
    });
}

/// Tokens `x` (n ≤ 16, cols) into one tile `p` (tokens n..16 as zeros).
#[target_feature(enable = "avx512f,avx512bw")]
fn quantize_tile(p: &mut TileActs, x: &[f32], n: usize, cols: usize, g: usize) {
    let (ng, ns) = (cols / g, cols / 32);
    TILE.with(|t| {
        let (planes, fs, sp) = &mut *t.borrow_mut();
        planes.resize(2 * 16 * cols, 0);
        fs.resize(ng + ns, 0.0);
        sp.resize(ns, 0);
        let (p1, p2) = planes.split_at_mut(16 * cols);
        for tok in 0..16 {
            let (q1, q2) = (&mut p1[tok * cols..][..cols], &mut p2[tok * cols..][..cols]);
            let Some(xt) = x.get(tok * cols..(tok + 1) * cols).filter(|_| tok < n) else {
                q1.fill(0);
                q2.fill(0);
                for gi in 0..ng {
                    p.d[gi * 16 + tok] = 0.0;
                }
                for si in 0..ns {
                    p.s[si * 16 + tok] = 0.0;
                    p.sp[si * 16 + tok] = 0;
                }
                continue;
            };
            let (d, s) = fs.split_at_mut(ng);
            quantize_token(xt, g, [q1, q2], d, s, &mut [], sp);
            for (gi, &d) in d.iter().enumerate() {
                p.d[gi * 16 + tok] = d;
            }
            for (si, (&s, &w)) in s.iter().zip(sp.iter()).enumerate() {
                p.s[si * 16 + tok] = s;
                p.sp[si * 16 + tok] = w;
            }
        }
        // B-tile row k: values 4k..4k + 4 of each of the 16 tokens (64 bytes), i.e. a 16×16
        // transpose of 4-byte words per 64 values.
        for (src, dst) in [(&*p1, &mut *p.q1), (&*p2, &mut *p.q2)] {
            let words = cols / 4;
            let mut k0 = 0;
            while k0 + 16 <= words {
                let v: [__m512; 16] =
                    std::array::from_fn(|tok| ldf_bytes(&src[tok * cols + 4 * k0..][..64]));
                for (k, v) in transpose16(v).into_iter().enumerate() {
                    stf_bytes(v, &mut dst[(k0 + k) * 64..][..64]);
                }
                k0 += 16;
            }
            for k in k0..words {
                for tok in 0..16 {
                    dst[k * 64 + 4 * tok..][..4].copy_from_slice(&src[tok * cols + 4 * k..][..4]);
                }
            }
        }
    });
}

/// 64 bytes of `v` as one vector.
#[target_feature(enable = "avx512f")]
#[inline]
fn ldf_bytes(v: &[i8]) -> __m512 {
    let v: &[i8; 64] = v[..64].try_into().unwrap_or(&[0; 64]);
    // SAFETY: reads exactly the 64 bytes of `v`.
    unsafe { _mm512_loadu_ps(v.as_ptr().cast()) }
}

/// One vector into the 64 bytes of `o`.
#[target_feature(enable = "avx512f")]
#[inline]
fn stf_bytes(v: __m512, o: &mut [i8]) {
    let o: &mut [i8; 64] = (&mut o[..64]).try_into().unwrap_or_else(|_| unreachable!());
    // SAFETY: writes exactly the 64 bytes of `o`.
    unsafe { _mm512_storeu_ps(o.as_mut_ptr().cast(), v) };
}

/// 16×16 transpose of 32-bit lanes: lane `j` of `v[i]` becomes lane `i` of the result's `j`.
/// (Unpack pairs of rows, then pairs of pairs, then 128-bit lanes twice.)
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn transpose16(v: [__m512; 16]) -> [__m512; 16] {
    let t: [__m512; 16] = std::array::from_fn(|i| {
        let (a, b) = (v[i & !1], v[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    // Row 4q + c: column 4L + c of rows 4q..4q + 4, in each 128-bit lane L.
    let r: [__m512; 16] = std::array::from_fn(|i| {
        let (q, c) = (i / 4, i % 4);
        let (a, b) = (
            _mm512_castps_pd(t[4 * q + c / 2]),
            _mm512_castps_pd(t[4 * q + 2 + c / 2]),
        );
        _mm512_castpd_ps(if c % 2 == 0 {
            _mm512_unpacklo_pd(a, b)
        } else {
            _mm512_unpackhi_pd(a, b)
        })
    });
    let u: [__m512; 16] = std::array::from_fn(|i| {
        let (h, c) = (i / 8, i % 8);
        let (a, b) = (r[8 * h + c % 4], r[8 * h + 4 + c % 4]);
        if c < 4 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xdd>(a, b)
        }
    });
    std::array::from_fn(|j| {
        let (a, b) = (u[j % 8], u[8 + j % 8]);
        if j < 8 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xdd>(a, b)
        }
    })
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

/// The output `y` (n_tok, rows) of one call, shared by its threads: each part of the call
/// writes only its own rows (`run` hands out disjoint row ranges).
pub(super) struct Out {
    ptr: *mut f32,
    n_tok: usize,
    rows: usize,
}

// SAFETY: the threads of one call write disjoint rows of `y` (see `Out`), which outlives them.
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

impl Out {
    /// `y` (n_tok, rows), or `None` if it is shorter than that.
    pub(super) fn new(y: &mut [f32], n_tok: usize, rows: usize) -> Option<Out> {
        (y.len() >= n_tok * rows).then_some(Out {
            ptr: y.as_mut_ptr(),
            n_tok,
            rows,
        })
    }

    /// Rows `r0..r0 + nr` of every token, from `v` (nr, n_tok).
    pub(super) fn put_rows(&self, r0: usize, nr: usize, v: &[f32]) {
        assert!(r0 + nr <= self.rows && v.len() >= nr * self.n_tok);
        for t in 0..self.n_tok {
            for r in 0..nr {
                // SAFETY: in bounds (checked above and in `new`); no other thread writes
                // these rows (see `Out`).
                unsafe { *self.ptr.add(t * self.rows + r0 + r) = v[r * self.n_tok + t] };
            }
        }
    }

    /// Rows `r..r + nr` (`nr ≤ 16`) of token `t`: lanes `0..nr` of `v`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn store(&self, t: usize, r: usize, nr: usize, v: __m512) {
        assert!(t < self.n_tok && nr <= 16 && r + nr <= self.rows);
        let mask = (1u32 << nr).wrapping_sub(1) as u16;
        // SAFETY: in bounds (checked above; `run` built `Out` from a slice of n_tok·rows
        // values); no other thread writes these rows (see `Out`); masked-off lanes are not
        // touched.
        unsafe { _mm512_mask_storeu_ps(self.ptr.add(t * self.rows + r), mask, v) };
    }
}

/// `ys[i] = x·Wᵢᵀ` for every matrix `(Wᵢ, its tiles)` of `mats`: `x` is (n_tok, cols) and
/// each `ys[i]` (n_tok, rowsᵢ), written in place. The input is quantized once for all of them
/// (so they must share its column count and their group size: `false`, computing nothing,
/// otherwise), and all their row tiles go to the matmul threads in one fork. Each output is
/// exactly that of a call for its matrix alone.
pub(super) fn run(
    mats: &[(&QMatrix, Tiles)],
    x: &[f32],
    n_tok: usize,
    ys: &mut [&mut [f32]],
) -> bool {
    let Some(&(w0, t0)) = mats.first() else {
        return true;
    };
    if n_tok == 0 {
        return true;
    }
    let (cols, g) = (w0.cols, t0.g);
    if x.len() < n_tok * cols || mats.iter().any(|(w, t)| w.cols != cols || t.g != g) {
        return false;
    }
    let rows: Vec<usize> = mats.iter().map(|(w, _)| w.rows).collect();
    let Some(outs) = outputs(&rows, ys, n_tok) else {
        return false;
    };
    // Parts of a few row tiles each, over all the matrices: (matrix, first row, rows).
    let all_tiles: usize = mats.iter().map(|(w, _)| w.rows.div_ceil(16)).sum();
    let per = all_tiles.div_ceil((super::threads() * 8).clamp(1, all_tiles.max(1))) * 16;
    let mut parts = row_parts(&rows, per);
    ACTS.with(|a| {
        let mut a = a.borrow_mut();
        quantize(&mut a, x, n_tok, cols, g);
        let a = &*a;
        super::for_each_part(&mut parts, |_, &mut (i, r0, n_rows)| {
            let (w, t) = mats[i];
            // SAFETY: `select` hands out `Tiles` only where `available()` (AVX-512 F/BW/DQ/VNNI
            // and the tile state this process was granted); `outs[i]` is `ys[i]`, at least
            // n_tok × rows (checked above), and the parts' rows do not overlap.
            unsafe { (t.rows)(w, a, n_tok, r0, n_rows, &outs[i]) }
        });
    });
    true
}

/// Each `ys[i]` as the (n_tok, `rows[i]`) output of one call, or `None` if their counts differ
/// or one is short.
pub(super) fn outputs(rows: &[usize], ys: &mut [&mut [f32]], n_tok: usize) -> Option<Vec<Out>> {
    if rows.len() != ys.len() {
        return None;
    }
    rows.iter()
        .zip(ys.iter_mut())
        .map(|(&r, y)| Out::new(y, n_tok, r))
        .collect()
}

/// The parts of one fork over matrices of `rows[i]` rows: `(matrix, first row, rows)`, `per`
/// rows each (a matrix's last part fewer).
pub(super) fn row_parts(rows: &[usize], per: usize) -> Vec<(usize, usize, usize)> {
    let per = per.max(1);
    rows.iter()
        .enumerate()
        .flat_map(|(i, &n)| (0..n).step_by(per).map(move |r0| (i, r0, per.min(n - r0))))
        .collect()
}

/// Rows `r0..r0 + n_rows` of every token into `out`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vnni")]
fn rows<B: AmxBlock>(w: &QMatrix, a: &Acts, n_tok: usize, r0: usize, n_rows: usize, out: &Out) {
    let wide = B::BS == 256;
    let cols = w.cols;
    let nb = cols / B::BS;
    let nt = n_tok.div_ceil(16);
    // This thread's buffers, reused from call to call: each row tile overwrites them whole
    // (a partial one zeroes them first).
    let mut scratch = WEIGHTS.take();
    let RowTile {
        ahi,
        alo,
        dw,
        mw,
        mn,
    } = &mut scratch;
    // Weight planes: 32-blocks (block, row, 32); K-quants (block, chunk, row, 64) ×2.
    ahi.resize(16 * cols, 0);
    alo.resize(if wide { 16 * cols } else { 0 }, 0);
    dw.resize(nb * 16, 0.0);
    // Per block and row: `m` (32-weight formats) or `−dmin` (K-quants); K-quants: the
    // integer mins (block, sub-block, row).
    mw.resize(if B::MIN { nb * 16 } else { 0 }, 0.0);
    mn.resize(if B::MIN && wide { nb * 8 * 16 } else { 0 }, 0);
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
                        // `m_j·(254·Σq1 + Σq2)` in one `vpdpwssds` per sub-block: the
                        // words (254·m_j, m_j) against the activations' (Σq1, Σq2) (the
                        // saturating form, which LLVM keeps fused: never saturates here).
                        for j in 0..8 {
                            let mj = m[j] as i32;
                            mn[(bi * 8 + j) * 16 + r] = (mj << 16) | (254 * mj);
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
            let acc = &mut [_mm512_setzero_ps(); 16];
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
                            *s = ldi(&a.sp[(tt * (cols / 32) + bi * 8 + j) * 16..]);
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
                                im = _mm512_dpwssds_epi32(im, *s, mj);
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
            // Rows in the lanes, one vector per token.
            let t0 = tt * 16;
            let nv = (n_tok - t0).min(16);
            for (t, v) in transpose16(*acc).into_iter().enumerate().take(nv) {
                out.store(t0 + t, r0 + rt, nr, v);
            }
        }
        rt += 16;
    }
    // SAFETY: ends this thread's use of the tiles (the next run loads the configuration).
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
    WEIGHTS.set(scratch);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 33) as u8
            })
            .collect()
    }

    /// The AVX-512 block decoders give their scalar references' values.
    #[test]
    fn vector_decoders_match_scalar() {
        if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")) {
            eprintln!("!!! no AVX-512 BW here: the AMX block decoders are not tested");
            return;
        }
        for seed in 0..200 {
            let b = bytes(256, seed);
            let sc: [u8; 8] = std::array::from_fn(|j| b[240 + j] & 63);
            for high in [false, true] {
                let (mut want, mut got) = ([0i16; 256], [0i16; 256]);
                k4_quants_scalar(&b, &sc, high, &mut want);
                // SAFETY: AVX-512 F/BW checked above.
                unsafe { k4_quants_avx512(&b, &sc, high, &mut got) };
                assert_eq!(got, want, "Q{}_K, seed {seed}", if high { 5 } else { 4 });
            }
            let (mut want, mut got) = ([0i16; 256], [0i16; 256]);
            q6k_quants_scalar(&b, &mut want);
            // SAFETY: as above.
            unsafe { q6k_quants_avx512(&b, &mut got) };
            assert_eq!(got, want, "Q6_K, seed {seed}");
        }
    }

    /// `transpose16` moves lane j of vector i to lane i of vector j.
    #[test]
    fn transpose16_transposes() {
        if !is_x86_feature_detected!("avx512f") {
            eprintln!("!!! no AVX-512 here: transpose16 is not tested");
            return;
        }
        let m: [[f32; 16]; 16] =
            std::array::from_fn(|i| std::array::from_fn(|j| (i * 16 + j) as f32));
        // SAFETY: AVX-512 F checked above.
        let t = unsafe {
            let v = std::array::from_fn(|i| _mm512_loadu_ps(m[i].as_ptr()));
            transpose16(v).map(|v| {
                let mut o = [0f32; 16];
                _mm512_storeu_ps(o.as_mut_ptr(), v);
                o
            })
        };
        for i in 0..16 {
            for j in 0..16 {
                assert_eq!(t[j][i], m[i][j], "lane {j} of {i}");
            }
        }
    }
}
