//! `Kernel::Fast` (fused per-type kernels, SIMD, token tiles, threads) against
//! `Kernel::Reference` (reference dequantizer, f64 dot products), on every code path this CPU
//! has (`limit_isa`: portable, f32 SIMD, and on x86_64 the i16 integer kernels with AVX-512 BW
//! and with VNNI; on AVX2, for Q2_K, Q3_K and Q5_K the browser's SIMD128 integer kernels and
//! for Q5_0, Q8_0, Q4_K and Q6_K the 256-bit ones of `x86_i16_avx2`).
//!
//! - synthetic matrices of every supported type (random blocks, sane f16 scales), with column,
//!   row and token counts that exercise every tile shape and remainder (32-block formats with
//!   columns that are not a multiple of 256, 1..9 and 17 tokens, rows not a multiple of 4).
//!   Each output must be within `1e-5·Σ|w·x|` of the reference, plus, for the formats with
//!   integer kernels (which quantize the activations to i16 per ≤ 256 values), the bound of
//!   that quantization: `Σ|w|·max|x|/65534` over the 256-value groups;
//! - activations with zero groups and outliers, and weights at the extremes of every integer
//!   format (the largest i32 lane sums);
//! - the same through the thread pool;
//! - the recurrent layers' kernels (causal convolution, gated delta rule: see
//!   tests/common/recurrent_kernels.rs) at every level;
//! - both bench models: a decode step's logits, Fast vs Reference, NMSE ≤ 1e-5 with the i16
//!   kernels (levels 2 and 3), ≤ 1e-8 on the f32 paths.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use wasm_chord::cpu::matmul::{limit_isa, matmul, set_threads, threads, Kernel};
use wasm_chord::model::QMatrix;
use wasm_chord::quant::{dequantize, GgmlType};
#[path = "common/cpu_data.rs"]
mod cpu_data;
use cpu_data::{extreme_matrix, random_matrix, Rng, INT_TYPES};
#[path = "common/recurrent_kernels.rs"]
mod recurrent_kernels;
/// Formats that have integer (i16 activation) kernels on this CPU (x86_64): with AVX-512 BW the
/// seven of `x86_i16`; with AVX2, the three without an f32 kernel of their own on the
/// browser's kernels compiled natively (`x86_simd128`), and Q5_0, Q8_0, Q4_K and Q6_K on the
/// 256-bit kernels of `x86_i16_avx2`.
fn has_int_kernels(ty: GgmlType) -> bool {
    use GgmlType::*;
    #[cfg(target_arch = "x86_64")]
    let (bw, avx2) = (
        std::arch::is_x86_feature_detected!("avx512bw"),
        std::arch::is_x86_feature_detected!("avx2"),
    );
    #[cfg(not(target_arch = "x86_64"))]
    let (bw, avx2) = (false, false);
    (bw && matches!(ty, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4_K | Q6_K))
        || (avx2 && matches!(ty, Q2_K | Q3_K | Q5_K | Q5_0 | Q8_0 | Q4_K | Q6_K))
}

/// Per output (n_tok, rows): the allowed |fast − reference|. `1e-5·Σ|w·x|` (f32 accumulation),
/// plus for formats with integer kernels the worst case of quantizing each activation to i16
/// with one scale per 256 values (32-value groups are never coarser): `Σ|w|·max|x|/65534`.
fn bounds(w: &QMatrix, x: &[f32], n_tok: usize) -> Vec<f64> {
    let int = has_int_kernels(w.ty);
    let mut row = vec![0f32; w.cols];
    let mut m = vec![0f64; n_tok * w.rows];
    for r in 0..w.rows {
        dequantize(w.ty, w.row(r), &mut row).unwrap();
        for t in 0..n_tok {
            let xt = &x[t * w.cols..(t + 1) * w.cols];
            let mut sum_abs = 0f64;
            let mut q_err = 0f64;
            for (wg, xg) in row.chunks(256).zip(xt.chunks(256)) {
                let amax = xg.iter().fold(0f64, |a, &v| a.max(f64::from(v).abs()));
                for (&a, &b) in wg.iter().zip(xg) {
                    sum_abs += (f64::from(a) * f64::from(b)).abs();
                    q_err += f64::from(a).abs() * amax / 65534.0;
                }
            }
            m[t * w.rows + r] = 1e-5 * sum_abs + if int { 1.0001 * q_err } else { 0.0 };
        }
    }
    m
}

