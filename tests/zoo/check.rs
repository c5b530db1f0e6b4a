#![allow(dead_code)]
//! The checks of the tiny family models (scripts/tiny-models) against llama.cpp's goldens
//! (tests/goldens/zoo, made by scripts/gen-zoo-goldens), shared by the native test (tests/zoo.rs)
//! and its browser twin (tests/wasm_zoo.rs).
//!
//! Tolerances come from llama.cpp's own noise: `fa_spread` is the largest logit difference
//! between its flash-attention and plain runs of the same prompt (both keep K and V in f16,
//! we keep them in f32), 0.005–0.04 on these models. The logits must agree within
//! `TOL_SPREADS` times that spread (at least `TOL_FLOOR`), and a greedy step may differ only
//! where llama.cpp's own top-2 gap is below that tolerance (a near-tie, reported).

use wasm_chord::cpu::{CpuModel, KvCache};
use wasm_chord::gpu::GpuModel;
use wasm_chord::sampling::argmax;

pub const FAMILIES: [&str; 7] = [
    "qwen3", "phi3", "smollm3", "gemma4", "granite", "lfm2", "qwen35",
];
pub const TOL_SPREADS: f32 = 4.0;
pub const TOL_FLOOR: f32 = 0.02;
/// Greedy tokens each prompt must match before any near-tie.
pub const MIN_GREEDY: usize = 8;

pub struct Case {
    pub name: String,
    pub prompt: Vec<u32>,
    pub ids: Vec<u32>,
    /// llama.cpp's (top-1 logit − top-2 logit) at every step.
    pub gaps: Vec<f32>,
    pub logits: Vec<f32>,
    pub tol: f32,
}

fn u32s(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The cases of a family's golden; `logits(file)` reads a golden logits file.
pub fn cases(family: &str, golden: &str, logits: impl Fn(&str) -> Vec<u8>) -> Vec<Case> {
    let g: serde_json::Value = serde_json::from_str(golden).unwrap();
    g["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let bytes = logits(c["logits_file"].as_str().unwrap());
            let spread = c["fa_spread"].as_f64().unwrap() as f32;
            Case {
                name: format!("{family} {}", c["name"].as_str().unwrap()),
                prompt: u32s(&c["prompt_ids"]),
                ids: u32s(&c["ids"]),
                gaps: c["top2"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| (s[0][1].as_f64().unwrap() - s[1][1].as_f64().unwrap()) as f32)
                    .collect(),
                logits: bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                tol: (TOL_SPREADS * spread).max(TOL_FLOOR),
            }
        })
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "logit vectors of different lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Greedy ids from first logits, decoding token by token through `step`.
pub fn greedy(first: Vec<f32>, n: usize, mut step: impl FnMut(u32, usize) -> Vec<f32>) -> Vec<u32> {
    let mut logits = first;
    let mut out = vec![];
    for i in 0..n {
        let t = argmax(&logits) as u32;
        out.push(t);
        if i + 1 < n {
            logits = step(t, i);
        }
    }
    out
}

/// `got` equals llama.cpp's greedy ids, except from a step where its own top-2 gap is below
/// the tolerance (a near-tie, which is reported); at least `MIN_GREEDY` tokens must match
/// unless such a near-tie comes first. Returns how many matched.
pub fn check_greedy(case: &Case, got: &[u32]) -> usize {
    for (i, (&g, &w)) in got.iter().zip(&case.ids).enumerate() {
        if g != w {
            let gap = case.gaps[i];
            assert!(
                gap < case.tol,
                "{}: greedy step {i} chose {g}, llama.cpp {w} (its top-2 gap {gap:.4} ≥ tolerance {:.4})\n got {got:?}\nwant {:?}",
                case.name,
                case.tol,
                case.ids
            );
            eprintln!(
                "{}: near-tie at step {i} (llama.cpp's top-2 gap {gap:.4} < {:.4}): compared {i} tokens",
                case.name, case.tol
            );
            return i;
        }
    }
    assert!(
        got.len() >= MIN_GREEDY,
        "{}: only {} greedy tokens",
        case.name,
        got.len()
    );
    got.len()
}

/// Every check on the CPU model: last-position logits, greedy tokens, prefill = decode.
pub fn check_cpu(m: &CpuModel, cases: &[Case]) {
    for case in cases {
        let n = case.ids.len();
        let p = case.prompt.len();
        let mut cache = KvCache::new(&m.cfg, p + n);
        let first = m.forward(&case.prompt, 0, &mut cache).unwrap();
        let d = max_abs_diff(&first, &case.logits);
        assert!(
            d <= case.tol,
            "{}: last-position logits differ from llama.cpp's by {d:.4} > {:.4}",
            case.name,
            case.tol
        );
        let got = greedy(first.clone(), n, |t, i| {
            m.forward(&[t], p + i, &mut cache).unwrap()
        });
        check_greedy(case, &got);

        // Prefill equals token-by-token decode.
        let mut cache = KvCache::new(&m.cfg, p);
        let mut last = vec![];
        for (i, &t) in case.prompt.iter().enumerate() {
            last = m.forward(&[t], i, &mut cache).unwrap();
        }
        let d = max_abs_diff(&first, &last);
        assert!(
            d <= 1e-3,
            "{}: prefill and decode differ by {d:e}",
            case.name
        );
    }
}

/// Every check on the GPU model (natively awaited with pollster, in the browser by the test
/// runner): last-position logits, greedy tokens, and prefill (batches of up to 64 tokens
/// through matmat.wgsl) = token by token (the fused decode kernels). Each prompt starts again
/// at position 0: causal attention never reads what a previous prompt left behind.
pub async fn check_gpu(gpu: &mut GpuModel, cases: &[Case]) {
    let family = gpu.cfg.arch.name();
    for case in cases {
        let first = gpu.forward(&case.prompt, 0).await.unwrap();
        let d = max_abs_diff(&first, &case.logits);
        assert!(
            d <= case.tol,
            "{family} {}: GPU logits differ from llama.cpp's by {d:.4} > {:.4}",
            case.name,
            case.tol
        );
        let (n, p) = (case.ids.len(), case.prompt.len());
        let mut logits = first.clone();
        let mut got = vec![];
        for i in 0..n {
            let t = argmax(&logits) as u32;
            got.push(t);
            if i + 1 < n {
                logits = gpu.forward(&[t], p + i).await.unwrap();
            }
        }
        check_greedy(case, &got);

        gpu.limit_batch(1);
        let stepped = gpu.forward(&case.prompt, 0).await.unwrap();
        gpu.limit_batch(usize::MAX);
        let d = max_abs_diff(&stepped, &first);
        assert!(
            d <= 1e-3,
            "{family} {}: GPU prefill and decode differ by {d:e}",
            case.name
        );
    }
}
