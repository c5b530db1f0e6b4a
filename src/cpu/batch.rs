//! One decode step for several independent sequences at once (continuous batching).
//!
//! Each sequence brings its next token, its position and its own KV cache. The step is the
//! forward pass itself ([`CpuModel::forward_segments`]) with one segment of one token per
//! sequence: the batch goes through the layers as an (n_seq, dim) matrix, so every weight
//! matrix is read once per step for the whole batch (the same fused quantized `matmul` over
//! several rows that prefill uses), while RoPE, the cache writes and attention
//! ([`super::attention::attend_layer`]) run per sequence over that sequence's cache (on the
//! matmul threads, a sequence each). Row `i` of the result is what [`CpuModel::forward`] gives
//! for sequence `i` alone: the same operations in the same order. It is the same to the bit
//! where the matrix kernels compute every token's row in one order whatever the batch (the
//! reference kernel; the quantized formats on the i16 integer kernels, AVX-512 BW); the f32
//! kernels' token tiles (float weights, or quantized ones without AVX-512 BW) sum in another
//! order than their one-token dot product, a difference in the last bits (tests/batch.rs).
//!
//! Like llama-server's parallel slots and vLLM's continuous batching, sequences at different
//! positions share a step; the caller decides who joins and who leaves between steps.

use super::{CpuModel, KvCache, Segment};
use crate::Result;

/// One sequence's part of a batched step.
pub struct BatchRow<'a> {
    /// The token to run (the last one sampled).
    pub token: u32,
    /// Its position in the sequence (= tokens already in `cache`).
    pub pos: usize,
    pub cache: &'a mut KvCache,
}

impl CpuModel {
    /// Run one token for each row, appending to each row's cache; returns (n_rows, n_vocab)
    /// logits, row `i` for `rows[i]`.
    pub fn forward_batch(&self, rows: &mut [BatchRow<'_>]) -> Result<Vec<f32>> {
        let tokens: Vec<u32> = rows.iter().map(|r| r.token).collect();
        let mut segs: Vec<Segment> = rows
            .iter_mut()
            .map(|r| Segment {
                pos: r.pos,
                len: 1,
                cache: &mut *r.cache,
            })
            .collect();
        self.forward_segments(&tokens, &mut segs, false)
    }
}
