//! The forward pass on the CPU, over weights still in their block formats.
//!
//! Reads like the papers: embed → for each layer (norm → Q,K,V → RoPE → attention over the KV
//! cache → output projection → residual → norm → gated FFN → residual) → norm → logits.
//! A batch of tokens goes through as (n_tok, dim) matrices, so prefill reads each weight once.

pub mod attention;
pub mod batch;
pub mod delta_net;
pub mod matmul;
pub mod ops;
pub mod short_conv;

pub use matmul::Kernel;

use crate::model::{
    Activation, AttentionWeights, Checkpoints, Config, DeltaNetWeights, MixerWeights, ModelWeights,
    RopeTables, ShortConvWeights,
};
use crate::{Error, Result};
use matmul::{matmul, matmul_shared};
use std::sync::atomic::{AtomicU64, Ordering};

/// A sequence's state: preallocated K and V for every attention layer (n_layer, n_ctx,
/// n_head_kv·head_dim) with each layer's own KV heads and head sizes, and the recurrent state of
/// every other layer (LFM2's short convolutions: the last L−1 inputs, (L−1, n_embd)). The KV
/// part grows in place (a conversation's cache is kept between requests and extended as the
/// conversation grows).
///
/// Attention can resume from any cached position (later positions are overwritten), but a
/// recurrent state holds only the end of what it has seen. So it keeps checkpoints (copies of
/// the state at a position, e.g. the end of each prompt: [`KvCache::checkpoint`]), and
/// [`KvCache::resume_point`] says from where a sequence sharing a prefix can go on.
pub struct KvCache {
    pub n_ctx: usize,
    /// Floats per position of each layer: (keys, values).
    widths: Vec<(usize, usize)>,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    /// Per layer: its recurrent state (empty for attention layers).
    conv: Vec<Vec<f32>>,
    /// Positions the recurrent state has consumed.
    recurrent_pos: usize,
    /// Saved recurrent states and the position of each.
    checkpoints: Checkpoints<Vec<Vec<f32>>>,
}

impl KvCache {
    /// As [`KvCache::new`], but an error instead of an abort when `n_ctx` positions cannot be
    /// allocated (a request's context size comes from outside).
    pub fn try_new(cfg: &Config, n_ctx: usize) -> crate::Result<Self> {
        let widths: Vec<_> = cfg.layers.iter().map(|l| (l.kv_dim(), l.v_dim())).collect();
        let mut c = KvCache {
            n_ctx: 0,
            k: vec![Vec::new(); widths.len()],
            v: vec![Vec::new(); widths.len()],
            widths,
            conv: Self::recurrent_state(cfg),
            recurrent_pos: 0,
            checkpoints: Checkpoints::default(),
        };
        c.try_grow(n_ctx)?;
        Ok(c)
    }

    pub fn new(cfg: &Config, n_ctx: usize) -> Self {
        KvCache {
            n_ctx,
            widths: cfg.layers.iter().map(|l| (l.kv_dim(), l.v_dim())).collect(),
            k: cfg
                .layers
                .iter()
                .map(|l| vec![0.0; n_ctx * l.kv_dim()])
                .collect(),
            v: cfg
                .layers
                .iter()
                .map(|l| vec![0.0; n_ctx * l.v_dim()])
                .collect(),
            conv: Self::recurrent_state(cfg),
            recurrent_pos: 0,
            checkpoints: Checkpoints::default(),
        }
    }

    /// A zero recurrent state per layer ([`Config::state_lens`]: none for attention).
    fn recurrent_state(cfg: &Config) -> Vec<Vec<f32>> {
        cfg.state_lens().into_iter().map(|n| vec![0.0; n]).collect()
    }

    /// Whether some layer keeps a recurrent state.
    pub fn has_recurrent(&self) -> bool {
        self.conv.iter().any(|s| !s.is_empty())
    }

    /// The largest position ≤ `p` from which a forward pass can go on, keeping what the cache
    /// holds before it: `p` itself without recurrent layers, or where the recurrent state stands
    /// (or a checkpoint does); 0 (start again) otherwise.
    pub fn resume_point(&self, p: usize) -> usize {
        if !self.has_recurrent() {
            return p;
        }
        self.checkpoints.resume_point(p, self.recurrent_pos)
    }

