//! x86_64: AVX2 + FMA (+ F16C) kernels, detected at run time.
//!
//! All of the CPU kernels' `unsafe` lives in this file (and its child `x86_iq`, the IQ formats
//! and MXFP4, under the same rules), in two places: the [`Avx2`] token's
//! one-line wrappers around `std::arch` intrinsics (sound because a token only exists once the
//! features have been detected, and every load reads a bounds-checked slice of exactly the
//! bytes it loads), and the calls into the `#[target_feature]` entry points.
//!
//! Each format's decoder turns a block into 8-lane f32 vectors holding exactly the reference
//! dequantizer's weights (see `portable`: `q·s + m` with one rounding, FMA or not): nibbles and
//! bytes are widened straight from memory with `vpmovzxbd`/`vpmovsxbd`, converted with
//! `vcvtdq2ps` and scaled with one FMA. The tile loop then FMAs each weight vector with up to 8
//! tokens' activations.

use super::portable::{self, Dec};

#[path = "x86_i16_avx2.rs"]
mod i16_avx2;
#[path = "x86_iq.rs"]
mod iq;
use super::{RowsFn, Tiler};
use crate::model::QMatrix;
use crate::quant::GgmlType;
use std::arch::x86_64::*;
use std::sync::atomic::{AtomicU8, Ordering};

/// 0: not yet detected, 1: missing features, 2: AVX2 + FMA + F16C, 3: also AVX-512 F + VL,
/// 4: also AVX-512 BW (the i16 kernels), 5: also AVX-512 VNNI.
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The detected level (see [`LEVEL`]), cached after the first call.
fn level() -> u8 {
    match LEVEL.load(Ordering::Relaxed) {
        0 => {
            let ok = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            let wide =
                ok && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl");
            let bw = wide && is_x86_feature_detected!("avx512bw");
            let vnni = bw && is_x86_feature_detected!("avx512vnni");
            let l = 1 + u8::from(ok) + u8::from(wide) + u8::from(bw) + u8::from(vnni);
            LEVEL.store(l, Ordering::Relaxed);
            l
        }
        l => l,
    }
}

/// Whether this CPU has AVX2, FMA and F16C (detected once, then cached).
pub(super) fn available() -> bool {
    token().is_some()
}

/// Proof that the CPU has AVX2, FMA and F16C: only [`token`] makes one, after detection.
#[derive(Clone, Copy)]
pub(super) struct Avx2(());

fn token() -> Option<Avx2> {
    (level() >= 2).then_some(Avx2(()))
}

/// The first levels of the transposing tree of [`Avx512::quarter_sums`]: `pair` adds within
/// 128-bit lanes (`[a0+a2, b0+b2, a1+a3, b1+b3]`), `quad` combines two pairs' results into
/// four vectors' partial sums per 128-bit lane, `conv` converts those (to f32). Gives
/// `[quad 0, .., quad 3]` (vectors `4m..4m + 4`; zero past `N`). A macro with closure-shaped
/// arguments expanded in place: a real closure would not inherit the target features.
macro_rules! quarter_tree {
    ($v:ident, $n:ident, $zero:expr, $fzero:expr,
     |$a:ident, $b:ident| $pair:expr,
     |$c:ident, $d:ident| $quad:expr,
     |$cv:ident| $conv:expr) => {{
        let z = $zero;
        macro_rules! at {
            ($i:expr) => {
                if $i < $n {
                    $v[$i % $n]
                } else {
                    z
                }
            };
        }
        macro_rules! pair {
            ($p:expr, $q:expr) => {{
                let ($a, $b) = ($p, $q);
                $pair
            }};
        }
        macro_rules! quad {
            ($m:expr) => {{
                if 4 * $m < $n {
                    let ($c, $d) = (
                        pair!(at!(4 * $m), at!(4 * $m + 1)),
                        pair!(at!(4 * $m + 2), at!(4 * $m + 3)),
                    );
                    let $cv = $quad;
                    $conv
                } else {
                    $fzero
                }
            }};
        }
        [quad!(0), quad!(1), quad!(2), quad!(3)]
    }};
}

/// The 4 quarter vectors `$q` of [`quarter_tree`] folded to one total per output (lane `n`),
/// `(L0 + L1) + (L2 + L3)` whatever `$n`, with `$fold(x, y)` giving
/// `[x.L0+x.L1, x.L2+x.L3, y.L0+y.L1, y.L2+y.L3]`.
macro_rules! fold_quarters {
    ($q:ident, $n:ident, |$x:ident, $y:ident| $fold:expr) => {{
        macro_rules! fold {
            ($a:expr, $b:expr) => {{
                let ($x, $y) = ($a, $b);
                unsafe { $fold }
            }};
        }
        if $n <= 4 {
            let u = fold!($q[0], $q[0]);
            fold!(u, u)
        } else if $n <= 8 {
            let u = fold!($q[0], $q[1]);
            fold!(u, u)
        } else {
            fold!(fold!($q[0], $q[1]), fold!($q[2], $q[3]))
        }
    }};
}

/// Proof that the CPU has AVX2, FMA, F16C and AVX-512 F, VL and BW, and with `VNNI` also
/// AVX-512 VNNI: only [`token512`] makes one, after detection.
#[derive(Clone, Copy)]
pub(super) struct Avx512<const VNNI: bool>(());

/// The AVX-512 VNNI token, where the CPU has it (the one-token kernels of `x86_amx_one`).
pub(super) fn avx512_vnni() -> Option<Avx512<true>> {
    token512::<true>()
}

fn token512<const VNNI: bool>() -> Option<Avx512<VNNI>> {
    (level() >= 4 + u8::from(VNNI)).then_some(Avx512(()))
}

