//! Shared helpers for integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// Repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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
