//! Batched decoding of independent sequences on the GPU (continuous batching; the CPU's
//! counterpart is [`crate::cpu::batch`]).
//!
//! A [`GpuBatch`] holds `slots` KV caches beside the model's own, one region of `n_ctx`
//! positions per slot (at most the model's) in one buffer per layer, and its own list of the layers' dispatches: the
//! model's batch (prefill) dispatches, where every weight matrix goes through matmat.wgsl and is
//! read once per step for the whole batch, except that the KV store and attention become their
//! per-token variants (`kv_store_rows.wgsl`, `attention_rows.wgsl`): token `t` of a step
//! writes its K and V at its own slot and position and attends over its own slot's positions
//! `0..=pos` only, through a small storage buffer of (slot base, position) per token. RoPE takes
//! each token's own cos/sin row. The head is the output norm over the batch's rows and the
//! output matrix through matmat.wgsl too; the (n, n_vocab) logits come back and each sequence
//! samples on the host with its own sampler, as the CPU batch does ([`crate::batch`]).
//!
//! Per token the arithmetic (order included) is the same whatever the batch and wherever the
//! token sits in it (matmat.wgsl computes every token's row in one order, and attention is per
//! token), so a sequence's output in a batch equals, bit for bit, its output alone through the
//! same step (tests/batch.rs). It is not the single-sequence decode path's: that runs the
//! fused matrix-vector kernels, whose sums round differently from matmat.wgsl's.
//!
//! A prompt is prefilled through the model's own step into the model's cache (copying the
//! prefix the slot already holds there first), then the new positions are copied into the
//! slot: the prefill path is the model's, unchanged. Models with recurrent layers (LFM2,
//! Qwen3.5) are not batched on the GPU (their per-sequence state would need slots too): the
//! server runs them one request at a time. Attention is single-pass at every length here
//! (no split-K).

use super::super::kernels::{groups_2d, unit_weights, PipelineKey, Shader};
use super::super::uniforms::RmsNormParams;
use super::dispatch::{make_dispatch, matmat_dispatches, Batch, Dispatch, Role};
use super::{GpuModel, Input, Readback};
use crate::{Error, Result};

/// One sequence's token in a batched step.
#[derive(Clone, Copy, Debug)]
pub struct BatchToken {
    /// The token to run (the last one sampled).
    pub token: u32,
    /// The slot whose cache holds the sequence.
    pub slot: usize,
    /// Its position (= positions the slot holds before it).
    pub pos: usize,
}

/// Per-slot KV caches and the dispatches of a batched decode step over a [`GpuModel`].
pub struct GpuBatch {
    slots: usize,
    /// Positions per slot.
    n_ctx: usize,
    /// Tokens one step runs at most.
    max_rows: usize,
    /// Per layer: its slot caches (K, V) and values per position; `None` for a layer without
    /// a KV cache.
    caches: Vec<Option<(wgpu::Buffer, wgpu::Buffer, usize, usize)>>,
    layers: Vec<Dispatch>,
    head: Vec<Dispatch>,
    /// Per token of a step: (slot base position, position).
    rows: wgpu::Buffer,
    logits: wgpu::Buffer,
    stage: wgpu::Buffer,
    _keep: Vec<wgpu::Buffer>,
}

