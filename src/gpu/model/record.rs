//! Building a [`GpuModel`]: activation buffers, the KV cache, parameter buffers and the
//! recorded dispatches of one step, all created once at load.

use super::super::kernels::{PipelineKey, Shader, SPLIT_CHUNK};
use super::super::{GpuContext, GpuMatrix};
use super::dispatch::{make_dispatch, matmat_dispatches, matvec_dispatches, Batch, Dispatch, When};
use super::fused::{self, QkvBuffers, QkvShape, QKV_CS_FLOATS};
use super::loading::GpuWeights;
use super::{Acts, GpuModel, MAX_BATCH, SPLIT_ATTENTION_FROM};
use crate::model::rope_inv_freq;
use crate::model::{Activation, Config};
use crate::Result;

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

    /// y = W·x per token, one dispatch per row range of W: matvec.wgsl for a single token,
    /// matmat.wgsl (weights read once per tile of tokens) for a batch.
    fn matvec(&mut self, m: &GpuMatrix, x: &wgpu::Buffer, y: &wgpu::Buffer) -> Result<()> {
        for mut d in matvec_dispatches(self.ctx, m, x, y)? {
            d.batch = Batch::Single;
            self.dispatches.push(d);
        }
        let step = self.step_params.clone();
        for mut d in matmat_dispatches(self.ctx, m, x, y, &step)? {
            d.batch = Batch::Multi;
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
            PipelineKey::new(Shader::RmsNorm),
            &[x, &wb, y, &p],
            [rows as u32, 1, 1],
        )
    }

    /// y += b per token; `b` has a row per token when `batched`, else one row (a bias).
    fn add(&mut self, y: &wgpu::Buffer, b: &wgpu::Buffer, n: usize, batched: bool) -> Result<()> {
        let p = self.params("add", &[n as u32, u32::from(batched)]);
        self.dispatch(
            PipelineKey::new(Shader::Add),
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
                (2 * c.n_rot) as u32,
            ],
        );
        let n = heads * c.head_dim / 2;
        self.dispatch(
            PipelineKey::new(Shader::Rope),
            &[v, cs, &p],
            [n.div_ceil(64) as u32, 1, 1],
        )
    }

    /// Make the dispatches recorded since `start` prefill-only and append `fused`, their
    /// one-token replacement (one of the fused decode kernels), for decode steps.
    fn fuse_from(&mut self, start: usize, fused: Vec<Dispatch>) {
        let mut kept = Vec::with_capacity(self.dispatches.len() - start);
        for mut d in self.dispatches.drain(start..) {
            match d.batch {
                Batch::Single => continue,
                Batch::Any => d.batch = Batch::Multi,
                Batch::Multi => {}
            }
            kept.push(d);
        }
        self.dispatches.extend(kept);
        for mut d in fused {
            d.batch = Batch::Single;
            self.dispatches.push(d);
        }
    }

    /// Append `n` values of `src` to the cache `dst` at the step's position.
    fn store_kv(&mut self, src: &wgpu::Buffer, dst: &wgpu::Buffer, n: usize) -> Result<()> {
        let p = self.params("kv_store", &[n as u32]);
        let step = self.step_params.clone();
        let key = PipelineKey {
            kv_f16: u32::from(self.ctx.kv_f16),
            ..PipelineKey::new(Shader::KvStore)
        };
        self.dispatch(key, &[src, dst, &p, &step], [n.div_ceil(64) as u32, 1, 1])
    }
}

