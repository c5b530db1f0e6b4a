//! The AMX-INT8 tile kernels (`src/cpu/kernels/x86_amx.rs`, prefill of ≥ 16 tokens on x86_64
//! CPUs with AMX) and their AVX-512 VNNI twins for fewer tokens (`x86_amx_one.rs`) against
//! `Kernel::Reference`, and against each other:
//!
//! - synthetic matrices of every format they take, rows that are and are not multiples of the
//!   16-row tile, 1 to 128 tokens (twins, whole and padded token tiles), each output within
//!   `1e-5·Σ|w·x|` (f32 accumulation) plus the activation quantization's worst case: two i8
//!   planes per group of G values (32, K-quants 256) leave at most `max|x| / (127·508)` per
//!   value, so `Σ|w|·max|x| / 64516` per group;
//! - weights at each format's extremes against same-signed activations (largest i32 sums);
//!   activations with zero groups, outliers and tiny values;
//! - tiles and twins bit for bit: each token of a 16-to-40-token matmul equals the same token
//!   alone and in chunks of 2 to 15 (what lets a batched step of 16 sequences or more, which
//!   takes the tiles, give each sequence what its own decode step gives);
//! - two threads against one, bit for bit;
//! - matrices sharing one input (`matmul_shared`: one quantization, one fork) against one call
//!   each, bit for bit, mixed formats and shapes included;
//! - both bench models: prefill logits NMSE ≤ 1e-5 against the reference (tests/batch.rs
//!   checks, with the tiles on, that a batched decode step gives each sequence its solo bits).
//!
//! On a CPU without AMX every test says so on stderr and checks that the dispatcher does not
//! pick the tiles.
#![cfg(target_arch = "x86_64")]

mod common;

#[path = "common/cpu_data.rs"]
mod cpu_data;

use cpu_data::{extreme_matrix, random_matrix, Rng};
use wasm_chord::cpu::matmul::{
    amx_in_use, amx_path_in_use, limit_isa, matmul, matmul_shared, set_amx, set_threads, threads,
    Kernel,
};
use wasm_chord::model::QMatrix;
use wasm_chord::quant::{dequantize, GgmlType};

const AMX_TYPES: [GgmlType; 8] = {
    use GgmlType::*;
    [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K]
};

/// Whether this CPU reports AMX-TILE and AMX-INT8 (Linux: /proc/cpuinfo); turns the tiles on
/// (`set_amx(true)`, the default; a test elsewhere may not have left it so). Where the CPU
/// lacks them, says so loudly and checks that no matmul picks them.
fn amx_expected() -> bool {
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let has = flags.contains(" amx_tile") && flags.contains(" amx_int8");
    limit_isa(u8::MAX);
    set_amx(true);
    if !has {
        eprintln!(
            "!!! NO AMX here (the CPU lacks amx_tile/amx_int8): the tile kernels are NOT tested, \
             only that they are not used"
        );
        for ty in AMX_TYPES {
            assert!(
                !amx_path_in_use(ty, 128),
                "{ty}: AMX picked on a CPU without it"
            );
        }
        return false;
    }
    for ty in AMX_TYPES {
        assert!(amx_in_use(ty, 16), "{ty}: AMX not picked for 16 tokens");
        assert!(!amx_in_use(ty, 15), "{ty}: AMX tiles picked for 15 tokens");
        assert!(
            amx_path_in_use(ty, 1),
            "{ty}: the AMX twin not picked for 1 token"
        );
    }
    limit_isa(3);
    assert!(
        !amx_path_in_use(GgmlType::Q4_K, 128) && !amx_path_in_use(GgmlType::Q4_K, 1),
        "limit_isa(3) must rule AMX out"
    );
    limit_isa(u8::MAX);
    true
}

/// Activation values per scale on the AMX path.
fn group(ty: GgmlType) -> usize {
    ty.block_size().max(32)
}