impl GpuBatch {
    /// KV caches for `slots` sequences of up to `n_ctx` positions (at most the model's), and
    /// the step's dispatches. Fails for a model with recurrent layers, or when a layer's slot
    /// caches would not fit one binding.
    pub fn new(model: &GpuModel, slots: usize, n_ctx: usize) -> Result<GpuBatch> {
        if model.has_recurrent() {
            return Err(Error::UnsupportedModel(
                "batched decoding of recurrent layers on the GPU".into(),
            ));
        }
        let ctx = &model.ctx;
        let c = &model.cfg;
        let slots = slots.max(1);
        let n_vocab = c.n_vocab;
        let max_rows = slots
            .min(model.alloc_batch)
            .min((ctx.max_binding as usize / (n_vocab * 4).max(1)).max(1));
        let n_ctx = n_ctx.clamp(1, model.n_ctx);
        let el = if ctx.kv_f16 { 2 } else { 4 };
        let mut caches = Vec::with_capacity(model.kv_widths.len());
        for (l, &(kw, vw)) in model.kv_widths.iter().enumerate() {
            if kw == 0 && vw == 0 {
                caches.push(None);
                continue;
            }
            let bytes = (slots * n_ctx * kw.max(vw) * el) as u64;
            ctx.check_fits("the slot KV caches of one layer", bytes)?;
            let words = |w: usize| (slots * n_ctx * w * el).div_ceil(4);
            let k = ctx.storage_f32(&format!("blk.{l} slot K caches"), words(kw));
            let v = ctx.storage_f32(&format!("blk.{l} slot V caches"), words(vw));
            caches.push(Some((k, v, kw, vw)));
        }
        let rows = ctx.storage_f32("batch rows", 2 * model.alloc_batch);
        let a = &model.acts;
        let kv_f16 = u32::from(ctx.kv_f16);
        let mut keep = Vec::new();
        let mut layers = Vec::with_capacity(model.layers.len());
        let mut attention_of = None;
        for d in &model.layers {
            if d.batch == Batch::Single {
                continue;
            }
            match d.role {
                Role::Other => layers.push(d.clone()),
                Role::KvStore { layer, v, n } => {
                    let Some(Some((kc, vc, ..))) = caches.get(layer) else {
                        continue;
                    };
                    let (src, dst) = if v { (&a.v, vc) } else { (&a.k, kc) };
                    let p = ctx.params("kv_store_rows", &[n as u32]);
                    let key = PipelineKey {
                        kv_f16,
                        ..PipelineKey::new(Shader::KvStoreRows)
                    };
                    let groups = [n.div_ceil(64) as u32, 1, 1];
                    let mut d = make_dispatch(ctx, key, &[src, dst, &p, &rows], groups)?;
                    d.batch = Batch::Multi;
                    layers.push(d);
                    keep.push(p);
                }
                Role::Attention { layer, shape } => {
                    // One per layer replaces its single-pass and split-K dispatches.
                    if attention_of == Some(layer) {
                        continue;
                    }
                    attention_of = Some(layer);
                    let Some(Some((kc, vc, ..))) = caches.get(layer) else {
                        continue;
                    };
                    let p = ctx.uniform("attention_rows", &shape);
                    let key = PipelineKey {
                        kv_f16,
                        ..PipelineKey::new(Shader::AttentionRows)
                    };
                    let bufs = [&a.q, kc, vc, &a.att, &a.scores, &p, &rows];
                    let mut d = make_dispatch(ctx, key, &bufs, [c.n_head as u32, 1, 1])?;
                    d.batch = Batch::Multi;
                    layers.push(d);
                    keep.push(p);
                }
            }
        }
        // The head over the batch: the output norm of every row, then the output matrix.
        let p = ctx.uniform(
            "output norm (batch)",
            &RmsNormParams {
                n: c.n_embd as u32,
                eps: c.rms_eps,
            },
        );
        let norm = make_dispatch(
            ctx,
            PipelineKey::new(Shader::RmsNorm),
            &[&a.x, &model.head_norm, &a.h, &p],
            [1, 1, 1],
        )?;
        keep.push(p);
        let logits = ctx.storage_f32("batch logits", max_rows * n_vocab);
        let w = model.output.as_ref().unwrap_or(&model.token_embd);
        let mut head = vec![norm];
        head.extend(matmat_dispatches(
            ctx,
            w,
            &a.h,
            &logits,
            &model.step_params,
        )?);
        let stage = ctx.staging("batch logits readback", (max_rows * n_vocab * 4) as u64);
        ctx.check()?;
        Ok(GpuBatch {
            slots,
            n_ctx,
            max_rows,
            caches,
            layers,
            head,
            rows,
            logits,
            stage,
            _keep: keep,
        })
    }

    /// Slots (sequences with a cache of their own).
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Positions per slot.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Tokens one [`GpuBatch::decode`] runs at most (≤ slots).
    pub fn max_rows(&self) -> usize {
        self.max_rows
    }