impl GpuModel {
    /// Record a step's dispatches over uploaded weights.
    pub(super) fn build(
        ctx: GpuContext,
        cfg: Config,
        w: GpuWeights,
        n_ctx: usize,
    ) -> Result<GpuModel> {
        let c = &cfg;
        let (e, hd, hdv) = (c.n_embd, c.head_dim, c.head_dim_v);
        let (q_dim, kv_dim, v_dim) = (c.n_head * hd, c.kv_dim(), c.n_head_kv * hdv);
        let n_ctx = n_ctx.max(1);
        let n_split = n_ctx.div_ceil(SPLIT_CHUNK);
        let per_token = (c.n_head * n_ctx)
            .max(c.n_head * n_split * (2 + hdv))
            .max(c.n_ff)
            .max(q_dim)
            .max(c.n_head * hdv)
            * 4;
        let max_batch =
            (ctx.max_binding as usize / per_token.max(1)).clamp(1, MAX_BATCH.min(n_ctx));
        ctx.check_fits(
            "the KV cache of one layer",
            (n_ctx * kv_dim.max(v_dim) * 4) as u64,
        )?;
        ctx.check_fits("the attention scores", (c.n_head * n_ctx * 4) as u64)?;
        ctx.check_fits("the logits", (c.n_vocab * 4) as u64)?;

        let f = |l: &str, n: usize| ctx.storage_f32(l, n);
        let b = |l: &str, n: usize| ctx.storage_f32(l, n * max_batch);
        let acts = Acts {
            x: b("x", e),
            h: b("h", e),
            q_raw: b("q_raw", q_dim),
            k_raw: b("k_raw", kv_dim),
            q: b("q", q_dim),
            k: b("k", kv_dim),
            v: b("v", v_dim),
            att: b("att", c.n_head * hdv),
            proj: b("proj", e),
            proj_n: b("proj_n", e),
            gate: b("gate", c.n_ff),
            up: b("up", c.n_ff),
            scores: b("scores", c.n_head * n_ctx),
            part: b("split-K partials", c.n_head * n_split * (2 + hdv)),
            last: f("last", e),
            logits: f("logits", c.n_vocab),
            token: f("token", 1),
        };
        let rope_cs = b("rope cos/sin", 2 * c.n_rot);
        // The first token's cos/sin again, as a uniform for matvec_qkv.wgsl.
        let rope_cs_token = ctx.uniform_with("rope cos/sin (token 0)", &[0; QKV_CS_FLOATS * 4]);
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
        let mut kv_cache = Vec::with_capacity(layers.len());
        for (l, lw) in layers.into_iter().enumerate() {
            let (wq, wk, wv, wo) = (lw.wq, lw.wk, lw.wv, lw.wo);
            let (wg, wu, wd) = (lw.w_gate, lw.w_up, lw.w_down);
            // f32 words: one value each, or two f16.
            let words = |n: usize| if ctx.kv_f16 { n.div_ceil(2) } else { n };
            let kc = f(&format!("blk.{l} K cache"), words(n_ctx * kv_dim));
            let vc = f(&format!("blk.{l} V cache"), words(n_ctx * v_dim));
            let swa = c.swa_layers[l];

            // Attention block. Decode steps run the fused kernels where the layer allows
            // (`fuse_from`): RMSNorm + Q/K/V + biases + RoPE + KV store in one dispatch.
            let seg = rec.dispatches.len();
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
                    rec.add(buf, &bb, n, false)?;
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
            let norms = lw.q_norm.is_some() || lw.k_norm.is_some();
            let biases = [&lw.bq, &lw.bk, &lw.bv];
            let all_or_none =
                biases.iter().all(|b| b.is_some()) || biases.iter().all(|b| b.is_none());
            if !norms && all_or_none && fused::qkv_fusable([&wq, &wk, &wv], hd, c.n_rot) {
                let mut vecs = lw.attn_norm.clone();
                for b in biases.into_iter().flatten() {
                    vecs.extend_from_slice(b);
                }
                let vecs = rec.vector("attn_norm and biases", &vecs);
                let bufs = QkvBuffers {
                    x: &a.x,
                    vecs: &vecs,
                    q: &a.q,
                    k_cache: &kc,
                    v_cache: &vc,
                    step: &step_params,
                    cos_sin: &rope_cs_token,
                };
                let shape = QkvShape {
                    head_dim: hd,
                    neox: c.rope_neox,
                    cs_off: if swa { c.n_rot } else { 0 },
                    q_scale: c.q_scale.unwrap_or(1.0),
                    eps: c.rms_eps,
                    has_bias: lw.bq.is_some(),
                    kv_f16: ctx.kv_f16,
                };
                let d = fused::qkv_dispatch(&ctx, [&wq, &wk, &wv], &bufs, &shape)?;
                rec.fuse_from(seg, vec![d]);
            }
            let ap = if swa { &attn_params_swa } else { &attn_params };
            let nh = c.n_head as u32;
            for (key, bufs, groups, when) in [
                (
                    Shader::Attention,
                    &[&a.q, &kc, &vc, &a.att, &a.scores, ap][..],
                    [nh, 1, 1],
                    When::Short,
                ),
                (
                    Shader::AttentionSplit,
                    &[&a.q, &kc, &vc, &a.part, ap][..],
                    [nh, n_split as u32, 1],
                    When::Long,
                ),
                (
                    Shader::AttentionCombine,
                    &[&a.part, &a.att, ap][..],
                    [nh, 1, 1],
                    When::Long,
                ),
            ] {
                let key = PipelineKey {
                    kv_f16: u32::from(ctx.kv_f16),
                    ..PipelineKey::new(key)
                };
                let mut d = make_dispatch(&ctx, key, bufs, groups)?;
                d.when = when;
                rec.dispatches.push(d);
            }
            // The output projection, with the residual add fused for a decode step.
            let seg = rec.dispatches.len();
            rec.matvec(&wo, &a.att, &a.proj)?;
            match &lw.post_attn_norm {
                Some(wn) => {
                    rec.rmsnorm(&a.proj, wn, &a.proj_n, e, 1)?;
                    rec.add(&a.x, &a.proj_n, e, true)?;
                }
                None => {
                    rec.add(&a.x, &a.proj, e, true)?;
                    let ds = fused::fused_dispatches(
                        &ctx,
                        &wo,
                        &a.att,
                        &a.att,
                        &a.x,
                        (false, true),
                        0.0,
                    )?;
                    rec.fuse_from(seg, ds);
                }
            }

            // Feed-forward block: RMSNorm + gate and up + activation in one dispatch for a
            // decode step, then the down projection with the residual add.
            let seg = rec.dispatches.len();
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
                    ..PipelineKey::new(Shader::Gate)
                },
                &[&a.gate, &a.up, &p],
                [c.n_ff.div_ceil(64) as u32, 1, 1],
            )?;
            if fused::glu_fusable(&wg, &wu) {
                let wt = rec.vector("ffn_norm", &lw.ffn_norm);
                let d = fused::glu_dispatch(&ctx, &wg, &wu, &a.x, &wt, &a.gate, act, c.rms_eps)?;
                rec.fuse_from(seg, vec![d]);
            }
            let seg = rec.dispatches.len();
            rec.matvec(&wd, &a.gate, &a.proj)?;
            match &lw.post_ffn_norm {
                Some(wn) => {
                    rec.rmsnorm(&a.proj, wn, &a.proj_n, e, 1)?;
                    rec.add(&a.x, &a.proj_n, e, true)?;
                }
                None => {
                    rec.add(&a.x, &a.proj, e, true)?;
                    let ds = fused::fused_dispatches(
                        &ctx,
                        &wd,
                        &a.gate,
                        &a.gate,
                        &a.x,
                        (false, true),
                        0.0,
                    )?;
                    rec.fuse_from(seg, ds);
                }
            }
            keep.extend([wq, wk, wv, wo, wg, wu, wd]);
            kv_cache.push((kc.clone(), vc.clone()));
            rec.buffers.extend([kc, vc]);
        }

        // Output head: the output norm fused into the logits product (the output matrix, or
        // token_embd when tied).
        let layer_dispatches = std::mem::take(&mut rec.dispatches);
        let norm = rec.vector("output_norm", &output_norm);
        let tied = output.is_none();
        let head_matrix = output.as_ref().unwrap_or(&token_embd);
        let head = fused::fused_dispatches(
            &ctx,
            head_matrix,
            &a.last,
            &norm,
            &a.logits,
            (true, false),
            c.rms_eps,
        )?;
        keep.extend(output);
        let ap = ctx.params("argmax", &[c.n_vocab as u32]);
        let argmax = make_dispatch(
            &ctx,
            PipelineKey::new(Shader::Argmax),
            &[&a.logits, &a.token, &ap],
            [1, 1, 1],
        )?;

        let sample_params = ctx.params("sample", &[]);
        let penalty_params = ctx.params("penalties", &[]);
        let seen_cap = n_ctx.max(64);
        let seen = ctx.storage_f32("seen tokens", 2 * seen_cap);
        let penalties = make_dispatch(
            &ctx,
            PipelineKey::new(Shader::Penalties),
            &[&a.logits, &seen, &penalty_params],
            [1, 1, 1],
        )?;
        let sample = make_dispatch(
            &ctx,
            PipelineKey::new(Shader::Sample),
            &[&a.logits, &a.token, &sample_params],
            [1, 1, 1],
        )?;

        // Embedding: dequantize the token's row of token_embd, times the embedding scale.
        let embd_key = PipelineKey::new(Shader::Dequant(token_embd.ty, token_embd.layout));
        // One parameter buffer per token of a batch, and a bind group per (token, chunk):
        // a step only writes the parameters.
        let embd_params: Vec<wgpu::Buffer> = (0..max_batch)
            .map(|_| ctx.params("embedding", &[]))
            .collect();
        let embd_groups = embd_params
            .iter()
            .map(|p| {
                token_embd
                    .chunks
                    .iter()
                    .map(|ch| ctx.bind(embd_key, &[&ch.buffer, &a.x, p]))
                    .collect::<Result<Vec<_>>>()
            })
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
            max_batch,
            alloc_batch: max_batch,
            split_attention_from: SPLIT_ATTENTION_FROM,
            n_split,
            token_embd,
            embd_pipeline,
            embd_params,
            embd_groups,
            layers: layer_dispatches,
            head,
            argmax,
            sample,
            sample_params,
            penalties,
            seen,
            seen_cap,
            penalty_params,
            penalize: false,
            last_step: Default::default(),
            token_mask: None,
            inv_freq,
            inv_freq_swa,
            rope_cs,
            attn_params,
            attn_params_swa,
            step_params,
            rope_cs_token,
            acts,
            stage_logits,
            stage_token,
            kv_cache,
            kv_widths: (kv_dim, v_dim),
            _keep: keep,
            tied,
            _buffers: buffers,
            cfg,
            ctx,
        })
    }
}