/// Per output (n_tok, rows): `1e-5·Σ|w·x| + 1.0001·Σ_groups Σ|w|·max|x| / 64516`.
fn bounds(w: &QMatrix, x: &[f32], n_tok: usize) -> Vec<f64> {
    let g = group(w.ty);
    let mut row = vec![0f32; w.cols];
    let mut m = vec![0f64; n_tok * w.rows];
    for r in 0..w.rows {
        dequantize(w.ty, w.row(r), &mut row).unwrap();
        for t in 0..n_tok {
            let xt = &x[t * w.cols..(t + 1) * w.cols];
            let (mut sum_abs, mut q_err) = (0f64, 0f64);
            for (wg, xg) in row.chunks(g).zip(xt.chunks(g)) {
                let amax = xg.iter().fold(0f64, |a, &v| a.max(f64::from(v).abs()));
                for (&a, &b) in wg.iter().zip(xg) {
                    sum_abs += (f64::from(a) * f64::from(b)).abs();
                    q_err += f64::from(a).abs() * amax / (127.0 * 508.0);
                }
            }
            m[t * w.rows + r] = 1e-5 * sum_abs + 1.0001 * q_err;
        }
    }
    m
}

/// Fast (AMX tiles where `n_tok ≥ 16`, their twins below) vs Reference; panics naming the worst output. Returns the
/// worst error as a fraction of its bound.
fn check_x(w: &QMatrix, x: &[f32], n_tok: usize) -> f64 {
    let mut fast = vec![f32::NAN; n_tok * w.rows];
    let mut reference = vec![f32::NAN; n_tok * w.rows];
    matmul(w, x, &mut fast, n_tok, Kernel::Fast).unwrap();
    matmul(w, x, &mut reference, n_tok, Kernel::Reference).unwrap();
    let bound = bounds(w, x, n_tok);
    let mut worst = 0f64;
    for (i, ((&f, &r), &b)) in fast.iter().zip(&reference).zip(&bound).enumerate() {
        let err = (f64::from(f) - f64::from(r)).abs() / b.max(1e-30);
        assert!(
            err <= 1.0,
            "{} {}×{} n_tok {n_tok}: output {i} (token {}, row {}): fast {f} reference {r} \
             bound {b:e}",
            w.ty,
            w.rows,
            w.cols,
            i / w.rows,
            i % w.rows
        );
        worst = worst.max(err);
    }
    worst
}

fn random_x(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.uniform(-2.0, 2.0)).collect()
}

#[test]
fn amx_matches_reference_for_every_type() {
    if !amx_expected() {
        return;
    }
    let mut rng = Rng(0xa3c5);
    for ty in AMX_TYPES {
        let cols: &[usize] = if ty.block_size() == 32 {
            &[96, 576]
        } else {
            &[256, 768]
        };
        let mut worst = 0f64;
        for &c in cols {
            for rows in [5, 16, 37] {
                let w = random_matrix(ty, rows, c, &mut rng);
                for n_tok in [1, 2, 7, 16, 17, 33, 128] {
                    let x = random_x(n_tok * c, &mut rng);
                    worst = worst.max(check_x(&w, &x, n_tok));
                }
            }
        }
        eprintln!("AMX {ty}: worst error {worst:.3} of the bound");
    }
}

#[test]
fn amx_zero_groups_outliers_and_extremes() {
    if !amx_expected() {
        return;
    }
    let mut rng = Rng(99);
    for ty in AMX_TYPES {
        let cols = 768;
        let w = random_matrix(ty, 19, cols, &mut rng);
        let n_tok = 17;
        let mut x: Vec<f32> = (0..n_tok * cols).map(|_| rng.uniform(-1.0, 1.0)).collect();
        // Token 0: first 256 zero; token 1: one outlier per 32; token 2: tiny values;
        // token 3: all zero.
        x[..256].fill(0.0);
        for i in (cols..2 * cols).step_by(32) {
            x[i] = 300.0;
        }
        x[2 * cols..3 * cols].iter_mut().for_each(|v| *v *= 1e-30);
        x[3 * cols..4 * cols].fill(0.0);
        check_x(&w, &x, n_tok);
        check_x(&w, &x[..4 * cols], 4);
        for fill in [0x00u8, 0xff, 0x80, 0x88] {
            let w = extreme_matrix(ty, cols, fill, &mut rng);
            for v in [1.0f32, -1.0] {
                let x = vec![v; 16 * cols];
                check_x(&w, &x, 16);
                check_x(&w, &x, 1);
            }
        }
    }
}