    /// Put the recurrent state back to position `to`: where it stands, a checkpoint, or 0 (a
    /// zero state). Any other position is an error (see [`KvCache::resume_point`]).
    pub fn rewind(&mut self, to: usize) -> Result<()> {
        if !self.has_recurrent() || to == self.recurrent_pos {
            return Ok(());
        }
        if to == 0 {
            self.conv.iter_mut().for_each(|s| s.fill(0.0));
        } else {
            let saved = self.checkpoints.at(to, self.recurrent_pos)?;
            for (s, c) in self.conv.iter_mut().zip(saved) {
                s.copy_from_slice(c);
            }
        }
        self.recurrent_pos = to;
        Ok(())
    }

    /// Keep a copy of the recurrent state where it stands (e.g. at the end of a prompt), so a
    /// later sequence sharing this prefix resumes from it; the oldest of more than
    /// [`Checkpoints::MAX`] goes. Nothing without recurrent layers.
    pub fn checkpoint(&mut self) {
        if !self.has_recurrent() {
            return;
        }
        let at = self.recurrent_pos;
        let mut copy = self.checkpoints.make_room(at).unwrap_or_default();
        copy.clone_from(&self.conv);
        self.checkpoints.push(at, copy);
    }

    /// Room for `n_ctx` positions, keeping what the first positions hold (never shrinks); an
    /// error, not an abort, when the memory cannot be had.
    pub fn try_grow(&mut self, n_ctx: usize) -> crate::Result<()> {
        if n_ctx <= self.n_ctx {
            return Ok(());
        }
        let per_pos: usize = self.widths.iter().map(|(k, v)| k + v).sum();
        let too_big = |needed: u64| crate::Error::OutOfMemory {
            what: format!("a KV cache of {n_ctx} positions"),
            needed,
            available: None,
            hint: " (lower n_ctx)",
        };
        let Some(bytes) = n_ctx.checked_mul(per_pos).and_then(|f| f.checked_mul(4)) else {
            return Err(too_big(u64::MAX));
        };
        for (l, &(kw, vw)) in self.widths.iter().enumerate() {
            for (buf, w) in [(&mut self.k[l], kw), (&mut self.v[l], vw)] {
                let n = n_ctx * w;
                buf.try_reserve_exact(n - buf.len())
                    .map_err(|_| too_big(bytes as u64))?;
                buf.resize(n, 0.0);
            }
        }
        self.n_ctx = n_ctx;
        Ok(())
    }

    /// Bytes the cache holds.
    pub fn bytes(&self) -> usize {
        self.k.iter().chain(&self.v).map(|l| l.len() * 4).sum()
    }

    /// Values per position of each layer: (keys, values).
    pub fn widths(&self) -> &[(usize, usize)] {
        &self.widths
    }

    /// Keys and values of positions `0..n` (f32), for a saved session.
    pub fn snapshot(&self, n: usize) -> crate::Result<crate::session::KvLayers> {
        if self.has_recurrent() && self.recurrent_pos != n {
            return Err(Error::BadSession(format!(
                "the recurrent state stands at position {}, not at the {n} saved",
                self.recurrent_pos
            )));
        }
        let bytes = |x: &[f32]| bytemuck::cast_slice::<f32, u8>(x).to_vec();
        let layers = self
            .widths
            .iter()
            .enumerate()
            .map(|(l, &(kw, vw))| (bytes(&self.k[l][..n * kw]), bytes(&self.v[l][..n * vw])))
            .collect();
        Ok(crate::session::KvLayers {
            precision: crate::session::KvPrecision::F32,
            layers,
            states: self.conv.clone(),
        })
    }

    /// Floats of each layer's recurrent state (0 for attention layers).
    pub fn state_lens(&self) -> Vec<usize> {
        self.conv.iter().map(|s| s.len()).collect()
    }

