//! The engine compiled to wasm32, in headless Chromium (wasm-bindgen-test): tokenize + 8 greedy
//! tokens on the tiny fixture give the same ids as the native engine (the goldens in
//! tests/goldens/forward, which the native tests check too), on the CPU and on WebGPU.
//!
//! Run: `make wasm-test` (wasm-bindgen-test-runner with chromedriver; see webdriver.json).
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;
use wasm_chord::engine::{Control, Engine, GenerateOptions, LoadOptions};

wasm_bindgen_test_configure!(run_in_browser);

// `make models` (scripts/fetch-models) puts the model here; without it this file does not compile.
static MODEL: &[u8] = include_bytes!("../models/tiny-random-llama-q4_k_m.gguf");
static GOLDEN: &str = include_str!("goldens/forward/tiny-random-llama-q4_k_m.json");

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[wasm_bindgen_test]
fn tokenize_and_greedy_match_native() {
    let g: serde_json::Value = serde_json::from_str(GOLDEN).unwrap();
    let case = &g["cases"][0];
    let mut engine = Engine::load(&MODEL.to_vec(), &LoadOptions::default()).unwrap();
    let prompt = engine
        .tokenize(case["text"].as_str().unwrap(), true, false)
        .unwrap();
    assert_eq!(prompt, ids(&case["prompt_ids"]));
    let out = engine
        .generate(
            &prompt,
            &GenerateOptions {
                max_tokens: 8,
                stop_at_eog: false,
                ..Default::default()
            },
            &mut |_| Control::Continue,
        )
        .unwrap();
    assert_eq!(out.ids, ids(&case["greedy_ids"])[..8]);
}

/// The engine on the browser's WebGPU (SwiftShader here: no f16), through the async API the
/// worker uses: the same 8 greedy tokens.
#[wasm_bindgen_test]
async fn webgpu_engine_greedy_matches_native() {
    use wasm_chord::engine::Backend;
    let g: serde_json::Value = serde_json::from_str(GOLDEN).unwrap();
    let case = &g["cases"][0];
    let opts = LoadOptions {
        backend: Backend::Gpu,
        n_ctx: Some(64),
        ..Default::default()
    };
    let mut engine = match Engine::load_async(&MODEL.to_vec(), &opts).await {
        Ok(e) => e,
        Err(e) => panic!("{e}: run the browser with --enable-unsafe-webgpu (webdriver.json)"),
    };
    assert_eq!(engine.backend(), Backend::Gpu);
    let prompt = engine
        .tokenize(case["text"].as_str().unwrap(), true, false)
        .unwrap();
    let out = engine
        .generate_async(
            &prompt,
            &GenerateOptions {
                max_tokens: 8,
                stop_at_eog: false,
                ..Default::default()
            },
            &mut |_| Control::Continue,
        )
        .await
        .unwrap();
    assert_eq!(out.ids, ids(&case["greedy_ids"])[..8]);
}
