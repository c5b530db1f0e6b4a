//! One step: write the step's few parameters, encode the recorded dispatches, submit once. The
//! input tokens come from the host (their embedding rows' offsets written as parameters) or,
//! for a pipelined decode step, from the device (the previous step's chosen token).

use super::super::kernels::{groups_2d, unit_weights};
use super::super::uniforms::{AttentionParams, StepParams};
use super::dispatch::{encode, encode_batch};
use super::fused::QKV_CS_FLOATS;
use super::{GpuModel, Input, Readback};
use crate::{Error, Result};

impl GpuModel {
    /// Point batch row `t`'s embedding lookup at `token`'s row of `token_embd` (the token
    /// known on the host): writes the row's parameters, returns its chunk's bind group.
    pub(super) fn embed_host_token(&self, t: usize, token: u32) -> &wgpu::BindGroup {
        let te = &self.token_embd;
        let (chunk, row) = te.chunk_of(token as usize);
        let words = [
            (te.cols / unit_weights(te.ty)) as u32,
            (row * te.row_bytes) as u32,
            (t * self.cfg.n_embd) as u32,
            self.cfg.embd_scale.unwrap_or(1.0).to_bits(),
        ];
        let q = &self.ctx.queue;
        q.write_buffer(&self.embd_params[t], 0, bytemuck::cast_slice(&words));
        &self.embd_groups[t][chunk]
    }

    /// Write the step's parameters for its tokens (at most `max_batch`; one from the device)
    /// at positions `pos..pos + n`, encode every dispatch and submit once.
    pub(super) fn step(&self, input: Input, pos: usize, readback: Readback) -> Result<()> {
        let c = &self.cfg;
        let tokens = match input {
            Input::Host(t) => t,
            Input::Device => &[],
        };
        let nb = tokens.len().max(1);
        debug_assert!(nb <= self.max_batch);
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= c.n_vocab) {
            return Err(Error::TokenOutOfRange {
                id,
                n_vocab: c.n_vocab,
            });
        }
        let q = &self.ctx.queue;
        let te = &self.token_embd;
        let n_units = te.cols / unit_weights(te.ty);
        // The embedding rows, through the bind groups recorded per token of a batch.
        let mut embd = Vec::with_capacity(nb);
        for (t, &token) in tokens.iter().enumerate() {
            embd.push(self.embed_host_token(t, token));
        }
        if let Input::Device = input {
            // Every chunk's lookup; the one holding the token writes it.
            embd.extend(&self.embd_token_groups);
        }

        // RoPE cos/sin rows of every table, for each token of the batch.
        let cs = self.rope.rows(pos, nb, c.rope_mscale);
        if !cs.is_empty() {
            q.write_buffer(&self.rope_cs, 0, bytemuck::cast_slice(&cs));
            let first = self.rope.stride.min(QKV_CS_FLOATS);
            q.write_buffer(&self.rope_cs_token, 0, bytemuck::cast_slice(&cs[..first]));
        }
        let step = StepParams {
            pos: pos as u32,
            n_tokens: nb as u32,
        };
        q.write_buffer(&self.step_params, 0, bytemuck::bytes_of(&step));
        for (shape, buf) in &self.attn_params {
            let p = AttentionParams {
                first: 0,
                n_kv: (pos + 1) as u32,
                ..*shape
            };
            q.write_buffer(buf, 0, bytemuck::bytes_of(&p));
        }

        let mut stats = super::StepStats {
            submissions: 1,
            ..Default::default()
        };
        let dev = &self.ctx.device;
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("decode step"),
        });
        {
            // One compute pass: the embeddings and every layer, over the batch (z = token).
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("layers"),
                timestamp_writes: None,
            });
            pass.set_pipeline(match input {
                Input::Host(_) => &self.embd_pipeline,
                Input::Device => &self.embd_token_pipeline,
            });
            let g = groups_2d(n_units.div_ceil(64));
            for bg in embd {
                pass.set_bind_group(0, bg, &[]);
                pass.dispatch_workgroups(g[0], g[1], g[2]);
                stats.dispatches += 1;
            }
            let long = pos + nb >= self.split_attention_from;
            stats.dispatches += encode_batch(&mut pass, &self.layers, nb as u32, long);
        }
        if readback != Readback::None {
            // The last token's residual stream, then the head (and argmax or sampling).
            let e4 = (c.n_embd * 4) as u64;
            enc.copy_buffer_to_buffer(&self.acts.x, (nb as u64 - 1) * e4, &self.acts.last, 0, e4);
            stats.copies += 1;
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("head"),
                timestamp_writes: None,
            });
            stats.dispatches += encode(&mut pass, &self.head);
            stats.dispatches += match readback {
                Readback::Argmax => {
                    let mut n = 0;
                    if let Some(m) = &self.token_mask {
                        n += m.encode(&mut pass);
                    }
                    n + encode(&mut pass, std::slice::from_ref(&self.argmax))
                }
                Readback::Sample => {
                    let mut n = 0;
                    if self.penalize {
                        n += encode(&mut pass, std::slice::from_ref(&self.penalties));
                    }
                    if let Some(m) = &self.token_mask {
                        n += m.encode(&mut pass);
                    }
                    n + encode(&mut pass, std::slice::from_ref(&self.sample))
                }
                Readback::None | Readback::Logits => 0,
            };
        }
        match readback {
            Readback::Logits => {
                let n = (c.n_vocab * 4) as u64;
                enc.copy_buffer_to_buffer(&self.acts.logits, 0, &self.stage_logits, 0, n);
            }
            Readback::Argmax | Readback::Sample => {
                // Alternating staging buffers: the next step can copy its token while this
                // one's is mapped.
                let stage = &self.stage_token[(self.token_steps.get() % 2) as usize];
                enc.copy_buffer_to_buffer(&self.acts.token, 0, stage, 0, 4);
                self.token_steps.set(self.token_steps.get() + 1);
            }
            Readback::None => {}
        }
        if readback != Readback::None {
            stats.copies += 1;
        }
        *self.last_submission.borrow_mut() = Some(q.submit([enc.finish()]));
        let mut counters = self.counters.get();
        counters.submissions += 1;
        if let Input::Device = input {
            counters.device_token_steps += 1;
        }
        self.counters.set(counters);
        self.last_step.set(stats);
        Ok(())
    }
}
