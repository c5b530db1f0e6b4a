//! A known-answer self-test of a GPU adapter, run before a model is trusted to it.
//!
//! Some adapters compute garbage and say nothing: Chrome's OpenGL ES backend on Linux and
//! Firefox's wgpu have returned wrong shader-f16 results (hybridgroup/yzma #359, #324), and
//! wllama printed "@@@@" on such a device (#218). So before `backend: 'auto'` puts a model on
//! the GPU, this module runs what the model will run, on a few rows:
//!
//! - one small matrix × vector product per block format the model uses, in the layout the
//!   model's weights would be uploaded in, against an f64 dot product over the reference
//!   dequantizer ([`crate::quant::dequantize`]);
//! - the argmax kernel and the sampling kernel (greedy, and top-k 1 at temperature 1) on logits
//!   whose answer is known.
//!
//! Everything is one small submission each with a tiny readback (about 20 ms natively; the
//! sizes are chosen so that even a slow integrated GPU stays well under 100 ms).

use super::kernels::{PipelineKey, Shader};
use super::model::{matvec_once, sample_once};
use super::{GpuContext, GpuError, GpuMatrix, GpuSampling};
use crate::model::QMatrix;
use crate::quant::GgmlType;
use crate::Result;

/// Rows and columns of each format's test matrix (a multiple of every block size: 256).
pub const ROWS: usize = 16;
pub const COLS: usize = 512;

/// Largest normalised mean squared error a correct kernel may show. Correct f32 kernels sit
/// near 1e-13 against the f64 reference; broken ones (wrong f16 conversions, lost
/// workgroup-memory writes, miscompiled shifts) land at 1e-2 and above.
pub const MAX_NMSE: f64 = 1e-6;

/// What the self-test checked and measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SelfTestReport {
    /// Per block format: the matrix product's NMSE against the reference.
    pub formats: Vec<(GgmlType, f64)>,
    /// Milliseconds the whole test took, when a clock was given.
    pub ms: Option<f64>,
}

/// Why an adapter should not run a model when the caller asked for the automatic choice: it
/// is a software rasteriser (`Some(reason)`), or `None` when it looks like real hardware.
/// Natively wgpu reports the device type; a browser hides it, so the worker checks
/// `GPUAdapterInfo` itself with [`software_adapter_name`].
pub fn software_adapter(info: &wgpu::AdapterInfo) -> Option<String> {
    if info.device_type == wgpu::DeviceType::Cpu {
        return Some(format!(
            "the only GPU adapter is a software renderer ({}, {:?})",
            info.name, info.backend
        ));
    }
    software_adapter_name(&info.name)
        .map(|n| format!("the only GPU adapter is a software renderer ({n})"))
}

/// The software renderer a name belongs to (SwiftShader, llvmpipe, lavapipe, softpipe, WARP /
/// Microsoft Basic Render Driver), or `None`.
pub fn software_adapter_name(name: &str) -> Option<&'static str> {
    let n = name.to_ascii_lowercase();
    [
        ("swiftshader", "SwiftShader"),
        ("llvmpipe", "llvmpipe"),
        ("lavapipe", "lavapipe"),
        ("softpipe", "softpipe"),
        ("basic render", "Microsoft Basic Render Driver"),
        ("warp", "WARP"),
    ]
    .into_iter()
    .find(|(needle, _)| n.contains(needle))
    .map(|(_, label)| label)
}

/// The formats of `types` that the GPU runs (others never reach it), each once, in order.
pub fn formats_to_test(types: impl IntoIterator<Item = GgmlType>) -> Vec<GgmlType> {
    let mut out: Vec<GgmlType> = Vec::new();
    for ty in types {
        if super::kernels::format_file(ty).is_some() && !out.contains(&ty) {
            out.push(ty);
        }
    }
    out
}

/// Normalised mean squared error of `got` against `want`: Σ(g−w)² / Σw². Any non-finite
/// value in `got` counts as infinitely wrong.
pub fn nmse(want: &[f64], got: &[f32]) -> f64 {
    if want.len() != got.len() || got.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let err: f64 = want
        .iter()
        .zip(got)
        .map(|(w, g)| (w - *g as f64).powi(2))
        .sum();
    let power: f64 = want.iter().map(|w| w * w).sum();
    err / power.max(f64::MIN_POSITIVE)
}

/// A deterministic xorshift64 stream.
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A `ROWS` × `COLS` matrix of `ty` with random blocks whose scales are moderate: each block
/// is drawn again until its reference dequantization is finite and below 64 in magnitude (a
/// random f16 scale is often huge or NaN). Also returns the dequantized rows.
pub fn test_matrix(ty: GgmlType, seed: u64) -> Result<(QMatrix, Vec<f32>)> {
    test_matrix_sized(ty, ROWS, COLS, seed)
}

