//! The forward pass on the GPU: one token per step, one command submission per step.
//!
//! Everything is created once at load: weights (still quantized), activations, the KV cache,
//! parameter buffers, pipelines and bind groups, and the list of dispatches of one step. A step
//! only writes its few per-token parameters (`queue.write_buffer`: the token's embedding row,
//! RoPE cos/sin, the attention span), encodes the recorded dispatches and submits once. Greedy
//! decoding takes the argmax on the GPU and reads back 4 bytes.

use super::kernels::{groups_2d, unit_weights, Kernel, PipelineKey};
use super::{GpuContext, GpuMatrix};
use crate::cpu::ops::rope_inv_freq;
use crate::gguf::GgufHeader;
use crate::model::{Activation, Arch, Config, ModelWeights};
use crate::source::ByteSource;
use crate::{Error, Result};

/// One recorded dispatch.
struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    group: wgpu::BindGroup,
    groups: [u32; 3],
}

/// What a step reads back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Readback {
    None,
    Logits,
    Argmax,
}

/// Activation buffers of one token (f32).
struct Acts {
    x: wgpu::Buffer,      // (n_embd) residual stream
    h: wgpu::Buffer,      // (n_embd) normed input of a block
    q_raw: wgpu::Buffer,  // (n_head·head_dim) before the Q norm (Gemma 3)
    k_raw: wgpu::Buffer,  // (n_head_kv·head_dim) before the K norm
    q: wgpu::Buffer,      // (n_head·head_dim)
    k: wgpu::Buffer,      // (n_head_kv·head_dim)
    v: wgpu::Buffer,      // (n_head_kv·head_dim_v)
    att: wgpu::Buffer,    // (n_head·head_dim_v)
    proj: wgpu::Buffer,   // (n_embd) output of a block
    proj_n: wgpu::Buffer, // (n_embd) after a post-norm
    gate: wgpu::Buffer,   // (n_ff)
    up: wgpu::Buffer,     // (n_ff)
    scores: wgpu::Buffer, // (n_head, n_ctx)
    logits: wgpu::Buffer, // (n_vocab)
    token: wgpu::Buffer,  // (1) argmax
}

/// A model on the GPU, ready to decode.
pub struct GpuModel {
    pub ctx: GpuContext,
    pub cfg: Config,
    pub n_ctx: usize,
    token_embd: GpuMatrix,
    embd_pipeline: wgpu::ComputePipeline,
    embd_params: wgpu::Buffer,
    embd_groups: Vec<wgpu::BindGroup>,
    /// The layers' dispatches, in order.
    layers: Vec<Dispatch>,
    /// Output norm and logits.
    head: Vec<Dispatch>,
    argmax: Dispatch,
    inv_freq: Vec<f64>,
    inv_freq_swa: Vec<f64>,
    rope_cs: wgpu::Buffer,
    attn_params: wgpu::Buffer,
    attn_params_swa: wgpu::Buffer,
    /// The step's position (kv_store.wgsl).
    step_params: wgpu::Buffer,
    acts: Acts,
    stage_logits: wgpu::Buffer,
    stage_token: wgpu::Buffer,
    /// Weights, caches and parameter buffers the bind groups refer to.
    _keep: Vec<GpuMatrix>,
    _buffers: Vec<wgpu::Buffer>,
}

/// Records the dispatches of a step while the model is built.
struct Recorder<'a> {
    ctx: &'a GpuContext,
    cfg: &'a Config,
    dispatches: Vec<Dispatch>,
    buffers: Vec<wgpu::Buffer>,
    step_params: wgpu::Buffer,
}

