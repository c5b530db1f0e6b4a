//! Whole models on the GPU against the CPU engine (`Kernel::Reference`): last-prompt logits by
//! NMSE, and greedy tokens taken on the GPU (`step_argmax`) equal to the CPU's. Natively this
//! runs on Mesa's lavapipe: `WGPU_BACKEND=vulkan
//! VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json`. lavapipe is slow (on an
//! AVX2-only 2-core CI machine this file took 17 minutes): each real model's greedy steps,
//! batched prefill and f16 cache run where they add a path, the tiny model covers the rest.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::nmse;
use pollster::block_on;
use wasm_chord::cpu::{CpuModel, Kernel, KvCache};
use wasm_chord::gpu::{GpuContext, GpuModel, GpuSampling};
use wasm_chord::sampling::{argmax, Rng, Sampler, SamplerConfig};
use wasm_chord::source::FileSource;

/// The tiny random llama (4 layers of 256, 512 tokens, Q4_K/Q6_K): seconds on lavapipe.
const TINY: &str = "tiny-random-llama-q4_k_m.gguf";
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

/// Cases `names` of the forward golden of `model` (each must have exact last-prompt logits;
/// with `greedy`, 16 greedy tokens too).
fn golden_cases(model: &str, names: &[&str], greedy: bool) -> Vec<serde_json::Value> {
    let g = common::golden(model);
    if greedy {
        assert_eq!(
            g["n_greedy"].as_u64(),
            Some(16),
            "{model}: 16 greedy goldens"
        );
    }
    let cases: Vec<_> = g["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["logits_file"].is_string() && names.contains(&c["name"].as_str().unwrap()))
        .cloned()
        .collect();
    assert_eq!(
        cases.len(),
        names.len(),
        "{model}: the golden lacks some of {names:?} with logits; regenerate with \
         scripts/gen-forward-goldens"
    );
    cases
}

/// What [`check_golden`] runs on a model.
#[derive(Clone, Copy)]
struct Check {
    /// f16 KV cache (else f32).
    kv_f16: bool,
    /// The largest logits NMSE against the exact reference.
    max_nmse: f64,
    /// Also the case chat0, and after it 16 greedy tokens (f32 KV only).
    greedy: bool,
    /// The device's reductions (subgroups where it has them), else the workgroup-memory path
    /// (the browser's).
    subgroups: bool,
    /// Also the logits with the prompt cut into batches of this many tokens (with `kv_f16`,
    /// later batches read earlier ones' f16 K/V).
    batches_of: Option<usize>,
}

/// f32 KV, NMSE ≤ 1e-4, greedy, subgroups.
const F32_KV: Check = Check {
    kv_f16: false,
    max_nmse: 1e-4,
    greedy: true,
    subgroups: true,
    batches_of: None,
};

/// f16 KV, NMSE ≤ 1e-3.
const F16_KV: Check = Check {
    kv_f16: true,
    max_nmse: 1e-3,
    ..F32_KV
};

/// f32 KV, the logits of raw0 only.
const LOGITS_ONLY: Check = Check {
    greedy: false,
    ..F32_KV
};

/// The GPU against the exact reference (tests/goldens/forward: ref_forward.py, numpy f64):
/// for the f32 KV cache the cases raw0 (a short raw prompt) and chat0 (a chat prompt of 36 to
/// 62 tokens), for the f16 one chat0 only (lavapipe is slow): the last-prompt logits within
/// `max_nmse` (a batched prefill, through the mat×mat kernel); on the f32 path after chat0, 16
/// greedy tokens taken on the GPU (`step_argmax`) equal to the reference's continuation up to a
/// near-tie (top-2 gap < 0.25, the rule of tests/forward.rs). Without `greedy` (the goldens
/// made without a greedy continuation, `LOGITS_ONLY` in scripts/gen-forward-goldens) raw0
/// only: those models add formats and shapes, which a 5-token prompt reads through every
/// matrix; chat0 (36 tokens) took minutes of lavapipe per model on an AVX2-only CPU, and
/// SmolLM2 and the tiny model run it.
fn check_golden(model: &str, c: Check) {
    let Check {
        kv_f16,
        max_nmse,
        greedy,
        subgroups,
        batches_of,
    } = c;
    let src = FileSource::open(common::model_path(model)).unwrap();
    let ctx = context().with_kv_f16(kv_f16).with_subgroups(subgroups);
    let mut gpu = GpuModel::load(ctx, &src, 128).unwrap();
    let kv = if kv_f16 { "f16" } else { "f32" };
    let names: &[&str] = if kv_f16 {
        &["chat0"]
    } else if !greedy {
        &["raw0"]
    } else {
        &["raw0", "chat0"]
    };
    for case in golden_cases(model, names, greedy) {
        let name = format!("{model} {} ({kv} KV)", case["name"].as_str().unwrap());
        let prompt = common::ids(&case["prompt_ids"]);
        let want = common::golden_f32(case["logits_file"].as_str().unwrap());
        let t = std::time::Instant::now();
        let logits = block_on(gpu.forward(&prompt, 0)).unwrap();
        let e = common::nmse(&logits, &want);
        eprintln!(
            "{name}: {} prompt tokens, logits NMSE {e:.3e} vs the exact reference ({:?})",
            prompt.len(),
            t.elapsed()
        );
        assert!(e <= max_nmse, "{name}: NMSE {e:.3e} > {max_nmse:.1e}");
        if let Some(n) = batches_of {
            gpu.limit_batch(n);
            let split = block_on(gpu.forward(&prompt, 0)).unwrap();
            gpu.limit_batch(usize::MAX);
            let e = common::nmse(&split, &want);
            eprintln!("{name}: batches of {n}: logits NMSE {e:.3e}");
            assert!(e <= max_nmse, "{name}: batches of {n}: NMSE {e:.3e}");
        }
        // 16 greedy steps once per model (chat0, f32 KV): lavapipe runs a step in seconds.
        if kv_f16 || !greedy || case["name"] != "chat0" {
            continue;
        }
        let t = std::time::Instant::now();
        let mut toks = vec![argmax(&logits) as u32];
        while toks.len() < 16 {
            let pos = prompt.len() + toks.len() - 1;
            toks.push(block_on(gpu.step_argmax(*toks.last().unwrap(), pos)).unwrap());
        }
        let same = common::assert_greedy_matches(&name, &toks, &case);
        eprintln!(
            "{name}: greedy on the GPU {toks:?}: {same}/16 as the reference ({:?})",
            t.elapsed()
        );
    }
}

#[test]
fn tiny_random_llama_matches_the_reference() {
    check_golden(TINY, F32_KV);
}

#[test]
fn tiny_random_llama_matches_the_reference_on_the_workgroup_reductions() {
    // The other model tests run on the device's path: subgroup reductions on lavapipe.
    check_golden(
        TINY,
        Check {
            subgroups: false,
            ..F32_KV
        },
    );
}

#[test]
fn tiny_random_llama_kv_f16_is_close_to_the_reference() {
    // Batches of 3 on the tiny model only: the same kernels, and a real model's ~20 batches
    // took minutes of lavapipe on an AVX2-only CPU.
    check_golden(
        TINY,
        Check {
            batches_of: Some(3),
            ..F16_KV
        },
    );
}

#[test]
fn smollm2_matches_the_reference() {
    check_golden("smollm2-135m-instruct-q4_k_m.gguf", F32_KV);
}

/// The f16 KV cache on two models: its kernels do not depend on the architecture (lavapipe is
/// slow, so Qwen2.5 and the padded SmolLM2 run with the f32 cache only).
#[test]
fn smollm2_kv_f16_is_close_to_the_reference() {
    check_golden("smollm2-135m-instruct-q4_k_m.gguf", F16_KV);
}

/// The logits of raw0 only: SmolLM2 above takes the 16 greedy steps on the same
/// architecture and kernels (lavapipe is slow on an AVX2-only CPU).
#[test]
fn smollm2_pad768_matches_the_reference() {
    check_golden("smollm2-135m-instruct-pad768-q4_k_m.gguf", LOGITS_ONLY);
}

/// Whole models in the presets people pick to fit a browser, every matrix read by its format's
/// WGSL reader: Q5_K_M (Q5_K and Q6_K tensors) and IQ4_XS (IQ4_XS, IQ4_NL and Q5_K tensors).
/// Their goldens hold the last-prompt logits of raw0 and chat0 (raw0 is checked here).
#[test]
fn smollm2_pad768_q5_k_m_matches_the_reference() {
    check_golden("smollm2-135m-instruct-pad768-q5_k_m.gguf", LOGITS_ONLY);
}

#[test]
fn smollm2_iq4_xs_matches_the_reference() {
    check_golden("smollm2-135m-instruct-iq4_xs.gguf", LOGITS_ONLY);
}

/// The logits of raw0 only: 16 greedy steps of the 0.5B model on lavapipe took minutes of
/// CI on an AVX2-only CPU; the other models' tests take their greedy steps on the same kernels.
#[test]
fn qwen2_5_matches_the_reference() {
    check_golden("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", LOGITS_ONLY);
}

#[test]
fn context_overflow_is_an_error() {
    let path = common::model_path(TINY);
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
    let path = common::model_path(TINY);
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
    // step_sample with top_k = 1 is greedy; with penalties, temperature, top-k, top-p and
    // min-p it picks what `Sampler` picks from the same logits (read back by `forward` at the
    // same position) with the same history and the same seeded uniform numbers.
    let path = common::model_path(TINY);
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
        ..Default::default()
    };
    let mut tok = prompt[n - 1];
    for pos in n - 1..n + 3 {
        let want = block_on(gpu.step_argmax(tok, pos)).unwrap();
        let got = block_on(gpu.step_sample(tok, pos, &greedy, &prompt)).unwrap();
        assert_eq!(got, want);
        tok = want;
    }

    let mut pos = n + 3;
    let mut history = prompt.to_vec();
    for cfg in [
        SamplerConfig {
            temperature: 0.9,
            top_k: 40,
            top_p: 0.95,
            seed: 7,
            ..Default::default()
        },
        // Every token (top_k 0), min-p, and all three penalties over the last 8 tokens.
        SamplerConfig {
            temperature: 1.1,
            min_p: 0.05,
            repeat_penalty: 1.3,
            presence_penalty: 0.4,
            frequency_penalty: 0.2,
            penalty_last_n: 8,
            seed: 8,
            ..Default::default()
        },
        SamplerConfig {
            temperature: 0.8,
            top_p: 0.9,
            repeat_penalty: 1.2,
            seed: 9,
            ..Default::default()
        },
        // Greedy with penalties: no uniform number is drawn.
        SamplerConfig {
            repeat_penalty: 1.5,
            frequency_penalty: 0.5,
            ..Default::default()
        },
    ] {
        let mut cpu = Sampler::new(cfg.clone());
        let mut rng = Rng::new(cfg.seed);
        let mut toks = Vec::new();
        for _ in 0..N_GREEDY {
            let mut logits = block_on(gpu.forward(&[tok], pos)).unwrap();
            let want = cpu.sample(&mut logits, &history);
            let u = if cfg.temperature > 0.0 {
                rng.next_f64()
            } else {
                0.0
            };
            let s = GpuSampling::new(&cfg, u);
            let got = block_on(gpu.step_sample(tok, pos, &s, &history)).unwrap();
            assert_eq!(
                got, want,
                "{cfg:?} pos {pos}: GPU sampled {got}, CPU {want}"
            );
            if s.has_penalties() {
                // The penalised logits on the GPU are the CPU's.
                let gl = block_on(gpu.last_logits()).unwrap();
                let e = nmse(&gl, &logits);
                assert!(e <= 1e-10, "{cfg:?}: penalised logits NMSE {e:.3e}");
            }
            toks.push(got);
            history.push(got);
            tok = got;
            pos += 1;
        }
        eprintln!("tiny: sampled on the GPU {toks:?} with {cfg:?}");
    }
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
    check_batched_prefill(TINY, &prompt);
}

