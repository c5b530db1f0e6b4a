//! Kernel timing for `chord bench MODEL --backend gpu --kernels`: one kernel dispatched many
//! times in one submission, timed by the wall clock from submit to the device going idle
//! (natively `device.poll(wait)`), so per-dispatch launch overhead is included but no readback.
//! Timestamp queries are not used: the device is created without TIMESTAMP_QUERY (browsers
//! quantise them anyway), and a long enough submission makes the submit/poll overhead small.

use std::time::Instant;

use super::model::{encode_batch, matmat_dispatches, matvec_dispatches_rows, matvec_rows};
use super::{GpuContext, GpuError, GpuMatrix};
use crate::model::QMatrix;
use crate::quant::GgmlType;
use crate::Result;

/// How a matrix product over `n_tok` tokens is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    /// matvec.wgsl with workgroup z = token: the weights are read once per token (the decode
    /// step for one token; how a prefill batch ran before matmat.wgsl). With `Some(rows)` rows
    /// per workgroup, else the model's choice.
    Matvec(Option<u32>),
    /// matmat.wgsl: the weights are read once per tile of [`MATMAT_TOKENS`](super::kernels::MATMAT_TOKENS) tokens.
    Matmat,
}

/// Seconds per product `Y = W·X` over `n_tok` tokens (X and Y already on the GPU, token-major):
/// after a warm-up submission, three submissions of back-to-back dispatches sized to take about
/// `budget_s` each; the median, and the dispatches per submission.
pub fn time_product(
    ctx: &GpuContext,
    m: &GpuMatrix,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    n_tok: usize,
    how: Product,
    budget_s: f64,
) -> Result<(f64, usize)> {
    let step = ctx.params("bench batch", &[0, n_tok as u32]);
    let ds = match how {
        Product::Matvec(rows) => {
            let rows = rows.unwrap_or_else(|| matvec_rows(m.cols));
            matvec_dispatches_rows(ctx, m, x, y, rows)?
        }
        Product::Matmat => matmat_dispatches(ctx, m, x, y, &step)?,
    };
    let run = |iters: usize| -> Result<f64> {
        let cmd = ctx.one_pass("bench", |pass| {
            for _ in 0..iters {
                encode_batch(pass, &ds, n_tok as u32, false);
            }
        });
        let t = Instant::now();
        ctx.queue.submit([cmd]);
        ctx.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        Ok(t.elapsed().as_secs_f64())
    };
    let first = run(1)?;
    let iters = ((budget_s / first.max(1e-6)) as usize).clamp(1, 1000);
    let mut v = (0..3)
        .map(|_| run(iters).map(|s| s / iters as f64))
        .collect::<Result<Vec<_>>>()?;
    v.sort_by(f64::total_cmp);
    Ok((v[1], iters))
}

/// A `rows` × `cols` matrix of `ty` with deterministic pseudo-random quants and normal f16/f32
/// scales and values (no NaN, infinity or subnormal to slow a software rasteriser down).
pub fn synthetic_matrix(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> QMatrix {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (bs, ts) = ty.block_geometry();
    let row_bytes = cols / bs * ts;
    let mut data: Vec<u8> = (0..rows * row_bytes).map(|_| next() as u8).collect();
    let f16 = |v: f32| half::f16::from_f32(v).to_bits().to_le_bytes();
    for b in data.chunks_exact_mut(ts) {
        let mut put = |at: usize, v: f32| b[at..at + 2].copy_from_slice(&f16(v));
        match ty {
            GgmlType::Q4_K | GgmlType::Q4_1 => {
                put(0, 0.02);
                put(2, 0.01);
            }
            GgmlType::Q6_K => put(208, 0.02),
            GgmlType::Q5_K | GgmlType::Q5_1 => {
                put(0, 0.02);
                put(2, 0.01);
            }
            GgmlType::Q2_K => {
                put(80, 0.02);
                put(82, 0.01);
            }
            GgmlType::Q3_K => put(108, 0.02),
            GgmlType::IQ1_M => {
                // d = 0.02 in the top nibbles of the four scale words.
                let d = half::f16::from_f32(0.02).to_bits();
                for k in 0..4 {
                    b[49 + 2 * k] = (b[49 + 2 * k] & 0x0f) | ((((d >> (4 * k)) & 0xf) as u8) << 4);
                }
            }
            GgmlType::MXFP4 => b[0] = 122,
            GgmlType::BF16 => {
                let v = (next() % 1000) as f32 / 500.0 - 1.0;
                b.copy_from_slice(&(((v.to_bits() >> 16) as u16).to_le_bytes()));
            }
            GgmlType::F16 => put(0, (next() % 1000) as f32 / 500.0 - 1.0),
            GgmlType::F32 => {
                let v = (next() % 1000) as f32 / 500.0 - 1.0;
                b.copy_from_slice(&v.to_le_bytes());
            }
            _ => put(0, 0.02),
        }
    }
    QMatrix {
        name: format!("synthetic {ty}"),
        ty,
        rows,
        cols,
        row_bytes,
        data,
    }
}
