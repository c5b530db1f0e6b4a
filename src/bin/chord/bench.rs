//! `chord bench`: prefill and decode speed on the CPU or GPU backend, or (`--kernels`) the GPU
//! matrix kernels' bandwidth. Prints JSON.

use crate::{BackendArg, Fail, KernelArg};
use serde_json::{json, Value as Json};
use wasm_chord::engine::{block_on, Backend};
use wasm_chord::{cpu, gpu};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LayoutArg {
    Default,
    Packed,
    Aligned,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// `chord bench`.
#[derive(clap::Args)]
pub struct Args {
    #[arg(value_name = "MODEL")]
    pub model: String,
    /// Prompt tokens (prefill); with --kernels, tokens per product (default 64).
    #[arg(short = 'p', long = "p", value_name = "N")]
    pub p: Option<usize>,
    /// Decode steps (default 64; 32 per turn with --turns).
    #[arg(short = 'n', long = "n", value_name = "N")]
    pub n: Option<usize>,
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Decode after this many tokens of context (prefilled first, not timed; llama-bench's
    /// `-d`). Default 0: decode from an empty cache, as llama-bench's tg test. CPU backend.
    #[arg(short = 'd', long, value_name = "N", default_value_t = 0)]
    pub depth: usize,
    /// CPU threads (default 1, to compare with llama.cpp's -t 1).
    #[arg(short = 't', long, default_value_t = 1)]
    pub threads: usize,
    /// Leave the AMX-INT8 kernels (on by default where the CPU has them; also `CHORD_AMX=0`):
    /// the i16 integer kernels instead (`cpu::matmul::set_amx`).
    #[arg(long)]
    pub no_amx: bool,
    /// The widest CPU kernel path (`cpu::matmul::limit_isa`: 0 portable, 1 the f32 SIMD
    /// kernels, 2 the integer ones, 3 with VNNI): to compare paths in one binary. Prefill and
    /// decode only (it holds for the calling thread and the matmul pool it leads).
    #[arg(long, value_name = "LEVEL")]
    pub isa: Option<u8>,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendArg,
    #[arg(long, value_enum, default_value = "fast")]
    pub kernel: KernelArg,
    /// GPU weight layout.
    #[arg(long, value_enum)]
    pub layout: Option<LayoutArg>,
    /// GPU shader runtime checks.
    #[arg(long, value_enum)]
    pub shader_checks: Option<OnOff>,
    /// Time the GPU matrix kernels instead of the model.
    #[arg(long)]
    pub kernels: bool,
    /// Aggregate decode speed of the batching server's scheduler at these numbers of
    /// concurrent streams (e.g. 1,2,4,8), each generating -n tokens after a -p token prompt
    /// (default 32).
    #[arg(long, value_delimiter = ',', value_name = "N,N,...")]
    pub streams: Vec<usize>,
    /// With --streams: the scheduler's slots (`chord serve --parallel`) when more than the
    /// streams (on the GPU, 1 runs one request at a time through the engine, more the batched
    /// step).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub parallel: usize,
    /// Constrained against unconstrained decode, under this JSON schema.
    #[arg(long, value_name = "FILE")]
    pub json_schema: Option<String>,
    /// Constrained against unconstrained decode, under this Lark grammar.
    #[arg(long, value_name = "FILE")]
    pub grammar: Option<String>,
    /// Time to first token per chat turn over this many turns, with and without prefix reuse.
    #[arg(long, value_name = "N")]
    pub turns: Option<usize>,
    /// Tokens of each user turn (with --turns).
    #[arg(long, value_name = "N", default_value_t = 150)]
    pub turn_tokens: usize,
}

pub fn run(a: &Args) -> Result<(), Fail> {
    if a.no_amx {
        cpu::matmul::set_amx(false);
    }
    if let Some(l) = a.isa {
        cpu::matmul::limit_isa(l);
    }
    let load = crate::LoadArgs {
        backend: a.backend,
        kernel: a.kernel,
        ctx: None,
    };
    if let Some(turns) = a.turns {
        // Time to first token per turn, with and without reuse (docs/performance.md).
        cpu::matmul::set_threads(a.threads);
        let mut engine = crate::load_engine(&a.model, &load)?;
        let out = wasm_chord::conversation::bench::bench_turns(
            &mut engine,
            turns.max(1),
            a.turn_tokens,
            a.n.unwrap_or(32).max(1),
        )?;
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    if let Some(g) = crate::grammar_arg(a.json_schema.as_deref(), a.grammar.as_deref())? {
        // Constrained against unconstrained engine decode (docs/performance.md).
        cpu::matmul::set_threads(a.threads);
        let mut engine = crate::load_engine(&a.model, &load)?;
        let out = wasm_chord::constrain::bench::bench_constrained(
            &mut engine,
            "Describe a fictional person as JSON.",
            &g,
            a.n.unwrap_or(64).max(2),
            a.reps.max(1),
        )?;
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    let n = a.n.unwrap_or(64);
    let checks = a.shader_checks.map(|c| matches!(c, OnOff::On));
    let gpu_only = a.layout.is_some() || checks.is_some();
    let backend = Backend::from(a.backend);
    if gpu_only && backend != Backend::Gpu {
        return Err(Fail::Usage(
            "--layout and --shader-checks need --backend gpu".into(),
        ));
    }
    if a.kernels {
        if backend != Backend::Gpu {
            return Err(Fail::Usage("--kernels needs --backend gpu".into()));
        }
        return bench_gpu_kernels(&a.model, a.p.unwrap_or(64).max(1), checks);
    }
    cpu::matmul::set_threads(a.threads);
    if !a.streams.is_empty() {
        return bench_streams(
            &a.model,
            &load,
            a.p.unwrap_or(32),
            n,
            a.reps.max(1),
            &a.streams,
            a.parallel,
        );
    }
    let p = a.p.unwrap_or(128);
    if backend == Backend::Gpu {
        if a.depth > 0 {
            return Err(Fail::Usage("--depth is for the CPU backend".into()));
        }
        let layout = match a.layout {
            None | Some(LayoutArg::Default) => None,
            Some(LayoutArg::Packed) => Some(gpu::kernels::Layout::Packed),
            Some(LayoutArg::Aligned) => Some(gpu::kernels::Layout::Aligned),
        };
        return bench_gpu(&a.model, p, n, a.reps.max(1), (layout, checks));
    }
    bench(&a.model, (p, n, a.depth), a.reps.max(1), a.kernel.into())
}

/// `--streams`: `k` requests at once through [`Batcher`] (parallel `k`), greedy, end-of-text
/// ignored so each makes exactly `n` tokens. The decode rate is the tokens generated after
/// every stream's first token, over the time from the last first token to the last token
/// (prefill excluded). Prints JSON.
fn bench_streams(
    path: &str,
    load: &crate::LoadArgs,
    p: usize,
    n: usize,
    reps: usize,
    streams: &[usize],
    parallel: usize,
) -> Result<(), Fail> {
    use std::sync::{mpsc, Arc, Mutex};
    use std::time::Instant;
    use wasm_chord::batch::{BatchOptions, Batcher, Event, Prompt};
    use wasm_chord::engine::{Control, GenerateOptions};
    let n = n.max(2);
    let mut rows = vec![];
    let mut single = None;
    for &k in streams {
        let k = k.max(1);
        let engine = crate::load_engine(path, load)?;
        let v = engine.config().n_vocab as u32;
        let b = Batcher::start(
            engine,
            BatchOptions {
                parallel: k.max(parallel),
                n_ctx: p + n + 1,
            },
        )?;
        let mut rates = vec![];
        for _ in 0..reps {
            let (tx, rx) = mpsc::channel();
            let firsts = Arc::new(Mutex::new(Vec::new()));
            for s in 0..k {
                // Different prompts per stream; the content does not change the work.
                let prompt: Vec<u32> = (0..p.max(1) as u32)
                    .map(|i| (i * 7919 + 13 + s as u32 * 104_729) % v)
                    .collect();
                let tx = tx.clone();
                let firsts = Arc::clone(&firsts);
                let mut first = true;
                b.submit(
                    Prompt::Ids(prompt),
                    GenerateOptions {
                        max_tokens: n,
                        stop_at_eog: false,
                        ..Default::default()
                    },
                    Box::new(move |ev| {
                        match ev {
                            Event::Token { .. } if first => {
                                first = false;
                                if let Ok(mut f) = firsts.lock() {
                                    f.push(Instant::now());
                                }
                            }
                            Event::Done(g) => {
                                let _ = tx.send(Ok((Instant::now(), g.ids.len())));
                            }
                            Event::Failed(e) => {
                                let _ = tx.send(Err(e));
                            }
                            _ => {}
                        }
                        Control::Continue
                    }),
                )?;
            }
            let mut last = None;
            let mut tokens = 0;
            for _ in 0..k {
                let (t, ids) = rx
                    .recv()
                    .map_err(|_| Fail::Usage("the scheduler stopped".into()))??;
                last = Some(last.map_or(t, |l: Instant| l.max(t)));
                tokens += ids - 1;
            }
            let start = firsts.lock().ok().and_then(|f| f.iter().max().copied());
            if let (Some(s), Some(e)) = (start, last) {
                rates.push(tokens as f64 / (e - s).as_secs_f64());
            }
        }
        let st = stats(rates);
        let median = st["median"].as_f64().unwrap_or(0.0);
        let base = *single.get_or_insert(median);
        eprintln!(
            "{k:>3} streams: {median:>8.1} tok/s aggregate, {:>7.1} per stream, x{:.2} of 1 stream",
            median / k as f64,
            median / base
        );
        rows.push(json!({
            "streams": k,
            "tok_s": st,
            "per_stream_tok_s": median / k as f64,
            "speedup_vs_first": median / base,
            "max_batch": b.stats.max_batch.load(std::sync::atomic::Ordering::Relaxed),
        }));
    }
    let out = json!({
        "model": path,
        "backend": match load.backend {
            crate::BackendArg::Cpu => "cpu",
            crate::BackendArg::Gpu => "gpu",
        },
        "threads": cpu::matmul::threads(),
        "prompt_tokens": p,
        "gen_tokens": n,
        "reps": reps,
        "streams": rows,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}

/// Median, min and max of a series of rates.
fn stats(mut v: Vec<f64>) -> Json {
    v.sort_by(f64::total_cmp);
    json!({"median": v[v.len() / 2], "min": v[0], "max": v[v.len() - 1]})
}

/// Prefill of `p` tokens in one batch, then `n` single-token decode steps after `depth` tokens
/// of context (prefilled untimed), each repetition in a fresh KV cache (as llama-bench's pp/tg
/// tests, and its `-d`). Also the decode's time per token in the layers' mixers, by kind
/// (attention; short convolution or delta-net), which shows what grows with the context.
/// Prints JSON.
fn bench(
    path: &str,
    (p, n, depth): (usize, usize, usize),
    reps: usize,
    kernel: cpu::Kernel,
) -> Result<(), Fail> {
    use cpu::MixerKind;
    use std::time::Instant;
    let src = wasm_chord::source::FileSource::open(path)?;
    let t0 = Instant::now();
    let (_, model) = cpu::CpuModel::load(&src, kernel)?;
    let load_s = t0.elapsed().as_secs_f64();
    // Deterministic ids spread over the vocabulary; the content does not change the work.
    let v = model.cfg.n_vocab as u32;
    let ids = |len: usize, salt: u32| -> Vec<u32> {
        (0..len as u32).map(|i| (i * 7919 + salt) % v).collect()
    };
    let prompt = ids(p, 13);
    let context = ids(depth, 101);
    let (mut pp, mut tg) = (vec![], vec![]);
    let mut mixers = [(vec![], vec![]), (vec![], vec![])];
    for _ in 0..reps {
        let mut cache = cpu::KvCache::new(&model.cfg, p + n + 1);
        if p > 0 {
            let t = Instant::now();
            model.forward(&prompt, 0, &mut cache)?;
            pp.push(p as f64 / t.elapsed().as_secs_f64());
        }
        let mut cache = cpu::KvCache::new(&model.cfg, depth + n + 1);
        let mut tok = 1 % v;
        if depth > 0 {
            let l = model.forward(&context, 0, &mut cache)?;
            tok = wasm_chord::sampling::argmax(&l) as u32;
        }
        model.reset_mixer_times();
        let t = Instant::now();
        for i in 0..n {
            let l = model.forward(&[tok], depth + i, &mut cache)?;
            tok = wasm_chord::sampling::argmax(&l) as u32;
        }
        if n > 0 {
            tg.push(n as f64 / t.elapsed().as_secs_f64());
            for (kind, (ms, layers)) in [MixerKind::Attention, MixerKind::Recurrent]
                .into_iter()
                .zip(mixers.iter_mut())
            {
                let (ns, token_layers) = model.mixer_time(kind);
                ms.push(ns * token_layers as f64 / n as f64 / 1e6);
                layers.push(token_layers as f64 / n as f64);
            }
        }
    }
    let mixer = |(ms, layers): (Vec<f64>, Vec<f64>)| {
        if ms.is_empty() {
            Json::Null
        } else {
            json!({"layers": layers[0], "ms_per_token": stats(ms)})
        }
    };
    let [attention, recurrent] = mixers;
    let recurrence = recurrence_steps(&model.cfg);
    let out = json!({
        "model": path,
        "backend": "cpu",
        "kernel": format!("{kernel:?}").to_lowercase(),
        "threads": cpu::matmul::threads(),
        "weights_bytes": model.w.bytes(),
        "load_s": load_s,
        "pp": {"tokens": p, "tok_s": if pp.is_empty() { Json::Null } else { stats(pp) }},
        "tg": {"tokens": n, "depth": depth, "tok_s": if tg.is_empty() { Json::Null } else { stats(tg) }},
        "tg_mixers": {"attention": mixer(attention), "recurrent": mixer(recurrent)},
        "recurrence_step_us": recurrence,
        "reps": reps,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}

/// One token through one recurrent layer of the model's shape (a delta-net's, else a short
/// convolution's), on random inputs: median microseconds of the fast path and of the scalar
/// reference (100 steps each, after 10 to warm up). `null` for a model without such layers.
fn recurrence_steps(cfg: &wasm_chord::model::Config) -> Json {
    use cpu::delta_net::{delta_net_step, DeltaInputs, DeltaParams};
    use std::time::Instant;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut values = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                ((seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * scale
            })
            .collect()
    };
    let time = |step: &mut dyn FnMut()| {
        let mut us = Vec::with_capacity(100);
        for i in 0..110 {
            let t = Instant::now();
            step();
            if i >= 10 {
                us.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        us.sort_by(f64::total_cmp);
        us[us.len() / 2]
    };
    let mut out = serde_json::Map::new();
    for kernel in [cpu::Kernel::Fast, cpu::Kernel::Reference] {
        let name = format!("{kernel:?}").to_lowercase();
        let us = if let Some(spec) = cfg.delta_net {
            let (cd, vd, hv) = (spec.conv_dim(), spec.value_dim(), spec.v_heads);
            let (conv, dt_bias, norm) = (
                values(cd * spec.conv_taps, 0.5),
                values(hv, 1.0),
                values(spec.head_dim, 1.0),
            );
            let a: Vec<f32> = values(hv, 1.0).iter().map(|v| -v.abs() - 0.1).collect();
            let p = DeltaParams {
                spec,
                conv: &conv,
                dt_bias: &dt_bias,
                a: &a,
                norm: &norm,
                eps: cfg.rms_eps,
            };
            let (qkv, z, beta, alpha) = (
                values(cd, 2.0),
                values(vd, 2.0),
                values(hv, 3.0),
                values(hv, 3.0),
            );
            let x = DeltaInputs {
                qkv: &qkv,
                z: &z,
                beta: &beta,
                alpha: &alpha,
            };
            let mut state = values(
                (spec.conv_taps - 1) * cd + hv * spec.head_dim * spec.head_dim,
                0.3,
            );
            let (mut scratch, mut o) = (vec![0f32; cd], vec![0f32; vd]);
            time(&mut || delta_net_step(&p, &x, &mut state, &mut scratch, &mut o, kernel))
        } else if cfg.shortconv_l_cache > 0 {
            let (e, taps) = (cfg.n_embd, cfg.shortconv_l_cache);
            let kernel_w = values(e * taps, 0.5);
            let (b, c, xv) = (values(e, 1.0), values(e, 1.0), values(e, 1.0));
            let mut state = values((taps - 1) * e, 1.0);
            let (mut bx, mut y) = (vec![0f32; e], vec![0f32; e]);
            time(&mut || {
                cpu::short_conv::short_conv_step(
                    &mut state,
                    &kernel_w,
                    (&b, &c, &xv),
                    &mut bx,
                    &mut y,
                    kernel,
                )
            })
        } else {
            return Json::Null;
        };
        out.insert(name, json!(us));
    }
    Json::Object(out)
}

/// The GPU backend: prefill of `p` tokens, then `n` greedy decode steps (one submission and a
/// 4-byte readback each), timed per step.
fn bench_gpu(
    path: &str,
    p: usize,
    n: usize,
    reps: usize,
    (layout, checks): (Option<wasm_chord::gpu::kernels::Layout>, Option<bool>),
) -> Result<(), Fail> {
    use std::time::Instant;
    use wasm_chord::gpu::{GpuContext, GpuModel};
    let src = wasm_chord::source::FileSource::open(path)?;
    let t0 = Instant::now();
    let mut ctx = block_on(GpuContext::new())?.with_layout(layout);
    if let Some(on) = checks {
        ctx = ctx.with_shader_checks(on);
    }
    let adapter = ctx.describe();
    let shader_checks = ctx.shader_checks;
    let mut model = GpuModel::load(ctx, &src, p + n + 1)?;
    let load_s = t0.elapsed().as_secs_f64();
    let v = model.cfg.n_vocab as u32;
    let prompt: Vec<u32> = (0..p as u32).map(|i| (i * 7919 + 13) % v).collect();
    let (mut pp, mut tg, mut step_ms) = (vec![], vec![], vec![]);
    let (mut decode_stats, mut created_per_step) = (None, 0);
    for _ in 0..reps {
        if p > 0 {
            let t = Instant::now();
            block_on(model.forward(&prompt, 0))?;
            pp.push(p as f64 / t.elapsed().as_secs_f64());
        }
        let t = Instant::now();
        let mut tok = 1 % v;
        for i in 0..n {
            let s = Instant::now();
            let before = model.ctx.created();
            tok = block_on(model.step_argmax(tok, i))?;
            step_ms.push(s.elapsed().as_secs_f64() * 1e3);
            decode_stats = Some(model.last_step());
            created_per_step = created_per_step.max(model.ctx.created() - before);
        }
        if n > 0 {
            tg.push(n as f64 / t.elapsed().as_secs_f64());
        }
    }
    if let Some(st) = decode_stats {
        eprintln!(
            "decode step: {} dispatches ({:.2} per layer over {} layers), {} submission, {} \
             buffer copies, {:.1} MB of weights read, {created_per_step} objects created",
            st.dispatches,
            st.dispatches as f64 / model.cfg.n_layer as f64,
            model.cfg.n_layer,
            st.submissions,
            st.copies,
            model.step_weight_bytes() as f64 / 1e6
        );
    }
    let out = json!({
        "model": path,
        "backend": "gpu",
        "adapter": adapter,
        "load_s": load_s,
        "pp": {"tokens": p, "tok_s": if pp.is_empty() { Json::Null } else { stats(pp) }},
        "tg": {"tokens": n, "tok_s": if tg.is_empty() { Json::Null } else { stats(tg) }},
        "step_ms": if step_ms.is_empty() { Json::Null } else { stats(step_ms) },
        "layout": layout.map_or("default".into(), |l| format!("{l:?}").to_lowercase()),
        "step_weight_bytes": model.step_weight_bytes(),
        "shader_checks": shader_checks,
        "dispatches_per_step": decode_stats.map(|s| s.dispatches),
        "dispatches_per_layer": decode_stats.map(|s| s.dispatches as f64 / model.cfg.n_layer as f64),
        "submissions_per_step": decode_stats.map(|s| s.submissions),
        "copies_per_step": decode_stats.map(|s| s.copies),
        "objects_created_per_step": created_per_step,
        "n_layer": model.cfg.n_layer,
        "readback_bytes_per_step": 4,
        "reps": reps,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}

/// The matrices of a layer that the kernel bench times (`blk.0.NAME.weight`).
const LAYER_MATRICES: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

/// `--kernels`: effective bandwidth of the matrix kernels. For the model's layer-0 matrices and
/// its output matrix, then a 2048 × 2048 synthetic matrix of every GPU format: matvec.wgsl on
/// one token (a decode step), matvec.wgsl over `p` tokens (workgroup z = token: the weights
/// read once per token) and matmat.wgsl over `p` tokens (read once per 8 tokens). Each is many
/// dispatches in one submission, wall-clock timed to the device going idle. GB/s is bytes of
/// weights per product / time (`weights_gbs`), and for `p` tokens also as if each token read
/// them (`per_token_gbs` = bytes · p / time). Formats whose blocks are not word-aligned are
/// timed in both layouts (GGUF bytes through byte helpers, and repacked to whole words); the
/// bytes counted are those uploaded. Prints JSON.
fn bench_gpu_kernels(path: &str, p: usize, checks: Option<bool>) -> Result<(), Fail> {
    use wasm_chord::gpu::bench::{synthetic_matrix, time_product, Product};
    use wasm_chord::gpu::kernels::{layouts, GPU_TYPES};
    use wasm_chord::gpu::{GpuContext, GpuMatrix};
    let src = wasm_chord::source::FileSource::open(path)?;
    let header = wasm_chord::source::read_header(&src)?;
    let mut ctx = block_on(GpuContext::new())?;
    if let Some(on) = checks {
        ctx = ctx.with_shader_checks(on);
    }
    let budget = 0.3;
    let mut mats = Vec::new();
    let mut names: Vec<String> = LAYER_MATRICES
        .iter()
        .map(|n| format!("blk.0.{n}.weight"))
        .collect();
    names.push(if header.tensor("output.weight").is_some() {
        "output.weight".into()
    } else {
        "token_embd.weight".into()
    });
    for name in &names {
        let Some(t) = header.tensor(name) else {
            continue;
        };
        let (cols, rows) = (t.dims[0] as usize, t.dims[1] as usize);
        let at = header.tensor_range(t).start;
        for l in layouts(t.ty) {
            let m = GpuMatrix::upload_from(&ctx, name, t.ty, (rows, cols), &src, at, l)?;
            mats.push(m);
        }
    }
    for (i, &ty) in GPU_TYPES.iter().enumerate() {
        let q = synthetic_matrix(ty, 2048, 2048, 7 + i as u64);
        for l in layouts(ty) {
            mats.push(GpuMatrix::upload_as(&ctx, &q, l)?);
        }
    }
    // First (a timeout keeps what stderr has printed): the fused decode kernels of layer 0
    // (default layouts) against their unfused chains.
    let cfg = wasm_chord::model::Config::from_header(&header)?;
    let mut layer = Vec::new();
    for n in LAYER_MATRICES {
        let name = format!("blk.0.{n}.weight");
        let t = header
            .tensor(&name)
            .ok_or_else(|| Fail::Usage(format!("{path}: no tensor {name}")))?;
        let (cols, rows) = (t.dims[0] as usize, t.dims[1] as usize);
        let at = header.tensor_range(t).start;
        let l = ctx.layout_for(t.ty);
        layer.push(GpuMatrix::upload_from(
            &ctx,
            &name,
            t.ty,
            (rows, cols),
            &src,
            at,
            l,
        )?);
    }
    let lm = wasm_chord::gpu::bench::LayerMatrices {
        q: &layer[0],
        k: &layer[1],
        v: &layer[2],
        o: &layer[3],
        gate: &layer[4],
        up: &layer[5],
        down: &layer[6],
    };
    let mut fused_rows = Vec::new();
    for t in wasm_chord::gpu::bench::time_fused(&ctx, &lm, cfg.head_dim, budget)? {
        eprintln!(
            "fused {:<28} {:>9.1} us ({} dispatches) vs unfused {:>9.1} us ({} dispatches), {:.2} GB/s fused",
            t.what,
            t.fused_s * 1e6,
            t.fused_dispatches,
            t.unfused_s * 1e6,
            t.unfused_dispatches,
            t.bytes as f64 / t.fused_s / 1e9
        );
        fused_rows.push(json!({
            "what": t.what,
            "bytes": t.bytes,
            "fused_us": t.fused_s * 1e6,
            "fused_dispatches": t.fused_dispatches,
            "unfused_us": t.unfused_s * 1e6,
            "unfused_dispatches": t.unfused_dispatches,
        }));
    }
    let mut rows = Vec::new();
    for m in &mats {
        let x = ctx.storage_f32("x", m.cols * p);
        let y = ctx.storage_f32("y", m.rows * p);
        let bytes = m.bytes() as f64;
        let (t1, i1) = time_product(&ctx, m, &x, &y, 1, Product::Matvec(None), budget)?;
        let (tv, iv) = time_product(&ctx, m, &x, &y, p, Product::Matvec(None), budget)?;
        // Decode matvec at other workgroup shapes: rows per workgroup → µs.
        let mut sweep = serde_json::Map::new();
        for rows in [1u32, 2, 4, 8, 16, 32] {
            let (t, _) = time_product(&ctx, m, &x, &y, 1, Product::Matvec(Some(rows)), 0.05)?;
            sweep.insert(rows.to_string(), json!(t * 1e6));
        }
        eprintln!(
            "    matvec µs by rows per workgroup: {}",
            Json::Object(sweep.clone())
        );
        let (tm, im) = time_product(&ctx, m, &x, &y, p, Product::Matmat, budget)?;
        let row = json!({
            "matrix": m.name,
            "type": m.ty.to_string(),
            "layout": format!("{:?}", m.layout).to_lowercase(),
            "rows": m.rows,
            "cols": m.cols,
            "bytes": m.bytes(),
            "matvec_1": {"us": t1 * 1e6, "weights_gbs": bytes / t1 / 1e9, "dispatches": i1},
            "matvec_z": {"tokens": p, "us": tv * 1e6, "weights_gbs": bytes / tv / 1e9,
                         "per_token_gbs": bytes * p as f64 / tv / 1e9, "dispatches": iv},
            "matmat": {"tokens": p, "us": tm * 1e6, "weights_gbs": bytes / tm / 1e9,
                       "per_token_gbs": bytes * p as f64 / tm / 1e9, "dispatches": im},
            "matmat_speedup": tv / tm,
            "matvec_1_us_by_rows": sweep,
        });
        eprintln!(
            "{:<24} {:>5} {:<7} {:>5}x{:<5} {:>9} B  matvec {:>8.1} us {:>6.2} GB/s | {p} tok: matvec(z) {:>9.1} us {:>6.2} GB/s/tok, matmat {:>9.1} us {:>6.2} GB/s/tok, x{:.2}",
            m.name,
            m.ty.to_string(),
            format!("{:?}", m.layout).to_lowercase(),
            m.rows,
            m.cols,
            m.bytes(),
            t1 * 1e6,
            bytes / t1 / 1e9,
            tv * 1e6,
            bytes * p as f64 / tv / 1e9,
            tm * 1e6,
            bytes * p as f64 / tm / 1e9,
            tv / tm
        );
        rows.push(row);
    }
    let out = json!({
        "model": path,
        "backend": "gpu",
        "adapter": ctx.describe(),
        "timing": "wall clock of one submission of N back-to-back dispatches, to device idle; median of 3",
        "shader_checks": ctx.shader_checks,
        "tokens": p,
        "kernels": rows,
        "fused": fused_rows,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}