/// Fast vs Reference on `w` for the activations `x` (n_tok rows); panics naming the worst
/// output. Returns the worst error as a fraction of its bound.
fn check_x(w: &QMatrix, x: &[f32], n_tok: usize) -> f64 {
    let mut fast = vec![f32::NAN; n_tok * w.rows];
    let mut reference = vec![f32::NAN; n_tok * w.rows];
    matmul(w, x, &mut fast, n_tok, Kernel::Fast).unwrap();
    matmul(w, x, &mut reference, n_tok, Kernel::Reference).unwrap();
    let bound = bounds(w, x, n_tok);
    let mut worst = (0f64, 0usize);
    for (i, ((&f, &r), &b)) in fast.iter().zip(&reference).zip(&bound).enumerate() {
        let err = (f64::from(f) - f64::from(r)).abs() / b.max(1e-30);
        assert!(
            err.is_finite(),
            "{} n_tok {n_tok}: output {i} is {f}",
            w.name
        );
        if err > worst.0 {
            worst = (err, i);
        }
    }
    let (err, i) = worst;
    assert!(
        err <= 1.0,
        "{} ({}×{}) n_tok {n_tok}: output {i} (token {}, row {}) fast {} reference {} \
         error {err:e} of the bound {:e}",
        w.name,
        w.rows,
        w.cols,
        i / w.rows,
        i % w.rows,
        fast[i],
        reference[i],
        bound[i]
    );
    err
}

/// As `check_x` with random activations in [-2, 2).
fn check(w: &QMatrix, n_tok: usize, rng: &mut Rng) -> f64 {
    let x: Vec<f32> = (0..n_tok * w.cols)
        .map(|_| rng.uniform(-2.0, 2.0))
        .collect();
    check_x(w, &x, n_tok)
}

const TYPES: [GgmlType; 23] = {
    use GgmlType::*;
    [
        F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS,
        IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M, MXFP4,
    ]
};

/// Code paths to test: every `limit_isa` level up to the widest (levels the CPU lacks fall
/// back to the widest it has, which is then tested twice).
const ISA_LEVELS: [u8; 4] = [0, 1, 2, 3];

#[test]
fn fast_matches_reference_for_every_type() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for isa in ISA_LEVELS {
        limit_isa(isa);
        for ty in TYPES {
            let bs = ty.block_size();
            // Column counts: one block, several blocks (32-block formats: also 576 = 18·32, not
            // a multiple of 256); for float types also rows that end in a partial 32-element
            // group (the kernels' tail path).
            let cols: &[usize] = if bs == 1 {
                &[32, 45, 77, 96]
            } else if bs == 32 {
                &[32, 96, 224, 576]
            } else {
                &[256, 512, 768]
            };
            let mut worst = 0f64;
            for &c in cols {
                // Rows: 1; 6 and 7 leave 2 and 3 rows after groups of 4 (and 0 / 1 after pairs).
                for rows in [1, 6, 7] {
                    let w = random_matrix(ty, rows, c, &mut rng);
                    // 1..9 cover every token tile (8, 4, 2, 1) and remainder; 17: two 8-tiles.
                    for n_tok in (1..=9).chain([17]) {
                        worst = worst.max(check(&w, n_tok, &mut rng));
                    }
                }
            }
            eprintln!("isa {isa} {ty}: worst error {worst:.3} of the bound");
        }
    }
    limit_isa(u8::MAX);
}

/// Activations with all-zero groups, single outliers and tiny values, against random weights
/// of every type with integer kernels.
#[test]
fn zero_groups_and_outliers() {
    let mut rng = Rng(7);
    for isa in ISA_LEVELS {
        limit_isa(isa);
        for ty in TYPES.into_iter().filter(|&t| has_int_kernels(t)) {
            let cols = 512;
            let w = random_matrix(ty, 5, cols, &mut rng);
            let n_tok = 3;
            let mut x: Vec<f32> = (0..n_tok * cols).map(|_| rng.uniform(-1.0, 1.0)).collect();
            // Token 0: first 256 zero; token 1: one outlier per 32; token 2: tiny values.
            x[..256].fill(0.0);
            for i in (cols..2 * cols).step_by(32) {
                x[i] = 300.0;
            }
            x[2 * cols..].iter_mut().for_each(|v| *v *= 1e-30);
            check_x(&w, &x, n_tok);
            // And each token alone (decode's kernels).
            for xt in x.chunks_exact(cols) {
                check_x(&w, xt, 1);
            }
        }
    }
    limit_isa(u8::MAX);
}

