//! Building a [`GpuModel`]: activation buffers, the KV cache, parameter buffers and the
//! recorded dispatches of one step, all created once at load.

use super::super::kernels::{groups_2d, unit_weights, PipelineKey, Shader, SPLIT_CHUNK};
use super::super::uniforms::{
    AddParams, AttentionParams, CausalConvParams, DeltaRuleParams, EmbedTokenParams, RmsNormParams,
    RopeParams, SoftcapParams, SplitGateParams,
};
use super::super::{GpuContext, GpuMatrix};
use super::dispatch::{
    make_dispatch, matmat_dispatches, matvec_dispatches, Batch, Dispatch, Role, When,
};
use super::fused::{self, FusedEnds, QkvBuffers, QkvShape, QKV_CS_FLOATS};
use super::loading::GpuWeights;
use super::{Acts, GpuModel, MAX_BATCH, SPLIT_ATTENTION_FROM};
use crate::model::{
    Activation, Config, DeltaNetWeights, LayerSpec, MixerWeights, RopeTables, ShortConvWeights,
};
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

    fn uniform<T: bytemuck::Pod>(&mut self, label: &str, v: &T) -> wgpu::Buffer {
        let b = self.ctx.uniform(label, v);
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

    /// y = rmsnorm(x)·w over `rows` rows of `n` (`w` = None: without weight, Gemma 4's V norm).
    fn rmsnorm(
        &mut self,
        x: &wgpu::Buffer,
        w: Option<&[f32]>,
        y: &wgpu::Buffer,
        n: usize,
        rows: usize,
    ) -> Result<()> {
        let ones;
        let w = match w {
            Some(w) => w,
            None => {
                ones = vec![1f32; n];
                &ones
            }
        };
        let wb = self.vector("norm weight", w);
        let eps = self.cfg.rms_eps;
        let p = self.uniform("rmsnorm", &RmsNormParams { n: n as u32, eps });
        self.dispatch(
            PipelineKey::new(Shader::RmsNorm),
            &[x, &wb, y, &p],
            [rows as u32, 1, 1],
        )
    }

    /// y = (y + b_scale·b) · y_scale per token; `b` has a row per token when `batched`, else
    /// one row (a bias).
    fn add(&mut self, y: &wgpu::Buffer, b: &wgpu::Buffer, p: AddParams) -> Result<()> {
        let n = p.n as usize;
        let pb = self.uniform("add", &p);
        self.dispatch(
            PipelineKey::new(Shader::Add),
            &[y, b, &pb],
            [n.div_ceil(64) as u32, 1, 1],
        )
    }

    /// RoPE over `heads` heads of layer `ls` (its table at `cs_off` of a token's cos/sin row),
    /// then × `scale`.
    fn rope(
        &mut self,
        v: &wgpu::Buffer,
        cs: &wgpu::Buffer,
        (heads, ls): (usize, &LayerSpec),
        cs_off: usize,
        cs_stride: usize,
        scale: f32,
    ) -> Result<()> {
        let p = RopeParams {
            n_heads: heads as u32,
            head_dim: ls.head_dim as u32,
            n_rot: ls.n_rot as u32,
            neox: u32::from(self.cfg.rope_neox),
            cs_off: cs_off as u32,
            scale,
            cs_stride: cs_stride as u32,
        };
        let pb = self.uniform("rope", &p);
        let n = heads * ls.head_dim / 2;
        self.dispatch(
            PipelineKey::new(Shader::Rope),
            &[v, cs, &pb],
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

    /// A block's output `out` into the residual stream x: scaled by Granite's residual_scale,
    /// the sum by Gemma 4's layer output scale where given. For a decode step without a post
    /// norm and without an output scale, the add is fused into the projection from `seg`
    /// (matvec_fused.wgsl, its input `input`).
    #[allow(clippy::too_many_arguments)]
    fn residual(
        &mut self,
        seg: usize,
        (w, input): (&GpuMatrix, &wgpu::Buffer),
        out: &wgpu::Buffer,
        out_n: &wgpu::Buffer,
        x: &wgpu::Buffer,
        post_norm: Option<&[f32]>,
        out_scale: Option<f32>,
    ) -> Result<()> {
        let c = self.cfg;
        let add = AddParams {
            b_scale: c.residual_scale.unwrap_or(1.0),
            y_scale: out_scale.unwrap_or(1.0),
            ..AddParams::new(c.n_embd, true)
        };
        match post_norm {
            Some(wn) => {
                self.rmsnorm(out, Some(wn), out_n, c.n_embd, 1)?;
                self.add(x, out_n, add)
            }
            None => {
                self.add(x, out, add)?;
                if out_scale.is_none() {
                    let ends = FusedEnds::residual(add.b_scale);
                    let ds = fused::fused_dispatches(self.ctx, w, input, input, x, ends)?;
                    self.fuse_from(seg, ds);
                }
                Ok(())
            }
        }
    }
}

impl Recorder<'_> {
    /// LFM2's short-convolution block into the residual stream: RMSNorm, in_proj to B, C, x
    /// (`a.conv_in`), causal_conv.wgsl (gated) over the step's tokens with the layer's `state`
    /// (`a.conv_out`), out_proj, and the residual add (fused into out_proj for a decode step).
    fn short_conv(
        &mut self,
        a: &Acts,
        norm: &[f32],
        cw: &ShortConvWeights<GpuMatrix>,
        state: &wgpu::Buffer,
        post_norm: Option<&[f32]>,
    ) -> Result<()> {
        let c = self.cfg;
        let e = c.n_embd;
        self.rmsnorm(&a.x, Some(norm), &a.h, e, 1)?;
        self.matvec(&cw.in_proj, &a.h, &a.conv_in)?;
        let taps = self.vector("short conv taps", &cw.kernel);
        let p = CausalConvParams {
            n: e as u32,
            taps: c.shortconv_l_cache as u32,
        };
        let p = self.uniform("short conv", &p);
        let step = self.step_params.clone();
        let bufs = [&a.conv_in, &taps, state, &a.conv_out, &p, &step];
        let key = PipelineKey {
            gated: 1,
            ..PipelineKey::new(Shader::CausalConv)
        };
        let mut d = make_dispatch(self.ctx, key, &bufs, [e.div_ceil(64) as u32, 1, 1])?;
        // One dispatch walks all the step's tokens.
        d.tile = u32::MAX;
        self.dispatches.push(d);
        let seg = self.dispatches.len();
        self.matvec(&cw.out_proj, &a.conv_out, &a.proj)?;
        let w = (&cw.out_proj, &a.conv_out);
        self.residual(seg, w, &a.proj, &a.proj_n, &a.x, post_norm, None)
    }

    /// Qwen3.5's gated delta-net block into the residual stream: RMSNorm; attn_qkv, attn_gate,
    /// ssm_beta and ssm_alpha; causal_conv.wgsl with SiLU (with the layer's `conv` state) and
    /// delta_rule.wgsl (with its `mats` state), each one dispatch for all the step's tokens;
    /// ssm_out; the residual add (fused into ssm_out for a decode step).
    fn delta_net(
        &mut self,
        a: &Acts,
        norm: &[f32],
        dw: &DeltaNetWeights<GpuMatrix>,
        (conv, mats): (&wgpu::Buffer, &wgpu::Buffer),
    ) -> Result<()> {
        let c = self.cfg;
        let e = c.n_embd;
        let Some(d) = c.delta_net else {
            return Ok(());
        };
        self.rmsnorm(&a.x, Some(norm), &a.h, e, 1)?;
        self.matvec(&dw.qkv, &a.h, &a.dn_qkv)?;
        self.matvec(&dw.gate, &a.h, &a.dn_z)?;
        self.matvec(&dw.beta, &a.h, &a.dn_beta)?;
        self.matvec(&dw.alpha, &a.h, &a.dn_alpha)?;
        let step = self.step_params.clone();
        let taps = self.vector("delta-net conv taps", &dw.conv);
        let p = CausalConvParams {
            n: d.conv_dim() as u32,
            taps: d.conv_taps as u32,
        };
        let p = self.uniform("delta-net conv", &p);
        let bufs = [&a.dn_qkv, &taps, conv, &a.dn_conv, &p, &step];
        let groups = [d.conv_dim().div_ceil(64) as u32, 1, 1];
        let mut dc = make_dispatch(
            self.ctx,
            PipelineKey::new(Shader::CausalConv),
            &bufs,
            groups,
        )?;
        let mut vecs = dw.dt_bias.clone();
        vecs.extend_from_slice(&dw.a);
        vecs.extend_from_slice(&dw.norm);
        let vecs = self.vector("delta-net dt_bias, a, norm", &vecs);
        let p = DeltaRuleParams {
            s: d.head_dim as u32,
            k_heads: d.k_heads as u32,
            v_heads: d.v_heads as u32,
            conv_dim: d.conv_dim() as u32,
            eps: c.rms_eps,
        };
        let p = self.uniform("delta_rule", &p);
        let bufs = [
            &a.dn_conv,
            &a.dn_z,
            &a.dn_beta,
            &a.dn_alpha,
            &vecs,
            mats,
            &a.dn_out,
            &p,
            &step,
        ];
        let groups = [d.v_heads as u32, 1, 1];
        let mut dr = make_dispatch(self.ctx, PipelineKey::new(Shader::DeltaRule), &bufs, groups)?;
        // Each walks all the step's tokens in one dispatch.
        dc.tile = u32::MAX;
        dr.tile = u32::MAX;
        self.dispatches.extend([dc, dr]);
        let seg = self.dispatches.len();
        self.matvec(&dw.out, &a.dn_out, &a.proj)?;
        let w = (&dw.out, &a.dn_out);
        self.residual(seg, w, &a.proj, &a.proj_n, &a.x, None, None)
    }

    /// The feed-forward block into the residual stream: RMSNorm + gate and up + activation in
    /// one dispatch for a decode step, then the down projection with the residual add.
    fn feed_forward(
        &mut self,
        a: &Acts,
        ls: &LayerSpec,
        ffn_norm: &[f32],
        [wg, wu, wd]: [&GpuMatrix; 3],
        post_norm: Option<&[f32]>,
        out_scale: Option<f32>,
    ) -> Result<()> {
        let c = self.cfg;
        let e = c.n_embd;
        let seg = self.dispatches.len();
        self.rmsnorm(&a.x, Some(ffn_norm), &a.h, e, 1)?;
        self.matvec(wg, &a.h, &a.gate)?;
        self.matvec(wu, &a.h, &a.up)?;
        let act = match c.activation {
            Activation::Silu => 0,
            Activation::GeluTanh => 1,
        };
        let p = self.params("gate", &[ls.n_ff as u32]);
        self.dispatch(
            PipelineKey {
                act,
                ..PipelineKey::new(Shader::Gate)
            },
            &[&a.gate, &a.up, &p],
            [ls.n_ff.div_ceil(64) as u32, 1, 1],
        )?;
        if fused::glu_fusable(wg, wu) {
            let wt = self.vector("ffn_norm", ffn_norm);
            let d = fused::glu_dispatch(self.ctx, wg, wu, &a.x, &wt, &a.gate, act, c.rms_eps)?;
            self.fuse_from(seg, vec![d]);
        }
        let seg = self.dispatches.len();
        self.matvec(wd, &a.gate, &a.proj)?;
        let w = (wd, &a.gate);
        self.residual(seg, w, &a.proj, &a.proj_n, &a.x, post_norm, out_scale)
    }
}

/// The rotary tables of a step, packed for rope.wgsl: each distinct table of the model's layers
/// (the global and the sliding-window one, in practice) once, one after another in a token's
/// row of [cos, sin] pairs.
pub(super) struct RopeRows {
    /// The distinct tables' inverse frequencies.
    pub tables: Vec<Vec<f64>>,
    /// Per layer: where its table starts in a row (floats); `None` for a layer without RoPE.
    pub offsets: Vec<Option<usize>>,
    /// Floats per token.
    pub stride: usize,
}

impl RopeRows {
    fn new(rope: &RopeTables) -> RopeRows {
        let mut tables: Vec<Vec<f64>> = Vec::new();
        let mut offsets = Vec::with_capacity(rope.layers.len());
        for inv in &rope.layers {
            if inv.is_empty() {
                offsets.push(None);
                continue;
            }
            let i = match tables.iter().position(|t| t == inv) {
                Some(i) => i,
                None => {
                    tables.push(inv.clone());
                    tables.len() - 1
                }
            };
            offsets.push(Some(tables[..i].iter().map(|t| 2 * t.len()).sum()));
        }
        let stride = tables.iter().map(|t| 2 * t.len()).sum();
        RopeRows {
            tables,
            offsets,
            stride,
        }
    }

    /// Rows of tokens at positions `pos..pos + n`: cos and sin of position × inverse frequency
    /// in f64, as the CPU's, times `mscale` (ggml's attn_factor) in f32.
    pub fn rows(&self, pos: usize, n: usize, mscale: f32) -> Vec<f32> {
        let mut cs = Vec::with_capacity(self.stride * n);
        for t in 0..n {
            for f in self.tables.iter().flatten() {
                let th = (pos + t) as f64 * f;
                cs.extend([th.cos() as f32 * mscale, th.sin() as f32 * mscale]);
            }
        }
        cs
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
        let e = c.n_embd;
        // Scratch sized for the widest layer (Gemma 4's differ).
        let (q_dim, kv_dim, v_dim, n_ff) = c.max_dims();
        let hdv = c.layers.iter().map(|l| l.head_dim_v).max().unwrap_or(0);
        let att_dim = c.n_head * hdv;
        let n_ctx = n_ctx.max(1);
        let n_split = n_ctx.div_ceil(SPLIT_CHUNK);
        let per_token = (c.n_head * n_ctx)
            .max(c.n_head * n_split * (2 + hdv))
            .max(n_ff)
            .max(q_dim)
            .max(att_dim)
            * 4;
        let max_batch =
            (ctx.max_binding as usize / per_token.max(1)).clamp(1, MAX_BATCH.min(n_ctx));
        ctx.check_fits(
            "the KV cache of one layer",
            (n_ctx * kv_dim.max(v_dim) * 4) as u64,
        )?;
        ctx.check_fits("the attention scores", (c.n_head * n_ctx * 4) as u64)?;
        ctx.check_fits("the logits", (c.n_vocab * 4) as u64)?;

        let dn = c.delta_net;
        let f = |l: &str, n: usize| ctx.storage_f32(l, n);
        let b = |l: &str, n: usize| ctx.storage_f32(l, n * max_batch);
        let acts = Acts {
            x: b("x", e),
            h: b("h", e),
            q_raw: b("q_raw", q_dim),
            k_raw: b("k_raw", kv_dim),
            v_raw: b("v_raw", v_dim),
            q: b("q", q_dim),
            k: b("k", kv_dim),
            v: b("v", v_dim),
            att: b("att", att_dim),
            proj: b("proj", e),
            proj_n: b("proj_n", e),
            gate: b("gate", n_ff),
            up: b("up", n_ff),
            scores: b("scores", c.n_head * n_ctx),
            part: b("split-K partials", c.n_head * n_split * (2 + hdv)),
            conv_in: b(
                "short conv B, C, x",
                if c.has_recurrent() { 3 * e } else { 0 },
            ),
            conv_out: b("short conv y", if c.has_recurrent() { e } else { 0 }),
            q_gated: b(
                "queries and gates",
                if c.attn_output_gate { 2 * q_dim } else { 0 },
            ),
            out_gate: b(
                "attention output gates",
                if c.attn_output_gate { q_dim } else { 0 },
            ),
            dn_qkv: b("delta-net Q, K, V", dn.map_or(0, |d| d.conv_dim())),
            dn_conv: b(
                "delta-net convolved Q, K, V",
                dn.map_or(0, |d| d.conv_dim()),
            ),
            dn_z: b("delta-net z", dn.map_or(0, |d| d.value_dim())),
            dn_beta: b("delta-net beta", dn.map_or(0, |d| d.v_heads)),
            dn_alpha: b("delta-net alpha", dn.map_or(0, |d| d.v_heads)),
            dn_out: b("delta-net output", dn.map_or(0, |d| d.value_dim())),
            last: f("last", e),
            logits: f("logits", c.n_vocab),
            token: f("token", 1),
        };
        let GpuWeights {
            token_embd,
            output_norm,
            output,
            rope_freqs,
            layers,
        } = w;
        let rope = RopeRows::new(&RopeTables::new(c, rope_freqs.as_deref()));
        let rope_cs = b("rope cos/sin", rope.stride);
        // The first token's cos/sin row again, as a uniform for matvec_qkv.wgsl.
        let rope_cs_token = ctx.uniform_with("rope cos/sin (token 0)", &[0; QKV_CS_FLOATS * 4]);
        let step_params = ctx.params("step", &[]);

        let mut rec = Recorder {
            ctx: &ctx,
            cfg: c,
            dispatches: Vec::new(),
            buffers: Vec::new(),
            step_params: step_params.clone(),
        };
        // One attention parameter buffer per distinct layer shape (global and sliding-window).
        let mut attn_params: Vec<(AttentionParams, wgpu::Buffer)> = Vec::new();
        let mut keep = Vec::new();
        let mut kv_widths = Vec::with_capacity(layers.len());
        let mut recurrent_state = Vec::new();
        let a = &acts;
        let mut kv_cache = Vec::with_capacity(layers.len());
        for (l, lw) in layers.into_iter().enumerate() {
            let ls = &c.layers[l];
            let (hd, q_dim, kv_dim, v_dim) =
                (ls.head_dim, ls.q_dim(c.n_head), ls.kv_dim(), ls.v_dim());
            let (wg, wu, wd) = (lw.w_gate, lw.w_up, lw.w_down);
            // f32 words: one value each, or two f16.
            let words = |n: usize| if ctx.kv_f16 { n.div_ceil(2) } else { n };
            let kc = f(&format!("blk.{l} K cache"), words(n_ctx * kv_dim));
            let vc = f(&format!("blk.{l} V cache"), words(n_ctx * v_dim));
            let aw = match lw.mixer {
                MixerWeights::Attention(aw) => aw,
                // Qwen3.5: the gated delta-net and its state, then the same FFN.
                MixerWeights::DeltaNet(dw) => {
                    let Some(d) = c.delta_net else {
                        let gap = "a delta-net layer without its ssm.* metadata";
                        return Err(crate::Error::UnsupportedModel(gap.into()));
                    };
                    let conv = f(
                        &format!("blk.{l} conv state"),
                        (d.conv_taps - 1) * d.conv_dim(),
                    );
                    let mats = f(
                        &format!("blk.{l} delta state"),
                        d.v_heads * d.head_dim * d.head_dim,
                    );
                    rec.delta_net(a, &lw.attn_norm, &dw, (&conv, &mats))?;
                    let post = lw.post_ffn_norm.as_deref();
                    rec.feed_forward(a, ls, &lw.ffn_norm, [&wg, &wu, &wd], post, lw.out_scale)?;
                    keep.extend([dw.qkv, dw.gate, dw.beta, dw.alpha, dw.out, wg, wu, wd]);
                    recurrent_state.extend([conv.clone(), mats.clone()]);
                    kv_cache.push((kc.clone(), vc.clone()));
                    kv_widths.push((0, 0));
                    rec.buffers.extend([kc, vc, conv, mats]);
                    continue;
                }
                // LFM2: the short convolution and its state, then the same FFN.
                MixerWeights::ShortConv(cw) => {
                    let rows = c.shortconv_l_cache.saturating_sub(1);
                    let state = f(&format!("blk.{l} conv state"), rows * e);
                    let post = lw.post_attn_norm.as_deref();
                    rec.short_conv(a, &lw.attn_norm, &cw, &state, post)?;
                    let post = lw.post_ffn_norm.as_deref();
                    rec.feed_forward(a, ls, &lw.ffn_norm, [&wg, &wu, &wd], post, lw.out_scale)?;
                    keep.extend([cw.in_proj, cw.out_proj, wg, wu, wd]);
                    recurrent_state.push(state.clone());
                    kv_cache.push((kc.clone(), vc.clone()));
                    kv_widths.push((0, 0));
                    rec.buffers.extend([kc, vc, state]);
                    continue;
                }
            };
            let (wq, wk, wv, wo) = (aw.wq, aw.wk, aw.wv, aw.wo);

            // Attention block. Decode steps run the fused kernels where the layer allows
            // (`fuse_from`): RMSNorm + Q/K/V + biases + RoPE + KV store in one dispatch.
            let seg = rec.dispatches.len();
            rec.rmsnorm(&a.x, Some(&lw.attn_norm), &a.h, e, 1)?;
            let qo = if aw.q_norm.is_some() { &a.q_raw } else { &a.q };
            let ko = if aw.k_norm.is_some() { &a.k_raw } else { &a.k };
            let vo = if c.v_norm { &a.v_raw } else { &a.v };
            if c.attn_output_gate {
                // Qwen3.5: each head's query then its output gate, split apart.
                rec.matvec(&wq, &a.h, &a.q_gated)?;
                let p = SplitGateParams {
                    n: q_dim as u32,
                    head_dim: hd as u32,
                };
                let p = rec.uniform("split_gate", &p);
                rec.dispatch(
                    PipelineKey::new(Shader::SplitGate),
                    &[&a.q_gated, qo, &a.out_gate, &p],
                    [q_dim.div_ceil(64) as u32, 1, 1],
                )?;
            } else {
                rec.matvec(&wq, &a.h, qo)?;
            }
            rec.matvec(&wk, &a.h, ko)?;
            rec.matvec(&wv, &a.h, vo)?;
            for (buf, bias, n) in [
                (qo, &aw.bq, q_dim),
                (ko, &aw.bk, kv_dim),
                (vo, &aw.bv, v_dim),
            ] {
                if let Some(b) = bias {
                    let bb = rec.vector("bias", b);
                    rec.add(buf, &bb, AddParams::new(n, false))?;
                }
            }
            if let Some(wn) = &aw.q_norm {
                rec.rmsnorm(&a.q_raw, Some(wn), &a.q, hd, c.n_head)?;
            }
            if let Some(wn) = &aw.k_norm {
                rec.rmsnorm(&a.k_raw, Some(wn), &a.k, hd, ls.n_head_kv)?;
            }
            if c.v_norm {
                rec.rmsnorm(&a.v_raw, None, &a.v, ls.head_dim_v, ls.n_head_kv)?;
            }
            let q_scale = c.q_scale.unwrap_or(1.0);
            let cs_off = rope.offsets[l];
            // A layer without RoPE (NoPE) skips it, unless Q still needs its scale.
            if cs_off.is_some() || q_scale != 1.0 {
                let off = cs_off.unwrap_or(0);
                rec.rope(&a.q, &rope_cs, (c.n_head, ls), off, rope.stride, q_scale)?;
            }
            if let Some(off) = cs_off {
                rec.rope(&a.k, &rope_cs, (ls.n_head_kv, ls), off, rope.stride, 1.0)?;
            }
            for (src, dst, n, v) in [(&a.k, &kc, kv_dim, false), (&a.v, &vc, v_dim, true)] {
                rec.store_kv(src, dst, n)?;
                if let Some(d) = rec.dispatches.last_mut() {
                    d.role = Role::KvStore { layer: l, v, n };
                }
            }
            let norms = aw.q_norm.is_some() || aw.k_norm.is_some() || c.v_norm;
            let biases = [&aw.bq, &aw.bk, &aw.bv];
            let all_or_none =
                biases.iter().all(|b| b.is_some()) || biases.iter().all(|b| b.is_none());
            let fusable = |off| fused::qkv_fusable([&wq, &wk, &wv], hd, ls.n_rot, off);
            if let Some(off) = cs_off.filter(|&o| !norms && all_or_none && fusable(o)) {
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
                    cs_off: off,
                    q_scale,
                    eps: c.rms_eps,
                    has_bias: aw.bq.is_some(),
                    kv_f16: ctx.kv_f16,
                };
                let d = fused::qkv_dispatch(&ctx, [&wq, &wk, &wv], &bufs, &shape)?;
                rec.fuse_from(seg, vec![d]);
            }
            let shape = AttentionParams {
                n_ctx: n_ctx as u32,
                group: (c.n_head / ls.n_head_kv) as u32,
                head_dim: hd as u32,
                head_dim_v: ls.head_dim_v as u32,
                kv_dim: kv_dim as u32,
                v_dim: v_dim as u32,
                kq_scale: c.kq_scale,
                window: if ls.swa { c.n_swa as u32 } else { 0 },
                n_split: n_split as u32,
                ..Default::default()
            };
            let ap = match attn_params.iter().find(|(p, _)| *p == shape) {
                Some((_, buf)) => buf.clone(),
                None => {
                    let buf = ctx.uniform("attention", &shape);
                    attn_params.push((shape, buf.clone()));
                    buf
                }
            };
            let nh = c.n_head as u32;
            for (key, bufs, groups, when) in [
                (
                    Shader::Attention,
                    &[&a.q, &kc, &vc, &a.att, &a.scores, &ap][..],
                    [nh, 1, 1],
                    When::Short,
                ),
                (
                    Shader::AttentionSplit,
                    &[&a.q, &kc, &vc, &a.part, &ap][..],
                    [nh, n_split as u32, 1],
                    When::Long,
                ),
                (
                    Shader::AttentionCombine,
                    &[&a.part, &a.att, &ap][..],
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
                d.role = Role::Attention { layer: l, shape };
                rec.dispatches.push(d);
            }
            // The output projection, with the residual add fused for a decode step.
            // Qwen3.5: the output gated by sigmoid(gate) (gate.wgsl, ACT 2), into `out_gate`.
            let att_out = if c.attn_output_gate {
                let p = rec.params("gate", &[q_dim as u32]);
                rec.dispatch(
                    PipelineKey {
                        act: 2,
                        ..PipelineKey::new(Shader::Gate)
                    },
                    &[&a.out_gate, &a.att, &p],
                    [q_dim.div_ceil(64) as u32, 1, 1],
                )?;
                &a.out_gate
            } else {
                &a.att
            };
            let seg = rec.dispatches.len();
            rec.matvec(&wo, att_out, &a.proj)?;
            let post = lw.post_attn_norm.as_deref();
            rec.residual(seg, (&wo, att_out), &a.proj, &a.proj_n, &a.x, post, None)?;

            let ffn = [&wg, &wu, &wd];
            let post = lw.post_ffn_norm.as_deref();
            rec.feed_forward(a, ls, &lw.ffn_norm, ffn, post, lw.out_scale)?;
            keep.extend([wq, wk, wv, wo, wg, wu, wd]);
            kv_cache.push((kc.clone(), vc.clone()));
            kv_widths.push((kv_dim, v_dim));
            rec.buffers.extend([kc, vc]);
        }

        // Output head: the output norm fused into the logits product (the output matrix, or
        // token_embd when tied).
        let layer_dispatches = std::mem::take(&mut rec.dispatches);
        let norm = rec.vector("output_norm", &output_norm);
        let tied = output.is_none();
        let head_matrix = output.as_ref().unwrap_or(&token_embd);
        // Granite divides the logits by logit_scale; Gemma 4 soft-caps them.
        let ends = FusedEnds::head(c.rms_eps, 1.0 / c.logit_scale.unwrap_or(1.0));
        let mut head = fused::fused_dispatches(&ctx, head_matrix, &a.last, &norm, &a.logits, ends)?;
        if let Some(cap) = c.final_softcap {
            let n = c.n_vocab as u32;
            let p = ctx.uniform("softcap", &SoftcapParams { n, cap });
            let groups = groups_2d(c.n_vocab.div_ceil(64));
            let d = make_dispatch(
                &ctx,
                PipelineKey::new(Shader::Softcap),
                &[&a.logits, &p],
                groups,
            )?;
            rec.buffers.push(p);
            head.push(d);
        }
        let output_copy = output.clone();
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
        // The same lookup with the token the previous step chose on the device (acts.token),
        // for pipelined decoding: one dispatch per chunk of token_embd, each with its rows
        // (only the chunk that holds the token writes). Nothing to write per step.
        let embd_token_key = PipelineKey::new(Shader::EmbedToken(token_embd.ty, token_embd.layout));
        let mut embd_token_params = Vec::with_capacity(token_embd.chunks.len());
        let mut embd_token_groups = Vec::with_capacity(token_embd.chunks.len());
        for ch in &token_embd.chunks {
            let p = EmbedTokenParams {
                n_units: (token_embd.cols / unit_weights(token_embd.ty)) as u32,
                row_bytes: token_embd.row_bytes as u32,
                row_start: ch.row_start as u32,
                rows: ch.rows as u32,
                scale: c.embd_scale.unwrap_or(1.0),
            };
            let pb = ctx.uniform("embedding (device token)", &p);
            embd_token_groups.push(ctx.bind(embd_token_key, &[&ch.buffer, &a.x, &a.token, &pb])?);
            embd_token_params.push(pb);
        }
        let embd_token_pipeline = ctx.pipeline(embd_token_key)?.pipeline;

        let mut buffers = rec.buffers;
        buffers.push(ap);
        buffers.extend(embd_token_params);
        let stage_logits = ctx.staging("logits readback", (c.n_vocab * 4) as u64);
        // Two, so that a step's token can be copied out while the previous step's is mapped.
        let stage_token = [0, 1].map(|_| ctx.staging("token readback", 4));
        Ok(GpuModel {
            n_ctx,
            max_batch,
            alloc_batch: max_batch,
            split_attention_from: SPLIT_ATTENTION_FROM,
            token_embd,
            embd_pipeline,
            embd_params,
            embd_groups,
            embd_token_pipeline,
            embd_token_groups,
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
            head_norm: norm.clone(),
            output: output_copy,
            token_mask: None,
            rope,
            rope_cs,
            attn_params,
            step_params,
            rope_cs_token,
            acts,
            stage_logits,
            stage_token,
            token_steps: Default::default(),
            last_submission: Default::default(),
            counters: Default::default(),
            kv_cache,
            kv_widths,
            recurrent_state,
            recurrent_pos: 0,
            checkpoints: Default::default(),
            _keep: keep,
            tied,
            _buffers: buffers,
            cfg,
            ctx,
        })
    }
}
