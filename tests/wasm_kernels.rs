//! `Kernel::Fast` against `Kernel::Reference` compiled to wasm32, in headless Chromium
//! (wasm-bindgen-test), on every code path (`limit_isa`): 0 the portable kernels, 1 the f32
//! SIMD128 kernels (`src/cpu/kernels/wasm.rs`, the IQ formats and MXFP4 in `wasm_iq.rs`), 2 the
//! integer kernels (`wasm_i16.rs`: i16 activations, `has_int_kernels`), 3 built with
//! `+relaxed-simd` the relaxed variant (`wasm_relaxed.rs`, `has_relaxed_kernels`; the i16
//! kernels for the other integer formats). Without `-C target-feature=+simd128` every level
//! runs the portable kernels.
//!
//! - synthetic matrices of every type (random blocks, sane f16 scales), row and token counts
//!   that exercise every tile shape and remainder: each output within `1e-5·Σ|w·x|` of the
//!   reference, plus on the integer kernels the bound of their activation quantization
//!   (`bounds`);
//! - activations with zero groups and outliers, and weights at the extremes of every integer
//!   format (the largest i32 lane sums);
//! - the IQ formats, MXFP4 and Q2_K again on larger shapes (row pairs, 3 blocks, every tile
//!   width), on the f32 kernels and the integer ones;
//! - on the integer kernels, a batch of tokens equals each token alone, bit for bit;
//! - the recurrent layers' kernels (causal convolution, gated delta rule), SIMD128 lanes
//!   against the scalar reference (tests/common/recurrent_kernels.rs);
//! - the tiny model: last-position logits of Fast vs Reference with NMSE ≤ 1e-8 on the f32
//!   paths, ≤ 1e-5 on the integer kernels (as natively);
//!
//! Run (`make wasm-test` runs it with SIMD128, then with SIMD128 + relaxed SIMD):
//! `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128"
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
//! CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_TIMEOUT=600 cargo test --profile ci
//! --no-default-features --target wasm32-unknown-unknown --test wasm_kernels -- --nocapture`
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;
use wasm_chord::cpu::matmul::{limit_isa, matmul, Kernel};
use wasm_chord::cpu::{CpuModel, KvCache};
use wasm_chord::model::QMatrix;
use wasm_chord::quant::{dequantize, GgmlType};

wasm_bindgen_test_configure!(run_in_browser);

// `make models` (scripts/fetch-models) puts the model here; without it this file does not compile.
static MODEL: &[u8] = include_bytes!("../models/tiny-random-llama-q4_k_m.gguf");
#[path = "common/cpu_data.rs"]
mod cpu_data;
use cpu_data::{extreme_matrix, random_matrix, Rng, INT_TYPES};
#[path = "common/data.rs"]
mod data;
#[path = "common/recurrent_kernels.rs"]
mod recurrent_kernels;
/// Formats with integer kernels (`limit_isa` ≥ 2 with SIMD128: `wasm_i16.rs`): every quantized
/// one the engine supports.
fn has_int_kernels(ty: GgmlType) -> bool {
    use GgmlType::*;
    ty.is_supported() && !matches!(ty, F32 | F16 | BF16)
}

/// Formats with relaxed-SIMD kernels (`limit_isa` ≥ 3 in a `+relaxed-simd` build:
/// `wasm_relaxed.rs`); the other integer formats run the i16 kernels there.
fn has_relaxed_kernels(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q4_K | Q6_K)
}

/// Per output (n_tok, rows): the allowed |fast − reference|. `1e-5·Σ|w·x|` (f32 accumulation;
/// the reference dequantizer's weights, from f64), plus where the integer kernels run (`int`)
/// the worst case of their activation quantization: each value is off by at most half a step
/// of its group's scale, `max|x| / 65534` with one i16 scale per 256 values (32-value groups
/// are never coarser), so `Σ|w|·max|x|/65534` over the 256-value groups (1.0001×: the f32
/// rounding of the scale itself), `Σ|w|·max|x|/65534²` for Q6_K groups with a residual plane.
///
/// The relaxed-SIMD kernels (`isa` ≥ 3 in a `+relaxed-simd` build, `has_relaxed_kernels`) hold
/// each value as two i8 planes, `x ≈ (q + q2/254)·d` with `d = max|x|/127`: off by at most
/// `max|x|/64516`, always (no finer Q6_K case).
fn bounds(w: &QMatrix, x: &[f32], n_tok: usize, isa: u8) -> Vec<f64> {
    let int = isa >= 2 && has_int_kernels(w.ty);
    let relaxed = cfg!(target_feature = "relaxed-simd") && isa >= 3 && has_relaxed_kernels(w.ty);
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
                // Q6_K's residual plane (`QAct::RESIDUAL_BELOW`: some 32 values under 1/16 of
                // the group's largest, the quantizer's own f32 test): then the step is
                // `d / 65534` and the error at most `max|x| / 65534²`.
                let max32 = |c: &[f32]| c.iter().fold(0f32, |a, v| a.max(v.abs()));
                let amax32 = xg.chunks(32).map(max32).fold(f32::INFINITY, f32::min);
                let resid = w.ty == GgmlType::Q6_K && amax32 < max32(xg) / 16.0;
                let step = match (relaxed, resid) {
                    (true, _) => 64516.0,
                    (false, true) => 65534.0 * 65534.0,
                    (false, false) => 65534.0,
                };
                for (&a, &b) in wg.iter().zip(xg) {
                    sum_abs += (f64::from(a) * f64::from(b)).abs();
                    q_err += f64::from(a).abs() * amax / step;
                }
            }
            m[t * w.rows + r] = 1e-5 * sum_abs + if int { 1.0001 * q_err } else { 0.0 };
        }
    }
    m
}

