//! Whole models on the GPU against the CPU engine (`Kernel::Reference`): last-prompt logits by
//! NMSE, and greedy tokens taken on the GPU (`step_argmax`) equal to the CPU's. Natively this
//! runs on Mesa's lavapipe: `WGPU_BACKEND=vulkan
//! VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json`.

mod common;

use pollster::block_on;
use wasm_chord::cpu::{CpuModel, Kernel, KvCache};
use wasm_chord::gpu::{GpuContext, GpuModel, GpuSampling};
use wasm_chord::sampling::{argmax, Rng, Sampler, SamplerConfig};
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

#[test]
fn sampling_on_the_gpu_follows_the_cpu_sampler() {
    // step_sample with top_k = 1 is greedy; with temperature, top-k and top-p it picks what
    // `Sampler` picks from the same logits (read back by `forward` at the same position) and the
    // same uniform number.
    let path = common::model_path("tiny-random-llama-q4_k_m.gguf");
    let src = FileSource::open(&path).unwrap();
    let mut gpu = GpuModel::load(context(), &src, N_CTX).unwrap();
    let prompt = [1, 413, 410, 405, 411, 408];
    block_on(gpu.forward(&prompt[..prompt.len() - 1], 0)).unwrap();
    let n = prompt.len();
    let greedy = GpuSampling {
        temperature: 1.0,
        top_k: 1,
        top_p: 1.0,
        uniform: 0.9,
    };
    let mut tok = prompt[n - 1];
    for pos in n - 1..n + 3 {
        let want = block_on(gpu.step_argmax(tok, pos)).unwrap();
        assert_eq!(block_on(gpu.step_sample(tok, pos, &greedy)).unwrap(), want);
        tok = want;
    }

    let cfg = SamplerConfig {
        temperature: 0.9,
        top_k: 40,
        top_p: 0.95,
        seed: 7,
        ..Default::default()
    };
    let mut cpu = Sampler::new(cfg.clone());
    let mut rng = Rng::new(cfg.seed);
    let mut toks = Vec::new();
    for pos in n + 3..n + 3 + N_GREEDY {
        let mut logits = block_on(gpu.forward(&[tok], pos)).unwrap();
        let want = cpu.sample(&mut logits, &[]);
        let s = GpuSampling {
            temperature: cfg.temperature,
            top_k: cfg.top_k,
            top_p: cfg.top_p,
            uniform: rng.next_f64() as f32,
        };
        let got = block_on(gpu.step_sample(tok, pos, &s)).unwrap();
        assert_eq!(got, want, "pos {pos}: GPU sampled {got}, CPU {want}");
        toks.push(got);
        tok = got;
    }
    eprintln!("tiny: sampled on the GPU {toks:?}");
}

/// The last logits of `prompt` run in batches of `batch` tokens per submission.
fn prefill(gpu: &mut GpuModel, prompt: &[u32], batch: usize) -> Vec<f32> {
    gpu.limit_batch(batch);
    let l = block_on(gpu.forward(prompt, 0)).unwrap();
    gpu.limit_batch(usize::MAX);
    l
}

fn check_batched_prefill(name: &str, prompt: &[u32]) {
    let path = common::model_path(name);
    let src = FileSource::open(&path).unwrap();
    let mut gpu = GpuModel::load(context(), &src, N_CTX).unwrap();
    assert!(
        gpu.max_batch >= prompt.len(),
        "one submission for the prompt"
    );
    let t = std::time::Instant::now();
    let one_by_one = prefill(&mut gpu, prompt, 1);
    let t1 = t.elapsed();
    let t = std::time::Instant::now();
    let batched = prefill(&mut gpu, prompt, usize::MAX);
    let tb = t.elapsed();
    eprintln!("{name}: prefill token by token {t1:?}, batched {tb:?}");
    let e = nmse(&batched, &one_by_one);
    eprintln!(
        "{name}: batched prefill ({} tokens) vs token by token: NMSE {e:.3e}",
        prompt.len()
    );
    assert!(e <= 1e-10, "{name}: NMSE {e:.3e}");
    // Batches of 5: several submissions, the later ones attending to earlier batches' K/V.
    let fives = prefill(&mut gpu, prompt, 5);
    let e5 = nmse(&fives, &one_by_one);
    eprintln!("{name}: batches of 5 vs token by token: NMSE {e5:.3e}");
    assert!(e5 <= 1e-10, "{name}: NMSE {e5:.3e}");
    // Decoding goes on from the batched prompt.
    let a = block_on(gpu.step_argmax(argmax(&batched) as u32, prompt.len())).unwrap();
    prefill(&mut gpu, prompt, 1);
    let b = block_on(gpu.step_argmax(argmax(&batched) as u32, prompt.len())).unwrap();
    assert_eq!(a, b);
}