/// `v` itself, hidden from the optimizer by an empty `asm!`. After a widening load LLVM moves
/// a later mask or shift of the lanes before the widening, and then widens each result from a
/// register: one per 1.25 cycles on Zen 3, where the widening load runs two per cycle (beside
/// the multiplies). Q4_K's one-token product was 1.4× slower for it.
#[inline]
#[target_feature(enable = "avx")]
fn kept(mut v: __m256i) -> __m256i {
    // SAFETY: an empty template: it only names the register, and touches no memory.
    unsafe {
        std::arch::asm!(
            "/* {0} */",
            inout(ymm_reg) v,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    v
}

/// `v` itself, its lanes unknown to LLVM (an empty `asm!`). A splat passed through it stays a
/// vector, so its product with another splat is one `vmulps` with a broadcast load rather
/// than a scalar product broadcast into a register (a shuffle) for each output: without it
/// the packed prefill tile of `x86_i16` (`tile_packed`) ran 1.05–1.15× slower (Zen 5).
#[inline]
#[target_feature(enable = "avx512f")]
fn opaque512(mut v: __m512) -> __m512 {
    // SAFETY: an empty template: it only names the register, and touches no memory.
    unsafe {
        std::arch::asm!(
            "/* {0} */",
            inout(zmm_reg) v,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    v
}

/// The vectors `v` themselves, all held in registers at one point of the program (one empty
/// `asm!` naming them all): what was computed into them must be done before, and what comes
/// after waits. The register tiles of `x86_i16_avx2` call it after each weight vector: without
/// it LLVM runs them token by token, every widened weight vector spilled to the stack and
/// reloaded for each token (two loads per multiply).
#[inline]
#[target_feature(enable = "avx")]
fn kept_all<const N: usize>(v: &mut [__m256i; N]) {
    const { assert!(matches!(N, 1 | 2 | 4 | 8), "kept_all: 1, 2, 4 or 8 vectors") };
    macro_rules! asm_kept {
        ($($i:literal)*) => {
            // SAFETY: an empty template: it only names the registers, and touches no memory.
            unsafe {
                std::arch::asm!(
                    concat!($("/* {", $i, "} */"),*),
                    $(inout(ymm_reg) v[$i],)*
                    options(pure, nomem, nostack, preserves_flags)
                )
            }
        };
    }
    match N {
        1 => asm_kept!(0),
        2 => asm_kept!(0 1),
        4 => asm_kept!(0 1 2 3),
        _ => asm_kept!(0 1 2 3 4 5 6 7),
    }
}

// SAFETY (every `unsafe` block in this impl): the intrinsics need AVX2/FMA/F16C, which an
// `Avx2` token proves; pointer loads read exactly the bytes of a slice that was bounds-checked
// just before.
#[allow(clippy::undocumented_unsafe_blocks)]
impl Avx2 {
    #[inline(always)]
    fn zero(self) -> __m256 {
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    fn splat(self, v: f32) -> __m256 {
        unsafe { _mm256_set1_ps(v) }
    }
    #[inline(always)]
    fn fmadd(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_mul_ps(a, b) }
    }
    /// i32 lanes to f32 (exact for the small integers of the formats).
    #[inline(always)]
    fn cvt(self, a: __m256i) -> __m256 {
        unsafe { _mm256_cvtepi32_ps(a) }
    }
    #[inline(always)]
    fn and(self, a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_and_si256(a, b) }
    }
    #[inline(always)]
    fn or(self, a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_or_si256(a, b) }
    }
    #[inline(always)]
    fn splat_i(self, v: i32) -> __m256i {
        unsafe { _mm256_set1_epi32(v) }
    }
    #[inline(always)]
    fn srl4(self, a: __m256i) -> __m256i {
        unsafe { _mm256_srli_epi32::<4>(a) }
    }
    #[inline(always)]
    fn srl<const N: i32>(self, a: __m256i) -> __m256i {
        unsafe { _mm256_srli_epi32::<N>(a) }
    }
    #[inline(always)]
    fn sll<const N: i32>(self, a: __m256i) -> __m256i {
        unsafe { _mm256_slli_epi32::<N>(a) }
    }
    /// 8 f32 at `x[at..at + 8]`.
    #[inline(always)]
    fn load(self, x: &[f32], at: usize) -> __m256 {
        let s = &x[at..at + 8];
        unsafe { _mm256_loadu_ps(s.as_ptr()) }
    }
    /// Store 8 f32 at `s[at..at + 8]`.
    #[inline(always)]
    fn store(self, s: &mut [f32], at: usize, v: __m256) {
        let s = &mut s[at..at + 8];
        unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) }
    }
    /// 8 little-endian f32 from the bytes `b[at..at + 32]`.
    #[inline(always)]
    fn load_f32_bytes(self, b: &[u8], at: usize) -> __m256 {
        let s = &b[at..at + 32];
        unsafe { _mm256_loadu_ps(s.as_ptr().cast()) }
    }
    /// Bytes `b[at..at + 8]` zero-extended to 8 i32 lanes (`vpmovzxbd`).
    #[inline(always)]
    fn u8x8(self, b: &[u8], at: usize) -> __m256i {
        let s = &b[at..at + 8];
        unsafe { _mm256_cvtepu8_epi32(_mm_loadl_epi64(s.as_ptr().cast())) }
    }
    /// Bytes `b[at..at + 8]` as i8, sign-extended to 8 i32 lanes (`vpmovsxbd`).
    #[inline(always)]
    fn i8x8(self, b: &[u8], at: usize) -> __m256i {
        let s = &b[at..at + 8];
        unsafe { _mm256_cvtepi8_epi32(_mm_loadl_epi64(s.as_ptr().cast())) }
    }
    #[inline(always)]
    fn load_u32x8(self, v: &[u32; 8]) -> __m256i {
        unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
    }
    /// f16 bits at `b[at..at + 2]` to f32 (F16C; exact for every non-NaN value).
    #[inline(always)]
    fn f16(self, b: &[u8], at: usize) -> f32 {
        let h = u16::from_le_bytes([b[at], b[at + 1]]);
        unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h)))) }
    }
    /// Bytes `b[at..at + 16]` zero-extended to 16 i16 lanes (`vpmovzxbw` from memory), kept
    /// widened (`kept`).
    #[inline(always)]
    fn u8x16_16(self, b: &[u8], at: usize) -> __m256i {
        let s = &b[at..at + 16];
        unsafe { kept(_mm256_cvtepu8_epi16(_mm_loadu_si128(s.as_ptr().cast()))) }
    }
    /// Bytes `b[at..at + 16]` as i8, sign-extended to 16 i16 lanes (`vpmovsxbw`).
    #[inline(always)]
    fn i8x16_16(self, b: &[u8], at: usize) -> __m256i {
        let s = &b[at..at + 16];
        unsafe { _mm256_cvtepi8_epi16(_mm_loadu_si128(s.as_ptr().cast())) }
    }
    /// The vectors `v` themselves, all held in registers at one point of the program
    /// (`kept_all`).
    #[inline(always)]
    fn kept_all<const N: usize>(self, v: &mut [__m256i; N]) {
        unsafe { kept_all(v) }
    }
    /// 16 i16 at `x[at..at + 16]`.
    #[inline(always)]
    fn load16(self, x: &[i16], at: usize) -> __m256i {
        let s = &x[at..at + 16];
        unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
    }
    /// Store 16 i16 lanes into `s`.
    #[inline(always)]
    fn store16(self, s: &mut [i16; 16], v: __m256i) {
        unsafe { _mm256_storeu_si256(s.as_mut_ptr().cast(), v) }
    }
    #[inline(always)]
    fn zero_i(self) -> __m256i {
        unsafe { _mm256_setzero_si256() }
    }
    #[inline(always)]
    fn splat16(self, v: i16) -> __m256i {
        unsafe { _mm256_set1_epi16(v) }
    }
    /// Lane `j` of 16 i16 lanes holds `1 << j` (as a bit pattern).
    #[inline(always)]
    fn lane_bits16(self) -> __m256i {
        unsafe {
            _mm256_setr_epi16(
                1,
                2,
                4,
                8,
                16,
                32,
                64,
                128,
                256,
                512,
                1024,
                2048,
                4096,
                8192,
                16384,
                i16::MIN,
            )
        }
    }
    /// `!a & b` (`vpandn`).
    #[inline(always)]
    fn andnot(self, a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_andnot_si256(a, b) }
    }
    #[inline(always)]
    fn eq16(self, a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_cmpeq_epi16(a, b) }
    }
    #[inline(always)]
    fn sub16(self, a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_sub_epi16(a, b) }
    }
    #[inline(always)]
    fn mullo16(self, a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_mullo_epi16(a, b) }
    }
    #[inline(always)]
    fn srl16<const N: i32>(self, a: __m256i) -> __m256i {
        unsafe { _mm256_srli_epi16::<N>(a) }
    }
    #[inline(always)]
    fn sll16<const N: i32>(self, a: __m256i) -> __m256i {
        unsafe { _mm256_slli_epi16::<N>(a) }
    }
    /// Pairs of i16 products summed into i32 lanes (`vpmaddwd`; exact).
    #[inline(always)]
    fn madd(self, a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_madd_epi16(a, b) }
    }
    #[inline(always)]
    fn add32(self, a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_add_epi32(a, b) }
    }
    /// Low 32 bits of the i32 lane products (`vpmulld`; exact where they fit).
    #[inline(always)]
    fn mullo32(self, a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_mullo_epi32(a, b) }
    }
    #[inline(always)]
    fn hsum(self, a: __m256) -> f32 {
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_movehdup_ps(s));
            _mm_cvtss_f32(s)
        }
    }
}