#[test]
fn split_k_attention_at_a_long_context_equals_single_pass() {
    // tiny at position ~600: a batched prefill of 600 tokens, then the next step's logits with
    // single-pass attention and with split-K attention (3 chunks of 256).
    let path = common::model_path(TINY);
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

#[test]
fn engine_sampling_on_the_gpu_follows_the_cpu_engine() {
    // Engine::generate with sampling and penalties: on the GPU each step samples there
    // (`step_sample`, 4-byte readbacks) on the sampler's seeded stream, and picks what the CPU
    // engine (scalar reference kernels) picks.
    use wasm_chord::engine::{Backend, Control, Engine, GenerateOptions, LoadOptions};
    let path = common::model_path(TINY);
    let src = FileSource::open(&path).unwrap();
    let prompt = [1, 413, 410, 405, 411, 408];
    for sampler in [
        SamplerConfig {
            temperature: 0.9,
            top_k: 40,
            top_p: 0.95,
            repeat_penalty: 1.2,
            seed: 11,
            ..Default::default()
        },
        SamplerConfig {
            temperature: 1.2,
            min_p: 0.05,
            presence_penalty: 0.3,
            frequency_penalty: 0.2,
            seed: 12,
            ..Default::default()
        },
    ] {
        let opts = GenerateOptions {
            max_tokens: 12,
            sampler: sampler.clone(),
            stop_at_eog: false,
            ..Default::default()
        };
        let mut ids = Vec::new();
        for backend in [Backend::Cpu, Backend::Gpu] {
            let load = LoadOptions {
                backend,
                kernel: Kernel::Reference,
                n_ctx: Some(N_CTX),
                ..Default::default()
            };
            let mut engine = Engine::load(&src, &load).unwrap();
            let g = engine
                .generate(&prompt, &opts, &mut |_| Control::Continue)
                .unwrap();
            ids.push(g.ids);
        }
        eprintln!(
            "engine with {sampler:?}: CPU {:?}, GPU {:?}",
            ids[0], ids[1]
        );
        assert_eq!(ids[0].len(), 12);
        assert_eq!(ids[1], ids[0], "{sampler:?}");
    }
}

#[test]
fn a_decode_step_is_one_submission_of_at_most_5_dispatches_a_layer_and_creates_nothing() {
    // The fused decode kernels: embedding + 5 per layer (RMSNorm+QKV+RoPE+KV store, attention,
    // o_proj+residual, RMSNorm+gate+up+SiLU, ffn_down+residual) + the head (norm fused into the
    // logits) + argmax or penalties+sample. Every buffer and bind group is made at load: none
    // per prefill batch or decode step.
    let path = common::model_path(TINY);
    let src = FileSource::open(&path).unwrap();
    let mut gpu = GpuModel::load(context(), &src, N_CTX).unwrap();
    let n_layer = gpu.cfg.n_layer;
    let prompt = [1, 413, 410, 405, 411, 408];
    // The first token after a prompt, taken on the GPU (4 bytes back), is the logits' argmax.
    let logits = block_on(gpu.forward(&prompt, 0)).unwrap();
    let created = gpu.ctx.created();
    let first = block_on(gpu.forward_argmax(&prompt, 0)).unwrap();
    assert_eq!(first, argmax(&logits) as u32);
    let mut tok = first;
    let mut pos = prompt.len();
    for _ in 0..3 {
        tok = block_on(gpu.step_argmax(tok, pos)).unwrap();
        pos += 1;
        let st = gpu.last_step();
        eprintln!("greedy decode step: {st:?} over {n_layer} layers");
        assert_eq!(st.submissions, 1);
        assert!(
            st.dispatches <= 5 * n_layer + 3,
            "{} dispatches for {n_layer} layers",
            st.dispatches
        );
    }
    let cfg = SamplerConfig {
        temperature: 0.8,
        top_k: 40,
        repeat_penalty: 1.1,
        ..Default::default()
    };
    let mut history = prompt.to_vec();
    for u in [0.3, 0.7] {
        history.push(tok);
        let s = GpuSampling::new(&cfg, u);
        tok = block_on(gpu.step_sample(tok, pos, &s, &history)).unwrap();
        pos += 1;
        let st = gpu.last_step();
        assert_eq!(st.submissions, 1);
        assert!(st.dispatches <= 5 * n_layer + 4, "{st:?}");
    }
    assert_eq!(
        gpu.ctx.created(),
        created,
        "prefill batches and decode steps must create no buffer or bind group"
    );
}
