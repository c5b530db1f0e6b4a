//! What `backend: 'auto'` checks before it puts a model on a GPU adapter.
//!
//! A WebGPU adapter is not always the faster or even a correct choice. A VM or a blocklisted GPU
//! leaves Chrome with SwiftShader, where decode runs at 0.17 tok/s against the CPU path's ~27
//! (docs/performance.md), and some adapters compute shader results wrongly (see
//! [`crate::gpu::selftest`]). So `auto` vets an adapter in three steps, cheapest first, and
//! falls back to the CPU with the reason when one fails:
//!
//! 1. **Software renderers** are declined by name or device type
//!    ([`selftest::software_adapter`]; the browser worker also checks
//!    `GPUAdapterInfo.isFallbackAdapter`, which wgpu does not see).
//! 2. **Known answers**: [`selftest::run`] runs one small product per block format the model
//!    uses, argmax and sampling, against the CPU reference.
//! 3. **A timed probe** estimates a decode step both ways from one weight matrix of the model's
//!    main format ([`probe`]): the GPU's per-step round trip plus its time per matrix byte,
//!    against the CPU kernel's time per byte, each scaled to the model's weight bytes. When the
//!    GPU's estimate is the larger, the CPU runs the model.
//!
//! An explicit `backend: 'webgpu'` (natively `Backend::Gpu` without `vet_gpu`) skips all of
//! this and forces the GPU.

use crate::cpu::matmul::matmul;
use crate::cpu::Kernel as CpuKernel;
use crate::gguf::GgufHeader;
use crate::gpu::model::matvec_once;
use crate::gpu::selftest::{self, SelfTestReport};
use crate::gpu::{GpuContext, GpuError, GpuMatrix};
use crate::quant::GgmlType;
use crate::Result;

/// What vetting found on an adapter that passed.
#[derive(Clone, Debug, PartialEq)]
pub struct Vetting {
    pub self_test: SelfTestReport,
    pub probe: Option<Probe>,
}

impl Vetting {
    /// One line for `info()` and logs.
    pub fn summary(&self) -> String {
        let formats: Vec<String> = self
            .self_test
            .formats
            .iter()
            .map(|(t, _)| t.to_string())
            .collect();
        let mut s = format!("self-test passed ({})", formats.join(", "));
        if let Some(ms) = self.self_test.ms {
            s += &format!(" in {ms:.0} ms");
        }
        if let Some(p) = &self.probe {
            s += &format!(
                "; estimated decode step {:.2} ms on the GPU vs {:.2} ms on the CPU",
                p.gpu_step_ms, p.cpu_step_ms
            );
        }
        s
    }
}

/// The timed probe's estimates of one decode step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Probe {
    pub gpu_step_ms: f64,
    pub cpu_step_ms: f64,
}

impl Probe {
    /// Whether the GPU is expected to be the slower backend.
    pub fn gpu_slower(&self) -> bool {
        self.gpu_step_ms > self.cpu_step_ms
    }
}

/// A millisecond clock: `Instant` natively, `performance.now()` in a browser.
pub fn now_ms() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
    }
    #[cfg(target_arch = "wasm32")]
    {
        use wasm_bindgen::JsCast;
        let perf = js_sys::Reflect::get(&js_sys::global(), &"performance".into()).ok();
        let now = perf
            .as_ref()
            .and_then(|p| js_sys::Reflect::get(p, &"now".into()).ok())
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        match (perf, now) {
            (Some(p), Some(f)) => f.call0(&p).ok().and_then(|v| v.as_f64()).unwrap_or(0.0),
            _ => js_sys::Date::now(),
        }
    }
}

/// The block format holding most of the model's matrix bytes, and those bytes in all (what a
/// decode step reads).
pub fn main_format(header: &GgufHeader) -> Option<(GgmlType, u64)> {
    let mut by_type: Vec<(GgmlType, u64)> = Vec::new();
    let mut total = 0u64;
    for t in header.tensors.iter().filter(|t| t.dims.len() >= 2) {
        total += t.n_bytes;
        match by_type.iter_mut().find(|(ty, _)| *ty == t.ty) {
            Some((_, b)) => *b += t.n_bytes,
            None => by_type.push((t.ty, t.n_bytes)),
        }
    }
    by_type
        .into_iter()
        .filter(|(ty, _)| crate::gpu::kernels::format_file(*ty).is_some())
        .max_by_key(|(_, b)| *b)
        .map(|(ty, _)| (ty, total))
}

