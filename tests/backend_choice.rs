//! What `backend: 'auto'` checks before it trusts a GPU adapter (src/backend_choice.rs,
//! src/gpu/selftest.rs), on Mesa's lavapipe (a software Vulkan device: `make unit` sets
//! WGPU_BACKEND=vulkan and VK_ICD_FILENAMES to it).
//!
//! - The known-answer self-test passes on a correct adapter for every format with a GPU kernel,
//!   and its comparison rejects wrong or non-finite results.
//! - Software renderers are recognised by device type and by name; `vet_gpu` declines lavapipe
//!   with a `gpu` error that says why, while a forced GPU load still runs on it.
//! - The timed probe gives finite estimates, and its decision follows them.
#![cfg(not(target_arch = "wasm32"))]

use wasm_chord::backend_choice::{self, Probe};
use wasm_chord::engine::{Backend, Engine, LoadOptions};
use wasm_chord::gpu::kernels::GPU_TYPES;
use wasm_chord::gpu::selftest::{self, MAX_NMSE};
use wasm_chord::gpu::GpuContext;
use wasm_chord::quant::GgmlType;
use wasm_chord::source::FileSource;

const MODEL: &str = "models/tiny-random-llama-q4_k_m.gguf";

fn context() -> GpuContext {
    pollster::block_on(GpuContext::new()).unwrap_or_else(|e| {
        panic!("{e}: install Mesa's lavapipe (scripts/setup) and run through `make unit`")
    })
}

fn model() -> FileSource {
    FileSource::open(MODEL).unwrap_or_else(|e| panic!("{e}: run scripts/fetch-models first"))
}

#[test]
fn self_test_passes_for_every_gpu_format() {
    let ctx = context();
    let formats = selftest::formats_to_test(GPU_TYPES.iter().copied());
    assert_eq!(formats.len(), GPU_TYPES.len(), "every GPU format is tested");
    let report = pollster::block_on(selftest::run(&ctx, &formats, Some(&backend_choice::now_ms)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.formats.len(), formats.len());
    for (ty, e) in &report.formats {
        assert!(*e <= MAX_NMSE, "{ty}: NMSE {e:e}");
    }
    let ms = report.ms.expect("a clock was given");
    assert!(ms.is_finite() && ms >= 0.0, "{ms}");
}

#[test]
fn formats_to_test_keeps_gpu_formats_once_in_order() {
    let got = selftest::formats_to_test([
        GgmlType::Q6_K,
        GgmlType::F32,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::F32,
    ]);
    assert_eq!(got, vec![GgmlType::Q6_K, GgmlType::F32, GgmlType::Q4_K]);
}

#[test]
fn test_matrices_are_finite_and_moderate() {
    for &ty in &GPU_TYPES {
        let (m, dense) = selftest::test_matrix(ty, 7).unwrap();
        assert_eq!(dense.len(), m.rows * m.cols);
        assert!(
            dense.iter().all(|v| v.is_finite() && v.abs() < 64.0),
            "{ty}"
        );
        assert!(dense.iter().any(|v| *v != 0.0), "{ty}: not all zero");
        // The dense copy is the reference dequantization of the quantized rows.
        let mut row = vec![0f32; m.cols];
        m.dequantize_row(3, &mut row).unwrap();
        assert_eq!(row, dense[3 * m.cols..4 * m.cols], "{ty}");
    }
}

#[test]
fn nmse_rejects_wrong_and_non_finite_results() {
    let want = [1.0f64, -2.0, 3.0, 0.5];
    let exact = [1.0f32, -2.0, 3.0, 0.5];
    assert_eq!(selftest::nmse(&want, &exact), 0.0);
    // One value off by 1% is already far past the bound.
    assert!(selftest::nmse(&want, &[1.0, -2.0, 3.03, 0.5]) > MAX_NMSE);
    assert_eq!(
        selftest::nmse(&want, &[1.0, f32::NAN, 3.0, 0.5]),
        f64::INFINITY
    );
    assert_eq!(
        selftest::nmse(&want, &[1.0, f32::INFINITY, 3.0, 0.5]),
        f64::INFINITY
    );
    assert_eq!(
        selftest::nmse(&want, &[1.0, -2.0, 3.0]),
        f64::INFINITY,
        "length mismatch"
    );
}

#[test]
fn software_renderers_are_recognised() {
    for (name, label) in [
        ("Google SwiftShader", "SwiftShader"),
        ("google swiftshader Subzero", "SwiftShader"),
        ("llvmpipe (LLVM 15.0.6, 256 bits)", "llvmpipe"),
        (
            "Microsoft Basic Render Driver",
            "Microsoft Basic Render Driver",
        ),
    ] {
        assert_eq!(selftest::software_adapter_name(name), Some(label), "{name}");
    }
    for name in [
        "NVIDIA H200",
        "AMD Radeon RX 7900 XTX",
        "Apple M3",
        "Intel(R) Arc(tm) A770",
    ] {
        assert_eq!(selftest::software_adapter_name(name), None, "{name}");
    }
    // lavapipe reports itself as a CPU device.
    let ctx = context();
    let why = selftest::software_adapter(&ctx.info);
    assert!(
        why.is_some(),
        "lavapipe is a software renderer: {:?}",
        ctx.info
    );
}

#[test]
fn vetting_declines_lavapipe_and_a_forced_gpu_still_loads() {
    let src = model();
    let vetted = LoadOptions {
        backend: Backend::Gpu,
        vet_gpu: true,
        ..Default::default()
    };
    let err = match Engine::load(&src, &vetted) {
        Ok(_) => panic!("auto must not put a model on lavapipe"),
        Err(e) => e,
    };
    assert_eq!(err.code(), "gpu");
    assert!(err.to_string().contains("software renderer"), "{err}");

    let forced = LoadOptions {
        backend: Backend::Gpu,
        ..Default::default()
    };
    let e = Engine::load(&src, &forced).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(e.backend(), Backend::Gpu);
    assert_eq!(e.gpu_vetting(), None);
}

#[test]
fn probe_estimates_are_finite_and_decide() {
    let ctx = context();
    let src = model();
    let header = wasm_chord::source::read_header(&src).unwrap();
    let (ty, bytes) = backend_choice::main_format(&header).expect("the model has GPU matrices");
    assert_eq!(ty, GgmlType::Q4_K, "the tiny model is mostly Q4_K");
    let total: u64 = header
        .tensors
        .iter()
        .filter(|t| t.dims.len() >= 2)
        .map(|t| t.n_bytes)
        .sum();
    assert_eq!(bytes, total);
    let p = pollster::block_on(backend_choice::probe(&ctx, ty, bytes)).unwrap();
    assert!(p.gpu_step_ms.is_finite() && p.gpu_step_ms > 0.0, "{p:?}");
    assert!(p.cpu_step_ms.is_finite() && p.cpu_step_ms > 0.0, "{p:?}");
    let slow = Probe {
        gpu_step_ms: 2.0,
        cpu_step_ms: 1.0,
    };
    let fast = Probe {
        gpu_step_ms: 1.0,
        cpu_step_ms: 2.0,
    };
    assert!(slow.gpu_slower() && !fast.gpu_slower());
}