// SAFETY (every `unsafe` block in this impl): the intrinsics need AVX2/FMA/F16C and AVX-512
// F/VL/BW (and VNNI for `_mm512_dpwssd_epi32`, only reached when `VNNI`), which an `Avx512`
// token proves; every pointer load or store touches exactly the bytes of an array reference.
#[allow(clippy::undocumented_unsafe_blocks)]
impl<const VNNI: bool> Avx512<VNNI> {
    #[inline(always)]
    pub(super) fn zero(self) -> __m512 {
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    pub(super) fn splat(self, v: f32) -> __m512 {
        unsafe { _mm512_set1_ps(v) }
    }
    #[inline(always)]
    pub(super) fn fmadd(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    pub(super) fn mul(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_mul_ps(a, b) }
    }
    /// i32 lanes to f32 (exact below 2^24; above, rounded to nearest).
    #[inline(always)]
    pub(super) fn cvt(self, a: __m512i) -> __m512 {
        unsafe { _mm512_cvtepi32_ps(a) }
    }
    /// `v`, its lanes hidden from LLVM (`opaque512`).
    #[inline(always)]
    pub(super) fn opaque(self, v: __m512) -> __m512 {
        unsafe { opaque512(v) }
    }
    #[inline(always)]
    pub(super) fn hsum(self, a: __m512) -> f32 {
        unsafe { _mm512_reduce_add_ps(a) }
    }
    /// i32 lanes `a + b`.
    #[inline(always)]
    pub(super) fn add32(self, a: __m512i, b: __m512i) -> __m512i {
        unsafe { _mm512_add_epi32(a, b) }
    }
    /// `vpmaddwd`: i32 lane `k` is `a[2k]·b[2k] + a[2k+1]·b[2k+1]` (i16 lanes).
    #[inline(always)]
    pub(super) fn madd(self, a: __m512i, b: __m512i) -> __m512i {
        unsafe { _mm512_madd_epi16(a, b) }
    }
    /// `acc + madd(a, b)`: one `vpdpwssds` with VNNI. The saturating form, because LLVM
    /// splits `vpdpwssd` back into `vpmaddwd` + `vpaddd`; the callers' sums stay below 2^31,
    /// so it never saturates.
    #[inline(always)]
    pub(super) fn dp(self, acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
        if VNNI {
            unsafe { _mm512_dpwssds_epi32(acc, a, b) }
        } else {
            self.add32(acc, self.madd(a, b))
        }
    }
    #[inline(always)]
    pub(super) fn and(self, a: __m512i, b: __m512i) -> __m512i {
        unsafe { _mm512_and_si512(a, b) }
    }
    #[inline(always)]
    pub(super) fn or(self, a: __m512i, b: __m512i) -> __m512i {
        unsafe { _mm512_or_si512(a, b) }
    }
    #[inline(always)]
    pub(super) fn splat16(self, v: i16) -> __m512i {
        unsafe { _mm512_set1_epi16(v) }
    }
    #[inline(always)]
    pub(super) fn sub16(self, a: __m512i, b: __m512i) -> __m512i {
        unsafe { _mm512_sub_epi16(a, b) }
    }
    /// Low 16 bits of the i16 lane products.
    #[inline(always)]
    pub(super) fn mullo16(self, a: __m512i, b: __m512i) -> __m512i {
        unsafe { _mm512_mullo_epi16(a, b) }
    }
    #[inline(always)]
    pub(super) fn srli16<const N: u32>(self, a: __m512i) -> __m512i {
        unsafe { _mm512_srli_epi16::<N>(a) }
    }
    #[inline(always)]
    pub(super) fn slli16<const N: u32>(self, a: __m512i) -> __m512i {
        unsafe { _mm512_slli_epi16::<N>(a) }
    }
    /// Lanes 0..16 of `a`, and lanes 16..32 shifted right by 4.
    #[inline(always)]
    pub(super) fn srl_hi_half4(self, a: __m512i) -> __m512i {
        unsafe { _mm512_mask_srli_epi16::<4>(a, 0xffff_0000, a) }
    }
    /// `a - b` in the i16 lanes whose bit of `k` is set, `a` in the others.
    #[inline(always)]
    pub(super) fn mask_sub16(self, k: u32, a: __m512i, b: __m512i) -> __m512i {
        unsafe { _mm512_mask_sub_epi16(a, k, a, b) }
    }
    /// `a + b` in the i16 lanes whose bit of `k` is set, `a` in the others.
    #[inline(always)]
    pub(super) fn mask_add16(self, k: u32, a: __m512i, b: __m512i) -> __m512i {
        unsafe { _mm512_mask_add_epi16(a, k, a, b) }
    }
    /// i16 lane `i` is `a[idx[i] % 32]` (`vpermw`).
    #[inline(always)]
    pub(super) fn perm16(self, idx: __m512i, a: __m512i) -> __m512i {
        unsafe { _mm512_permutexvar_epi16(idx, a) }
    }
    /// 32 bytes zero-extended to 32 i16 lanes (`vpmovzxbw`).
    #[inline(always)]
    pub(super) fn u8x32(self, b: &[u8; 32]) -> __m512i {
        unsafe { _mm512_cvtepu8_epi16(_mm256_loadu_si256(b.as_ptr().cast())) }
    }
    /// 32 bytes as i8, sign-extended to 32 i16 lanes (`vpmovsxbw`).
    #[inline(always)]
    pub(super) fn i8x32(self, b: &[u8; 32]) -> __m512i {
        unsafe { _mm512_cvtepi8_epi16(_mm256_loadu_si256(b.as_ptr().cast())) }
    }
    /// 16 bytes zero-extended to i16 lanes 0..16, and again to lanes 16..32.
    #[inline(always)]
    pub(super) fn u8x16x2(self, b: &[u8; 16]) -> __m512i {
        unsafe {
            let v = _mm_loadu_si128(b.as_ptr().cast());
            _mm512_cvtepu8_epi16(_mm256_broadcastsi128_si256(v))
        }
    }
    /// 16 bytes as i8, sign-extended to i16 lanes 0..16 (lanes 16..32 zero).
    #[inline(always)]
    pub(super) fn i8x16(self, b: &[u8; 16]) -> __m512i {
        unsafe {
            let v = _mm_loadu_si128(b.as_ptr().cast());
            _mm512_cvtepi8_epi16(_mm256_zextsi128_si256(v))
        }
    }
    /// Hint that `b[at..]` will be read soon (no-op where `at` is out of range).
    #[inline(always)]
    pub(super) fn prefetch(self, b: &[u8], at: usize) {
        if let Some(p) = b.get(at) {
            unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(p).cast()) }
        }
    }
    /// 32 i16.
    #[inline(always)]
    pub(super) fn load16(self, x: &[i16; 32]) -> __m512i {
        unsafe { _mm512_loadu_si512(x.as_ptr().cast()) }
    }
    /// 8 bytes zero-extended to i16 lanes 0..8, zeros above.
    #[inline(always)]
    pub(super) fn u8x8_16(self, b: &[u8; 8]) -> __m512i {
        unsafe { _mm512_zextsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64(b.as_ptr().cast()))) }
    }
    /// 8 f32 in lanes 0..8, zeros above.
    #[inline(always)]
    pub(super) fn f32x8z(self, x: &[f32; 8]) -> __m512 {
        unsafe { _mm512_zextps256_ps512(_mm256_loadu_ps(x.as_ptr())) }
    }
    /// 8 bytes zero-extended and converted to f32 lanes 0..8, zeros above.
    #[inline(always)]
    pub(super) fn u8x8_f32z(self, b: &[u8; 8]) -> __m512 {
        unsafe {
            let v = _mm_loadl_epi64(b.as_ptr().cast());
            _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v))
        }
    }
    /// f16 bits at `b[at..at + 2]` to f32 (F16C; exact for every non-NaN value).
    #[inline(always)]
    pub(super) fn f16(self, b: &[u8], at: usize) -> f32 {
        let h = u16::from_le_bytes([b[at], b[at + 1]]);
        unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h)))) }
    }
    /// Up to 16 i32 vectors summed per 128-bit quarter, as f32: lane `4L + j` of the `m`-th
    /// result is the sum of `v[4m + j]`'s quarter `L` (`v[n]` for `n >= N` taken as zero).
    /// Each quarter's 4 lanes are added exactly in i32 (callers keep 4 lanes' sum below
    /// 2^31); [`Avx512::fold_quarters`] finishes the totals. 36 shuffles and adds for 16
    /// vectors, instead of a horizontal sum each.
    #[inline(always)]
    pub(super) fn quarter_sums<const N: usize>(self, v: &[__m512i; N]) -> [__m512; 4] {
        unsafe {
            quarter_tree!(
                v,
                N,
                _mm512_setzero_si512(),
                _mm512_setzero_ps(),
                |a, b| _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b)),
                |c, d| _mm512_add_epi32(_mm512_unpacklo_epi64(c, d), _mm512_unpackhi_epi64(c, d)),
                |q| _mm512_cvtepi32_ps(q)
            )
        }
    }
    /// The exact i32 totals of up to 16 i32 vectors, lane `n` for `v[n]` (callers keep every
    /// total below 2^31): [`Avx512::quarter_sums`]' tree, then the quarters, all in i32.
    #[inline(always)]
    pub(super) fn totals_i32<const N: usize>(self, v: &[__m512i; N]) -> __m512i {
        let q = unsafe {
            quarter_tree!(
                v,
                N,
                _mm512_setzero_si512(),
                _mm512_setzero_si512(),
                |a, b| _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b)),
                |c, d| _mm512_add_epi32(_mm512_unpacklo_epi64(c, d), _mm512_unpackhi_epi64(c, d)),
                |q| q
            )
        };
        fold_quarters!(q, N, |x, y| _mm512_add_epi32(
            _mm512_shuffle_i32x4::<0x88>(x, y),
            _mm512_shuffle_i32x4::<0xdd>(x, y)
        ))
    }
    /// The exact totals of 4 i32 vectors (summed in i64), as f32 (each rounded once): lane `n`
    /// for `v[n]`, lanes 4.. zero.
    #[inline(always)]
    pub(super) fn totals_i64_f32(self, v: &[__m512i; 4]) -> __m512 {
        unsafe {
            let wide = |x: __m512i| {
                _mm512_add_epi64(
                    _mm512_cvtepi32_epi64(_mm512_castsi512_si256(x)),
                    _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(x)),
                )
            };
            let s = [wide(v[0]), wide(v[1]), wide(v[2]), wide(v[3])];
            // Per quarter: [s0.2q + s0.2q+1, s1.2q + s1.2q+1] (and s2, s3).
            let pair = |a: __m512i, b: __m512i| {
                _mm512_add_epi64(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b))
            };
            let (t01, t23) = (pair(s[0], s[1]), pair(s[2], s[3]));
            // Quarters: t01.q0 + t01.q1, t01.q2 + t01.q3, t23.q0 + t23.q1, t23.q2 + t23.q3.
            let u = _mm512_add_epi64(
                _mm512_shuffle_i64x2::<0x88>(t01, t23),
                _mm512_shuffle_i64x2::<0xdd>(t01, t23),
            );
            // Quarter 0: [S0, S1]; quarter 1: [S2, S3].
            let w = _mm512_add_epi64(
                _mm512_shuffle_i64x2::<0x08>(u, u),
                _mm512_shuffle_i64x2::<0x0d>(u, u),
            );
            let f = _mm512_cvtepi64_ps(w);
            _mm512_zextps256_ps512(_mm256_blend_ps::<0x0f>(_mm256_setzero_ps(), f))
        }
    }
    /// [`Avx512::totals_i64_f32`] of 8 vectors: lane `n` for `v[n]`, lanes 8.. zero.
    #[inline(always)]
    pub(super) fn totals_i64_f32_8(self, v: &[__m512i; 8]) -> __m512 {
        let lo = self.totals_i64_f32(&[v[0], v[1], v[2], v[3]]);
        let hi = self.totals_i64_f32(&[v[4], v[5], v[6], v[7]]);
        // `hi`'s lanes 0..4 into lanes 4..8.
        unsafe {
            let idx = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 3, 2, 1, 0, 0, 0, 0, 0);
            _mm512_mask_permutexvar_ps(lo, 0x00f0, idx, hi)
        }
    }
    /// Lane `n` takes lane `n + k` of `v` (lanes past 15: zero).
    #[inline(always)]
    pub(super) fn lanes_down(self, v: __m512, k: usize) -> __m512 {
        unsafe {
            let idx = _mm512_add_epi32(
                _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                _mm512_set1_epi32(k as i32),
            );
            let keep = _mm512_cmplt_epi32_mask(idx, _mm512_set1_epi32(16));
            _mm512_maskz_permutexvar_ps(keep, idx, v)
        }
    }
    /// i32 lanes `a·b` (low 32 bits).
    #[inline(always)]
    pub(super) fn mullo32(self, a: __m512i, b: __m512i) -> __m512i {
        unsafe { _mm512_mullo_epi32(a, b) }
    }
    /// 8 i32 in lanes 0..8, zeros above.
    #[inline(always)]
    pub(super) fn i32x8z(self, x: &[i32; 8]) -> __m512i {
        unsafe { _mm512_zextsi256_si512(_mm256_loadu_si256(x.as_ptr().cast())) }
    }
    /// 8 bytes zero-extended to i32 lanes 0..8, zeros above.
    #[inline(always)]
    pub(super) fn u8x8_32(self, b: &[u8; 8]) -> __m512i {
        unsafe { _mm512_zextsi256_si512(_mm256_cvtepu8_epi32(_mm_loadl_epi64(b.as_ptr().cast()))) }
    }
    /// Bit `n` set where i16 lanes `a[n] & b[n]` are not zero (`vptestmw`).
    #[inline(always)]
    pub(super) fn test16(self, a: __m512i, b: __m512i) -> u32 {
        unsafe { _mm512_test_epi16_mask(a, b) }
    }
    /// Lane `n` (for `n < N`): the total of the 4 quarters of output `n` in `q` (as
    /// [`Avx512::quarter_sums`] lays them out), added `(L0 + L1) + (L2 + L3)` whatever `N`, so
    /// an output's total does not depend on how many share the call.
    #[inline(always)]
    pub(super) fn fold_quarters<const N: usize>(self, q: [__m512; 4]) -> __m512 {
        fold_quarters!(q, N, |x, y| _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(x, y),
            _mm512_shuffle_f32x4::<0xdd>(x, y)
        ))
    }
    /// The totals of up to 16 f32 vectors, lane `n` for `v[n]`: [`Avx512::quarter_sums`]'
    /// tree in f32 (within each quarter lanes `i` and `i + 2`, then `i` and `i + 1`), then
    /// [`Avx512::fold_quarters`].
    #[inline(always)]
    pub(super) fn totals_f32<const N: usize>(self, v: &[__m512; N]) -> __m512 {
        let q = unsafe {
            quarter_tree!(
                v,
                N,
                _mm512_setzero_ps(),
                _mm512_setzero_ps(),
                |a, b| _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b)),
                |c, d| _mm512_add_ps(
                    _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(c), _mm512_castps_pd(d))),
                    _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(c), _mm512_castps_pd(d)))
                ),
                |q| q
            )
        };
        self.fold_quarters::<N>(q)
    }
    /// `b`'s lanes where `k` has a bit, else `a`'s.
    #[inline(always)]
    pub(super) fn blend(self, k: u16, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_mask_blend_ps(k, a, b) }
    }
    /// The 16 lanes of `v`.
    #[inline(always)]
    pub(super) fn store(self, v: __m512) -> [f32; 16] {
        let mut o = [0f32; 16];
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), v) };
        o
    }
    /// Lanes 0..8 of `v` into `o`.
    #[inline(always)]
    pub(super) fn store8(self, v: __m512, o: &mut [f32; 8]) {
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), _mm512_castps512_ps256(v)) }
    }
    /// 16 f32.
    #[inline(always)]
    pub(super) fn loadf(self, x: &[f32; 16]) -> __m512 {
        unsafe { _mm512_loadu_ps(x.as_ptr()) }
    }
    #[inline(always)]
    fn max_abs(self, m: __m512, v: __m512) -> __m512 {
        unsafe { _mm512_max_ps(m, _mm512_abs_ps(v)) }
    }
    #[inline(always)]
    fn hmax(self, a: __m512) -> f32 {
        unsafe { _mm512_reduce_max_ps(a) }
    }
    #[inline(always)]
    pub(super) fn add(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_add_ps(a, b) }
    }
    /// `v` rounded to the nearest integer (ties to even).
    #[inline(always)]
    fn round(self, v: __m512) -> __m512 {
        unsafe { _mm512_roundscale_ps::<0>(v) }
    }
    #[inline(always)]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_sub_ps(a, b) }
    }
    /// Round `v` to the nearest integer (ties to even), saturate to i16 and store.
    #[inline(always)]
    fn store_i16(self, q: &mut [i16; 16], v: __m512) {
        unsafe {
            let i = _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(v));
            _mm256_storeu_si256(q.as_mut_ptr().cast(), i)
        }
    }

    /// Quantize one token's activations `x` (a multiple of `g` values, `g` a multiple of 32):
    /// per `g` values, `d = max|x| / 32767` and `q = round(x / d)` (so |q| ≤ 32767); per 32
    /// values the exact f32 sum `s`. With `q2` (for `g = 256`): where some 32 values of a group
    /// have a largest magnitude under `QAct::RESIDUAL_BELOW` of the group's, flag the group in `r`
    /// and store the residual `round((x/d − q)·65534)` in `q2`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn quantize_row(
        self,
        x: &[f32],
        g: usize,
        q: &mut [i16],
        q2: &mut [i16],
        r: &mut [bool],
        d: &mut [f32],
        s: &mut [f32],
    ) {
        let mut s = s.iter_mut();
        let mut r = r.iter_mut();
        let mut q2 = q2.chunks_exact_mut(g);
        for ((xg, qg), dg) in x.chunks_exact(g).zip(q.chunks_exact_mut(g)).zip(d) {
            let (mut amax, mut amin32) = (0f32, f32::INFINITY);
            for c in xg.chunks_exact(32) {
                let (c0, c1) = c.split_at(16);
                let m = self.max_abs(self.zero(), self.loadf(c0.try_into().unwrap_or(&[0.0; 16])));
                let m = self.hmax(self.max_abs(m, self.loadf(c1.try_into().unwrap_or(&[0.0; 16]))));
                amax = amax.max(m);
                amin32 = amin32.min(m);
            }
            *dg = amax / 32767.0;
            // A zero group stays zero; a non-finite one makes `d` non-finite (as the f32 path,
            // the outputs then are not finite either).
            let inv = if amax > 0.0 { 32767.0 / amax } else { 0.0 };
            let id = self.splat(inv);
            let q2g = q2.next();
            let resid =
                q2g.is_some() && amin32 < super::QAct::RESIDUAL_BELOW * amax && inv.is_finite();
            if let Some(f) = r.next() {
                *f = resid;
            }
            let mut q2g = q2g.filter(|_| resid).map(|v| v.chunks_exact_mut(16));
            for (xc, qc) in xg.chunks_exact(16).zip(qg.chunks_exact_mut(16)) {
                let v = self.mul(self.loadf(xc.try_into().unwrap_or(&[0.0; 16])), id);
                let qv = self.round(v);
                if let Ok(qc) = qc.try_into() {
                    self.store_i16(qc, qv);
                }
                if let Some(Ok(q2c)) = q2g.as_mut().and_then(|c| c.next()).map(|c| c.try_into()) {
                    // |v − round(v)| ≤ 1/2, so the residual times 65534 fits in i16.
                    self.store_i16(q2c, self.mul(self.sub(v, qv), self.splat(65534.0)));
                }
            }
            for xc in xg.chunks_exact(32) {
                let (x0, x1) = xc.split_at(16);
                let v0 = self.loadf(x0.try_into().unwrap_or(&[0.0; 16]));
                let v1 = self.loadf(x1.try_into().unwrap_or(&[0.0; 16]));
                if let Some(s) = s.next() {
                    *s = self.hsum(self.add(v0, v1));
                }
            }
        }
    }
}

