//! The recurrent state of a hybrid model on the GPU (LFM2's short convolutions: the last L−1
//! inputs of each conv layer), beside the KV cache, with checkpoints: as
//! [`crate::cpu::KvCache`] on the CPU. Attention resumes from any cached position, a recurrent
//! state only from where it stands or from a checkpoint (a device-side copy, e.g. taken before
//! a prompt's last token), so a sequence sharing a prefix asks [`GpuModel::resume_point`] first.

use super::GpuModel;
use crate::{Error, Result};

/// Checkpoints kept (the oldest goes first).
const MAX_CHECKPOINTS: usize = 4;

impl GpuModel {
    /// Whether some layer keeps a recurrent state.
    pub fn has_recurrent(&self) -> bool {
        !self.recurrent_state.is_empty()
    }

    /// The largest position ≤ `p` from which a step can go on: `p` without recurrent layers or
    /// where the state stands, else the latest checkpoint ≤ `p`, else 0 (start again).
    pub fn resume_point(&self, p: usize) -> usize {
        if !self.has_recurrent() || p == self.recurrent_pos {
            return p;
        }
        self.checkpoints
            .iter()
            .map(|&(at, _)| at)
            .filter(|&at| at <= p)
            .max()
            .unwrap_or(0)
    }

    /// Put the recurrent state back to position `to`: where it stands, a checkpoint, or 0 (zero
    /// state); any other position is an error. Device-side copies, queued before the next step.
    pub fn rewind(&mut self, to: usize) -> Result<()> {
        if !self.has_recurrent() || to == self.recurrent_pos {
            return Ok(());
        }
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("recurrent state rewind"),
            });
        if to == 0 {
            for s in &self.recurrent_state {
                enc.clear_buffer(s, 0, None);
            }
        } else {
            let Some((_, saved)) = self.checkpoints.iter().find(|(at, _)| *at == to) else {
                return Err(Error::InvalidRequest(format!(
                    "the recurrent state stands at position {} and has no checkpoint at {to}",
                    self.recurrent_pos
                )));
            };
            for (s, c) in self.recurrent_state.iter().zip(saved) {
                enc.copy_buffer_to_buffer(c, 0, s, 0, s.size());
            }
        }
        self.ctx.queue.submit([enc.finish()]);
        self.recurrent_pos = to;
        Ok(())
    }

    /// Copy the recurrent state where it stands to a checkpoint (reusing the oldest one's
    /// buffers past [`MAX_CHECKPOINTS`]). Nothing without recurrent layers.
    pub fn checkpoint(&mut self) {
        if !self.has_recurrent() {
            return;
        }
        let at = self.recurrent_pos;
        let reuse = match self.checkpoints.iter().position(|(p, _)| *p == at) {
            Some(i) => Some(self.checkpoints.remove(i).1),
            None if self.checkpoints.len() == MAX_CHECKPOINTS => Some(self.checkpoints.remove(0).1),
            None => None,
        };
        let bufs = reuse.unwrap_or_else(|| {
            self.recurrent_state
                .iter()
                .map(|s| {
                    self.ctx
                        .storage_f32("recurrent checkpoint", s.size() as usize / 4)
                })
                .collect()
        });
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("recurrent state checkpoint"),
            });
        for (s, c) in self.recurrent_state.iter().zip(&bufs) {
            enc.copy_buffer_to_buffer(s, 0, c, 0, s.size());
        }
        self.ctx.queue.submit([enc.finish()]);
        self.checkpoints.push((at, bufs));
    }
}
