//! The CPU forward pass on real models against the exact reference (ref_forward.py: f64, bit-exact
//! dequantization) and against llama.cpp. Goldens: tests/goldens/forward, made by
//! `scripts/gen-forward-goldens`.
//!
//! - last-position logits: NMSE ≤ 1e-3 on the fast path, ≤ 1e-6 on the scalar reference path;
//! - greedy: the first 16 tokens equal the reference's, except from a step where the
//!   reference's own top-2 logits are within 0.25 of each other;
//! - llama.cpp: same top-1 at the last prompt position wherever its top-2 gap is ≥ 0.5.
//!
//! The Q5_K_M and IQ4_XS models (llama.cpp's presets, `scripts/fetch-models`) are checked by
//! their last-position logits only (`check_logits`).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use wasm_chord::cpu::{CpuModel, Kernel, KvCache};
use wasm_chord::sampling::argmax;
use wasm_chord::source::FileSource;

use common::{golden, golden_f32 as read_f32, ids, nmse};

fn load(model: &str, kernel: Kernel) -> CpuModel {
    let src = FileSource::open(common::model_path(model)).unwrap();
    CpuModel::load(&src, kernel).unwrap().1
}

/// Greedy continuation of `n` tokens with a KV cache; returns the ids and the first logits.
fn greedy(m: &CpuModel, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<f32>) {
    let mut cache = KvCache::new(&m.cfg, prompt.len() + n);
    let mut logits = m.forward(prompt, 0, &mut cache).unwrap();
    let first = logits.clone();
    let mut out = vec![];
    for i in 0..n {
        let t = argmax(&logits) as u32;
        out.push(t);
        if i + 1 < n {
            logits = m.forward(&[t], prompt.len() + i, &mut cache).unwrap();
        }
    }
    (out, first)
}

fn check_model(model: &str) {
    let g = golden(model);
    let fast = load(model, Kernel::Fast);
    let reference = load(model, Kernel::Reference);
    let n = g["n_greedy"].as_u64().unwrap() as usize;
    let mut greedy_cases = 0;
    for case in g["cases"].as_array().unwrap() {
        let name = format!("{model} {}", case["name"].as_str().unwrap());
        let prompt = ids(&case["prompt_ids"]);
        let (got, first) = greedy(&fast, &prompt, n);

        if let Some(file) = case["logits_file"].as_str() {
            let want = read_f32(file);
            let e = nmse(&first, &want);
            assert!(e <= 1e-3, "{name}: fast-path NMSE {e:e} > 1e-3");
            let mut cache = KvCache::new(&reference.cfg, prompt.len());
            let r = reference.forward(&prompt, 0, &mut cache).unwrap();
            let e = nmse(&r, &want);
            assert!(e <= 1e-6, "{name}: reference-path NMSE {e:e} > 1e-6");
        }

        // Greedy tokens equal the reference's up to the first near-tie.
        common::assert_greedy_matches(&name, &got[..n], case);
        greedy_cases += 1;

        // Sanity against llama.cpp where it is decisive.
        let l5 = case["llama_top5"].as_array().unwrap();
        let (l_top, l_gap) = (
            l5[0][0].as_u64().unwrap() as u32,
            l5[0][1].as_f64().unwrap() - l5[1][1].as_f64().unwrap(),
        );
        if l_gap >= 0.5 {
            assert_eq!(
                argmax(&first) as u32,
                l_top,
                "{name}: top-1 differs from llama.cpp (gap {l_gap:.3})"
            );
        }
    }
    assert!(
        greedy_cases >= 5,
        "{model}: only {greedy_cases} greedy goldens"
    );
}

#[test]
fn smollm2_q4_k_m() {
    check_model("smollm2-135m-instruct-q4_k_m.gguf");
}

#[test]
fn smollm2_pad768() {
    check_model("smollm2-135m-instruct-pad768-q4_k_m.gguf");
}

#[test]
fn smollm2_q4_1() {
    check_model("smollm2-135m-instruct-q4_1.gguf");
}

#[test]
fn tiny_random_llama() {
    check_model("tiny-random-llama-q4_k_m.gguf");
}

#[test]
fn gemma3_270m() {
    check_model("gemma-3-270m-q4_k_m.gguf");
}

#[test]
fn qwen2_5_coder_0_5b() {
    check_model("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
}

/// llama.cpp's Q5_K_M and IQ4_XS presets (goldens: first raw and first chat prompt only, to keep
/// CI short): last-position logits against the exact reference on the fast and the scalar
/// reference paths, and llama.cpp's top-1 where it is decisive.
fn check_logits(model: &str) {
    let g = golden(model);
    let fast = load(model, Kernel::Fast);
    let reference = load(model, Kernel::Reference);
    let mut checked = 0;
    for case in g["cases"].as_array().unwrap() {
        let name = format!("{model} {}", case["name"].as_str().unwrap());
        let prompt = ids(&case["prompt_ids"]);
        let want = read_f32(case["logits_file"].as_str().unwrap());
        for (m, max, path) in [(&fast, 1e-5, "fast"), (&reference, 1e-8, "reference")] {
            let mut cache = KvCache::new(&m.cfg, prompt.len());
            let got = m.forward(&prompt, 0, &mut cache).unwrap();
            let e = nmse(&got, &want);
            eprintln!("{name}: {path}-path NMSE {e:e}");
            assert!(e <= max, "{name}: {path}-path NMSE {e:e} > {max:e}");
            let l5 = case["llama_top5"].as_array().unwrap();
            let gap = l5[0][1].as_f64().unwrap() - l5[1][1].as_f64().unwrap();
            if gap >= 0.5 {
                assert_eq!(
                    argmax(&got) as u32,
                    l5[0][0].as_u64().unwrap() as u32,
                    "{name}: top-1 differs from llama.cpp (gap {gap:.3})"
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 2, "{model}: expected the raw0 and chat0 goldens");
}

#[test]
fn smollm2_pad768_q5_k_m() {
    check_logits("smollm2-135m-instruct-pad768-q5_k_m.gguf");
}

#[test]
fn smollm2_iq4_xs() {
    check_logits("smollm2-135m-instruct-iq4_xs.gguf");
}

/// Prefill in one batch and token by token give the same logits.
#[test]
fn batched_prefill_equals_stepwise() {
    let m = load("tiny-random-llama-q4_k_m.gguf", Kernel::Fast);
    let prompt = [1u32, 413, 410, 405, 411, 408];
    let mut c1 = KvCache::new(&m.cfg, 8);
    let batched = m.forward(&prompt, 0, &mut c1).unwrap();
    let mut c2 = KvCache::new(&m.cfg, 8);
    let mut last = vec![];
    for (i, &t) in prompt.iter().enumerate() {
        last = m.forward(&[t], i, &mut c2).unwrap();
    }
    assert!(nmse(&batched, &last) < 1e-10);
}

/// A prompt longer than the context and an out-of-vocabulary id are clear errors.
#[test]
fn context_overflow_and_bad_ids_are_errors() {
    let m = load("tiny-random-llama-q4_k_m.gguf", Kernel::Fast);
    let mut c = KvCache::new(&m.cfg, 4);
    let e = m.forward(&[1, 2, 3, 4, 5], 0, &mut c).unwrap_err();
    assert_eq!(e.code(), "context_full");
    assert!(
        e.to_string().contains("holds 4 tokens but 5 are needed"),
        "{e}"
    );
    let e = m.forward(&[100_000], 0, &mut c).unwrap_err();
    assert!(
        e.to_string()
            .contains("token id 100000 is outside the vocabulary of 512"),
        "{e}"
    );
}