impl Recorder<'_> {
    fn dispatch(
        &mut self,
        key: PipelineKey,
        bufs: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<()> {
        let d = make_dispatch(self.ctx, key, bufs, groups)?;
        self.dispatches.push(d);
        Ok(())
    }

    fn params(&mut self, label: &str, words: &[u32]) -> wgpu::Buffer {
        let b = self.ctx.params(label, words);
        self.buffers.push(b.clone());
        b
    }

    fn vector(&mut self, label: &str, v: &[f32]) -> wgpu::Buffer {
        let b = self.ctx.storage_with(label, bytemuck::cast_slice(v));
        self.buffers.push(b.clone());
        b
    }

    /// y = W·x, one dispatch per row range of W.
    fn matvec(&mut self, m: &GpuMatrix, x: &wgpu::Buffer, y: &wgpu::Buffer) -> Result<()> {
        for d in matvec_dispatches(self.ctx, m, x, y)? {
            self.dispatches.push(d);
        }
        Ok(())
    }

    /// y = rmsnorm(x)·w over `rows` rows of `n`.
    fn rmsnorm(
        &mut self,
        x: &wgpu::Buffer,
        w: &[f32],
        y: &wgpu::Buffer,
        n: usize,
        rows: usize,
    ) -> Result<()> {
        let wb = self.vector("norm weight", w);
        let p = self.params("rmsnorm", &[n as u32, self.cfg.rms_eps.to_bits()]);
        self.dispatch(
            PipelineKey::new(Kernel::RmsNorm),
            &[x, &wb, y, &p],
            [rows as u32, 1, 1],
        )
    }

    /// y += b.
    fn add(&mut self, y: &wgpu::Buffer, b: &wgpu::Buffer, n: usize) -> Result<()> {
        let p = self.params("add", &[n as u32]);
        self.dispatch(
            PipelineKey::new(Kernel::Add),
            &[y, b, &p],
            [n.div_ceil(64) as u32, 1, 1],
        )
    }

    fn rope(
        &mut self,
        v: &wgpu::Buffer,
        cs: &wgpu::Buffer,
        heads: usize,
        swa: bool,
        scale: f32,
    ) -> Result<()> {
        let c = self.cfg;
        let cs_off = if swa { c.n_rot } else { 0 };
        let p = self.params(
            "rope",
            &[
                heads as u32,
                c.head_dim as u32,
                c.n_rot as u32,
                u32::from(c.rope_neox),
                cs_off as u32,
                scale.to_bits(),
            ],
        );
        let n = heads * c.head_dim / 2;
        self.dispatch(
            PipelineKey::new(Kernel::Rope),
            &[v, cs, &p],
            [n.div_ceil(64) as u32, 1, 1],
        )
    }

    /// Append `n` values of `src` to the cache `dst` at the step's position.
    fn store_kv(&mut self, src: &wgpu::Buffer, dst: &wgpu::Buffer, n: usize) -> Result<()> {
        let p = self.params("kv_store", &[n as u32]);
        let step = self.step_params.clone();
        self.dispatch(
            PipelineKey::new(Kernel::KvStore),
            &[src, dst, &p, &step],
            [n.div_ceil(64) as u32, 1, 1],
        )
    }
}

fn make_dispatch(
    ctx: &GpuContext,
    key: PipelineKey,
    bufs: &[&wgpu::Buffer],
    groups: [u32; 3],
) -> Result<Dispatch> {
    Ok(Dispatch {
        pipeline: ctx.pipeline(key)?.pipeline,
        group: ctx.bind(key, bufs)?,
        groups,
    })
}

/// Rows per workgroup of matvec.wgsl for a matrix of `cols` columns of `ty`: each row gets a
/// power of two of invocations (8 to 64) close to its number of units, so short rows (a
/// 576-wide Q4_K row has 18 units) do not leave most of the workgroup idle.
pub fn matvec_rows(ty: crate::quant::GgmlType, cols: usize) -> u32 {
    let units = cols / unit_weights(ty);
    let per_row = units.next_power_of_two().clamp(8, 64);
    (256 / per_row) as u32
}

/// The dispatches of y = W·x, one per row range of W (each writes its rows of y).
fn matvec_dispatches(
    ctx: &GpuContext,
    m: &GpuMatrix,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    let key = PipelineKey {
        rows: matvec_rows(m.ty, m.cols),
        ..PipelineKey::new(Kernel::Matvec(m.ty))
    };
    m.chunks
        .iter()
        .map(|c| {
            let p = ctx.params(
                &m.name,
                &[
                    c.rows as u32,
                    m.cols as u32,
                    m.row_bytes as u32,
                    c.row_start as u32,
                ],
            );
            let groups = groups_2d(c.rows.div_ceil(key.rows as usize));
            make_dispatch(ctx, key, &[&c.buffer, x, y, &p], groups)
        })
        .collect()
}