#[test]
fn amx_two_threads_match_one() {
    if !amx_expected() {
        return;
    }
    let mut rng = Rng(42);
    let before = threads();
    for ty in [
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
    ] {
        let cols = 512;
        let w = random_matrix(ty, 301, cols, &mut rng);
        let n_tok = 33;
        let x = random_x(n_tok * cols, &mut rng);
        let mut one = vec![0f32; n_tok * w.rows];
        let mut two = vec![0f32; n_tok * w.rows];
        set_threads(1);
        matmul(&w, &x, &mut one, n_tok, Kernel::Fast).unwrap();
        set_threads(2);
        matmul(&w, &x, &mut two, n_tok, Kernel::Fast).unwrap();
        // Row chunks are whole 16-row tiles, each computed the same way on any thread.
        assert_eq!(one, two, "{ty}");
        check_x(&w, &x, n_tok);
    }
    set_threads(before);
}

/// `matmul_shared` gives each matrix exactly what its own `matmul` gives: formats that share
/// the activation group (Q4_K, Q5_K, Q6_K: a layer's Q, K, V), a group that differs (Q4_0
/// with Q4_K) and column counts that differ (one call each then), at 16 to 40 tokens (the
/// tiles) and at 1, 3 and 8 (the twins: one token, and the 16-row tiles of 8), on 1 and 2
/// threads.
#[test]
fn shared_input_matmuls_equal_single_ones() {
    if !amx_expected() {
        return;
    }
    let mut rng = Rng(7);
    let before = threads();
    let cases: [&[(GgmlType, usize, usize)]; 3] = [
        &[
            (GgmlType::Q4_K, 301, 768),
            (GgmlType::Q6_K, 64, 768),
            (GgmlType::Q5_K, 37, 768),
        ],
        &[(GgmlType::Q4_0, 48, 512), (GgmlType::Q4_K, 21, 512)],
        &[(GgmlType::Q8_0, 40, 256), (GgmlType::Q5_0, 40, 512)],
    ];
    for mats in cases {
        let ws: Vec<QMatrix> = mats
            .iter()
            .map(|&(ty, rows, cols)| random_matrix(ty, rows, cols, &mut rng))
            .collect();
        let cols = mats[0].2;
        for n_tok in [16, 40, 3, 8, 1] {
            let x = random_x(n_tok * cols, &mut rng);
            for t in [1, 2] {
                set_threads(t);
                let mut want: Vec<Vec<f32>> = Vec::new();
                for w in &ws {
                    let mut y = vec![0f32; n_tok * w.rows];
                    let xs = &x[..n_tok * w.cols.min(cols)];
                    if w.cols == cols {
                        matmul(w, xs, &mut y, n_tok, Kernel::Fast).unwrap();
                    }
                    want.push(y);
                }
                if ws.iter().any(|w| w.cols != cols) {
                    // Column counts that differ: the call must refuse them as one matmul would
                    // (a shape error), not read past the input.
                    let mut ys: Vec<Vec<f32>> =
                        ws.iter().map(|w| vec![0f32; n_tok * w.rows]).collect();
                    let mut refs: Vec<&mut [f32]> = ys.iter_mut().map(|y| &mut y[..]).collect();
                    let wr: Vec<&QMatrix> = ws.iter().collect();
                    let r = matmul_shared(&wr, &x, &mut refs, n_tok, Kernel::Fast);
                    assert!(
                        r.is_err(),
                        "{mats:?}: {n_tok} tokens: wider matrix accepted"
                    );
                    assert_eq!(ys[0], want[0], "{mats:?}: {n_tok} tokens: first matrix");
                    continue;
                }
                let mut ys: Vec<Vec<f32>> =
                    ws.iter().map(|w| vec![f32::NAN; n_tok * w.rows]).collect();
                let mut refs: Vec<&mut [f32]> = ys.iter_mut().map(|y| &mut y[..]).collect();
                let wr: Vec<&QMatrix> = ws.iter().collect();
                matmul_shared(&wr, &x, &mut refs, n_tok, Kernel::Fast).unwrap();
                for (i, (got, want)) in ys.iter().zip(&want).enumerate() {
                    assert_eq!(
                        got, want,
                        "{mats:?}: matrix {i}, {n_tok} tokens, {t} threads"
                    );
                }
            }
        }
    }
    set_threads(before);
}