    /// Writes positions `0..n` from a saved session's values (room for them first).
    pub fn restore(&mut self, kv: &crate::session::KvLayers, n: usize) -> crate::Result<()> {
        if kv.layers.len() != self.widths.len() {
            return Err(crate::Error::BadSession("the layer count differs".into()));
        }
        self.try_grow(n)?;
        for (l, &(kw, vw)) in self.widths.iter().enumerate() {
            let (k, v) = kv.f32_layer(l);
            if k.len() != n * kw || v.len() != n * vw {
                return Err(crate::Error::BadSession(format!(
                    "layer {l} has the wrong size"
                )));
            }
            self.k[l][..k.len()].copy_from_slice(&k);
            self.v[l][..v.len()].copy_from_slice(&v);
        }
        if self.has_recurrent() {
            for (l, (s, saved)) in self.conv.iter_mut().zip(&kv.states).enumerate() {
                if s.len() != saved.len() {
                    return Err(Error::BadSession(format!(
                        "layer {l}'s recurrent state has the wrong size"
                    )));
                }
                s.copy_from_slice(saved);
            }
            self.recurrent_pos = n;
            self.checkpoints.clear();
            self.checkpoint();
        }
        Ok(())
    }
}

/// A run of consecutive tokens of one sequence in a forward pass: `len` tokens at positions
/// `pos..pos+len` of `cache` (see [`CpuModel::forward_segments`]).
pub struct Segment<'a> {
    pub pos: usize,
    pub len: usize,
    pub cache: &'a mut KvCache,
}

/// A loaded model with precomputed RoPE tables.
pub struct CpuModel {
    pub cfg: Config,
    pub w: ModelWeights,
    pub kernel: Kernel,
    rope: RopeTables,
    timing: MixerTiming,
}

/// A forward pass's buffers for the attention mixers, sized for the widest layer.
struct AttentionScratch {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    angles: Vec<(f32, f32)>,
}

/// The two kinds of token mixer a layer can have, as [`MixerTiming`] counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MixerKind {
    /// Attention over the KV cache: its cost grows with the context.
    Attention = 0,
    /// A short convolution or a delta-net: a fixed-size state, the same cost at any context.
    Recurrent = 1,
}

/// Time spent in the layers' mixers (projections included), per [`MixerKind`]: nanoseconds
/// and the token-layers they covered. Kept natively; wasm32 has no clock in `std`, so there
/// it stays zero. `chord bench` reports it, to show where a decode step's time goes as the
/// context grows.
#[derive(Default)]
struct MixerTiming {
    ns: [AtomicU64; 2],
    token_layers: [AtomicU64; 2],
}

#[cfg(not(target_arch = "wasm32"))]
type Started = Option<std::time::Instant>;
#[cfg(target_arch = "wasm32")]
type Started = Option<()>;

impl MixerTiming {
    fn start(&self) -> Started {
        #[cfg(not(target_arch = "wasm32"))]
        return Some(std::time::Instant::now());
        #[cfg(target_arch = "wasm32")]
        None
    }

    fn stop(&self, kind: MixerKind, started: Started, tokens: usize) {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(t) = started {
            let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.ns[kind as usize].fetch_add(ns, Ordering::Relaxed);
            self.token_layers[kind as usize].fetch_add(tokens as u64, Ordering::Relaxed);
        }
        #[cfg(target_arch = "wasm32")]
        let _ = (kind, started, tokens);
    }
}

impl CpuModel {
    /// Read the header and every weight from `src`.
    pub fn load(
        src: &dyn crate::source::ByteSource,
        kernel: Kernel,
    ) -> Result<(crate::gguf::GgufHeader, Self)> {
        let header = crate::source::read_header(src)?;
        let cfg = Config::from_header(&header)?;
        let model = Self::load_parsed(&header, cfg, src, kernel)?;
        Ok((header, model))
    }

    /// Read every weight from `src`, the header and description already parsed.
    pub fn load_parsed(
        header: &crate::gguf::GgufHeader,
        mut cfg: Config,
        src: &dyn crate::source::ByteSource,
        kernel: Kernel,
    ) -> Result<Self> {
        let w = ModelWeights::load(header, src, &mut cfg)?;
        Ok(CpuModel::new(cfg, w, kernel))
    }

