//! The model zoo compiled to wasm32, in headless Chromium: the same checks as tests/zoo.rs
//! (logits within llama.cpp's noise, ≥ 8 greedy tokens per prompt, prefill = decode) on the
//! tiny family models (lfm2, a hybrid, included), whose files and goldens are compiled in, on the CPU (SIMD128) and on
//! WebGPU (SwiftShader: the f32 paths, workgroup reductions).
//!
//! Run: `make wasm-test` (wasm-bindgen-test-runner with chromedriver; see webdriver.json).
#![cfg(target_arch = "wasm32")]

#[path = "zoo/check.rs"]
mod check;

use wasm_bindgen_test::*;
use wasm_chord::cpu::{CpuModel, Kernel};
use wasm_chord::gpu::{GpuContext, GpuModel};

wasm_bindgen_test_configure!(run_in_browser);

/// A family's model file and its cases, compiled in.
macro_rules! family_data {
    ($fam:literal) => {{
        let model: &[u8] = include_bytes!(concat!("fixtures/zoo/tiny-", $fam, ".gguf"));
        let golden = include_str!(concat!("goldens/zoo/", $fam, ".json"));
        let logits: [&[u8]; 3] = [
            include_bytes!(concat!("goldens/zoo/", $fam, ".p0.last.f32")),
            include_bytes!(concat!("goldens/zoo/", $fam, ".p1.last.f32")),
            include_bytes!(concat!("goldens/zoo/", $fam, ".p2.last.f32")),
        ];
        let cases = check::cases($fam, golden, |file| {
            let i = ["p0", "p1", "p2"]
                .iter()
                .position(|p| file.ends_with(&format!(".{p}.last.f32")))
                .expect("a golden logits file");
            logits[i].to_vec()
        });
        (model.to_vec(), cases)
    }};
}

macro_rules! cpu_family {
    ($cpu:ident, $fam:literal) => {
        #[wasm_bindgen_test]
        fn $cpu() {
            let (model, cases) = family_data!($fam);
            let (_, m) = CpuModel::load(&model, Kernel::Fast).unwrap();
            check::check_cpu(&m, &cases);
        }
    };
}

macro_rules! family {
    ($cpu:ident, $gpu:ident, $fam:literal) => {
        cpu_family!($cpu, $fam);

        #[wasm_bindgen_test]
        async fn $gpu() {
            let (model, cases) = family_data!($fam);
            let ctx = GpuContext::new()
                .await
                .unwrap_or_else(|e| panic!("{e}: start Chromium with --enable-unsafe-webgpu"));
            let mut gpu = GpuModel::load(ctx, &model, 64).unwrap();
            check::check_gpu(&mut gpu, &cases).await;
        }
    };
}

family!(
    qwen3_matches_llama_cpp,
    gpu_qwen3_matches_llama_cpp,
    "qwen3"
);
family!(phi3_matches_llama_cpp, gpu_phi3_matches_llama_cpp, "phi3");
family!(
    smollm3_matches_llama_cpp,
    gpu_smollm3_matches_llama_cpp,
    "smollm3"
);
family!(
    gemma4_matches_llama_cpp,
    gpu_gemma4_matches_llama_cpp,
    "gemma4"
);
family!(
    granite_matches_llama_cpp,
    gpu_granite_matches_llama_cpp,
    "granite"
);
family!(lfm2_matches_llama_cpp, gpu_lfm2_matches_llama_cpp, "lfm2");
family!(
    qwen35_matches_llama_cpp,
    gpu_qwen35_matches_llama_cpp,
    "qwen35"
);
