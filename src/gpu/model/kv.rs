//! The KV cache's contents out and in: what a saved session holds ([`crate::session`]).
//!
//! Each layer's cache is position-major: position `p`'s keys are values `p·width..(p+1)·width`,
//! f32 or, with `kv_f16`, f16 pairs (pack2x16float: the first of a pair in the low half, so
//! the bytes are plain little-endian halves in order). Positions `0..n` are therefore the
//! first `n·width` values: one copy per buffer out, one `write_buffer` per buffer in.

use super::GpuModel;
use crate::session::{KvLayers, KvPrecision};
use crate::{Error, Result};

impl GpuModel {
    fn kv_precision(&self) -> KvPrecision {
        match self.ctx.kv_f16 {
            true => KvPrecision::F16,
            false => KvPrecision::F32,
        }
    }

    /// Values per position of each layer: (keys, values).
    pub fn kv_widths(&self) -> Vec<(usize, usize)> {
        self.kv_widths.clone()
    }

    /// Keys and values of positions `0..n` of every layer, in the cache's own precision.
    pub async fn read_kv(&self, n: usize) -> Result<KvLayers> {
        let precision = self.kv_precision();
        let el = if precision == KvPrecision::F16 { 2 } else { 4 };
        let mut layers = Vec::with_capacity(self.kv_cache.len());
        for ((kc, vc), &(kw, vw)) in self.kv_cache.iter().zip(&self.kv_widths) {
            let k = self.read_prefix(kc, n * kw * el).await?;
            let v = self.read_prefix(vc, n * vw * el).await?;
            layers.push((k, v));
        }
        // Each recurrent layer's state buffers, in layer order, concatenated per layer.
        if self.has_recurrent() && self.recurrent_pos != n {
            return Err(Error::BadSession(format!(
                "the recurrent state stands at position {}, not at the {n} saved",
                self.recurrent_pos
            )));
        }
        let mut states = Vec::with_capacity(self.kv_cache.len());
        let mut bufs = self.recurrent_state.iter();
        for len in self.cfg.state_lens() {
            let mut s = Vec::with_capacity(len);
            while s.len() < len {
                let Some(b) = bufs.next() else { break };
                s.extend(self.ctx.read_f32(b, b.size() as usize / 4).await?);
            }
            states.push(s);
        }
        Ok(KvLayers {
            precision,
            layers,
            states,
        })
    }

    /// The first `bytes` bytes of `buf` (copies move whole words: round up, then cut).
    async fn read_prefix(&self, buf: &wgpu::Buffer, bytes: usize) -> Result<Vec<u8>> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let words = self.ctx.read_u32(buf, bytes.div_ceil(4)).await?;
        let mut b: Vec<u8> = bytemuck::cast_slice(&words).to_vec();
        b.truncate(bytes);
        Ok(b)
    }

    /// Writes positions `0..n` of every layer from `kv` (converted to the cache's precision).
    pub fn write_kv(&mut self, kv: KvLayers, n: usize) -> Result<()> {
        if n > self.n_ctx {
            return Err(Error::ContextFull {
                needed: n,
                n_ctx: self.n_ctx,
            });
        }
        if kv.layers.len() != self.kv_cache.len() {
            return Err(Error::BadSession("the layer count differs".into()));
        }
        let kv = kv.to_precision(self.kv_precision());
        let el = if kv.precision == KvPrecision::F16 {
            2
        } else {
            4
        };
        let layers = self.kv_cache.iter().zip(&self.kv_widths).zip(&kv.layers);
        for (l, (((kc, vc), &(kw, vw)), (k, v))) in layers.enumerate() {
            if k.len() != n * kw * el || v.len() != n * vw * el {
                return Err(Error::BadSession(format!("layer {l} has the wrong size")));
            }
            for (buf, data) in [(kc, k), (vc, v)] {
                // write_buffer takes whole words: pad the last (the half after position n-1
                // is not in use yet).
                let mut bytes = data.clone();
                bytes.resize(bytes.len().next_multiple_of(4), 0);
                if !bytes.is_empty() {
                    self.ctx.queue.write_buffer(buf, 0, &bytes);
                }
            }
        }
        if self.has_recurrent() {
            let mut bufs = self.recurrent_state.iter();
            for (l, (len, saved)) in self
                .cfg
                .state_lens()
                .into_iter()
                .zip(&kv.states)
                .enumerate()
            {
                if saved.len() != len {
                    return Err(Error::BadSession(format!(
                        "layer {l}'s recurrent state has the wrong size"
                    )));
                }
                let mut at = 0;
                while at < len {
                    let Some(b) = bufs.next() else { break };
                    let k = b.size() as usize / 4;
                    self.ctx
                        .queue
                        .write_buffer(b, 0, bytemuck::cast_slice(&saved[at..at + k]));
                    at += k;
                }
            }
            self.recurrent_pos = n;
            self.checkpoints.clear();
            self.checkpoint();
        }
        self.ctx.check()
    }
}
