//! The model zoo on the CPU (native): a tiny random model of each of qwen3, phi3, smollm3,
//! gemma4 and granite (tests/fixtures/zoo, made by `scripts/tiny-models`) against llama.cpp
//! (tests/goldens/zoo, made by `scripts/gen-zoo-goldens`): last-position logits within
//! llama.cpp's own noise, ≥ 8 greedy tokens per prompt, prefill = token-by-token decode; and
//! clear errors for the variants the engine does not run. The same checks on the GPU (lavapipe:
//! `WGPU_BACKEND=vulkan VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json`).
//! Tolerances: tests/zoo/check.rs.
#![cfg(not(target_arch = "wasm32"))]

#[path = "zoo/check.rs"]
mod check;

use std::path::PathBuf;
use wasm_chord::cpu::{CpuModel, Kernel};
use wasm_chord::source::FileSource;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(family: &str) -> PathBuf {
    let p = root().join(format!("tests/fixtures/zoo/tiny-{family}.gguf"));
    assert!(
        p.is_file(),
        "{} is missing: run `scripts/tiny-models` (needs `pip install gguf numpy`)",
        p.display()
    );
    p
}

fn family_cases(family: &str) -> Vec<check::Case> {
    let golden =
        std::fs::read_to_string(root().join(format!("tests/goldens/zoo/{family}.json"))).unwrap();
    check::cases(family, &golden, |f| {
        std::fs::read(root().join("tests/goldens").join(f)).unwrap()
    })
}

fn run_family(family: &str) {
    let src = FileSource::open(fixture(family)).unwrap();
    let (_, m) = CpuModel::load(&src, Kernel::Fast).unwrap();
    assert_eq!(m.cfg.arch.name(), family);
    check::check_cpu(&m, &family_cases(family));
    // The scalar reference path agrees too.
    let (_, r) = CpuModel::load(&src, Kernel::Reference).unwrap();
    check::check_cpu(&r, &family_cases(family)[..1]);
}

#[test]
fn qwen3_matches_llama_cpp() {
    run_family("qwen3");
}

#[test]
fn phi3_matches_llama_cpp() {
    run_family("phi3");
}

#[test]
fn smollm3_matches_llama_cpp() {
    run_family("smollm3");
}

#[test]
fn gemma4_matches_llama_cpp() {
    run_family("gemma4");
}

#[test]
fn granite_matches_llama_cpp() {
    run_family("granite");
}

#[test]
fn every_family_has_a_fixture_and_golden() {
    for f in check::FAMILIES {
        fixture(f);
        assert!(
            family_cases(f).len() >= 3,
            "{f}: fewer than 3 golden prompts"
        );
    }
}

/// Loading `file` fails with an `unsupported_model` error whose message has every one of `parts`.
fn refuses(file: &str, parts: &[&str]) {
    let src = FileSource::open(root().join("tests/fixtures/zoo").join(file)).unwrap();
    let e = CpuModel::load(&src, Kernel::Fast)
        .err()
        .expect("load must fail");
    let msg = e.to_string();
    assert_eq!(e.code(), "unsupported_model", "{file}: {msg}");
    for p in parts {
        assert!(msg.contains(p), "{file}: `{msg}` does not mention `{p}`");
    }
}

#[test]
fn unsupported_variants_are_refused_by_name() {
    refuses(
        "unsupported-gemma4-per-layer-embd.gguf",
        &["gemma4", "per-layer embeddings"],
    );
    refuses(
        "unsupported-gemma4-shared-kv.gguf",
        &["gemma4", "shared_kv_layers"],
    );
    refuses(
        "unsupported-qwen3-experts.gguf",
        &["qwen3", "mixture of experts"],
    );
    refuses(
        "unsupported-mamba2.gguf",
        &["mamba2", "qwen3", "gemma4", "granite"],
    );
    refuses("unsupported-granite-yarn.gguf", &["granite", "yarn"]);
}

/// A WebGPU context (natively: Mesa's lavapipe, `WGPU_BACKEND=vulkan
/// VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json`).
fn gpu_context() -> wasm_chord::gpu::GpuContext {
    pollster::block_on(wasm_chord::gpu::GpuContext::new()).unwrap_or_else(|e| {
        panic!(
            "{e}\nThe GPU tests need a WebGPU adapter: install `mesa-vulkan-drivers` and set \
             WGPU_BACKEND=vulkan VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"
        )
    })
}

/// Each family on the GPU, loaded through the shared loader: the checks of
/// `check::check_gpu` (logits, greedy tokens, prefill = decode).
fn run_family_gpu(family: &str) {
    let src = FileSource::open(fixture(family)).unwrap();
    let mut gpu = wasm_chord::gpu::GpuModel::load(gpu_context(), &src, 64).unwrap();
    assert_eq!(gpu.cfg.arch.name(), family);
    pollster::block_on(check::check_gpu(&mut gpu, &family_cases(family)));
}

#[test]
fn gpu_qwen3_matches_llama_cpp() {
    run_family_gpu("qwen3");
}

#[test]
fn gpu_phi3_matches_llama_cpp() {
    run_family_gpu("phi3");
}

#[test]
fn gpu_smollm3_matches_llama_cpp() {
    run_family_gpu("smollm3");
}

#[test]
fn gpu_gemma4_matches_llama_cpp() {
    run_family_gpu("gemma4");
}

#[test]
fn gpu_granite_matches_llama_cpp() {
    run_family_gpu("granite");
}
