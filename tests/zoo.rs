//! The model zoo on the CPU (native): a tiny random model of each of qwen3, phi3, smollm3,
//! gemma4, granite and lfm2 (tests/fixtures/zoo, made by `scripts/tiny-models`) against llama.cpp
//! (tests/goldens/zoo, made by `scripts/gen-zoo-goldens`): last-position logits within
//! llama.cpp's own noise, ≥ 8 greedy tokens per prompt, prefill = token-by-token decode; and
//! clear errors for the variants the engine does not run. The same checks on the GPU (lavapipe:
//! `WGPU_BACKEND=vulkan VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json`).
//! Tolerances: tests/zoo/check.rs.
#![cfg(not(target_arch = "wasm32"))]

#[path = "zoo/check.rs"]
mod check;

use std::path::PathBuf;
use wasm_chord::cpu::{CpuModel, Kernel, KvCache};
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
fn lfm2_matches_llama_cpp() {
    run_family("lfm2");
}

#[test]
fn qwen35_matches_llama_cpp() {
    run_family("qwen35");
}

/// A hybrid's recurrent state (LFM2's short convolutions, Qwen3.5's delta-net) cannot be
/// rewound token by token: a cache goes on from where it stands or from a checkpoint, and a
/// restored checkpoint continues exactly as an unbroken run; a position with neither is an
/// error, not a wrong answer.
fn checkpoints_restore_exactly(family: &str) {
    let src = FileSource::open(fixture(family)).unwrap();
    let (_, m) = CpuModel::load(&src, Kernel::Fast).unwrap();
    assert!(m.cfg.has_recurrent());
    let case = &family_cases(family)[1];
    let (prompt, more) = (&case.prompt, &case.ids[..6]);
    let p = prompt.len();
    // Unbroken: the prompt, then the continuation token by token.
    let mut cache = KvCache::new(&m.cfg, 64);
    m.forward(prompt, 0, &mut cache).unwrap();
    cache.checkpoint();
    let mut unbroken = vec![];
    for (i, &t) in more.iter().enumerate() {
        unbroken.push(m.forward(&[t], p + i, &mut cache).unwrap());
    }
    // The state stands at p + 6: resuming at p needs the checkpoint, at p + 3 there is none.
    assert_eq!(cache.resume_point(p + more.len()), p + more.len());
    assert_eq!(cache.resume_point(p + 3), p);
    let e = m.forward(&[more[3]], p + 3, &mut cache).unwrap_err();
    assert!(e.to_string().contains("no checkpoint at"), "{e}");
    // Back to the checkpoint: the same logits, bit for bit.
    for (i, &t) in more.iter().enumerate() {
        let again = m.forward(&[t], p + i, &mut cache).unwrap();
        assert_eq!(
            again, unbroken[i],
            "{family}: step {i} after restoring the checkpoint"
        );
    }
    // Position 0 is always a resume point (a zero state): a fresh prefill agrees.
    assert_eq!(cache.resume_point(p - 1), 0);
    let fresh = m.forward(prompt, 0, &mut cache).unwrap();
    let first = m.forward(prompt, 0, &mut KvCache::new(&m.cfg, 64)).unwrap();
    assert_eq!(fresh, first);
}

#[test]
fn lfm2_checkpoints_restore_the_recurrent_state_exactly() {
    checkpoints_restore_exactly("lfm2");
}

#[test]
fn qwen35_checkpoints_restore_the_recurrent_state_exactly() {
    checkpoints_restore_exactly("qwen35");
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

/// What the GPU forward pass lacks (delta-net heads wider than a workgroup) is refused before
/// any weight is read, naming it; the engine under `auto` (vetting the GPU) says it as a `gpu`
/// error, on which the browser falls back to the CPU.
#[test]
fn gpu_refuses_wide_delta_net_heads_by_name() {
    let path = root().join("tests/fixtures/zoo/unsupported-qwen35-wide-state.gguf");
    let src = FileSource::open(&path).unwrap();
    for (vet, code) in [(false, "unsupported_model"), (true, "gpu")] {
        let opts = wasm_chord::engine::LoadOptions {
            backend: wasm_chord::engine::Backend::Gpu,
            vet_gpu: vet,
            ..Default::default()
        };
        let e = wasm_chord::engine::Engine::load(&src, &opts).err().unwrap();
        assert_eq!(e.code(), code, "vet_gpu {vet}: {e}");
        assert!(
            e.to_string().contains("qwen35") && e.to_string().contains("at most 256"),
            "{e}"
        );
    }
}

#[test]
fn gpu_qwen35_matches_llama_cpp() {
    run_family_gpu("qwen35");
}

#[test]
fn gpu_lfm2_matches_llama_cpp() {
    run_family_gpu("lfm2");
}

/// On the GPU too, a hybrid's recurrent state resumes only where it stands or from a
/// checkpoint (device copies), and a restored checkpoint continues exactly as an unbroken run.
fn gpu_checkpoints_restore_exactly(family: &str) {
    let src = FileSource::open(fixture(family)).unwrap();
    let mut gpu = wasm_chord::gpu::GpuModel::load(gpu_context(), &src, 64).unwrap();
    assert!(gpu.has_recurrent());
    let case = &family_cases(family)[1];
    let (prompt, more) = (&case.prompt, &case.ids[..6]);
    let p = prompt.len();
    let fwd = |g: &mut wasm_chord::gpu::GpuModel, t: &[u32], at: usize| {
        pollster::block_on(g.forward(t, at))
    };
    fwd(&mut gpu, prompt, 0).unwrap();
    gpu.checkpoint();
    let mut unbroken = vec![];
    for (i, &t) in more.iter().enumerate() {
        unbroken.push(fwd(&mut gpu, &[t], p + i).unwrap());
    }
    assert_eq!(gpu.resume_point(p + more.len()), p + more.len());
    assert_eq!(gpu.resume_point(p + 3), p);
    let e = fwd(&mut gpu, &[more[3]], p + 3).unwrap_err();
    assert!(e.to_string().contains("no checkpoint at"), "{e}");
    for (i, &t) in more.iter().enumerate() {
        let again = fwd(&mut gpu, &[t], p + i).unwrap();
        assert_eq!(
            again, unbroken[i],
            "step {i} after restoring the checkpoint"
        );
    }
    assert_eq!(gpu.resume_point(p - 1), 0);
    let fresh = fwd(&mut gpu, prompt, 0).unwrap();
    let mut other = wasm_chord::gpu::GpuModel::load(gpu_context(), &src, 64).unwrap();
    assert_eq!(fresh, fwd(&mut other, prompt, 0).unwrap());
}

#[test]
fn gpu_lfm2_checkpoints_restore_the_recurrent_state_exactly() {
    gpu_checkpoints_restore_exactly("lfm2");
}

#[test]
fn gpu_qwen35_checkpoints_restore_the_recurrent_state_exactly() {
    gpu_checkpoints_restore_exactly("qwen35");
}
