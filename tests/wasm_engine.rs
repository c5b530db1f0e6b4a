//! The engine compiled to wasm32, in headless Chromium (wasm-bindgen-test): tokenize + 8 greedy
//! tokens on the tiny fixture give the same ids as the native engine (the goldens in
//! tests/goldens/forward, which the native tests check too), on the CPU and on WebGPU; prefix
//! reuse over a multi-turn conversation and a saved session, against a fresh engine, on both.
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

async fn greedy(engine: &mut Engine, prompt: &[u32], n: usize) -> wasm_chord::engine::Generation {
    let opts = GenerateOptions {
        max_tokens: n,
        stop_at_eog: false,
        ..Default::default()
    };
    engine
        .generate_async(prompt, &opts, &mut |_| Control::Continue)
        .await
        .unwrap()
}

/// Conversations that don't start over, in the browser on both backends: over two turns, an
/// edited first message and a regenerate, greedy ids with prefix reuse equal those of the same
/// engine prefilling the prompt whole right after (its cache forgotten), and `cached_tokens` is
/// the common prefix; then a session saved (f32) and restored into the emptied cache continues
/// as the cache it was saved from did. One engine per backend: SwiftShader is slow.
#[wasm_bindgen_test]
async fn prefix_reuse_and_saved_sessions_match_a_fresh_prefill_on_both_backends() {
    use wasm_chord::engine::{common_prefix, Backend};
    use wasm_chord::session::KvPrecision;
    const N: usize = 4;
    for backend in [Backend::Cpu, Backend::Gpu] {
        let opts = LoadOptions {
            backend,
            n_ctx: Some(64),
            ..Default::default()
        };
        let mut e = Engine::load_async(&MODEL.to_vec(), &opts).await.unwrap();
        let tok = |e: &Engine, s: &str| e.tokenize(s, false, false).unwrap();
        let mut prompt = e.tokenize("Once upon a time", true, false).unwrap();
        for turn in 0..4 {
            match turn {
                1 => prompt.extend(tok(&e, " and then")),
                // The first words edited: only the BOS is common.
                2 => prompt.splice(1..3, tok(&e, "Long ago")).for_each(drop),
                // 3: regenerate, the same prompt again.
                _ => {}
            }
            let what = format!("{backend:?}, turn {turn}");
            let held = e.cached_ids().to_vec();
            let got = greedy(&mut e, &prompt, N).await;
            let expected = common_prefix(&held, &prompt).min(prompt.len() - 1);
            assert_eq!(got.cached_tokens, expected, "{what}: cached tokens");
            if turn == 1 || turn == 3 {
                assert!(got.cached_tokens > 0, "{what}: nothing reused");
            }
            // The oracle: the whole prompt prefilled (it leaves the cache holding the same ids).
            e.forget_prefix();
            let want = greedy(&mut e, &prompt, N).await;
            assert_eq!(want.cached_tokens, 0, "{what}");
            assert_eq!(got.ids, want.ids, "{what}: greedy ids differ with reuse");
            if turn == 0 {
                prompt.extend(&got.ids);
            }
        }
        // Save, continue; then restore into the emptied cache and continue again.
        let held = e.cached_ids().to_vec();
        let saved = e.save_session_async(KvPrecision::F32).await.unwrap();
        prompt.extend(tok(&e, " The end"));
        let want = greedy(&mut e, &prompt, N).await;
        e.forget_prefix();
        assert_eq!(e.restore_session(&saved).unwrap(), held.len());
        let got = greedy(&mut e, &prompt, N).await;
        let what = format!("{backend:?}, restored");
        assert_eq!(
            got.ids, want.ids,
            "{what}: the session continues differently"
        );
        let expected = common_prefix(&held, &prompt).min(prompt.len() - 1);
        assert!(expected > 10, "{what}: the test should reuse the session");
        assert_eq!(got.cached_tokens, expected, "{what}");
    }
}