/// Run y = W·x once (for tests and one-off products): one submission.
pub fn matvec_once(
    ctx: &GpuContext,
    m: &GpuMatrix,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<()> {
    let ds = matvec_dispatches(ctx, m, x, y)?;
    let mut enc = ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("matvec"),
        });
    {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("matvec"),
            timestamp_writes: None,
        });
        encode(&mut pass, &ds);
    }
    ctx.queue.submit([enc.finish()]);
    Ok(())
}

fn encode(pass: &mut wgpu::ComputePass<'_>, ds: &[Dispatch]) {
    for d in ds {
        pass.set_pipeline(&d.pipeline);
        pass.set_bind_group(0, &d.group, &[]);
        pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
    }
}

impl GpuModel {
    /// Upload `w` (still quantized) and record a step's dispatches, with a KV cache of `n_ctx`
    /// positions. Fails with a typed error when a tensor type has no kernel or a buffer cannot
    /// fit the device's limits.
    pub fn new(ctx: GpuContext, cfg: Config, w: &ModelWeights, n_ctx: usize) -> Result<GpuModel> {
        let gw = GpuWeights::upload(&ctx, w)?;
        GpuModel::build(ctx, cfg, gw, n_ctx)
    }

    /// Load a GGUF model from `src` tensor by tensor: each matrix goes straight from the source
    /// into GPU buffers (through an 8 MiB bounce buffer), so the weights never sit in memory.
    pub fn load(
        ctx: GpuContext,
        src: &dyn crate::source::ByteSource,
        n_ctx: usize,
    ) -> Result<GpuModel> {
        let header = crate::source::read_header(src)?;
        let mut cfg = Config::from_header(&header)?;
        let gw = GpuWeights::stream(&ctx, &header, src, &mut cfg)?;
        GpuModel::build(ctx, cfg, gw, n_ctx)
    }