/// Quantize `n_tok` rows of `cols` activations for the i16 kernels into `qa` (see
/// `super::QAct`; bit for bit `QAct::quantize`, the portable one, for finite inputs): with
/// AVX-512 BW hand-written, else with AVX2 the portable code compiled for AVX2 (its rounding
/// then a `vroundps`, not a call to `rintf`: 5% of a decode step's time). `false` without
/// AVX2.
pub(super) fn quantize(
    qa: &mut super::QAct,
    x: &[f32],
    n_tok: usize,
    cols: usize,
    g: usize,
    resid: bool,
) -> bool {
    let a = token512::<false>();
    if a.is_none() && token().is_none() {
        return false;
    }
    qa.reset(n_tok, cols, g, resid);
    // Prefill's tokens split over the matmul threads (each token's values are its own): the
    // quantizer on the calling thread alone kept the others waiting (~5% of a 2-thread
    // prefill).
    let per = super::tokens_per_part(n_tok, cols);
    super::for_each_part(&mut qa.parts(x, per), |_, p| match a {
        // SAFETY: the tokens prove the CPU has the features these are compiled for.
        Some(a) => unsafe { quantize_part_avx512(a, p) },
        None => unsafe { quantize_part_avx2(p) },
    });
    true
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_part_avx2(p: &mut super::QActPart) {
    p.quantize()
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw")]
fn quantize_part_avx512(a: Avx512<false>, p: &mut super::QActPart) {
    let (cols, g) = (p.cols, p.g);
    let (ng, ns) = (cols / g, cols / 32);
    for (t, xt) in p.x.chunks_exact(cols).enumerate() {
        let (q2, r) = if g > 32 && !p.q2.is_empty() {
            (
                &mut p.q2[t * cols..(t + 1) * cols],
                &mut p.r[t * ng..(t + 1) * ng],
            )
        } else {
            (&mut [][..], &mut [][..])
        };
        a.quantize_row(
            xt,
            g,
            &mut p.q[t * cols..(t + 1) * cols],
            q2,
            r,
            &mut p.d[t * ng..(t + 1) * ng],
            &mut p.s[t * ns..(t + 1) * ns],
        );
    }
}

/// The i16 kernels for `ty` at `limit` (2: AVX-512 BW, 3: also VNNI), where the CPU has them.
pub(super) fn select_i16(ty: GgmlType, limit: u8) -> Option<(super::IntRowsFn, usize, bool)> {
    use super::x86_i16 as k;
    let l = level().min(limit.saturating_add(2));
    if l < 4 {
        return None;
    }
    macro_rules! pick {
        ($b:ty) => {
            (
                if l >= 5 {
                    rows_i16::<$b, true> as super::IntRowsFn
                } else {
                    rows_i16::<$b, false>
                },
                <$b as k::IntBlock>::G,
                <$b as k::IntBlock>::RESID,
            )
        };
    }
    use GgmlType as G;
    Some(match ty {
        G::Q4_0 => pick!(k::Q4_0),
        G::Q4_1 => pick!(k::Q4_1),
        G::Q5_0 => pick!(k::Q5_0),
        G::Q5_1 => pick!(k::Q5_1),
        G::Q8_0 => pick!(k::Q8_0),
        G::Q4_K => pick!(k::Q4K),
        G::Q6_K => pick!(k::Q6K),
        _ => return None,
    })
}

fn rows_i16<B: super::x86_i16::IntBlock, const VNNI: bool>(
    w: &QMatrix,
    x: &super::QAct,
    n_tok: usize,
    r0: usize,
    out: &mut [f32],
) {
    match token512::<VNNI>() {
        // SAFETY: the token proves the CPU has the features `rows_i16_*` are compiled for.
        Some(a) if VNNI => unsafe { rows_i16_vnni::<B, VNNI>(a, w, x, n_tok, r0, out) },
        // SAFETY: as above.
        Some(a) => unsafe { rows_i16_bw::<B, VNNI>(a, w, x, n_tok, r0, out) },
        // Unreachable: `select_i16` only hands these out after detection.
        None => out.fill(f32::NAN),
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw")]
fn rows_i16_bw<B: super::x86_i16::IntBlock, const VNNI: bool>(
    a: Avx512<VNNI>,
    w: &QMatrix,
    x: &super::QAct,
    n_tok: usize,
    r0: usize,
    out: &mut [f32],
) {
    super::x86_i16::rows::<B, VNNI>(a, w, x, n_tok, r0, out)
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
fn rows_i16_vnni<B: super::x86_i16::IntBlock, const VNNI: bool>(
    a: Avx512<VNNI>,
    w: &QMatrix,
    x: &super::QAct,
    n_tok: usize,
    r0: usize,
    out: &mut [f32],
) {
    super::x86_i16::rows::<B, VNNI>(a, w, x, n_tok, r0, out)
}

/// The AVX2 integer kernels (`i16_avx2`) of `ty`, where the CPU has AVX2: the rows function, the
/// activation group size, and no residual plane.
pub(super) fn select_i16_avx2(ty: GgmlType) -> Option<(super::IntRowsFn, usize, bool)> {
    use i16_avx2 as k;
    token()?;
    fn pick<B: k::DotBlock>() -> (super::IntRowsFn, usize, bool) {
        (rows_int::<B>, B::G, false)
    }
    use GgmlType as G;
    Some(match ty {
        G::Q5_0 => pick::<k::Q5_0>(),
        G::Q8_0 => pick::<k::Q8_0>(),
        G::Q4_K => pick::<k::Q4K>(),
        G::Q6_K => pick::<k::Q6K>(),
        _ => return None,
    })
}

fn rows_int<B: i16_avx2::DotBlock>(
    w: &QMatrix,
    x: &super::QAct,
    n_tok: usize,
    r0: usize,
    out: &mut [f32],
) {
    match token() {
        // SAFETY: the token proves the CPU has the features `rows_int_avx2` is compiled for.
        Some(a) => unsafe { rows_int_avx2::<B>(a, w, x, n_tok, r0, out) },
        // Unreachable: `select_i16_avx2` only hands these out after detection.
        None => out.fill(f32::NAN),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn rows_int_avx2<B: i16_avx2::DotBlock>(
    a: Avx2,
    w: &QMatrix,
    x: &super::QAct,
    n_tok: usize,
    r0: usize,
    out: &mut [f32],
) {
    i16_avx2::rows::<B>(a, w, x, n_tok, r0, out)
}

/// A block format decoded to f32 weight vectors.
trait Blk {
    /// Weights per block (a multiple of 32).
    const BS: usize;
    /// Bytes per block.
    const TS: usize;
    /// The same format's portable decoder.
    type P: Dec;
    /// Call `f(k, w)` for every `k` in `0..BS / 8` (in any order) with weights `8k..8k + 8` of
    /// block `b` (`TS` bytes), exactly as the reference dequantizer computes them.
    fn block(a: Avx2, b: &[u8], f: impl FnMut(usize, __m256));
}

/// Lane `j` of entry `byte` is 16 when bit `j` of `byte` is set: the Q5 fifth bits, in place.
#[repr(align(32))]
struct HighBits([[u32; 8]; 256]);
static Q5_HIGH: HighBits = HighBits({
    let mut t = [[0u32; 8]; 256];
    let mut i = 0;
    while i < 256 {
        let mut j = 0;
        while j < 8 {
            t[i][j] = ((i as u32 >> j) & 1) << 4;
            j += 1;
        }
        i += 1;
    }
    t
});

impl Avx2 {
    #[inline(always)]
    fn q5_high(self, byte: u32) -> __m256i {
        self.load_u32x8(&Q5_HIGH.0[(byte & 0xff) as usize])
    }
}

struct Q4_0;
impl Blk for Q4_0 {
    const BS: usize = 32;
    const TS: usize = 18;
    type P = portable::Q4_0;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let d = a.f16(b, 0);
        let (dv, off) = (a.splat(d), a.splat(-8.0 * d));
        let m15 = a.splat_i(15);
        for i in 0..2 {
            let v = a.u8x8(b, 2 + 8 * i);
            f(i, a.fmadd(a.cvt(a.and(v, m15)), dv, off));
            f(2 + i, a.fmadd(a.cvt(a.srl4(v)), dv, off));
        }
    }
}

struct Q4_1;
impl Blk for Q4_1 {
    const BS: usize = 32;
    const TS: usize = 20;
    type P = portable::Q4_1;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let (dv, mv) = (a.splat(a.f16(b, 0)), a.splat(a.f16(b, 2)));
        let m15 = a.splat_i(15);
        for i in 0..2 {
            let v = a.u8x8(b, 4 + 8 * i);
            f(i, a.fmadd(a.cvt(a.and(v, m15)), dv, mv));
            f(2 + i, a.fmadd(a.cvt(a.srl4(v)), dv, mv));
        }
    }
}

struct Q5_0;
impl Blk for Q5_0 {
    const BS: usize = 32;
    const TS: usize = 22;
    type P = portable::Q5_0;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let d = a.f16(b, 0);
        let (dv, off) = (a.splat(d), a.splat(-16.0 * d));
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let m15 = a.splat_i(15);
        for i in 0..2 {
            let v = a.u8x8(b, 6 + 8 * i);
            let lo = a.or(a.and(v, m15), a.q5_high(qh >> (8 * i)));
            let hi = a.or(a.srl4(v), a.q5_high(qh >> (16 + 8 * i)));
            f(i, a.fmadd(a.cvt(lo), dv, off));
            f(2 + i, a.fmadd(a.cvt(hi), dv, off));
        }
    }
}

struct Q5_1;
impl Blk for Q5_1 {
    const BS: usize = 32;
    const TS: usize = 24;
    type P = portable::Q5_1;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let (dv, mv) = (a.splat(a.f16(b, 0)), a.splat(a.f16(b, 2)));
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let m15 = a.splat_i(15);
        for i in 0..2 {
            let v = a.u8x8(b, 8 + 8 * i);
            let lo = a.or(a.and(v, m15), a.q5_high(qh >> (8 * i)));
            let hi = a.or(a.srl4(v), a.q5_high(qh >> (16 + 8 * i)));
            f(i, a.fmadd(a.cvt(lo), dv, mv));
            f(2 + i, a.fmadd(a.cvt(hi), dv, mv));
        }
    }
}

struct Q8_0;
impl Blk for Q8_0 {
    const BS: usize = 32;
    const TS: usize = 34;
    type P = portable::Q8_0;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let dv = a.splat(a.f16(b, 0));
        for k in 0..4 {
            f(k, a.mul(a.cvt(a.i8x8(b, 2 + 8 * k)), dv));
        }
    }
}

struct Q4K;
impl Blk for Q4K {
    const BS: usize = 256;
    const TS: usize = 144;
    type P = portable::Q4K;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let (d, dmin) = (a.f16(b, 0), a.f16(b, 2));
        // The 8 six-bit scales and mins (as `get_scale_min_k4`, all at once): after this,
        // bytes 0..8 of `u` are the scales and bytes 8..16 the mins.
        let word = |i: usize| u32::from_le_bytes([b[4 + i], b[5 + i], b[6 + i], b[7 + i]]);
        let (u0, u1, u2) = (word(0), word(4), word(8));
        let (k1, k2, k3) = (0x3f3f_3f3f, 0x0f0f_0f0f, 0x0303_0303);
        let u: [u32; 4] = [
            u0 & k1,
            (u2 & k2) | (((u0 >> 6) & k3) << 4),
            u1 & k1,
            ((u2 >> 4) & k2) | (((u1 >> 6) & k3) << 4),
        ];
        let mut ub = [0u8; 16];
        for (o, w) in ub.chunks_exact_mut(4).zip(u) {
            o.copy_from_slice(&w.to_le_bytes());
        }
        // d·sc and −dmin·m, each product exact.
        let mut dl = [0f32; 8];
        let mut ml = [0f32; 8];
        a.store(&mut dl, 0, a.mul(a.cvt(a.u8x8(&ub, 0)), a.splat(d)));
        a.store(&mut ml, 0, a.mul(a.cvt(a.u8x8(&ub, 8)), a.splat(-dmin)));
        let m15 = a.splat_i(15);
        for c in 0..4 {
            // Sub-blocks 2c (low nibbles of bytes 32c..32c+32) and 2c+1 (high nibbles).
            let (d0, o0) = (a.splat(dl[2 * c]), a.splat(ml[2 * c]));
            let (d1, o1) = (a.splat(dl[2 * c + 1]), a.splat(ml[2 * c + 1]));
            for i in 0..4 {
                let v = a.u8x8(b, 16 + 32 * c + 8 * i);
                f(8 * c + i, a.fmadd(a.cvt(a.and(v, m15)), d0, o0));
                f(8 * c + 4 + i, a.fmadd(a.cvt(a.srl4(v)), d1, o1));
            }
        }
    }
}

struct Q6K;
impl Blk for Q6K {
    const BS: usize = 256;
    const TS: usize = 210;
    type P = portable::Q6K;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        let d = a.splat(a.f16(b, 208));
        // d·sc per 16-weight sub-block and −32·d·sc (both exact).
        let mut dl = [0f32; 16];
        let mut ml = [0f32; 16];
        for h in 0..2 {
            let v = a.mul(a.cvt(a.i8x8(b, 192 + 8 * h)), d);
            a.store(&mut dl, 8 * h, v);
            a.store(&mut ml, 8 * h, a.mul(v, a.splat(-32.0)));
        }
        let m15 = a.splat_i(15);
        let m48 = a.splat_i(48);
        for h in 0..2 {
            for i in 0..4 {
                // Weights 128h + 32s + 8i + j: ql byte 64h + 32(s%2) + 8i + j, nibble s/2;
                // qh byte 32h + 8i + j, bits 2s..2s+2.
                let qa = a.u8x8(b, 64 * h + 8 * i);
                let qb = a.u8x8(b, 64 * h + 32 + 8 * i);
                let qh = a.u8x8(b, 128 + 32 * h + 8 * i);
                for s in 0..4 {
                    let ql = match s {
                        0 => a.and(qa, m15),
                        1 => a.and(qb, m15),
                        2 => a.srl4(qa),
                        _ => a.srl4(qb),
                    };
                    // (qh >> 2s) & 3, moved to bits 4..6.
                    let hb = match s {
                        0 => a.sll::<4>(qh),
                        1 => a.sll::<2>(qh),
                        2 => qh,
                        _ => a.srl::<2>(qh),
                    };
                    let hb = a.and(hb, m48);
                    let j = 8 * h + 2 * s + i / 2;
                    let w = a.fmadd(a.cvt(a.or(ql, hb)), a.splat(dl[j]), a.splat(ml[j]));
                    f(16 * h + 4 * s + i, w);
                }
            }
        }
    }
}