/// Vet `ctx` for the model in `header` (steps 1–3 of the module docs). `Err` carries
/// [`GpuError::Unsuitable`] or [`GpuError::SelfTest`] with the reason for the CPU fallback.
pub async fn vet(ctx: &GpuContext, header: &GgufHeader) -> Result<Vetting> {
    if let Some(why) = selftest::software_adapter(&ctx.info) {
        return Err(GpuError::Unsuitable(why).into());
    }
    let formats = selftest::formats_to_test(header.tensors.iter().map(|t| t.ty));
    let self_test = selftest::run(ctx, &formats, Some(&now_ms)).await?;
    let probe = match main_format(header) {
        Some((ty, bytes)) => Some(probe(ctx, ty, bytes).await?),
        None => None,
    };
    if let Some(p) = probe.filter(Probe::gpu_slower) {
        return Err(GpuError::Unsuitable(format!(
            "the GPU would be slower than the CPU here (estimated decode step {:.2} ms vs {:.2} ms)",
            p.gpu_step_ms, p.cpu_step_ms
        ))
        .into());
    }
    Ok(Vetting { self_test, probe })
}

/// Probe matrix: 1024 × 1024 weights (0.5–4 MB by format): large enough to time, small
/// enough to stay within the self-test's budget on a slow CPU.
const PROBE_ROWS: usize = 1024;
const PROBE_COLS: usize = 1024;
/// Matrix products per timed GPU submission.
const GPU_REPS: usize = 16;
/// Timed CPU products.
const CPU_REPS: usize = 3;

/// Estimate a decode step over `model_bytes` of `ty` weights on the GPU and on the CPU.
pub async fn probe(ctx: &GpuContext, ty: GgmlType, model_bytes: u64) -> Result<Probe> {
    let (m, _) = selftest::test_matrix_sized(ty, PROBE_ROWS, PROBE_COLS, 0x0b5e_55ed)?;
    let x: Vec<f32> = (0..PROBE_COLS)
        .map(|i| ((i % 17) as f32 - 8.0) / 8.0)
        .collect();
    let scale = model_bytes as f64 / m.data.len() as f64;

    // CPU: the kernel the CPU backend would run, per product.
    let mut y = vec![0f32; PROBE_ROWS];
    matmul(&m, &x, &mut y, 1, CpuKernel::default())?; // warm-up (first touch of the pages)
    let t = now_ms();
    for _ in 0..CPU_REPS {
        matmul(&m, &x, &mut y, 1, CpuKernel::default())?;
    }
    let cpu_per = (now_ms() - t) / CPU_REPS as f64;

    // GPU: one product with its readback (the per-step round trip), then GPU_REPS products
    // in one go; the difference is the time per product without the round trip.
    let gm = GpuMatrix::upload(ctx, &m)?;
    let xb = ctx.storage_with("probe x", bytemuck::cast_slice(&x));
    let yb = ctx.storage_f32("probe y", PROBE_ROWS);
    matvec_once(ctx, &gm, &xb, &yb)?;
    ctx.read_f32(&yb, 1).await?; // warm-up: pipelines, first submission
    let t = now_ms();
    matvec_once(ctx, &gm, &xb, &yb)?;
    ctx.read_f32(&yb, 1).await?;
    let one = now_ms() - t;
    let t = now_ms();
    for _ in 0..GPU_REPS {
        matvec_once(ctx, &gm, &xb, &yb)?;
    }
    ctx.read_f32(&yb, 1).await?;
    let many = now_ms() - t;
    let gpu_per = ((many - one) / (GPU_REPS - 1) as f64).max(0.0);
    let round_trip = (one - gpu_per).max(0.0);
    Ok(Probe {
        gpu_step_ms: round_trip + scale * gpu_per,
        cpu_step_ms: scale * cpu_per,
    })
}
