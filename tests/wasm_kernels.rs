//! `Kernel::Fast` against `Kernel::Reference` compiled to wasm32, in headless Chromium
//! (wasm-bindgen-test). With `-C target-feature=+simd128` this checks the SIMD128 kernels
//! (`src/cpu/kernels/wasm.rs`, the IQ formats and MXFP4 in `wasm_iq.rs`); without it, the
//! portable ones.
//!
//! - synthetic matrices of every type (random blocks, sane f16 scales), row and token counts
//!   that exercise every tile shape and remainder: each output within 1e-5 of the reference,
//!   relative to that output's Σ|w·x|;
//! - the IQ formats and MXFP4 again on larger shapes (row pairs, 3 blocks, every tile width);
//! - the recurrent layers' kernels (causal convolution, gated delta rule), SIMD128 lanes
//!   against the scalar reference (tests/common/recurrent_kernels.rs);
//! - the tiny model: last-position logits of Fast vs Reference with NMSE ≤ 1e-8;
//!
//! Run (SIMD on; a separate target dir so the RUSTFLAGS change does not rebuild the shared one):
//! `RUSTFLAGS="-C target-feature=+simd128" CARGO_TARGET_DIR=target-simd
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
//! CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_TIMEOUT=600 cargo test --release
//! --no-default-features --target wasm32-unknown-unknown --test wasm_kernels -- --nocapture`
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;
use wasm_chord::cpu::matmul::{matmul, Kernel};
use wasm_chord::cpu::{CpuModel, KvCache};
use wasm_chord::model::QMatrix;
use wasm_chord::quant::{dequantize, GgmlType};

wasm_bindgen_test_configure!(run_in_browser);

// `make models` (scripts/fetch-models) puts the model here; without it this file does not compile.
static MODEL: &[u8] = include_bytes!("../models/tiny-random-llama-q4_k_m.gguf");
#[path = "common/cpu_data.rs"]
mod cpu_data;
use cpu_data::{random_matrix, Rng};
#[path = "common/data.rs"]
mod data;
#[path = "common/recurrent_kernels.rs"]
mod recurrent_kernels;
/// Σ|w·x| per output (n_tok, rows), from the reference dequantizer in f64.
fn magnitudes(w: &QMatrix, x: &[f32], n_tok: usize) -> Vec<f64> {
    let mut row = vec![0f32; w.cols];
    let mut m = vec![0f64; n_tok * w.rows];
    for r in 0..w.rows {
        dequantize(w.ty, w.row(r), &mut row).unwrap();
        for t in 0..n_tok {
            let xt = &x[t * w.cols..(t + 1) * w.cols];
            m[t * w.rows + r] = row
                .iter()
                .zip(xt)
                .map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs())
                .sum();
        }
    }
    m
}

/// Fast vs Reference on `w` for `n_tok` random tokens; panics naming the worst output.
fn check(w: &QMatrix, n_tok: usize, rng: &mut Rng) {
    let x: Vec<f32> = (0..n_tok * w.cols)
        .map(|_| rng.uniform(-2.0, 2.0))
        .collect();
    let mut fast = vec![f32::NAN; n_tok * w.rows];
    let mut reference = vec![f32::NAN; n_tok * w.rows];
    matmul(w, &x, &mut fast, n_tok, Kernel::Fast).unwrap();
    matmul(w, &x, &mut reference, n_tok, Kernel::Reference).unwrap();
    let mag = magnitudes(w, &x, n_tok);
    let mut worst = (0f64, 0usize);
    for (i, ((&f, &r), &m)) in fast.iter().zip(&reference).zip(&mag).enumerate() {
        let err = (f64::from(f) - f64::from(r)).abs() / m.max(1e-30);
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
        err <= 1e-5,
        "{} ({}×{}) n_tok {n_tok}: output {i} (token {}, row {}) fast {} reference {} \
         relative error {err:e}",
        w.name,
        w.rows,
        w.cols,
        i / w.rows,
        i % w.rows,
        fast[i],
        reference[i]
    );
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
    for ty in TYPES {
        let bs = ty.block_size();
        // Float types also get rows that end in a partial 32-element group (the tail path).
        let cols: &[usize] = if bs == 1 {
            &[32, 45, 77, 96]
        } else if bs == 32 {
            &[32, 96, 224]
        } else {
            &[256, 512]
        };
        for &c in cols {
            // Odd row counts leave a single row after the row pairs.
            for rows in [1, 7] {
                let w = random_matrix(ty, rows, c, &mut rng);
                // 1: decode; 3: a 2-tile and a 1; 17: two 8-tiles and a 1; 7: 4 + 2 + 1.
                for n_tok in [1, 3, 7, 17] {
                    check(&w, n_tok, &mut rng);
                }
            }
        }
    }
}

/// The IQ formats and MXFP4 (hand-written SIMD128 in `wasm_iq.rs` when built with `+simd128`) on
/// larger shapes: several row pairs plus a single row, three blocks per row, every token tile
/// width (8, 4, 2, 1) and their remainders.
#[wasm_bindgen_test]
fn iq_and_mxfp4_match_reference_on_larger_shapes() {
    use GgmlType::*;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for ty in [
        IQ4_NL, IQ4_XS, MXFP4, IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M,
    ] {
        for rows in [2, 5, 16] {
            let w = random_matrix(ty, rows, 3 * ty.block_size(), &mut rng);
            for n_tok in [1, 2, 4, 8, 9, 15] {
                check(&w, n_tok, &mut rng);
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
    let fast = logits(Kernel::Fast);
    let reference = logits(Kernel::Reference);
    let nmse = data::nmse(&fast, &reference);
    console_log!("Fast vs Reference logits NMSE: {nmse:e}");
    assert!(nmse <= 1e-8, "NMSE of Fast vs Reference logits: {nmse:e}");
}

#[wasm_bindgen_test]
fn recurrent_kernels_match_the_reference() {
    recurrent_kernels::conv_fast_equals_reference();
    recurrent_kernels::delta_rule_fast_matches_reference();
}