/// F32 rows as 32-element blocks (the row's tail is added by `rows_impl`).
struct F32;
impl Blk for F32 {
    const BS: usize = 32;
    const TS: usize = 128;
    type P = portable::F32;
    #[inline(always)]
    fn block(a: Avx2, b: &[u8], mut f: impl FnMut(usize, __m256)) {
        for k in 0..4 {
            f(k, a.load_f32_bytes(b, 32 * k));
        }
    }
}

/// One row's dot product with one token: weights decoded in registers, 4 accumulators.
#[inline(always)]
fn dot<B: Blk>(a: Avx2, row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [a.zero(); 4];
    for (b, xb) in row.chunks_exact(B::TS).zip(x.chunks_exact(B::BS)) {
        B::block(
            a,
            b,
            #[inline(always)]
            |k, w| acc[k % 4] = a.fmadd(w, a.load(xb, 8 * k), acc[k % 4]),
        );
    }
    a.hsum(a.add(a.add(acc[0], acc[1]), a.add(acc[2], acc[3])))
}

/// `R` rows × `T` (2, 4 or 8) tokens (`xp` packed as `Tiler` says), row by row: each weight
/// vector is decoded in registers (as in `dot`) and FMA'd at once with the `T` tokens'
/// activations, into 8 accumulators (`8 / T` per token, over alternating vectors `k`, so that
/// 8 chains hide the FMA's latency).
///
/// Before (to 2026-12-07), a pair of rows' blocks was decoded into an L1 scratch and an `R×T`
/// register tile with one accumulator per output ran over it, so that every activation load
/// fed two FMAs. On a Zen 3 (a throwaway timing of one 49152 × 768 matrix, one thread) that cost
/// 2.2× a one-token product at 2 tokens and 3.2× at 4 (the loop waited on 4 or 8 FMA
/// chains; batched decoding of 2 streams ran slower than one), and at 8 tokens this is
/// 1.7× (Q4_K) to 3.5× (Q6_K) faster: the decode is as cheap as `dot`'s, with no store and
/// reload of every weight vector.
#[inline(always)]
fn tile<B: Blk, const R: usize, const T: usize>(
    a: Avx2,
    rows: [&[u8]; R],
    xp: &[f32],
) -> [[f32; T]; R] {
    let per_tok = 8 / T;
    let mut out = [[0f32; T]; R];
    for (row, o) in rows.iter().zip(out.iter_mut()) {
        let mut acc = [a.zero(); 8];
        for (b, xb) in row.chunks_exact(B::TS).zip(xp.chunks_exact(B::BS * T)) {
            B::block(
                a,
                b,
                #[inline(always)]
                |k, w| {
                    for t in 0..T {
                        let i = t * per_tok + k % per_tok;
                        acc[i] = a.fmadd(w, a.load(xb, (k * T + t) * 8), acc[i]);
                    }
                },
            );
        }
        for (t, o) in o.iter_mut().enumerate() {
            let v = &acc[t * per_tok..(t + 1) * per_tok];
            let s = match per_tok {
                1 => v[0],
                4 => a.add(a.add(v[0], v[1]), a.add(v[2], v[3])),
                _ => a.add(v[0], v[1]),
            };
            *o = a.hsum(s);
        }
    }
    out
}