/// Code paths: 0 portable, 1 the f32 SIMD128 kernels, 2 the i16 integer kernels, 3 the
/// relaxed-SIMD ones (each where compiled in; otherwise the widest below runs, tested again).
const ISA_LEVELS: [u8; 4] = [0, 1, 2, 3];

/// Fast (at `limit_isa(isa)`) vs Reference on `w` for `n_tok` random tokens; panics naming
/// the worst output. Returns the worst error as a fraction of its bound.
fn check(w: &QMatrix, n_tok: usize, rng: &mut Rng, isa: u8) -> f64 {
    let x: Vec<f32> = (0..n_tok * w.cols)
        .map(|_| rng.uniform(-2.0, 2.0))
        .collect();
    check_x(w, &x, n_tok, isa)
}

/// As `check` for the activations `x`.
fn check_x(w: &QMatrix, x: &[f32], n_tok: usize, isa: u8) -> f64 {
    let mut fast = vec![f32::NAN; n_tok * w.rows];
    let mut reference = vec![f32::NAN; n_tok * w.rows];
    limit_isa(isa);
    matmul(w, x, &mut fast, n_tok, Kernel::Fast).unwrap();
    limit_isa(u8::MAX);
    matmul(w, x, &mut reference, n_tok, Kernel::Reference).unwrap();
    let bound = bounds(w, x, n_tok, isa);
    let mut worst = (0f64, 0usize);
    for (i, ((&f, &r), &b)) in fast.iter().zip(&reference).zip(&bound).enumerate() {
        let err = (f64::from(f) - f64::from(r)).abs() / b.max(1e-30);
        assert!(
            err.is_finite(),
            "{} isa {isa} n_tok {n_tok}: output {i} is {f}",
            w.name
        );
        if err > worst.0 {
            worst = (err, i);
        }
    }
    let (err, i) = worst;
    assert!(
        err <= 1.0,
        "{} ({}×{}) isa {isa} n_tok {n_tok}: output {i} (token {}, row {}) fast {} \
         reference {} error {err:e} of the bound {:e}",
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

const TYPES: [GgmlType; 23] = {
    use GgmlType::*;
    [
        F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS,
        IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M, MXFP4,
    ]
};

#[wasm_bindgen_test]
fn fast_matches_reference_for_every_type() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for isa in ISA_LEVELS {
        for ty in TYPES {
            let bs = ty.block_size();
            // Float types also get rows that end in a partial 32-element group (the tail
            // path); 32-block formats 576 = 18·32 columns, not a multiple of 256.
            let cols: &[usize] = if bs == 1 {
                &[32, 45, 77, 96]
            } else if bs == 32 {
                &[32, 96, 224, 576]
            } else {
                &[256, 512]
            };
            let mut worst = 0f64;
            for &c in cols {
                // Odd row counts leave a single row after the row pairs.
                for rows in [1, 7] {
                    let w = random_matrix(ty, rows, c, &mut rng);
                    // 1: decode; 3: a 2-tile and a 1; 17: two 8-tiles and a 1; 7: 4 + 2 + 1.
                    for n_tok in [1, 3, 7, 17] {
                        worst = worst.max(check(&w, n_tok, &mut rng, isa));
                    }
                }
            }
            console_log!("isa {isa} {ty}: worst error {worst:.3} of the bound");
        }
    }
}

/// Activations with all-zero groups, outliers and tiny values, against random weights of
/// every type with integer kernels (zero groups, residual planes, scales near underflow).
#[wasm_bindgen_test]
fn zero_groups_and_outliers() {
    let mut rng = Rng(7);
    for isa in ISA_LEVELS {
        for ty in TYPES.into_iter().filter(|&t| has_int_kernels(t)) {
            let cols = 512;
            let w = random_matrix(ty, 5, cols, &mut rng);
            let n_tok = 4;
            let mut x: Vec<f32> = (0..n_tok * cols).map(|_| rng.uniform(-1.0, 1.0)).collect();
            // Token 0: first 256 zero; token 1: one outlier per 32; token 2: tiny values;
            // token 3: one outlier over values 1e-3 of it (a residual plane for Q6_K).
            x[..256].fill(0.0);
            for i in (cols..2 * cols).step_by(32) {
                x[i] = 300.0;
            }
            x[2 * cols..3 * cols].iter_mut().for_each(|v| *v *= 1e-30);
            x[3 * cols..].iter_mut().for_each(|v| *v *= 1e-3);
            x[3 * cols + 5] = 2.0;
            check_x(&w, &x, n_tok, isa);
        }
    }
}

/// Weights at the extremes of each integer format against activations that all have the same
/// sign and magnitude: the largest i32 lane sums the integer kernels can produce (Q5_K: fill
/// 0xff, scales 63 × quants 31; IQ4_XS: fill 0x00, scales −32 × level −127; Q3_K: fill 0x00,
/// scales −32 × quants −4; Q2_K: fill 0xff, scales and mins 15 × quants 3; the IQ grids:
/// fill 0xff, the largest sub-block scales, fill 0x00 / 0x80 / 0x88 other grid rows and signs).
#[wasm_bindgen_test]
fn extreme_weights_do_not_overflow() {
    use GgmlType::*;
    let rng = &mut Rng(11);
    // The formats with integer kernels natively, then those only wasm32's i16 kernels have.
    let types = INT_TYPES.into_iter().chain([
        Q3_K, Q5_K, IQ4_NL, IQ4_XS, Q2_K, IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M,
        MXFP4,
    ]);
    for ty in types {
        for isa in ISA_LEVELS {
            for fill in [0x00u8, 0xff, 0x80, 0x88] {
                let cols = 768;
                let w = extreme_scales(extreme_matrix(ty, cols, fill, rng));
                for v in [1.0f32, -1.0] {
                    let x = vec![v; 2 * cols];
                    check_x(&w, &x, 2, isa);
                    check_x(&w, &x[..cols], 1, isa);
                }
            }
        }
    }
}

/// `extreme_matrix` keeps the f16 scale fields `scale_fields` names; the two formats whose
/// scale lies elsewhere get a sane one back: MXFP4's E8M0 byte (fill 0xff would be 2^127, its
/// weights infinite), IQ1_M's f16 d spread over the top nibbles of its four scale words
/// (0x2e66 ≈ 0.1; fill 0xff would be NaN).
fn extreme_scales(mut w: QMatrix) -> QMatrix {
    let ts = w.ty.block_geometry().1;
    for blk in w.data.chunks_exact_mut(ts) {
        match w.ty {
            GgmlType::MXFP4 => blk[0] = 124,
            GgmlType::IQ1_M => {
                for k in 0..4 {
                    let nib = ((0x2e66u16 >> (4 * k)) & 15) as u8;
                    blk[49 + 2 * k] = (blk[49 + 2 * k] & 15) | (nib << 4);
                }
            }
            _ => {}
        }
    }
    w
}

/// The IQ formats and MXFP4 (hand-written SIMD128 in `wasm_iq.rs` when built with `+simd128`,
/// the integer kernels of `wasm_i16.rs` at level 2) on larger shapes: several row pairs plus
/// a single row, three blocks per row, every token tile width (8, 4, 2, 1) and their
/// remainders; Q2_K (portable at level 1) with them.
#[wasm_bindgen_test]
fn iq_and_mxfp4_match_reference_on_larger_shapes() {
    use GgmlType::*;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for isa in [1, 2] {
        for ty in [
            IQ4_NL, IQ4_XS, MXFP4, IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M, Q2_K,
        ] {
            for rows in [2, 5, 16] {
                let w = random_matrix(ty, rows, 3 * ty.block_size(), &mut rng);
                for n_tok in [1, 2, 4, 8, 9, 15] {
                    check(&w, n_tok, &mut rng, isa);
                }
            }
        }
    }
}

/// On the integer kernels (levels 2 and 3), a batch of tokens (prefill's tiles) gives each
/// token exactly the values it gets alone (decode's one-token path), bit for bit, as natively
/// (tests/cpu_kernels.rs): the batching server's promise rests on it. Rows of 3 and 5 blocks
/// (row pairs and a single row), 15 tokens (tiles of 8, 4, 2 and 1), every third 32-value
/// group of odd tokens small (Q6_K's residual plane in some tokens of a tile, not others).
#[wasm_bindgen_test]
fn a_batch_of_tokens_equals_each_token_alone_on_the_integer_kernels() {
    let mut rng = Rng(0x5eed);
    for isa in [2, 3] {
        for ty in TYPES.into_iter().filter(|&t| has_int_kernels(t)) {
            let bs = ty.block_size();
            for c in [3 * bs, 5 * bs] {
                let w = random_matrix(ty, 5, c, &mut rng);
                let n_tok = 15;
                let mut x: Vec<f32> = (0..n_tok * c).map(|_| rng.uniform(-2.0, 2.0)).collect();
                for (i, v) in x.iter_mut().enumerate() {
                    if (i / c) % 2 == 1 && (i / 32) % 3 == 1 {
                        *v *= 1e-3;
                    }
                }
                limit_isa(isa);
                let mut batch = vec![f32::NAN; n_tok * w.rows];
                matmul(&w, &x, &mut batch, n_tok, Kernel::Fast).unwrap();
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                for t in 0..n_tok {
                    let mut one = vec![f32::NAN; w.rows];
                    matmul(&w, &x[t * c..(t + 1) * c], &mut one, 1, Kernel::Fast).unwrap();
                    assert_eq!(
                        bits(&batch[t * w.rows..(t + 1) * w.rows]),
                        bits(&one),
                        "isa {isa} {ty} cols {c}: token {t} of {n_tok}"
                    );
                }
                limit_isa(u8::MAX);
            }
        }
    }
}

fn load(kernel: Kernel) -> CpuModel {
    CpuModel::load(&MODEL.to_vec(), kernel).unwrap().1
}

#[wasm_bindgen_test]
fn fast_forward_matches_reference_on_the_tiny_model() {
    let ids = [1, 450, 96, 173, 17, 432];
    let logits = |kernel| {
        let model = load(kernel);
        let mut cache = KvCache::new(&model.cfg, 16);
        // A prefill (token tiles) then a decode step (one token).
        model.forward(&ids[..5], 0, &mut cache).unwrap();
        model.forward(&ids[5..], 5, &mut cache).unwrap()
    };
    let reference = logits(Kernel::Reference);
    // The f32 paths only differ by f32 accumulation; the integer kernels (levels 2, 3) also by
    // the i16 activation quantization (as natively: NMSE ≤ 1e-5, llama.cpp's is 1e-3 and more).
    for (isa, limit) in [(0, 1e-8), (1, 1e-8), (2, 1e-5), (3, 1e-5)] {
        limit_isa(isa);
        let fast = logits(Kernel::Fast);
        limit_isa(u8::MAX);
        let nmse = data::nmse(&fast, &reference);
        console_log!("isa {isa}: Fast vs Reference logits NMSE: {nmse:e}");
        assert!(
            nmse <= limit,
            "isa {isa}: NMSE of Fast vs Reference logits: {nmse:e}"
        );
    }
}

#[wasm_bindgen_test]
fn recurrent_kernels_match_the_reference() {
    recurrent_kernels::conv_fast_equals_reference();
    recurrent_kernels::delta_rule_fast_matches_reference();
}

/// By default (no `limit_isa`), the relaxed-SIMD build runs each format's relaxed dot products
/// for the shapes (one token, tiles of several) where the one-time timing found them faster,
/// and the i16 kernels elsewhere: the default output is bit for bit one of the two, the one
/// `relaxed_dot_products` names. Without relaxed SIMD the default is the i16 kernels and
/// `relaxed_dot_products` is empty.
#[wasm_bindgen_test]
fn the_default_path_is_the_one_the_timing_chose() {
    use wasm_chord::cpu::matmul::{relaxed_dot_products, RELAXED_FORMATS};
    let chosen = relaxed_dot_products(&RELAXED_FORMATS);
    eprintln!("relaxed dot products chosen: {chosen:?}");
    if !cfg!(target_feature = "relaxed-simd") {
        assert_eq!(chosen, Default::default(), "no relaxed SIMD in this build");
    }
    let mut rng = Rng(31);
    for ty in RELAXED_FORMATS {
        let w = random_matrix(ty, 64, 512, &mut rng);
        for (n_tok, formats) in [(1, &chosen.decode), (3, &chosen.tiles)] {
            let x: Vec<f32> = (0..n_tok * w.cols)
                .map(|_| rng.uniform(-2.0, 2.0))
                .collect();
            let run = |isa: u8| {
                let mut y = vec![f32::NAN; n_tok * w.rows];
                limit_isa(isa);
                matmul(&w, &x, &mut y, n_tok, Kernel::Fast).unwrap();
                limit_isa(u8::MAX);
                y
            };
            let (default, int, relaxed) = (run(u8::MAX), run(2), run(3));
            if cfg!(target_feature = "relaxed-simd") {
                assert_ne!(
                    int, relaxed,
                    "{ty:?}: the two integer paths are different code"
                );
            }
            let want = if formats.contains(&ty) {
                &relaxed
            } else {
                &int
            };
            assert_eq!(
                &default, want,
                "{ty:?}, {n_tok} tokens: the default path is the chosen one"
            );
        }
    }
}