/// Weights at the extremes of each integer format against activations that all have the same
/// sign and magnitude: the largest i32 lane sums the integer kernels can produce.
#[test]
fn extreme_weights_do_not_overflow() {
    let rng = &mut Rng(11);
    for isa in ISA_LEVELS {
        limit_isa(isa);
        for ty in INT_TYPES {
            for fill in [0x00u8, 0xff, 0x80, 0x88] {
                let cols = 768;
                let w = extreme_matrix(ty, cols, fill, rng);
                for v in [1.0f32, -1.0] {
                    let x = vec![v; 2 * cols];
                    check_x(&w, &x, 2);
                    check_x(&w, &x[..cols], 1);
                }
            }
        }
    }
    limit_isa(u8::MAX);
}

/// On the i16 integer kernels (levels 2 and 3), a batch of tokens (prefill's and the batching
/// server's tiles) gives each token exactly the values it gets alone (decode's one-token
/// path), bit for bit: the batcher's promise that a sequence's output equals its output when
/// run alone rests on it. K-quant rows of 64 blocks and of 65 (past the stack buffers of the
/// totals path, see `x86_i16`) included. (The f32 kernels' tiles sum in another order than
/// their one-token path: there the two agree within the bounds of the test above, not bit
/// for bit.)
#[cfg(target_arch = "x86_64")]
#[test]
fn a_batch_of_tokens_equals_each_token_alone_on_the_integer_kernels() {
    assert!(
        std::arch::is_x86_feature_detected!("avx2"),
        "this test needs a CPU with AVX2 (the integer kernels of Q2_K, Q3_K and Q5_K; with \
         AVX-512 BW also those of x86_i16)"
    );
    let mut rng = Rng(0x5eed);
    for isa in [2, 3] {
        limit_isa(isa);
        for ty in TYPES.into_iter().filter(|&t| has_int_kernels(t)) {
            let cols: &[usize] = match ty.block_size() {
                32 => &[96, 576],
                _ => &[768, 256 * 64, 256 * 65],
            };
            for &c in cols {
                // 11 rows: every row count of the tiles (the 32-weight formats' 3 × 8, 5 × 4
                // and 8 × 2, and their smaller tails).
                let w = random_matrix(ty, 11, c, &mut rng);
                let n_tok = 15; // tiles of 8, 4 and 2 tokens, and a single one
                let mut x: Vec<f32> = (0..n_tok * c).map(|_| rng.uniform(-2.0, 2.0)).collect();
                // Every third 32-value group of odd tokens small: their K-quant groups carry
                // the residual plane, so a tile mixes tokens with and without it.
                for (i, v) in x.iter_mut().enumerate() {
                    if (i / c) % 2 == 1 && (i / 32) % 3 == 1 {
                        *v *= 1e-3;
                    }
                }
                let mut batch = vec![f32::NAN; n_tok * w.rows];
                matmul(&w, &x, &mut batch, n_tok, Kernel::Fast).unwrap();
                for t in 0..n_tok {
                    let mut one = vec![f32::NAN; w.rows];
                    matmul(&w, &x[t * c..(t + 1) * c], &mut one, 1, Kernel::Fast).unwrap();
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&batch[t * w.rows..(t + 1) * w.rows]),
                        bits(&one),
                        "isa {isa} {ty} cols {c}: token {t} of {n_tok}"
                    );
                }
            }
        }
    }
    limit_isa(u8::MAX);
}

#[test]
fn threaded_matmul_matches_single_threaded() {
    // Big enough to be split over the pool; rows not a multiple of the chunk size.
    let mut rng = Rng(42);
    let before = threads();
    for ty in [
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::F32,
    ] {
        let cols = 512;
        let w = random_matrix(ty, 301, cols, &mut rng);
        // 130 tokens: prefill's activations quantized and its outputs transposed in parts
        // over the threads too (22 tokens a part at 3 threads, the last one shorter).
        for n_tok in [1, 9, 130] {
            let mut x: Vec<f32> = (0..n_tok * cols).map(|_| rng.uniform(-1.0, 1.0)).collect();
            // Some 32-value groups of odd tokens small: Q6_K's residual plane in some parts.
            for (i, v) in x.iter_mut().enumerate() {
                if (i / cols) % 2 == 1 && (i / 32) % 3 == 1 {
                    *v *= 1e-3;
                }
            }
            let mut one = vec![0f32; n_tok * w.rows];
            let mut many = vec![0f32; n_tok * w.rows];
            set_threads(1);
            matmul(&w, &x, &mut one, n_tok, Kernel::Fast).unwrap();
            set_threads(3);
            matmul(&w, &x, &mut many, n_tok, Kernel::Fast).unwrap();
            // Chunks hold whole groups of 4 rows, and each output is computed the same way
            // whatever rows share its tile.
            assert_eq!(one, many, "{ty} n_tok {n_tok}");
            check(&w, n_tok, &mut rng);
        }
    }
    set_threads(before);
}