    pub fn new(cfg: Config, w: ModelWeights, kernel: Kernel) -> Self {
        let rope = RopeTables::new(&cfg, w.rope_freqs.as_deref());
        CpuModel {
            cfg,
            w,
            kernel,
            rope,
            timing: MixerTiming::default(),
        }
    }

    /// Mean nanoseconds per token and layer spent in mixers of `kind` since the last
    /// [`CpuModel::reset_mixer_times`] (projections included), and how many token-layers that
    /// covers; `(0.0, 0)` on wasm32 or before any.
    pub fn mixer_time(&self, kind: MixerKind) -> (f64, u64) {
        let i = kind as usize;
        let ns = self.timing.ns[i].load(Ordering::Relaxed);
        let n = self.timing.token_layers[i].load(Ordering::Relaxed);
        (if n == 0 { 0.0 } else { ns as f64 / n as f64 }, n)
    }

    /// Start [`CpuModel::mixer_time`] over.
    pub fn reset_mixer_times(&self) {
        for a in self.timing.ns.iter().chain(&self.timing.token_layers) {
            a.store(0, Ordering::Relaxed);
        }
    }

    /// Run a prompt's uncached tokens `fresh` at positions `pos..`, like [`forward`](Self::forward);
    /// with recurrent layers, the state is checkpointed before the last token, where the next
    /// turn's prompt (which extends this one) and a regenerate (which runs that token again)
    /// both resume. Returns the last token's logits.
    pub fn prefill(&self, fresh: &[u32], pos: usize, cache: &mut KvCache) -> Result<Vec<f32>> {
        if !cache.has_recurrent() || fresh.is_empty() {
            return self.forward(fresh, pos, cache);
        }
        let (head, last) = fresh.split_at(fresh.len() - 1);
        if head.is_empty() {
            cache.rewind(pos)?;
        } else {
            self.forward(head, pos, cache)?;
        }
        cache.checkpoint();
        self.forward(last, pos + head.len(), cache)
    }

    /// Run `tokens` at positions `pos..pos+n`, appending to `cache`; returns the logits of the
    /// last token (n_vocab).
    pub fn forward(&self, tokens: &[u32], pos: usize, cache: &mut KvCache) -> Result<Vec<f32>> {
        self.forward_all(tokens, pos, cache, false)
    }

    /// As `forward`; with `all_logits` returns (n_tok, n_vocab) logits.
    pub fn forward_all(
        &self,
        tokens: &[u32],
        pos: usize,
        cache: &mut KvCache,
        all_logits: bool,
    ) -> Result<Vec<f32>> {
        let mut segs = [Segment {
            pos,
            len: tokens.len(),
            cache,
        }];
        self.forward_segments(tokens, &mut segs, all_logits)
    }