#[test]
fn batched_prefill_equals_token_by_token_tiny() {
    let prompt: Vec<u32> = (0..23).map(|i| 1 + (i * 37) % 500).collect();
    check_batched_prefill("tiny-random-llama-q4_k_m.gguf", &prompt);
}

#[test]
fn batched_prefill_equals_token_by_token_smollm2() {
    let prompt = [
        504, 3575, 282, 4649, 314, 260, 1345, 28, 2254, 2114, 29, 504, 3575, 30,
    ];
    check_batched_prefill("smollm2-135m-instruct-q4_k_m.gguf", &prompt);
}

#[test]
fn batched_prefill_equals_token_by_token_gemma3() {
    // Sliding-window layers: each token of a batch has its own window start.
    let prompt = [2, 818, 5279, 529, 7001, 563, 496, 1638, 529, 818, 5279];
    check_batched_prefill("gemma-3-270m-q4_k_m.gguf", &prompt);
}

#[test]
fn split_k_attention_at_a_long_context_equals_single_pass() {
    // tiny at position ~600: a batched prefill of 600 tokens, then the next step's logits with
    // single-pass attention and with split-K attention (3 chunks of 256).
    let path = common::model_path("tiny-random-llama-q4_k_m.gguf");
    let src = FileSource::open(&path).unwrap();
    let mut gpu = GpuModel::load(context(), &src, 640).unwrap();
    let prompt: Vec<u32> = (0..600).map(|i| 1 + (i * 7919) % 500).collect();
    gpu.split_attention_from = usize::MAX;
    let a = block_on(gpu.forward(&prompt, 0)).unwrap();
    let single = block_on(gpu.forward(&[argmax(&a) as u32], 600)).unwrap();
    gpu.split_attention_from = 0;
    let b = block_on(gpu.forward(&prompt, 0)).unwrap();
    let e = nmse(&b, &a);
    let split = block_on(gpu.forward(&[argmax(&a) as u32], 600)).unwrap();
    let e2 = nmse(&split, &single);
    eprintln!("tiny at pos 600: split-K vs single-pass logits NMSE {e2:.3e} (prefill {e:.3e})");
    assert!(e <= 1e-10 && e2 <= 1e-10);
}

/// With an f16 KV cache: last-prompt logits within NMSE 1e-3 of the exact CPU reference (and
/// more prompt positions through batches of 3, so later batches read earlier ones' f16 K/V).
fn check_kv_f16(name: &str, prompt: &[u32]) {
    let path = common::model_path(name);
    let src = FileSource::open(&path).unwrap();
    let (_, cpu) = CpuModel::load(&src, Kernel::Reference).unwrap();
    let (want, _) = cpu_reference(&cpu, prompt);
    drop(cpu);
    let mut gpu = GpuModel::load(context().with_kv_f16(true), &src, N_CTX).unwrap();
    for batch in [usize::MAX, 3] {
        gpu.limit_batch(batch);
        let got = block_on(gpu.forward(prompt, 0)).unwrap();
        let e = nmse(&got, &want);
        let how = if batch == 3 {
            "batches of 3"
        } else {
            "one batch"
        };
        eprintln!("{name}: f16 KV cache, {how}: logits NMSE {e:.3e}");
        assert!(e <= 1e-3, "{name}: NMSE {e:.3e}");
    }
}

#[test]
fn kv_f16_tiny_is_close_to_the_reference() {
    check_kv_f16(
        "tiny-random-llama-q4_k_m.gguf",
        &[1, 413, 410, 405, 411, 408, 7, 99, 250],
    );
}

#[test]
fn kv_f16_smollm2_is_close_to_the_reference() {
    check_kv_f16(
        "smollm2-135m-instruct-q4_k_m.gguf",
        &[504, 3575, 282, 4649, 314, 260, 1345, 28],
    );
}