    /// Record a step's dispatches over uploaded weights.
    fn build(ctx: GpuContext, cfg: Config, w: GpuWeights, n_ctx: usize) -> Result<GpuModel> {
        let c = &cfg;
        let (e, hd, hdv) = (c.n_embd, c.head_dim, c.head_dim_v);
        let (q_dim, kv_dim, v_dim) = (c.n_head * hd, c.kv_dim(), c.n_head_kv * hdv);
        let n_ctx = n_ctx.max(1);
        ctx.check_fits(
            "the KV cache of one layer",
            (n_ctx * kv_dim.max(v_dim) * 4) as u64,
        )?;
        ctx.check_fits("the attention scores", (c.n_head * n_ctx * 4) as u64)?;
        ctx.check_fits("the logits", (c.n_vocab * 4) as u64)?;

        let f = |l: &str, n: usize| ctx.storage_f32(l, n);
        let acts = Acts {
            x: f("x", e),
            h: f("h", e),
            q_raw: f("q_raw", q_dim),
            k_raw: f("k_raw", kv_dim),
            q: f("q", q_dim),
            k: f("k", kv_dim),
            v: f("v", v_dim),
            att: f("att", c.n_head * hdv),
            proj: f("proj", e),
            proj_n: f("proj_n", e),
            gate: f("gate", c.n_ff),
            up: f("up", c.n_ff),
            scores: f("scores", c.n_head * n_ctx),
            logits: f("logits", c.n_vocab),
            token: f("token", 1),
        };
        let rope_cs = f("rope cos/sin", 2 * c.n_rot);
        let attn_params = ctx.params("attention", &[]);
        let attn_params_swa = ctx.params("attention (sliding window)", &[]);
        let step_params = ctx.params("step", &[]);

        let mut rec = Recorder {
            ctx: &ctx,
            cfg: c,
            dispatches: Vec::new(),
            buffers: Vec::new(),
            step_params: step_params.clone(),
        };
        let mut keep = Vec::new();
        let a = &acts;
        let GpuWeights {
            token_embd,
            output_norm,
            output,
            rope_freqs,
            layers,
        } = w;
        for (l, lw) in layers.into_iter().enumerate() {
            let (wq, wk, wv, wo) = (lw.wq, lw.wk, lw.wv, lw.wo);
            let (wg, wu, wd) = (lw.w_gate, lw.w_up, lw.w_down);
            let kc = f(&format!("blk.{l} K cache"), n_ctx * kv_dim);
            let vc = f(&format!("blk.{l} V cache"), n_ctx * v_dim);
            let swa = c.swa_layers[l];

            // Attention block.
            rec.rmsnorm(&a.x, &lw.attn_norm, &a.h, e, 1)?;
            let qo = if lw.q_norm.is_some() { &a.q_raw } else { &a.q };
            let ko = if lw.k_norm.is_some() { &a.k_raw } else { &a.k };
            rec.matvec(&wq, &a.h, qo)?;
            rec.matvec(&wk, &a.h, ko)?;
            rec.matvec(&wv, &a.h, &a.v)?;
            for (buf, bias, n) in [
                (qo, &lw.bq, q_dim),
                (ko, &lw.bk, kv_dim),
                (&a.v, &lw.bv, v_dim),
            ] {
                if let Some(b) = bias {
                    let bb = rec.vector("bias", b);
                    rec.add(buf, &bb, n)?;
                }
            }
            if let Some(wn) = &lw.q_norm {
                rec.rmsnorm(&a.q_raw, wn, &a.q, hd, c.n_head)?;
            }
            if let Some(wn) = &lw.k_norm {
                rec.rmsnorm(&a.k_raw, wn, &a.k, hd, c.n_head_kv)?;
            }
            rec.rope(&a.q, &rope_cs, c.n_head, swa, c.q_scale.unwrap_or(1.0))?;
            rec.rope(&a.k, &rope_cs, c.n_head_kv, swa, 1.0)?;
            rec.store_kv(&a.k, &kc, kv_dim)?;
            rec.store_kv(&a.v, &vc, v_dim)?;
            let ap = if swa { &attn_params_swa } else { &attn_params };
            rec.dispatch(
                PipelineKey::new(Kernel::Attention),
                &[&a.q, &kc, &vc, &a.att, &a.scores, ap],
                [c.n_head as u32, 1, 1],
            )?;
            rec.matvec(&wo, &a.att, &a.proj)?;
            match &lw.post_attn_norm {
                Some(wn) => {
                    rec.rmsnorm(&a.proj, wn, &a.proj_n, e, 1)?;
                    rec.add(&a.x, &a.proj_n, e)?;
                }
                None => rec.add(&a.x, &a.proj, e)?,
            }

            // Feed-forward block.
            rec.rmsnorm(&a.x, &lw.ffn_norm, &a.h, e, 1)?;
            rec.matvec(&wg, &a.h, &a.gate)?;
            rec.matvec(&wu, &a.h, &a.up)?;
            let act = match c.activation {
                Activation::Silu => 0,
                Activation::GeluTanh => 1,
            };
            let p = rec.params("gate", &[c.n_ff as u32]);
            rec.dispatch(
                PipelineKey {
                    act,
                    ..PipelineKey::new(Kernel::Gate)
                },
                &[&a.gate, &a.up, &p],
                [c.n_ff.div_ceil(64) as u32, 1, 1],
            )?;
            rec.matvec(&wd, &a.gate, &a.proj)?;
            match &lw.post_ffn_norm {
                Some(wn) => {
                    rec.rmsnorm(&a.proj, wn, &a.proj_n, e, 1)?;
                    rec.add(&a.x, &a.proj_n, e)?;
                }
                None => rec.add(&a.x, &a.proj, e)?,
            }
            keep.extend([wq, wk, wv, wo, wg, wu, wd]);
            rec.buffers.extend([kc, vc]);
        }

        // Output head: norm, then logits (the output matrix, or token_embd when tied).
        let layer_dispatches = std::mem::take(&mut rec.dispatches);
        rec.rmsnorm(&a.x, &output_norm, &a.h, e, 1)?;
        let mut head = std::mem::take(&mut rec.dispatches);
        match output {
            Some(om) => {
                head.extend(matvec_dispatches(&ctx, &om, &a.h, &a.logits)?);
                keep.push(om);
            }
            None => head.extend(matvec_dispatches(&ctx, &token_embd, &a.h, &a.logits)?),
        }
        let ap = ctx.params("argmax", &[c.n_vocab as u32]);
        let argmax = make_dispatch(
            &ctx,
            PipelineKey::new(Kernel::Argmax),
            &[&a.logits, &a.token, &ap],
            [1, 1, 1],
        )?;

        // Embedding: dequantize the token's row of token_embd, times the embedding scale.
        let embd_key = PipelineKey::new(Kernel::Dequant(token_embd.ty));
        let embd_params = ctx.params("embedding", &[]);
        let embd_groups = token_embd
            .chunks
            .iter()
            .map(|ch| ctx.bind(embd_key, &[&ch.buffer, &a.x, &embd_params]))
            .collect::<Result<Vec<_>>>()?;
        let embd_pipeline = ctx.pipeline(embd_key)?.pipeline;

        let ff = rope_freqs.as_deref();
        let inv_freq = rope_inv_freq(c.n_rot, c.rope_base, c.rope_freq_scale, ff);
        let inv_freq_swa = rope_inv_freq(c.n_rot, c.rope_base_swa, c.rope_freq_scale, ff);
        let mut buffers = rec.buffers;
        buffers.push(ap);
        let stage_logits = ctx.staging("logits readback", (c.n_vocab * 4) as u64);
        let stage_token = ctx.staging("token readback", 4);
        Ok(GpuModel {
            n_ctx,
            token_embd,
            embd_pipeline,
            embd_params,
            embd_groups,
            layers: layer_dispatches,
            head,
            argmax,
            inv_freq,
            inv_freq_swa,
            rope_cs,
            attn_params,
            attn_params_swa,
            step_params,
            acts,
            stage_logits,
            stage_token,
            _keep: keep,
            _buffers: buffers,
            cfg,
            ctx,
        })
    }

