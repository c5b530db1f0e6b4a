//! Whole models on the GPU against the CPU engine (`Kernel::Reference`): last-prompt logits by
//! NMSE, and greedy tokens taken on the GPU (`step_argmax`) equal to the CPU's. Natively this
//! runs on Mesa's lavapipe: `WGPU_BACKEND=vulkan
//! VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json`.

mod common;

use pollster::block_on;
use wasm_chord::cpu::{CpuModel, Kernel, KvCache};
use wasm_chord::gpu::{GpuContext, GpuModel};
use wasm_chord::sampling::argmax;
use wasm_chord::source::FileSource;

const N_CTX: usize = 64;
const N_GREEDY: usize = 8;

fn context() -> GpuContext {
    match block_on(GpuContext::new()) {
        Ok(c) => {
            eprintln!("adapter: {}", c.describe());
            c
        }
        Err(e) => panic!(
            "{e}\nThe GPU tests need a WebGPU adapter: install `mesa-vulkan-drivers` and set \
             WGPU_BACKEND=vulkan VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"
        ),
    }
}

fn nmse(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        num += (f64::from(g) - f64::from(w)).powi(2);
        den += f64::from(w).powi(2);
    }
    num / den.max(1e-30)
}

/// CPU: last-prompt logits and `N_GREEDY` greedy tokens.
fn cpu_reference(cpu: &CpuModel, prompt: &[u32]) -> (Vec<f32>, Vec<u32>) {
    let mut cache = KvCache::new(&cpu.cfg, N_CTX);
    let logits = cpu.forward(prompt, 0, &mut cache).unwrap();
    let mut toks = vec![argmax(&logits) as u32];
    let mut pos = prompt.len();
    while toks.len() < N_GREEDY {
        let l = cpu
            .forward(&[*toks.last().unwrap()], pos, &mut cache)
            .unwrap();
        toks.push(argmax(&l) as u32);
        pos += 1;
    }
    (logits, toks)
}

fn check_model(name: &str, prompt: &[u32], max_nmse: f64) {
    let path = common::model_path(name);
    let src = FileSource::open(&path).unwrap();
    let (_, cpu) = CpuModel::load(&src, Kernel::Reference).unwrap();
    let (want_logits, want_toks) = cpu_reference(&cpu, prompt);
    drop(cpu);

    let mut gpu = GpuModel::load(context(), &src, N_CTX).unwrap();
    let logits = block_on(gpu.forward(prompt, 0)).unwrap();
    let e = nmse(&logits, &want_logits);
    eprintln!("{name}: last-prompt logits NMSE {e:.3e}");
    assert!(
        e <= max_nmse,
        "{name}: logits NMSE {e:.3e} > {max_nmse:.1e}"
    );

    // Greedy on the GPU: redo the last prompt position (same K/V), then feed each token back.
    let n = prompt.len();
    let mut toks = vec![block_on(gpu.step_argmax(prompt[n - 1], n - 1)).unwrap()];
    while toks.len() < N_GREEDY {
        let pos = n + toks.len() - 1;
        toks.push(block_on(gpu.step_argmax(*toks.last().unwrap(), pos)).unwrap());
    }
    eprintln!("{name}: greedy GPU {toks:?}, CPU {want_toks:?}");
    assert_eq!(toks, want_toks, "{name}: greedy tokens differ");
}

#[test]
fn tiny_random_llama_matches_the_cpu() {
    check_model(
        "tiny-random-llama-q4_k_m.gguf",
        &[1, 413, 410, 405, 411, 408],
        1e-4,
    );
}

#[test]
fn smollm2_matches_the_cpu() {
    check_model(
        "smollm2-135m-instruct-q4_k_m.gguf",
        &[504, 3575, 282, 4649, 314],
        1e-4,
    );
}

#[test]
fn smollm2_pad768_matches_the_cpu() {
    check_model(
        "smollm2-135m-instruct-pad768-q4_k_m.gguf",
        &[504, 3575, 282, 4649, 314],
        1e-4,
    );
}

#[test]
fn qwen2_5_matches_the_cpu() {
    check_model(
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        &[785, 6722, 315, 9625, 374],
        1e-4,
    );
}

#[test]
fn context_overflow_is_an_error() {
    let path = common::model_path("tiny-random-llama-q4_k_m.gguf");
    let src = FileSource::open(&path).unwrap();
    let mut gpu = GpuModel::load(context(), &src, 4).unwrap();
    let err = block_on(gpu.forward(&[1, 2, 3, 4, 5], 0)).unwrap_err();
    assert_eq!(err.code(), "context_full");
}

#[test]
fn gemma3_matches_the_cpu() {
    // Sliding-window layers, Q/K norms, post-norms, GELU gate, scaled embeddings, and a 178 MB
    // Q8_0 token_embd (tied output) split into row ranges.
    check_model(
        "gemma-3-270m-q4_k_m.gguf",
        &[2, 818, 5279, 529, 7001, 563],
        1e-4,
    );
}

#[test]
fn weights_already_in_memory_upload_too() {
    // GpuModel::new (from ModelWeights) rather than the streaming GpuModel::load.
    let path = common::model_path("tiny-random-llama-q4_k_m.gguf");
    let src = FileSource::open(&path).unwrap();
    let (_, cpu) = CpuModel::load(&src, Kernel::Reference).unwrap();
    let prompt = [1, 413, 410, 405, 411, 408];
    let (want, _) = cpu_reference(&cpu, &prompt);
    let mut gpu = GpuModel::new(context(), cpu.cfg.clone(), &cpu.w, N_CTX).unwrap();
    let got = block_on(gpu.forward(&prompt, 0)).unwrap();
    let e = nmse(&got, &want);
    eprintln!("tiny (GpuModel::new): logits NMSE {e:.3e}");
    assert!(e <= 1e-4);
}