/// The AVX2 tiler of format `B`.
struct Tiles<B>(Avx2, std::marker::PhantomData<B>);
impl<B> Clone for Tiles<B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B> Copy for Tiles<B> {}

impl<B: Blk> Tiler for Tiles<B> {
    const BS: usize = B::BS;
    const TS: usize = B::TS;
    #[inline(always)]
    fn dot(self, row: &[u8], x: &[f32]) -> f32 {
        dot::<B>(self.0, row, x)
    }
    #[inline(always)]
    fn tile<const R: usize, const T: usize>(
        self,
        rows: [&[u8]; R],
        xp: &[f32],
        _scratch: &mut [f32],
    ) -> [[f32; T]; R] {
        tile::<B, R, T>(self.0, rows, xp)
    }
}

/// Hand-written kernels for `ty`, if there are any.
pub(super) fn select(ty: GgmlType) -> Option<RowsFn> {
    use GgmlType as G;
    Some(match ty {
        G::F32 => rows::<F32>,
        G::Q4_0 => rows::<Q4_0>,
        G::Q4_1 => rows::<Q4_1>,
        G::Q5_0 => rows::<Q5_0>,
        G::Q5_1 => rows::<Q5_1>,
        G::Q8_0 => rows::<Q8_0>,
        G::Q4_K => rows::<Q4K>,
        G::Q6_K => rows::<Q6K>,
        G::IQ4_NL => rows::<iq::Iq4Nl>,
        G::IQ4_XS => rows::<iq::Iq4Xs>,
        G::IQ3_XXS => rows::<iq::Iq3Xxs>,
        G::IQ3_S => rows::<iq::Iq3S>,
        G::IQ2_XXS => rows::<iq::Iq2Xxs>,
        G::IQ2_XS => rows::<iq::Iq2Xs>,
        G::IQ2_S => rows::<iq::Iq2S>,
        G::IQ1_S => rows::<iq::Iq1S>,
        G::IQ1_M => rows::<iq::Iq1M>,
        G::MXFP4 => rows::<iq::Mxfp4>,
        _ => return None,
    })
}