#[test]
fn fast_forward_matches_reference_on_a_real_model() {
    use wasm_chord::cpu::{CpuModel, KvCache};
    use wasm_chord::source::FileSource;
    for model in [
        "smollm2-135m-instruct-q4_k_m.gguf",
        "smollm2-135m-instruct-pad768-q4_k_m.gguf",
    ] {
        let src = FileSource::open(common::model_path(model)).unwrap();
        let ids = [504, 3575, 282, 4649, 314];
        // Prefill 4 tokens (token tiles), then one decode step: the last step's logits.
        let logits = |kernel| {
            let (_, model) = CpuModel::load(&src, kernel).unwrap();
            let mut cache = KvCache::new(&model.cfg, 8);
            model.forward(&ids[..4], 0, &mut cache).unwrap();
            model.forward(&ids[4..], 4, &mut cache).unwrap()
        };
        let reference = logits(Kernel::Reference);
        for isa in ISA_LEVELS {
            limit_isa(isa);
            let fast = logits(Kernel::Fast);
            limit_isa(u8::MAX);
            let nmse = common::nmse(&fast, &reference);
            eprintln!("{model} isa {isa}: Fast vs Reference logits NMSE {nmse:e}");
            // The i16 activations (levels 2 and 3): 1e-8–3e-6 (Q4_K without the residual
            // plane: ~2e-6 on pad768 here); f32 paths stay near 1e-12. llama.cpp: 1e-3 and more.
            let max = if isa >= 2 { 1e-5 } else { 1e-8 };
            assert!(nmse <= max, "{model} isa {isa}: NMSE {nmse:e} > {max:e}");
        }
    }
}

/// LFM2's and Qwen3.5's recurrences, fast path against reference, at every ISA level.
#[test]
fn recurrent_kernels_match_the_reference() {
    for isa in ISA_LEVELS {
        limit_isa(isa);
        recurrent_kernels::conv_fast_equals_reference();
        recurrent_kernels::delta_rule_fast_matches_reference();
    }
    limit_isa(u8::MAX);
}

/// The AMX tile kernels are the default where the CPU has them (x86_64 with AMX-INT8: the
/// tiles from 16 tokens, their twins below), and `CHORD_AMX=0` or `set_amx(false)` turns them
/// off; elsewhere no matmul picks them. (Whether this CPU has them is read from /proc/cpuinfo
/// independently; tests/amx_kernels.rs tests the kernels themselves.)
#[test]
fn amx_is_the_default_where_the_cpu_has_it() {
    use wasm_chord::cpu::matmul::{amx_in_use, amx_path_in_use, set_amx};
    if std::env::var_os("CHORD_AMX").is_some() {
        panic!("CHORD_AMX is set: unset it to run this test");
    }
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let has = cfg!(target_arch = "x86_64")
        && flags.contains(" amx_tile")
        && flags.contains(" amx_int8")
        && flags.contains(" avx512_vnni");
    if !has {
        eprintln!("!!! NO AMX here: only checking that no matmul picks the tiles");
    }
    let types = [
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ];
    for ty in types {
        assert_eq!(amx_in_use(ty, 128), has, "{ty}: tiles for 128 tokens");
        assert_eq!(amx_path_in_use(ty, 1), has, "{ty}: twin for 1 token");
        assert!(!amx_in_use(ty, 1), "{ty}: tiles for 1 token");
    }
    assert!(
        !amx_path_in_use(GgmlType::Q2_K, 128),
        "Q2_K has no AMX kernel"
    );
    set_amx(false);
    for ty in types {
        assert!(
            !amx_path_in_use(ty, 128),
            "{ty}: AMX picked after set_amx(false)"
        );
    }
    set_amx(true);
}
