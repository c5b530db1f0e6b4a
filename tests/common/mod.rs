//! Shared helpers for integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

#[cfg(not(target_arch = "wasm32"))]
pub mod batch;
mod data;
pub mod tools;
#[allow(unused_imports)] // each test binary uses a part
pub use data::{cols_for, f16_bytes, nmse, random_matrix, Rng};

/// Repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tiny random llama with a ChatML template (committed: `scripts/tiny-chat-model` makes it
/// from `models/tiny-random-llama-q4_k_m.gguf`), as an absolute path, which `model_path` and
/// `load_engine` take as it is: GPU tests of chat-level paths in seconds on lavapipe.
pub fn tiny_chat() -> String {
    root()
        .join("tests/fixtures/tiny-chat-llama-q4_k_m.gguf")
        .display()
        .to_string()
}

/// Path of a test model in `models/` (or `$WASM_CHORD_MODELS`). Fails, never skips, when it is
/// missing, and says how to get it.
pub fn model_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("WASM_CHORD_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models"));
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "test model {} is missing: run `scripts/fetch-models` (or `make models`) to download and verify it",
        p.display()
    );
    p
}

/// The six test models (file names in `models/`).
pub const TEST_MODELS: [&str; 6] = [
    "smollm2-135m-instruct-q4_k_m.gguf",
    "smollm2-135m-instruct-pad768-q4_k_m.gguf",
    "tiny-random-llama-q4_k_m.gguf",
    "smollm2-135m-instruct-q4_1.gguf",
    "gemma-3-270m-q4_k_m.gguf",
    "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
];

/// The forward golden of `model` (tests/goldens/forward/<model>.json, made by
/// `scripts/gen-forward-goldens` from ref_forward.py: numpy f64, exact dequantization).
pub fn golden(model: &str) -> serde_json::Value {
    let p = root()
        .join("tests/goldens/forward")
        .join(model.replace(".gguf", ".json"));
    serde_json::from_str(&std::fs::read_to_string(&p).expect("forward golden")).unwrap()
}

/// A JSON array of token ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// A golden logits file (little-endian f32) of tests/goldens/forward.
pub fn golden_f32(name: &str) -> Vec<f32> {
    let b = std::fs::read(root().join("tests/goldens/forward").join(name)).unwrap();
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Greedy tokens `got` equal the golden case's `greedy_ids` up to the first step where they
/// differ, and that step must be one where the reference's own top-2 logits are within 0.25
/// (a near-tie that rounding may flip); from there on nothing is compared. Returns how many
/// leading tokens matched.
pub fn assert_greedy_matches(name: &str, got: &[u32], case: &serde_json::Value) -> usize {
    let want = ids(&case["greedy_ids"]);
    let top2 = case["top2"].as_array().unwrap();
    assert!(
        got.len() <= want.len(),
        "{name}: {} tokens, the golden has {}",
        got.len(),
        want.len()
    );
    for i in 0..got.len() {
        let gap = top2[i][1].as_f64().unwrap() - top2[i][3].as_f64().unwrap();
        if got[i] != want[i] {
            assert!(
                gap < 0.25,
                "{name}: step {i} chose {} but the reference chose {} with a top-2 gap of {gap:.3}\n got {got:?}\nwant {want:?}",
                got[i],
                want[i]
            );
            return i;
        }
    }
    got.len()
}

/// Loads `model` from `models/` on `backend` (with `n_ctx`, if given), or fails saying how a
/// GPU test gets an adapter.
pub fn load_engine(
    model: &str,
    backend: wasm_chord::engine::Backend,
    n_ctx: Option<usize>,
) -> wasm_chord::engine::Engine {
    let src = wasm_chord::source::FileSource::open(model_path(model)).unwrap();
    let opts = wasm_chord::engine::LoadOptions {
        backend,
        n_ctx,
        ..Default::default()
    };
    wasm_chord::engine::Engine::load(&src, &opts).unwrap_or_else(|e| {
        panic!(
            "loading {model} on {backend:?}: {e} (GPU tests need an adapter: on CI Mesa lavapipe, \
             WGPU_BACKEND=vulkan VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json)"
        )
    })
}