fn rows<B: Blk>(w: &QMatrix, x: &[f32], n_tok: usize, r0: usize, out: &mut [f32]) {
    match token() {
        // SAFETY: level 3 was detected: AVX-512 F + VL on top of the token's features.
        Some(a) if level() >= 3 => unsafe { rows_avx512::<B>(a, w, x, n_tok, r0, out) },
        // SAFETY: the token proves the CPU has the features `rows_avx2` is compiled for.
        Some(a) => unsafe { rows_avx2::<B>(a, w, x, n_tok, r0, out) },
        None => portable_avx2::<B::P>(w, x, n_tok, r0, out),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn rows_avx2<B: Blk>(a: Avx2, w: &QMatrix, x: &[f32], n_tok: usize, r0: usize, out: &mut [f32]) {
    super::rows_impl(
        Tiles::<B>(a, std::marker::PhantomData),
        w,
        x,
        n_tok,
        r0,
        out,
    )
}

/// The same code with AVX-512 VL enabled: still 256-bit vectors, but 32 registers, which the
/// 8-token tiles need to keep their accumulators and decoded weights without spilling.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
fn rows_avx512<B: Blk>(a: Avx2, w: &QMatrix, x: &[f32], n_tok: usize, r0: usize, out: &mut [f32]) {
    super::rows_impl(
        Tiles::<B>(a, std::marker::PhantomData),
        w,
        x,
        n_tok,
        r0,
        out,
    )
}

/// The portable kernels compiled for AVX2 + FMA (formats without hand-written kernels). Only
/// handed out by `super::select` after `available()` returned true.
pub(super) fn portable_avx2<D: Dec>(
    w: &QMatrix,
    x: &[f32],
    n_tok: usize,
    r0: usize,
    out: &mut [f32],
) {
    match token() {
        // SAFETY: the token proves the CPU has the features `portable_avx2_impl` needs.
        Some(_) => unsafe { portable_avx2_impl::<D>(w, x, n_tok, r0, out) },
        None => super::rows_impl(portable::Tiles::<D, false>::new(), w, x, n_tok, r0, out),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn portable_avx2_impl<D: Dec>(w: &QMatrix, x: &[f32], n_tok: usize, r0: usize, out: &mut [f32]) {
    super::rows_impl(portable::Tiles::<D, true>::new(), w, x, n_tok, r0, out)
}