    /// The forward pass over `tokens`, which are the runs of consecutive tokens of one or more
    /// sequences: `segs[i]` takes the next `segs[i].len` tokens, at positions `pos..pos+len` of
    /// its own cache. Every weight matrix is read once for all the tokens, as an
    /// (n_tok, dim) × weightsᵀ product; RoPE, the cache writes and attention are per
    /// segment. A prefill is one segment; a batched decode step ([`batch`]) one segment of one
    /// token per sequence. Returns the logits of every token (`all_logits`), else of the last
    /// token of each segment: (rows, n_vocab).
    pub(crate) fn forward_segments(
        &self,
        tokens: &[u32],
        segs: &mut [Segment<'_>],
        all_logits: bool,
    ) -> Result<Vec<f32>> {
        // On a matmul thread, which stays with the pool between the matmuls (`on_pool`).
        matmul::on_pool(|| self.forward_segments_here(tokens, segs, all_logits))
    }

    fn forward_segments_here(
        &self,
        tokens: &[u32],
        segs: &mut [Segment<'_>],
        all_logits: bool,
    ) -> Result<Vec<f32>> {
        let c = &self.cfg;
        let n = tokens.len();
        if segs.iter().map(|s| s.len).sum::<usize>() != n {
            return Err(Error::InvalidRequest(
                "the segments do not cover the tokens".into(),
            ));
        }
        // Empty segments take no part (and have no logits row).
        let mut segs: Vec<&mut Segment> = segs.iter_mut().filter(|s| s.len > 0).collect();
        // A recurrent state goes on from where it stands, or from a checkpoint.
        for s in segs.iter_mut() {
            s.cache.rewind(s.pos)?;
        }
        if n == 0 {
            return Ok(vec![]);
        }
        for s in segs.iter() {
            if s.pos + s.len > s.cache.n_ctx {
                return Err(Error::ContextFull {
                    needed: s.pos + s.len,
                    n_ctx: s.cache.n_ctx,
                });
            }
        }
        // Token t: its segment and its position there.
        let mut at = Vec::with_capacity(n);
        for (i, s) in segs.iter().enumerate() {
            at.extend((0..s.len).map(|j| (i, s.pos + j)));
        }
        let e = c.n_embd;
        let k = self.kernel;

        // x: (n, n_embd) residual stream.
        let mut x = vec![0f32; n * e];
        for (t, &id) in tokens.iter().enumerate() {
            if id as usize >= c.n_vocab {
                return Err(Error::TokenOutOfRange {
                    id,
                    n_vocab: c.n_vocab,
                });
            }
            let row = &mut x[t * e..(t + 1) * e];
            self.w.token_embd.dequantize_row(id as usize, row)?;
            if let Some(s) = c.embd_scale {
                row.iter_mut().for_each(|v| *v *= s);
            }
        }
        // Scratch sized for the widest layer.
        let (max_q, max_kv, max_v, max_ff) = c.max_dims();
        let max_hdv = c.layers.iter().map(|l| l.head_dim_v).max().unwrap_or(0);
        let mut scratch = AttentionScratch {
            q: vec![0f32; n * max_q],
            k: vec![0f32; n * max_kv],
            v: vec![0f32; n * max_v],
            att: vec![0f32; n * c.n_head * max_hdv],
            angles: Vec::new(),
        };
        let mut h = vec![0f32; n * e];
        let mut proj = vec![0f32; n * e];
        let mut gate_buf = vec![0f32; n * max_ff];
        let mut up_buf = vec![0f32; n * max_ff];

        for (l, lw) in self.w.layers.iter().enumerate() {
            ops::by_rows(&mut h, &x, e, |h, x| {
                for (h, x) in h.chunks_exact_mut(e).zip(x.chunks_exact(e)) {
                    ops::rmsnorm(h, x, &lw.attn_norm, c.rms_eps);
                }
            });
            let started = self.timing.start();
            let kind = match &lw.mixer {
                MixerWeights::Attention(aw) => {
                    self.attention(l, aw, &h, &at, &mut segs, &mut scratch, &mut proj)?;
                    MixerKind::Attention
                }
                MixerWeights::ShortConv(cw) => {
                    self.short_conv(l, cw, &h, &mut segs, &mut proj)?;
                    MixerKind::Recurrent
                }
                MixerWeights::DeltaNet(dw) => {
                    self.delta_net(l, dw, &h, &mut segs, &mut proj)?;
                    MixerKind::Recurrent
                }
            };
            self.timing.stop(kind, started, n);
            self.residual_and_ffn(l, &mut x, &mut h, &mut proj, &mut gate_buf, &mut up_buf)?;
        }

        for s in segs.iter_mut() {
            s.cache.recurrent_pos = s.pos + s.len;
        }
        // Output head: all rows, or the last one of each segment.
        let rows: Vec<usize> = if all_logits {
            (0..n).collect()
        } else {
            let mut end = 0;
            segs.iter()
                .map(|s| {
                    end += s.len;
                    end - 1
                })
                .collect()
        };
        let m = rows.len();
        let mut xn = vec![0f32; m * e];
        for (i, &t) in rows.iter().enumerate() {
            ops::rmsnorm(
                &mut xn[i * e..(i + 1) * e],
                &x[t * e..(t + 1) * e],
                &self.w.output_norm,
                c.rms_eps,
            );
        }
        let mut logits = vec![0f32; m * c.n_vocab];
        matmul(self.w.output(), &xn, &mut logits, m, k)?;
        if let Some(s) = c.logit_scale {
            logits.iter_mut().for_each(|v| *v /= s);
        }
        if let Some(cap) = c.final_softcap {
            ops::softcap(&mut logits, cap);
        }
        Ok(logits)
    }
}

impl CpuModel {
    /// An attention mixer of layer `l` over the normed input `h` (n, n_embd), into `proj`
    /// (n, n_embd): Q, K, V (Qwen3.5: each head's query, then its output gate), biases, Q/K
    /// norms, RoPE at each token's position `at`, the cache writes, each segment's tokens
    /// attending over its own cache, the output gate, the output projection.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        l: usize,
        aw: &AttentionWeights,
        h: &[f32],
        at: &[(usize, usize)],
        segs: &mut [&mut Segment<'_>],
        scratch: &mut AttentionScratch,
        proj: &mut [f32],
    ) -> Result<()> {
        let c = &self.cfg;
        let ls = &c.layers[l];
        let (e, k) = (c.n_embd, self.kernel);
        let n = h.len() / e;
        let (hd, hdv) = (ls.head_dim, ls.head_dim_v);
        let (q_dim, kv_dim, v_dim) = (ls.q_dim(c.n_head), ls.kv_dim(), ls.v_dim());
        let q = &mut scratch.q[..n * q_dim];
        let kk = &mut scratch.k[..n * kv_dim];
        let vv = &mut scratch.v[..n * v_dim];
        let att = &mut scratch.att[..n * c.n_head * hdv];
        let angles = &mut scratch.angles;
        // Qwen3.5's gated attention: each head's query, then its output gate.
        let mut out_gate = Vec::new();
        if c.attn_output_gate {
            let mut qg = vec![0f32; n * 2 * q_dim];
            matmul(&aw.wq, h, &mut qg, n, k)?;
            out_gate = vec![0f32; n * q_dim];
            for (t, row) in qg.chunks_exact(2 * hd).enumerate() {
                q[t * hd..(t + 1) * hd].copy_from_slice(&row[..hd]);
                out_gate[t * hd..(t + 1) * hd].copy_from_slice(&row[hd..]);
            }
            matmul_shared(&[&aw.wk, &aw.wv], h, &mut [&mut *kk, &mut *vv], n, k)?;
        } else {
            let (ws, ys) = (
                &[&aw.wq, &aw.wk, &aw.wv],
                &mut [&mut *q, &mut *kk, &mut *vv],
            );
            matmul_shared(ws, h, ys, n, k)?;
        }
        for (buf, bias, dim) in [
            (&mut *q, &aw.bq, q_dim),
            (&mut *kk, &aw.bk, kv_dim),
            (&mut *vv, &aw.bv, v_dim),
        ] {
            if let Some(b) = bias {
                buf.chunks_exact_mut(dim)
                    .for_each(|r| ops::add_inplace(r, b));
            }
        }
        let inv_freq = &self.rope.layers[l];
        for (t, &(si, p)) in at.iter().enumerate() {
            ops::rope_angles_scaled(angles, p, inv_freq, c.rope_mscale);
            for head in q[t * q_dim..(t + 1) * q_dim].chunks_exact_mut(hd) {
                if let Some(w) = &aw.q_norm {
                    ops::rmsnorm_inplace(head, w, c.rms_eps);
                }
                ops::rope_with(head, angles, c.rope_neox);
                if let Some(s) = c.q_scale {
                    head.iter_mut().for_each(|v| *v *= s);
                }
            }
            for head in kk[t * kv_dim..(t + 1) * kv_dim].chunks_exact_mut(hd) {
                if let Some(w) = &aw.k_norm {
                    ops::rmsnorm_inplace(head, w, c.rms_eps);
                }
                ops::rope_with(head, angles, c.rope_neox);
            }
            if c.v_norm {
                for head in vv[t * v_dim..(t + 1) * v_dim].chunks_exact_mut(hdv) {
                    ops::rmsnorm_plain(head, c.rms_eps);
                }
            }
            let cache = &mut *segs[si].cache;
            cache.k[l][p * kv_dim..(p + 1) * kv_dim]
                .copy_from_slice(&kk[t * kv_dim..(t + 1) * kv_dim]);
            cache.v[l][p * v_dim..(p + 1) * v_dim].copy_from_slice(&vv[t * v_dim..(t + 1) * v_dim]);
        }
        // Causal, and within the window on sliding-window layers.
        let shape = attention::LayerShape {
            n_head: c.n_head,
            n_head_kv: ls.n_head_kv,
            head_dim: hd,
            head_dim_v: hdv,
            window: ls.swa.then_some(c.n_swa),
            scale: c.kq_scale,
        };
        // Each segment attends over its own cache; several segments (a batched step) on
        // the matmul threads at once.
        let att_dim = c.n_head * hdv;
        let mut parts = Vec::with_capacity(segs.len());
        let (mut q_rest, mut att_rest) = (&q[..], &mut att[..]);
        for s in segs.iter() {
            let (qs, qr) = q_rest.split_at(s.len * q_dim);
            let (atts, ar) = std::mem::take(&mut att_rest).split_at_mut(s.len * att_dim);
            (q_rest, att_rest) = (qr, ar);
            parts.push((&**s, qs, atts));
        }
        let reference = k == Kernel::Reference;
        matmul::for_each_part(&mut parts, |_, (s, qs, atts)| {
            let (kc, vc) = (&s.cache.k[l], &s.cache.v[l]);
            attention::attend_layer(&shape, qs, kc, vc, s.len, s.pos, reference, atts);
        });
        if c.attn_output_gate {
            // Head size of V = of Q on Qwen3.5, so the gate lines up with the output.
            for (a, &g) in att.iter_mut().zip(&out_gate) {
                *a *= 1.0 / (1.0 + (-g).exp());
            }
        }
        matmul(&aw.wo, att, proj, n, k)
    }

    /// A block's output `proj` (n, n_embd) into the residual stream `x` (post-norm, Granite's
    /// residual scale), then the feed-forward block of layer `l` into `x` (with its post-norm,
    /// residual scale and Gemma 4's layer output scale). `h` and the gate/up buffers are
    /// scratch.
    fn residual_and_ffn(
        &self,
        l: usize,
        x: &mut [f32],
        h: &mut [f32],
        proj: &mut [f32],
        gate_buf: &mut [f32],
        up_buf: &mut [f32],
    ) -> Result<()> {
        let c = &self.cfg;
        let (lw, ls) = (&self.w.layers[l], &c.layers[l]);
        let (e, k) = (c.n_embd, self.kernel);
        let n = x.len() / e;
        if let Some(w) = &lw.post_attn_norm {
            proj.chunks_exact_mut(e)
                .for_each(|r| ops::rmsnorm_inplace(r, w, c.rms_eps));
        }
        if let Some(s) = c.residual_scale {
            proj.iter_mut().for_each(|v| *v *= s);
        }
        ops::add_inplace(x, proj);

        // Feed-forward block.
        let gate = &mut gate_buf[..n * ls.n_ff];
        let up = &mut up_buf[..n * ls.n_ff];
        ops::by_rows(h, x, e, |h, x| {
            for (h, x) in h.chunks_exact_mut(e).zip(x.chunks_exact(e)) {
                ops::rmsnorm(h, x, &lw.ffn_norm, c.rms_eps);
            }
        });
        matmul_shared(
            &[&lw.w_gate, &lw.w_up],
            h,
            &mut [&mut *gate, &mut *up],
            n,
            k,
        )?;
        match c.activation {
            Activation::Silu => ops::by_rows(gate, up, ls.n_ff, ops::swiglu),
            Activation::GeluTanh => ops::by_rows(gate, up, ls.n_ff, |gate, up| {
                for (g, &u) in gate.iter_mut().zip(up.iter()) {
                    *g = ops::gelu_tanh(*g) * u;
                }
            }),
        }
        matmul(&lw.w_down, gate, proj, n, k)?;
        if let Some(w) = &lw.post_ffn_norm {
            proj.chunks_exact_mut(e)
                .for_each(|r| ops::rmsnorm_inplace(r, w, c.rms_eps));
        }
        if let Some(s) = c.residual_scale {
            proj.iter_mut().for_each(|v| *v *= s);
        }
        ops::add_inplace(x, proj);
        if let Some(s) = lw.out_scale {
            x.iter_mut().for_each(|v| *v *= s);
        }
        Ok(())
    }

    /// LFM2's short-convolution block of layer `l` over the normed input `h` (n, n_embd), into
    /// `proj` (n, n_embd): in_proj to B, C, x; B·x through the depthwise causal convolution
    /// whose earlier inputs each segment's cache holds; C times that; out_proj. Token by token
    /// within a segment (the state moves one position per token).
    fn short_conv(
        &self,
        l: usize,
        cw: &ShortConvWeights,
        h: &[f32],
        segs: &mut [&mut Segment<'_>],
        proj: &mut [f32],
    ) -> Result<()> {
        let (e, k) = (self.cfg.n_embd, self.kernel);
        let n = h.len() / e;
        let mut bcx = vec![0f32; n * 3 * e];
        matmul(&cw.in_proj, h, &mut bcx, n, k)?;
        let mut y = vec![0f32; n * e];
        let mut bx = vec![0f32; e];
        let mut t = 0;
        for s in segs.iter_mut() {
            let state = &mut s.cache.conv[l];
            for _ in 0..s.len {
                let row = &bcx[t * 3 * e..(t + 1) * 3 * e];
                let (b, rest) = row.split_at(e);
                let (cg, xv) = rest.split_at(e);
                let y_t = &mut y[t * e..(t + 1) * e];
                short_conv::short_conv_step(state, &cw.kernel, (b, cg, xv), &mut bx, y_t, k);
                t += 1;
            }
        }
        matmul(&cw.out_proj, &y, proj, n, k)
    }

    /// Qwen3.5's gated delta-net block of layer `l` over the normed input `h` (n, n_embd), into
    /// `proj` (n, n_embd): the projections for all tokens at once, the recurrence
    /// ([`delta_net::delta_net_step`]) token by token within each segment, then `ssm_out`.
    fn delta_net(
        &self,
        l: usize,
        dw: &DeltaNetWeights,
        h: &[f32],
        segs: &mut [&mut Segment<'_>],
        proj: &mut [f32],
    ) -> Result<()> {
        let c = &self.cfg;
        let Some(spec) = c.delta_net else {
            return Err(Error::InvalidRequest(
                "a delta-net layer without its shape".into(),
            ));
        };
        let (e, k) = (c.n_embd, self.kernel);
        let n = h.len() / e;
        let (cd, vd, hv) = (spec.conv_dim(), spec.value_dim(), spec.v_heads);
        let mut qkv = vec![0f32; n * cd];
        let mut z = vec![0f32; n * vd];
        let mut beta = vec![0f32; n * hv];
        let mut alpha = vec![0f32; n * hv];
        matmul(&dw.qkv, h, &mut qkv, n, k)?;
        matmul(&dw.gate, h, &mut z, n, k)?;
        matmul(&dw.beta, h, &mut beta, n, k)?;
        matmul(&dw.alpha, h, &mut alpha, n, k)?;
        let params = delta_net::DeltaParams {
            spec,
            conv: &dw.conv,
            dt_bias: &dw.dt_bias,
            a: &dw.a,
            norm: &dw.norm,
            eps: c.rms_eps,
        };
        let mut o = vec![0f32; n * vd];
        let mut conv_out = vec![0f32; cd];
        let mut t = 0;
        for s in segs.iter_mut() {
            let state = &mut s.cache.conv[l];
            for _ in 0..s.len {
                let inputs = delta_net::DeltaInputs {
                    qkv: &qkv[t * cd..(t + 1) * cd],
                    z: &z[t * vd..(t + 1) * vd],
                    beta: &beta[t * hv..(t + 1) * hv],
                    alpha: &alpha[t * hv..(t + 1) * hv],
                };
                let o_t = &mut o[t * vd..(t + 1) * vd];
                delta_net::delta_net_step(&params, &inputs, state, &mut conv_out, o_t, k);
                t += 1;
            }
        }
        matmul(&dw.out, &o, proj, n, k)
    }
}