/// Each token of a tile matmul equals the same token through the twins, alone and in chunks
/// of 2 to 15 tokens, bit for bit, on 1 and 2 threads.
#[test]
fn twins_give_the_tiles_bits() {
    if !amx_expected() {
        return;
    }
    let mut rng = Rng(7);
    let before = threads();
    for ty in AMX_TYPES {
        let cols = if ty.block_size() == 32 { 576 } else { 768 };
        for rows in [1, 7, 16, 45] {
            let w = random_matrix(ty, rows, cols, &mut rng);
            let n_tok = 16 + rows % 25;
            let mut x = random_x(n_tok * cols, &mut rng);
            // An outlier and a zero group, as real activations have.
            x[cols + 5] = 80.0;
            x[2 * cols..2 * cols + 256].fill(0.0);
            let mut tiles = vec![f32::NAN; n_tok * rows];
            matmul(&w, &x, &mut tiles, n_tok, Kernel::Fast).unwrap();
            for threads in [1, 2] {
                set_threads(threads);
                for chunk in [1, 2, 5, 15] {
                    let mut t0 = 0;
                    while t0 < n_tok {
                        let n = chunk.min(n_tok - t0);
                        let mut y = vec![f32::NAN; n * rows];
                        let xs = &x[t0 * cols..(t0 + n) * cols];
                        matmul(&w, xs, &mut y, n, Kernel::Fast).unwrap();
                        let want = &tiles[t0 * rows..(t0 + n) * rows];
                        for (i, (a, b)) in y.iter().zip(want).enumerate() {
                            assert!(
                                a.to_bits() == b.to_bits(),
                                "{ty} {rows}×{cols}, {threads} thread(s), chunks of {chunk}: \
                                 token {} row {}: twin {a} tiles {b}",
                                t0 + i / rows,
                                i % rows
                            );
                        }
                        t0 += n;
                    }
                }
            }
            set_threads(before);
        }
    }
}

/// Prefill of 24 tokens through the whole model: the last token's logits, AMX vs Reference.
#[test]
fn amx_prefill_logits_match_reference_on_real_models() {
    use wasm_chord::cpu::{CpuModel, KvCache};
    use wasm_chord::source::FileSource;
    if !amx_expected() {
        return;
    }
    for model in [
        "smollm2-135m-instruct-q4_k_m.gguf",
        "smollm2-135m-instruct-pad768-q4_k_m.gguf",
    ] {
        let src = FileSource::open(common::model_path(model)).unwrap();
        let ids: Vec<u32> = (0..24).map(|i| 300 + (i * 7919) % 40000).collect();
        let logits = |kernel| {
            let (_, model) = CpuModel::load(&src, kernel).unwrap();
            let mut cache = KvCache::new(&model.cfg, 32);
            model.forward(&ids, 0, &mut cache).unwrap()
        };
        let reference = logits(Kernel::Reference);
        for isa in [3, u8::MAX] {
            limit_isa(isa);
            let fast = logits(Kernel::Fast);
            limit_isa(u8::MAX);
            let nmse = common::nmse(&fast, &reference);
            let path = if isa == 3 { "i16 (limit 3)" } else { "AMX" };
            eprintln!("{model} {path}: prefill logits NMSE {nmse:e}");
            assert!(nmse <= 1e-5, "{model} {path}: NMSE {nmse:e} > 1e-5");
        }
    }
}
