//! The recurrent state of a hybrid model on the GPU (LFM2's short convolutions: the last L−1
//! inputs of each conv layer), beside the KV cache, with checkpoints: as
//! [`crate::cpu::KvCache`] on the CPU. Attention resumes from any cached position, a recurrent
//! state only from where it stands or from a checkpoint (a device-side copy, e.g. taken before
//! a prompt's last token), so a sequence sharing a prefix asks [`GpuModel::resume_point`] first.
//! The positions, the limit and the lookup are [`crate::model::Checkpoints`]'s; this file
//! makes the copies.

use super::GpuModel;
use crate::Result;

impl GpuModel {
    /// Whether some layer keeps a recurrent state.
    pub fn has_recurrent(&self) -> bool {
        !self.recurrent_state.is_empty()
    }

    /// The largest position ≤ `p` from which a step can go on: `p` without recurrent layers or
    /// where the state stands, else the latest checkpoint ≤ `p`, else 0 (start again).
    pub fn resume_point(&self, p: usize) -> usize {
        if !self.has_recurrent() {
            return p;
        }
        self.checkpoints.resume_point(p, self.recurrent_pos)
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
            let saved = self.checkpoints.at(to, self.recurrent_pos)?;
            for (s, c) in self.recurrent_state.iter().zip(saved) {
                enc.copy_buffer_to_buffer(c, 0, s, 0, s.size());
            }
        }
        self.ctx.queue.submit([enc.finish()]);
        self.recurrent_pos = to;
        Ok(())
    }

    /// Copy the recurrent state where it stands to a checkpoint (reusing the oldest one's
    /// buffers past [`crate::model::Checkpoints::MAX`]). Nothing without recurrent layers.
    pub fn checkpoint(&mut self) {
        if !self.has_recurrent() {
            return;
        }
        let at = self.recurrent_pos;
        let bufs = self.checkpoints.make_room(at).unwrap_or_else(|| {
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
        self.checkpoints.push(at, bufs);
    }
}