    /// Run `tokens` at positions `pos..pos + n` (one step, one submission per token) and return
    /// the last token's logits (n_vocab).
    pub async fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>> {
        let Some((&last, rest)) = tokens.split_last() else {
            return Ok(vec![]);
        };
        self.check_span(pos, tokens.len())?;
        for (i, &t) in rest.iter().enumerate() {
            self.step(t, pos + i, Readback::None)?;
        }
        self.step(last, pos + rest.len(), Readback::Logits)?;
        let n = self.cfg.n_vocab;
        let b = self.ctx.map_read(&self.stage_logits, n * 4).await?;
        Ok(bytemuck::pod_collect_to_vec(&b))
    }

    /// Run one token at `pos` and return the greedy next token, taken on the GPU (a 4-byte
    /// readback).
    pub async fn step_argmax(&mut self, token: u32, pos: usize) -> Result<u32> {
        self.check_span(pos, 1)?;
        self.step(token, pos, Readback::Argmax)?;
        let b = self.ctx.map_read(&self.stage_token, 4).await?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn check_span(&self, pos: usize, n: usize) -> Result<()> {
        if pos + n > self.n_ctx {
            return Err(Error::ContextFull {
                needed: pos + n,
                n_ctx: self.n_ctx,
            });
        }
        Ok(())
    }

    /// Write the step's parameters, encode every dispatch and submit once.
    fn step(&mut self, token: u32, pos: usize, readback: Readback) -> Result<()> {
        let c = &self.cfg;
        if token as usize >= c.n_vocab {
            return Err(Error::TokenOutOfRange {
                id: token,
                n_vocab: c.n_vocab,
            });
        }
        let q = &self.ctx.queue;
        let te = &self.token_embd;
        let (chunk, row) = te.chunk_of(token as usize);
        let n_units = te.cols / unit_weights(te.ty);
        let scale = c.embd_scale.unwrap_or(1.0);
        let words = [
            n_units as u32,
            (row * te.row_bytes) as u32,
            0,
            scale.to_bits(),
        ];
        q.write_buffer(&self.embd_params, 0, bytemuck::cast_slice(&words));

        // RoPE cos/sin of pos·inv_freq, in f64 as the CPU reference: global, then sliding-window.
        let mut cs = Vec::with_capacity(2 * c.n_rot);
        for f in self.inv_freq.iter().chain(&self.inv_freq_swa) {
            let th = pos as f64 * f;
            cs.extend([th.cos() as f32, th.sin() as f32]);
        }
        q.write_buffer(&self.rope_cs, 0, bytemuck::cast_slice(&cs));
        q.write_buffer(&self.step_params, 0, &(pos as u32).to_le_bytes());

        let first_swa = (pos + 1).saturating_sub(c.n_swa) as u32;
        for (buf, first) in [(&self.attn_params, 0), (&self.attn_params_swa, first_swa)] {
            let words = [
                self.n_ctx as u32,
                c.group() as u32,
                c.head_dim as u32,
                c.head_dim_v as u32,
                c.kv_dim() as u32,
                (c.n_head_kv * c.head_dim_v) as u32,
                first,
                (pos + 1) as u32,
                c.kq_scale.to_bits(),
            ];
            q.write_buffer(buf, 0, bytemuck::cast_slice(&words));
        }

        let dev = &self.ctx.device;
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("decode step"),
        });
        {
            // One compute pass: embedding, every layer, the head and the argmax.
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("decode step"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.embd_pipeline);
            pass.set_bind_group(0, &self.embd_groups[chunk], &[]);
            let g = groups_2d(n_units.div_ceil(64));
            pass.dispatch_workgroups(g[0], g[1], g[2]);
            encode(&mut pass, &self.layers);
            if readback != Readback::None {
                encode(&mut pass, &self.head);
            }
            if readback == Readback::Argmax {
                encode(&mut pass, std::slice::from_ref(&self.argmax));
            }
        }
        match readback {
            Readback::Logits => {
                let n = (c.n_vocab * 4) as u64;
                enc.copy_buffer_to_buffer(&self.acts.logits, 0, &self.stage_logits, 0, n);
            }
            Readback::Argmax => {
                enc.copy_buffer_to_buffer(&self.acts.token, 0, &self.stage_token, 0, 4)
            }
            Readback::None => {}
        }
        q.submit([enc.finish()]);
        Ok(())
    }
}

