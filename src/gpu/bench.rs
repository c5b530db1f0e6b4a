//! Kernel timing for `chord bench MODEL --backend gpu --kernels`: one kernel dispatched many
//! times in one submission, timed by the wall clock from submit to the device going idle
//! (natively `device.poll(wait)`), so per-dispatch launch overhead is included but no readback.
//! Timestamp queries are not used: the device is created without TIMESTAMP_QUERY (browsers
//! quantise them anyway), and a long enough submission makes the submit/poll overhead small.

use std::time::Instant;

use super::kernels::{PipelineKey, Shader};
use super::model::fused::{self, QkvBuffers, QkvShape, QKV_CS_FLOATS};
use super::model::{
    encode, encode_batch, make_dispatch, matmat_dispatches, matvec_dispatches,
    matvec_dispatches_rows, matvec_rows, Dispatch,
};
use super::uniforms::AddParams;
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

/// Seconds per run of `ds` (one token), timed as [`time_product`]: the median of three
/// submissions of back-to-back repetitions sized to about `budget_s` each.
fn time_dispatches(ctx: &GpuContext, ds: &[Dispatch], budget_s: f64) -> Result<f64> {
    let run = |iters: usize| -> Result<f64> {
        let cmd = ctx.one_pass("bench", |pass| {
            for _ in 0..iters {
                encode(pass, ds);
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
    Ok(v[1])
}

/// One fused decode kernel against the chain of unfused kernels it replaces.
#[derive(Clone, Debug)]
pub struct FusedTiming {
    pub what: String,
    pub fused_s: f64,
    pub fused_dispatches: usize,
    pub unfused_s: f64,
    pub unfused_dispatches: usize,
    /// Weight bytes the kernels read.
    pub bytes: usize,
}

/// A layer's matrices for [`time_fused`]: Q, K, V, O, gate, up, down.
pub struct LayerMatrices<'a> {
    pub q: &'a GpuMatrix,
    pub k: &'a GpuMatrix,
    pub v: &'a GpuMatrix,
    pub o: &'a GpuMatrix,
    pub gate: &'a GpuMatrix,
    pub up: &'a GpuMatrix,
    pub down: &'a GpuMatrix,
}

/// The fused decode kernels of one layer (llama RoPE, f32 KV cache of 256 positions, heads of
/// `head_dim`) against their unfused chains, on zeroed activations: matvec_qkv.wgsl vs rmsnorm +
/// 3 matvec + 2 rope + 2 kv_store; matvec_glu.wgsl vs rmsnorm + 2 matvec + gate; the output
/// projections with the residual add vs matvec + add.
pub fn time_fused(
    ctx: &GpuContext,
    m: &LayerMatrices<'_>,
    head_dim: usize,
    budget_s: f64,
) -> Result<Vec<FusedTiming>> {
    let (e, n_ff) = (m.q.cols, m.gate.rows);
    let (q_dim, kv_dim, v_dim) = (m.q.rows, m.k.rows, m.v.rows);
    let n_ctx = 256;
    let f = |l: &str, n: usize| ctx.storage_f32(l, n);
    let (x, h, wt) = (f("x", e), f("h", e), f("norm", e));
    let (q, k, v) = (f("q", q_dim), f("k", kv_dim), f("v", v_dim));
    let (kc, vc) = (f("K cache", n_ctx * kv_dim), f("V cache", n_ctx * v_dim));
    let (att, proj) = (f("att", m.o.cols), f("proj", e));
    let (g, u) = (f("gate", n_ff), f("up", n_ff));
    let cs = f("cos/sin", QKV_CS_FLOATS);
    let cs_u = ctx.uniform_with("cos/sin", &[0; QKV_CS_FLOATS * 4]);
    let step = ctx.params("step", &[7, 1]);
    let one = |key: PipelineKey, bufs: &[&wgpu::Buffer], n: usize| {
        make_dispatch(ctx, key, bufs, [n.div_ceil(64) as u32, 1, 1])
    };
    let rms_p = ctx.params("rmsnorm", &[e as u32, 1e-5f32.to_bits()]);
    let rmsnorm = make_dispatch(
        ctx,
        PipelineKey::new(Shader::RmsNorm),
        &[&x, &wt, &h, &rms_p],
        [1, 1, 1],
    )?;
    let rope = |buf: &wgpu::Buffer, heads: usize| -> Result<Dispatch> {
        let p = ctx.params(
            "rope",
            &[
                heads as u32,
                head_dim as u32,
                head_dim as u32,
                0,
                0,
                1f32.to_bits(),
                0,
            ],
        );
        one(
            PipelineKey::new(Shader::Rope),
            &[buf, &cs, &p],
            heads * head_dim / 2,
        )
    };
    let store = |src: &wgpu::Buffer, dst: &wgpu::Buffer, n: usize| -> Result<Dispatch> {
        let p = ctx.params("kv_store", &[n as u32]);
        one(PipelineKey::new(Shader::KvStore), &[src, dst, &p, &step], n)
    };
    let add = |y: &wgpu::Buffer, b: &wgpu::Buffer| -> Result<Dispatch> {
        let p = ctx.uniform("add", &AddParams::new(e, true));
        one(PipelineKey::new(Shader::Add), &[y, b, &p], e)
    };
    let mut out = Vec::new();
    let mut time = |what: &str, fused: Vec<Dispatch>, unfused: Vec<Dispatch>, bytes: usize| {
        let fused_s = time_dispatches(ctx, &fused, budget_s)?;
        let unfused_s = time_dispatches(ctx, &unfused, budget_s)?;
        out.push(FusedTiming {
            what: what.into(),
            fused_s,
            fused_dispatches: fused.len(),
            unfused_s,
            unfused_dispatches: unfused.len(),
            bytes,
        });
        Ok::<(), crate::Error>(())
    };

    // RMSNorm + Q/K/V + RoPE + KV store.
    let mut unfused = vec![rmsnorm.clone()];
    for (w, y) in [(m.q, &q), (m.k, &k), (m.v, &v)] {
        unfused.extend(matvec_dispatches(ctx, w, &h, y)?);
    }
    unfused.extend([rope(&q, q_dim / head_dim)?, rope(&k, kv_dim / head_dim)?]);
    unfused.extend([store(&k, &kc, kv_dim)?, store(&v, &vc, v_dim)?]);
    let fused = if fused::qkv_fusable([m.q, m.k, m.v], head_dim, head_dim, 0) {
        let bufs = QkvBuffers {
            x: &x,
            vecs: &wt,
            q: &q,
            k_cache: &kc,
            v_cache: &vc,
            step: &step,
            cos_sin: &cs_u,
        };
        let shape = QkvShape {
            head_dim,
            neox: false,
            cs_off: 0,
            q_scale: 1.0,
            eps: 1e-5,
            has_bias: false,
            kv_f16: false,
        };
        vec![fused::qkv_dispatch(ctx, [m.q, m.k, m.v], &bufs, &shape)?]
    } else {
        vec![]
    };
    let bytes = m.q.bytes() + m.k.bytes() + m.v.bytes();
    if !fused.is_empty() {
        time("rmsnorm+qkv+rope+kv_store", fused, unfused, bytes)?;
    }

    // RMSNorm + gate and up + SiLU.
    let mut unfused = vec![rmsnorm.clone()];
    unfused.extend(matvec_dispatches(ctx, m.gate, &h, &g)?);
    unfused.extend(matvec_dispatches(ctx, m.up, &h, &u)?);
    let gp = ctx.params("gate", &[n_ff as u32]);
    unfused.push(one(PipelineKey::new(Shader::Gate), &[&g, &u, &gp], n_ff)?);
    if fused::glu_fusable(m.gate, m.up) {
        let d = fused::glu_dispatch(ctx, m.gate, m.up, &x, &wt, &g, 0, 1e-5)?;
        time(
            "rmsnorm+gate+up+silu",
            vec![d],
            unfused,
            m.gate.bytes() + m.up.bytes(),
        )?;
    }

    // The output projections with the residual add.
    for (name, w, input) in [("o_proj+add", m.o, &att), ("ffn_down+add", m.down, &g)] {
        let mut unfused = matvec_dispatches(ctx, w, input, &proj)?;
        unfused.push(add(&x, &proj)?);
        let fused =
            fused::fused_dispatches(ctx, w, input, input, &x, fused::FusedEnds::residual(1.0))?;
        time(name, fused, unfused, w.bytes())?;
    }
    Ok(out)
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