/// [`test_matrix`] of `rows` × `cols` (`cols` a multiple of the block size).
pub fn test_matrix_sized(
    ty: GgmlType,
    rows: usize,
    cols: usize,
    seed: u64,
) -> Result<(QMatrix, Vec<f32>)> {
    let (bs, ts) = ty.block_geometry();
    let mut rng = Stream(seed | 1);
    let per_row = cols / bs;
    let mut data = Vec::with_capacity(rows * per_row * ts);
    let mut dense = vec![0f32; rows * cols];
    let mut block = vec![0u8; ts];
    let mut values = vec![0f32; bs];
    for b in 0..rows * per_row {
        // A few hundred draws find a good block for every format (about 1 in 4 for two scales).
        for attempt in 0.. {
            block.iter_mut().for_each(|v| *v = rng.next() as u8);
            if crate::quant::dequantize(ty, &block, &mut values).is_ok()
                && values.iter().all(|v| v.is_finite() && v.abs() < 64.0)
                && values.iter().any(|v| *v != 0.0)
            {
                break;
            }
            if attempt > 100_000 {
                return Err(
                    GpuError::SelfTest(format!("no test block could be drawn for {ty}")).into(),
                );
            }
        }
        data.extend_from_slice(&block);
        dense[b * bs..(b + 1) * bs].copy_from_slice(&values);
    }
    let m = QMatrix {
        name: format!("self-test {ty}"),
        ty,
        rows,
        cols,
        row_bytes: per_row * ts,
        data,
    };
    Ok((m, dense))
}

/// Run the known-answer test on `ctx` for `formats` (see [`formats_to_test`]). Fails with
/// [`GpuError::SelfTest`] naming the first kernel that computed a wrong answer. `now` is a
/// millisecond clock for the report (`None` leaves `ms` empty).
pub async fn run(
    ctx: &GpuContext,
    formats: &[GgmlType],
    now: Option<&dyn Fn() -> f64>,
) -> Result<SelfTestReport> {
    let t0 = now.map(|f| f());
    let mut report = SelfTestReport::default();
    let mut rng = Stream(0x5e1f_7e57);
    let x: Vec<f32> = (0..COLS)
        .map(|_| (rng.next() % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let xb = ctx.storage_with("self-test x", bytemuck::cast_slice(&x));
    for (i, &ty) in formats.iter().enumerate() {
        let (m, dense) = test_matrix(ty, 0x9e37_79b9 + i as u64)?;
        let want: Vec<f64> = dense
            .chunks_exact(COLS)
            .map(|row| row.iter().zip(&x).map(|(w, v)| *w as f64 * *v as f64).sum())
            .collect();
        let gm = GpuMatrix::upload(ctx, &m)?;
        let yb = ctx.storage_f32("self-test y", ROWS);
        matvec_once(ctx, &gm, &xb, &yb)?;
        let got = ctx.read_f32(&yb, ROWS).await?;
        let e = nmse(&want, &got);
        if e.is_nan() || e > MAX_NMSE {
            return Err(GpuError::SelfTest(format!(
                "the {ty} matrix × vector kernel computed wrong results (NMSE {e:.2e} against the CPU reference, at most {MAX_NMSE:e} expected)"
            ))
            .into());
        }
        report.formats.push((ty, e));
    }
    check_sampling(ctx).await?;
    report.ms = match (t0, now) {
        (Some(t0), Some(f)) => Some(f() - t0),
        _ => None,
    };
    Ok(report)
}

/// Logits with a known winner: argmax, greedy sampling and top-k 1 at temperature 1 must all
/// pick it.
async fn check_sampling(ctx: &GpuContext) -> Result<()> {
    const N: usize = 1000;
    const WINNER: u32 = 637;
    let logits: Vec<f32> = (0..N)
        .map(|i| {
            if i as u32 == WINNER {
                9.5
            } else {
                ((i * 7919) % 1000) as f32 / 200.0
            }
        })
        .collect();
    let lb = ctx.storage_with("self-test logits", bytemuck::cast_slice(&logits));
    let out = ctx.storage_f32("self-test argmax", 1);
    let p = ctx.params("self-test argmax", &[N as u32]);
    ctx.run_once(
        PipelineKey::new(Shader::Argmax),
        &[&lb, &out, &p],
        [1, 1, 1],
    )?;
    let argmax = ctx.read_u32(&out, 1).await?[0];
    let greedy = sample_once(ctx, &lb, N, &GpuSampling::default()).await?;
    let top1 = GpuSampling {
        temperature: 1.0,
        top_k: 1,
        uniform: 0.73,
        ..GpuSampling::default()
    };
    let sampled = sample_once(ctx, &lb, N, &top1).await?;
    for (what, got) in [
        ("argmax", argmax),
        ("greedy sampling", greedy),
        ("top-k 1 sampling", sampled),
    ] {
        if got != WINNER {
            return Err(GpuError::SelfTest(format!(
                "the {what} kernel picked token {got} where {WINNER} has the largest logit"
            ))
            .into());
        }
    }
    Ok(())
}