/// One layer's weights on the GPU (matrices) and on the host (vectors, expanded to f32).
struct GpuLayer {
    attn_norm: Vec<f32>,
    wq: GpuMatrix,
    wk: GpuMatrix,
    wv: GpuMatrix,
    bq: Option<Vec<f32>>,
    bk: Option<Vec<f32>>,
    bv: Option<Vec<f32>>,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    wo: GpuMatrix,
    post_attn_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    w_gate: GpuMatrix,
    w_up: GpuMatrix,
    w_down: GpuMatrix,
    post_ffn_norm: Option<Vec<f32>>,
}

/// [`ModelWeights`] with its matrices uploaded.
struct GpuWeights {
    token_embd: GpuMatrix,
    output_norm: Vec<f32>,
    output: Option<GpuMatrix>,
    rope_freqs: Option<Vec<f32>>,
    layers: Vec<GpuLayer>,
}

impl GpuWeights {
    /// Upload weights already in memory.
    fn upload(ctx: &GpuContext, w: &ModelWeights) -> Result<GpuWeights> {
        let up = |q| GpuMatrix::upload(ctx, q);
        let layers = w
            .layers
            .iter()
            .map(|l| {
                Ok(GpuLayer {
                    attn_norm: l.attn_norm.clone(),
                    wq: up(&l.wq)?,
                    wk: up(&l.wk)?,
                    wv: up(&l.wv)?,
                    bq: l.bq.clone(),
                    bk: l.bk.clone(),
                    bv: l.bv.clone(),
                    q_norm: l.q_norm.clone(),
                    k_norm: l.k_norm.clone(),
                    wo: up(&l.wo)?,
                    post_attn_norm: l.post_attn_norm.clone(),
                    ffn_norm: l.ffn_norm.clone(),
                    w_gate: up(&l.w_gate)?,
                    w_up: up(&l.w_up)?,
                    w_down: up(&l.w_down)?,
                    post_ffn_norm: l.post_ffn_norm.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GpuWeights {
            token_embd: up(&w.token_embd)?,
            output_norm: w.output_norm.clone(),
            output: w.output.as_ref().map(up).transpose()?,
            rope_freqs: w.rope_freqs.clone(),
            layers,
        })
    }

    /// Read and upload every weight the architecture needs, tensor by tensor, checking shapes
    /// against `cfg` (the same names and rules as `ModelWeights::load`).
    fn stream(
        ctx: &GpuContext,
        h: &GgufHeader,
        src: &dyn ByteSource,
        cfg: &mut Config,
    ) -> Result<GpuWeights> {
        let info = |name: &str| {
            h.tensor(name).ok_or_else(|| Error::BadModelTensor {
                tensor: name.to_owned(),
                problem: "missing from the model".into(),
            })
        };
        let shape_err = |name: &str, dims: &[u64], want: &[usize]| Error::BadModelTensor {
            tensor: name.to_owned(),
            problem: format!("shape {dims:?}, expected {want:?}"),
        };
        let matrix = |name: &str, rows: usize, cols: usize| -> Result<GpuMatrix> {
            let t = info(name)?;
            if t.dims != [cols as u64, rows as u64] {
                return Err(shape_err(name, &t.dims, &[cols, rows]));
            }
            GpuMatrix::upload_from(ctx, name, t.ty, rows, cols, src, h.tensor_range(t).start)
        };
        let vector = |name: &str, n: usize| -> Result<Vec<f32>> {
            let t = info(name)?;
            if t.n_elements != n as u64 || t.dims.first() != Some(&(n as u64)) {
                return Err(shape_err(name, &t.dims, &[n]));
            }
            let r = h.tensor_range(t);
            let mut bytes = vec![0u8; (r.end - r.start) as usize];
            src.read_at(r.start, &mut bytes)?;
            crate::quant::dequantize_to_vec(t.ty, &bytes, n).map_err(|source| Error::Tensor {
                tensor: name.to_owned(),
                source,
            })
        };
        let optional = |name: &str, n: usize| match h.tensor(name) {
            Some(_) => vector(name, n).map(Some),
            None => Ok(None),
        };

        let e = cfg.n_embd;
        let embd = info("token_embd.weight")?;
        let n_vocab = embd.dims.get(1).copied().unwrap_or(0) as usize;
        if cfg.n_vocab != 0 && cfg.n_vocab != n_vocab {
            return Err(shape_err(
                "token_embd.weight",
                &embd.dims,
                &[e, cfg.n_vocab],
            ));
        }
        cfg.n_vocab = n_vocab;
        let (q_dim, kv_dim, v_dim) = (
            cfg.n_head * cfg.head_dim,
            cfg.kv_dim(),
            cfg.n_head_kv * cfg.head_dim_v,
        );
        let gemma = cfg.arch == Arch::Gemma3;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let p = |s: &str| format!("blk.{l}.{s}");
            let gemma_norm = |s: &str| {
                if gemma {
                    vector(&p(s), e).map(Some)
                } else {
                    Ok(None)
                }
            };
            layers.push(GpuLayer {
                attn_norm: vector(&p("attn_norm.weight"), e)?,
                wq: matrix(&p("attn_q.weight"), q_dim, e)?,
                wk: matrix(&p("attn_k.weight"), kv_dim, e)?,
                wv: matrix(&p("attn_v.weight"), v_dim, e)?,
                bq: optional(&p("attn_q.bias"), q_dim)?,
                bk: optional(&p("attn_k.bias"), kv_dim)?,
                bv: optional(&p("attn_v.bias"), v_dim)?,
                q_norm: optional(&p("attn_q_norm.weight"), cfg.head_dim)?,
                k_norm: optional(&p("attn_k_norm.weight"), cfg.head_dim)?,
                wo: matrix(&p("attn_output.weight"), e, cfg.n_head * cfg.head_dim_v)?,
                post_attn_norm: gemma_norm("post_attention_norm.weight")?,
                ffn_norm: vector(&p("ffn_norm.weight"), e)?,
                w_gate: matrix(&p("ffn_gate.weight"), cfg.n_ff, e)?,
                w_up: matrix(&p("ffn_up.weight"), cfg.n_ff, e)?,
                w_down: matrix(&p("ffn_down.weight"), e, cfg.n_ff)?,
                post_ffn_norm: gemma_norm("post_ffw_norm.weight")?,
            });
        }
        Ok(GpuWeights {
            token_embd: matrix("token_embd.weight", n_vocab, e)?,
            output_norm: vector("output_norm.weight", e)?,
            output: match h.tensor("output.weight") {
                Some(_) => Some(matrix("output.weight", n_vocab, e)?),
                None => None,
            },
            rope_freqs: optional("rope_freqs.weight", cfg.n_rot / 2)?,
            layers,
        })
    }
}