    /// Copy positions `from..to` of every layer between the model's cache and `slot`'s
    /// (`to_slot`: model → slot), one submission.
    fn copy(&self, model: &GpuModel, slot: usize, (from, to): (usize, usize), to_slot: bool) {
        if from >= to {
            return;
        }
        let el = if model.ctx.kv_f16 { 2 } else { 4 };
        let mut enc = model
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("slot cache copy"),
            });
        for (own, slot_kv) in model.kv_cache.iter().zip(&self.caches) {
            let Some((sk, sv, kw, vw)) = slot_kv else {
                continue;
            };
            for (m, s, w) in [(&own.0, sk, *kw), (&own.1, sv, *vw)] {
                let row = (w * el) as u64;
                let base = (slot * self.n_ctx) as u64 * row;
                let (off, len) = (from as u64 * row, (to - from) as u64 * row);
                if to_slot {
                    enc.copy_buffer_to_buffer(m, off, s, base + off, len);
                } else {
                    enc.copy_buffer_to_buffer(s, base + off, m, off, len);
                }
            }
        }
        model.ctx.queue.submit([enc.finish()]);
    }

    fn check_slot(&self, slot: usize, n: usize) -> Result<()> {
        if slot >= self.slots {
            return Err(Error::InvalidRequest(format!(
                "slot {slot} of a batch of {} slots",
                self.slots
            )));
        }
        if n > self.n_ctx {
            return Err(Error::ContextFull {
                needed: n,
                n_ctx: self.n_ctx,
            });
        }
        Ok(())
    }

    /// Run the prompt `ids` into `slot`, whose cache already holds `ids[..cached]` (fewer
    /// than `ids.len()`); returns the last token's logits. The prompt goes through the
    /// model's own prefill (its cache is the workspace; what it held is lost).
    pub async fn prefill(
        &self,
        model: &GpuModel,
        slot: usize,
        ids: &[u32],
        cached: usize,
    ) -> Result<Vec<f32>> {
        self.check_slot(slot, ids.len())?;
        if cached >= ids.len() {
            return Err(Error::InvalidRequest("no tokens to run".into()));
        }
        self.copy(model, slot, (0, cached), false);
        let fresh = &ids[cached..];
        let n_batches = fresh.len().div_ceil(model.max_batch);
        for (i, batch) in fresh.chunks(model.max_batch).enumerate() {
            let rb = if i + 1 == n_batches {
                Readback::Logits
            } else {
                Readback::None
            };
            model.step(Input::Host(batch), cached + i * model.max_batch, rb)?;
        }
        let n = model.cfg.n_vocab;
        let b = model.ctx.map_read(&model.stage_logits, n * 4).await?;
        self.copy(model, slot, (cached, ids.len()), true);
        model.ctx.check()?;
        Ok(bytemuck::pod_collect_to_vec(&b))
    }

    /// One decode step of `toks` (one per sequence, each in its own slot): every token's KV
    /// goes into its slot at its position; returns (n, n_vocab) logits, row `i` for
    /// `toks[i]`.
    pub async fn decode(&self, model: &GpuModel, toks: &[BatchToken]) -> Result<Vec<f32>> {
        let c = &model.cfg;
        let nb = toks.len();
        if nb == 0 || nb > self.max_rows {
            return Err(Error::InvalidRequest(format!(
                "a batched step of {nb} tokens (1 to {})",
                self.max_rows
            )));
        }
        for (i, t) in toks.iter().enumerate() {
            self.check_slot(t.slot, t.pos + 1)?;
            if t.token as usize >= c.n_vocab {
                return Err(Error::TokenOutOfRange {
                    id: t.token,
                    n_vocab: c.n_vocab,
                });
            }
            if toks[..i].iter().any(|o| o.slot == t.slot) {
                return Err(Error::InvalidRequest(format!(
                    "slot {} twice in one step",
                    t.slot
                )));
            }
        }
        let q = &model.ctx.queue;
        let te = &model.token_embd;
        let n_units = te.cols / unit_weights(te.ty);
        let mut embd = Vec::with_capacity(nb);
        let mut cs = Vec::with_capacity(model.rope.stride * nb);
        let mut rows = Vec::with_capacity(2 * nb);
        for (t, tok) in toks.iter().enumerate() {
            embd.push(model.embed_host_token(t, tok.token));
            cs.extend(model.rope.rows(tok.pos, 1, c.rope_mscale));
            rows.extend([(tok.slot * self.n_ctx) as u32, tok.pos as u32]);
        }
        if !cs.is_empty() {
            q.write_buffer(&model.rope_cs, 0, bytemuck::cast_slice(&cs));
        }
        q.write_buffer(&self.rows, 0, bytemuck::cast_slice(&rows));
        q.write_buffer(&model.step_params, 0, bytemuck::cast_slice(&[0, nb as u32]));

        let mut enc = model
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("batched decode step"),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("batched layers and head"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&model.embd_pipeline);
            let g = groups_2d(n_units.div_ceil(64));
            for bg in embd {
                pass.set_bind_group(0, bg, &[]);
                pass.dispatch_workgroups(g[0], g[1], g[2]);
            }
            for d in self.layers.iter().chain(&self.head) {
                pass.set_pipeline(&d.pipeline);
                pass.set_bind_group(0, &d.group, &[]);
                pass.dispatch_workgroups(d.groups[0], d.groups[1], (nb as u32).div_ceil(d.tile));
            }
        }
        let bytes = (nb * c.n_vocab * 4) as u64;
        enc.copy_buffer_to_buffer(&self.logits, 0, &self.stage, 0, bytes);
        q.submit([enc.finish()]);
        let b = model.ctx.map_read(&self.stage, bytes as usize).await?;
        let mut logits: Vec<f32> = bytemuck::pod_collect_to_vec(&b);
        // The head's ends, as the single-sequence head applies them on the GPU: Granite's
        // 1/logit_scale, Gemma 4's final soft-cap.
        let s = 1.0 / c.logit_scale.unwrap_or(1.0);
        if s != 1.0 {
            logits.iter_mut().for_each(|v| *v *= s);
        }
        if let Some(cap) = c.final_softcap {
            logits.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        }
        Ok(logits)
    }
}
